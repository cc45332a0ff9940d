"""Reference spread / split / filter ops against plain loops."""
import math

import torch
from hypothesis import given
from hypothesis import strategies as st_

from dga_fast import ops
from helpers import random_state


@given(st_.integers(1, 3), st_.integers(1, 60), st_.integers(1, 6), st_.integers(1, 5), st_.integers(0, 2**16))
def test_mixture_spread_matches_loop(G, N, K, D, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(G, N, D, generator=g, dtype=torch.float64)
    labels = torch.randint(0, K, (G, N), generator=g)
    means = torch.randn(G, K, D, generator=g, dtype=torch.float64)
    counts, spread = ops.mixture_spread(x, labels, means)
    for gi in range(G):
        for k in range(K):
            pts = x[gi][labels[gi] == k]
            assert int(counts[gi, k]) == len(pts)
            ref = (pts - means[gi, k]).norm(dim=1).mean() if len(pts) else torch.tensor(0.0, dtype=torch.float64)
            assert math.isclose(float(spread[gi, k]), float(ref), rel_tol=1e-12, abs_tol=1e-12)


@given(st_.integers(1, 3), st_.integers(2, 9), st_.integers(1, 8), st_.floats(0.0, 1.0), st_.integers(0, 2**16))
def test_split_components_matches_loop(G, K, max_components, threshold, seed):
    n_inactive = seed % K
    st = random_state(G, K, 5, 3, seed=seed, n_inactive=n_inactive)
    g = torch.Generator().manual_seed(seed)
    spread = torch.rand(G, K, generator=g, dtype=torch.float64)
    counts = torch.randint(0, 50, (G, K), generator=g)
    out, n_split = ops.split_components(st, spread, counts, threshold, max_components, 20)
    for gi in range(G):
        act = st.active[gi].tolist()
        cands = [k for k in range(K) if act[k] and spread[gi, k] > threshold and counts[gi, k] >= 20]
        cands.sort(key=lambda k: (-float(spread[gi, k]), k))                 # widest first, stable
        free = [k for k in range(K) if not act[k] and k < max_components]
        n = max(0, min(len(cands), len(free), max_components - sum(act)))
        assert int(n_split[gi]) == n
        assert int(out.active[gi].sum()) == sum(act) + n <= max(max_components, sum(act))
        for parent, child in zip(cands[:n], free[:n]):
            step = st.components[gi, parent, :, 0] * st.eigvals[gi, parent, 0].sqrt() * (st.dims[gi, parent] > 0)
            torch.testing.assert_close(out.means[gi, parent], st.means[gi, parent] + step)
            torch.testing.assert_close(out.means[gi, child], st.means[gi, parent] - step)
            for name in ("components", "eigvals", "noise", "dims"):
                torch.testing.assert_close(getattr(out, name)[gi, child], getattr(st, name)[gi, parent])
            half = st.log_weights[gi, parent] - math.log(2)
            torch.testing.assert_close(out.log_weights[gi, parent], half)
            torch.testing.assert_close(out.log_weights[gi, child], half)
        untouched = [k for k in range(K) if k not in cands[:n] and k not in free[:n]]
        for k in untouched:
            torch.testing.assert_close(out.means[gi, k], st.means[gi, k])
            assert bool(out.active[gi, k]) == act[k]
        # weights still sum to one
        torch.testing.assert_close(torch.logsumexp(out.log_weights[gi], 0), torch.tensor(0.0, dtype=torch.float64))


@given(st_.integers(1, 3), st_.integers(1, 9), st_.floats(0.0, 60.0), st_.integers(0, 2**16))
def test_filter_components_matches_loop(G, K, min_size, seed):
    st = random_state(G, K, 4, 2, seed=seed, n_inactive=seed % K)
    g = torch.Generator().manual_seed(seed)
    mass = torch.rand(G, K, generator=g, dtype=torch.float64) * 50
    out = ops.filter_components(st, mass, min_size)
    for gi in range(G):
        keep = [k for k in range(K) if st.active[gi, k] and mass[gi, k] >= min_size]
        if not keep:   # the heaviest active component survives
            act = [k for k in range(K) if st.active[gi, k]]
            keep = [max(act, key=lambda k: float(mass[gi, k]))]
        assert out.active[gi].tolist() == [True] * len(keep) + [False] * (K - len(keep))
        for new, old in enumerate(keep):
            torch.testing.assert_close(out.means[gi, new], st.means[gi, old])
            assert int(out.dims[gi, new]) == int(st.dims[gi, old])
        lw = st.log_weights[gi, keep]
        torch.testing.assert_close(out.log_weights[gi, :len(keep)], lw - torch.logsumexp(lw, 0))
        assert torch.isneginf(out.log_weights[gi, len(keep):]).all()
        assert (out.means[gi, len(keep):] == 0).all()
