"""k-means++ seeding, Lloyd, and the BIC merge step."""
import torch

from dga_fast.mixture import MStepConfig, initial_partition, kmeans_plusplus, merge_components, m_step


def _blobs(centres, n, sd, seed=0, D=4):
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(centres, dtype=torch.float64)
    c = torch.nn.functional.pad(c, (0, D - c.shape[1]))
    lab = torch.arange(n) % len(c)
    return c[lab] + sd * torch.randn(n, D, generator=g, dtype=torch.float64), lab


def test_kmeans_plusplus_deterministic_and_spread():
    x, _ = _blobs([[0, 0], [10, 0], [0, 10], [10, 10]], 400, 0.1)
    x = x.unsqueeze(0).repeat(3, 1, 1)
    c1 = kmeans_plusplus(x, 4, torch.Generator().manual_seed(5))
    c2 = kmeans_plusplus(x, 4, torch.Generator().manual_seed(5))
    torch.testing.assert_close(c1, c2)
    # one seed per blob
    for g in range(3):
        corners = (c1[g, :, :2] / 10).round().tolist()
        assert sorted(map(tuple, corners)) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_initial_partition_recovers_blobs():
    x, lab = _blobs([[0, 0], [8, 0], [0, 8]], 300, 0.5)
    for method in ("kmeans++", "random"):
        pred = initial_partition(x.unsqueeze(0), 3, method, torch.Generator().manual_seed(0))[0]
        # a bijection between predicted and true labels
        pairs = set(zip(pred.tolist(), lab.tolist()))
        assert len(pairs) == 3


def _fitted(x, labels, K):
    resp = torch.nn.functional.one_hot(labels, K).double().unsqueeze(0)
    cfg = MStepConfig(d_max=3, min_mass=2.0)
    return m_step(x.unsqueeze(0), resp, cfg, torch.full((1,), 1e-6, dtype=torch.float64)), cfg


def test_merge_joins_halves_of_one_gaussian_but_not_separate_clusters():
    x, lab = _blobs([[0, 0], [20, 0]], 2000, 1.0)
    # split the first blob in two along its first axis: 3 components for 2 clusters
    sub = torch.where((lab == 0) & (x[:, 0] > 0), torch.full_like(lab, 2), lab)
    st, cfg = _fitted(x, sub, 3)
    out, merged = merge_components(st, 2000, cfg, torch.full((1,), 1e-6, dtype=torch.float64))
    assert merged.tolist() == [1]
    assert int(out.active.sum()) == 2
    act = out.active[0]
    centres = sorted(out.means[0][act][:, 0].round().tolist())
    assert centres == [0.0, 20.0]
    torch.testing.assert_close(out.weights()[0][act].sum(), torch.tensor(1.0, dtype=torch.float64))


def test_merge_keeps_well_separated_clusters():
    x, lab = _blobs([[0, 0], [6, 0], [12, 0], [18, 0]], 2000, 0.5)
    st, cfg = _fitted(x, lab, 4)
    out, merged = merge_components(st, 2000, cfg, torch.full((1,), 1e-6, dtype=torch.float64))
    assert merged.tolist() == [0] and int(out.active.sum()) == 4


def _sliced(n_slices=6, seed=1):
    """One Gaussian cut into ``n_slices`` hard slices along its first axis (equal counts), and a second Gaussian
    far away: components ``0 .. n_slices − 1`` and ``n_slices``."""
    x, lab = _blobs([[0, 0], [30, 0]], 3000, 1.0, seed=seed)
    first = lab == 0
    rank = torch.empty_like(lab)
    rank[first] = x[first, 0].argsort().argsort() * n_slices // int(first.sum())
    return x, torch.where(first, rank, torch.full_like(lab, n_slices))


def test_merge_joins_the_slices_of_one_gaussian_as_a_chain_when_every_pair_is_refused():
    """Pair unions of slices are refused (as the split test refuses a truncated tail piece); the chain of all the
    slices, the whole Gaussian, is one candidate, and the far Gaussian is not part of it."""
    S = 6
    x, sub = _sliced(S)
    st, cfg = _fitted(x, sub, S + 1)
    seen = []

    def whole_only(merged, to, recv):   # accepts a merge only when it holds all S slices
        members = torch.zeros_like(to).scatter_add_(1, to, torch.ones_like(to))
        seen.append(int(members.max()))
        return recv & (members == S)

    out, merged = merge_components(st, 3000, cfg, torch.full((1,), 1e-6, dtype=torch.float64), verify=whole_only)
    assert merged.tolist() == [S - 1] and int(out.active.sum()) == 2
    assert 2 in seen and S in seen                          # pairs were proposed (and refused) before the chain
    centres = sorted(out.means[0][out.active[0]][:, 0].round().tolist())
    assert centres == [0.0, 30.0]
    torch.testing.assert_close(out.weights()[0][out.active[0]], torch.tensor([0.5, 0.5], dtype=torch.float64),
                               rtol=0, atol=1e-12)
    # the moment-matched mean of the hard slices is the whole Gaussian's sample mean
    torch.testing.assert_close(out.means[0, 0], x[sub < S].mean(0), rtol=0, atol=1e-12)


def test_a_refused_chain_merges_nothing_and_ends():
    x, sub = _sliced(4)
    st, cfg = _fitted(x, sub, 5)
    out, merged = merge_components(st, 3000, cfg, torch.full((1,), 1e-6, dtype=torch.float64),
                                   verify=lambda merged, to, recv: torch.zeros_like(recv))
    assert merged.tolist() == [0] and int(out.active.sum()) == 5
