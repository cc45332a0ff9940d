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
