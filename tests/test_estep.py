"""Reference HDDC E-step against a brute-force float64 oracle, and its invariants."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st_

from dga_fast import ops
from dga_fast.mixture import MixtureState
from helpers import brute_estep, random_state

shapes = st_.tuples(st_.integers(1, 3),      # G
                    st_.integers(1, 40),     # N
                    st_.integers(1, 7),      # K
                    st_.integers(1, 11),     # D
                    st_.integers(1, 5))      # dmax


@given(shapes, st_.integers(0, 3), st_.sampled_from([1e-3, 1.0, 1e3]), st_.integers(0, 2**16))
def test_estep_matches_bruteforce(shape, n_inactive, scale, seed):
    G, N, K, D, dmax = shape
    st = random_state(G, K, D, dmax, seed=seed, n_inactive=n_inactive, scale=scale)
    g = torch.Generator().manual_seed(seed + 1)
    x = st.means[:, :1] + scale * 2 * torch.randn(G, N, D, generator=g, dtype=torch.float64)
    lr, ll = ops.hddc_estep(x, st)
    lr_ref, ll_ref = brute_estep(x, st)
    assert lr.shape == (G, N, K) and ll.shape == (G, N)
    torch.testing.assert_close(ll, ll_ref, rtol=1e-9, atol=1e-8)
    act = st.active.unsqueeze(1).expand_as(lr)
    torch.testing.assert_close(lr[act], lr_ref[act], rtol=1e-9, atol=1e-8)
    assert bool(torch.isneginf(lr[~act]).all()), "inactive slots must get -inf log-responsibility"
    # rows log-sum-exp to 0
    torch.testing.assert_close(torch.logsumexp(lr, -1), torch.zeros(G, N, dtype=lr.dtype), atol=1e-9, rtol=0)


@given(shapes, st_.integers(0, 2**16), st_.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
def test_estep_low_precision_inputs(shape, seed, dtype):
    """fp16/bf16/fp32 inputs are computed in float32; compare with float64 on the rounded inputs."""
    G, N, K, D, dmax = shape
    st = random_state(G, K, D, dmax, seed=seed, n_inactive=1).to(dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    x = (st.means[:, :1] + 2 * torch.randn(G, N, D, generator=g)).to(dtype)
    lr, ll = ops.hddc_estep(x, st)
    assert lr.dtype == torch.float32 and ll.dtype == torch.float32
    _, ll_ref = brute_estep(x.double(), st.to(dtype=torch.float64))
    torch.testing.assert_close(ll.double(), ll_ref, rtol=1e-4, atol=1e-3)


@given(shapes, st_.integers(0, 2**16))
def test_estep_permutation_invariant(shape, seed):
    """Permuting component slots permutes the responsibilities and leaves the log-likelihood unchanged."""
    G, N, K, D, dmax = shape
    st = random_state(G, K, D, dmax, seed=seed, n_inactive=1)
    x = torch.randn(G, N, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    perm = torch.stack([torch.randperm(K, generator=torch.Generator().manual_seed(seed + g_))
                        for g_ in range(G)])
    lr, ll = ops.hddc_estep(x, st)
    lr_p, ll_p = ops.hddc_estep(x, st.index_slots(perm))
    torch.testing.assert_close(ll_p, ll, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lr_p, torch.gather(lr, 2, perm.unsqueeze(1).expand(-1, N, -1)),
                               rtol=1e-12, atol=1e-12)


def test_estep_far_from_origin_tight_components_float32():
    """Tight components far from the origin: float32 input stays accurate (the expansion is in float64)."""
    st = random_state(2, 4, 16, 3, seed=3, scale=1e-2).to(dtype=torch.float32)
    st.means = st.means + 5.0
    x = st.means[:, :1] + 0.05 * torch.randn(2, 64, 16, generator=torch.Generator().manual_seed(0))
    _, ll = ops.hddc_estep(x, st)
    _, ll_ref = brute_estep(x.double(), st.to(dtype=torch.float64))
    assert float(((ll.double() - ll_ref).abs() / (1 + ll_ref.abs())).max()) < 1e-4


def test_state_validate_rejects_empty_group():
    st = MixtureState.empty(2, 3, 4, 2)
    with pytest.raises(ValueError, match="without any active component"):
        st.validate()


def test_estep_bad_input():
    st = random_state(2, 3, 4, 2, seed=0)
    with pytest.raises(ValueError, match="match the mixture state"):
        ops.hddc_estep(torch.randn(2, 5, 3, dtype=torch.float64), st)
    with pytest.raises(ValueError, match="3 dimensions"):
        ops.hddc_estep(torch.randn(5, 4), st)
    with pytest.raises(ValueError, match="NaN or Inf"):
        ops.hddc_estep(torch.full((2, 5, 4), float("nan")), st)
    with pytest.raises(TypeError, match="floating-point"):
        ops.hddc_estep(torch.ones(2, 5, 4, dtype=torch.int64), st)
