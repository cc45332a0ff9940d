"""The native M-step (``torch.ops.dga_fast.{mstep_moments, mstep_scatter, batched_eigh}``, csrc/core/mstep_core.*)
and the PyTorch reference (``mixture.mstep``) against the brute-force oracle (``ops/hddc_mstep/naive.py``):
hypothesis shapes (K = 1, one row, rows across the op's chunks, odd D), slots without significant
responsibility, float32 / float64, data scaled 1e-4 … 1e4; bit-identical sums of a group alone or in a batch and
at any thread count; validation; dispatch; the whole M-step and refit on either path."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast import native, ops
from dga_fast.mixture.mstep import RESP_EPS, MStepConfig, m_step, moments, robust_eigh, scatter_matrices
from dga_fast.ops.hddc_mstep import naive

pytestmark = pytest.mark.skipif(not native.available(), reason="dga_fast._C not built (DGA_FAST_NO_EXT=1)")

CHUNK = 2048   # csrc/core/mstep_core.h kMstepChunk: N = 2049 puts a group's rows in two chunks


def _data(G, N, K, D, scale, hard, n_dead, dtype, seed):
    """Tokens around ``scale·3``, responsibilities from logits (``hard``: nearly one-hot), the last ``n_dead``
    slots with none above RESP_EPS (some exactly at it), means near the data."""
    g = torch.Generator().manual_seed(seed)
    x = scale * (3 + torch.randn(G, N, D, generator=g, dtype=torch.float64))
    resp = torch.softmax(torch.randn(G, N, K, generator=g, dtype=torch.float64) * (30.0 if hard else 1.5), -1)
    resp = resp.to(dtype)
    if n_dead:   # RESP_EPS rounded to dtype: equal to the threshold the sums compare with, so left out
        at_eps = torch.tensor(RESP_EPS, dtype=dtype)
        resp[..., K - n_dead:] = torch.where(torch.rand(G, N, n_dead, generator=g) < 0.5, at_eps, 0.0)
    means = scale * (3 + 0.3 * torch.randn(G, K, D, generator=g, dtype=torch.float64))
    return x.to(dtype), resp, means.to(dtype)


def _tol(dtype):
    return 1e-5 if dtype == torch.float32 else 1e-11


shapes = st_.tuples(st_.integers(1, 3), st_.sampled_from([1, 2, 17, 300, CHUNK + 1]), st_.sampled_from([1, 2, 5]),
                    st_.sampled_from([1, 5, 8, 33]))


@settings(max_examples=30, deadline=None)
@given(shapes, st_.sampled_from([1e-4, 1.0, 1e4]), st_.booleans(), st_.integers(0, 1),
       st_.sampled_from([torch.float32, torch.float64]), st_.integers(0, 2**16))
def test_mstep_sums_match_the_oracle(shape, scale, hard, n_dead, dtype, seed):
    G, N, K, D = shape
    n_dead = min(n_dead, K - 1)
    x, resp, means = _data(G, N, K, D, scale, hard, n_dead, dtype, seed)
    o_nk, o_first = naive.mstep_moments(x, resp, RESP_EPS)
    o_S = naive.mstep_scatter(x, resp, means, RESP_EPS)
    tol = _tol(dtype)
    for name, (nk, first), S in [
            ("native", torch.ops.dga_fast.mstep_moments(x, resp, RESP_EPS),
             torch.ops.dga_fast.mstep_scatter(x, resp, means, RESP_EPS)),
            ("reference", moments(x, resp), scatter_matrices(x, resp, means))]:
        assert nk.dtype == first.dtype == S.dtype == dtype, name
        torch.testing.assert_close(nk.double(), o_nk, rtol=tol, atol=tol * N, msg=name)
        torch.testing.assert_close(first.double(), o_first, rtol=tol, atol=tol * float(o_first.abs().max()), msg=name)
        torch.testing.assert_close(S.double(), o_S, rtol=tol, atol=tol * float(o_S.abs().max()) + 1e-300, msg=name)
    S = torch.ops.dga_fast.mstep_scatter(x, resp, means, RESP_EPS)
    assert torch.equal(S, S.transpose(-1, -2))                      # exactly symmetric
    if n_dead:                                                      # nothing above eps: exactly zero
        assert torch.equal(S[:, -1], torch.zeros_like(S[:, -1]))


def test_mstep_sums_of_a_group_do_not_depend_on_the_batch_or_the_threads():
    x, resp, means = _data(3, 2 * CHUNK + 7, 4, 9, 1.0, False, 1, torch.float32, 3)
    nk, first = torch.ops.dga_fast.mstep_moments(x, resp, RESP_EPS)
    S = torch.ops.dga_fast.mstep_scatter(x, resp, means, RESP_EPS)
    nk1, first1 = torch.ops.dga_fast.mstep_moments(x[1:2].contiguous(), resp[1:2].contiguous(), RESP_EPS)
    S1 = torch.ops.dga_fast.mstep_scatter(x[1:2].contiguous(), resp[1:2].contiguous(), means[1:2].contiguous(),
                                          RESP_EPS)
    assert torch.equal(nk1[0], nk[1]) and torch.equal(first1[0], first[1]) and torch.equal(S1[0], S[1])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(torch.ops.dga_fast.mstep_scatter(x, resp, means, RESP_EPS), S)
        assert torch.equal(torch.ops.dga_fast.mstep_moments(x, resp, RESP_EPS)[1], first)
    finally:
        torch.set_num_threads(threads)


@settings(max_examples=15, deadline=None)
@given(st_.integers(0, 19), st_.sampled_from([1, 2, 7, 16, 25, 32, 41]), st_.sampled_from([torch.float32, torch.float64]),
       st_.sampled_from([1e-4, 1.0, 1e4]), st_.integers(0, 2**16))
def test_batched_eigh_matches_linalg_eigh(M, D, dtype, scale, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(M, D, D, generator=g, dtype=torch.float64)
    W = (scale * (A @ A.transpose(-1, -2))).to(dtype)
    ev, vec = torch.ops.dga_fast.batched_eigh(W)
    r_ev, _ = torch.linalg.eigh(W)
    assert ev.shape == (M, D) and vec.shape == (M, D, D) and ev.dtype == vec.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    top = float(r_ev.abs().max()) if M else 1.0
    torch.testing.assert_close(ev, r_ev, rtol=tol, atol=tol * top)
    eye = torch.eye(D, dtype=dtype).expand(M, D, D)
    torch.testing.assert_close(vec.mT @ vec, eye, rtol=0, atol=50 * tol)                     # orthonormal
    torch.testing.assert_close(vec @ torch.diag_embed(ev) @ vec.mT, W, rtol=0, atol=50 * tol * top)
    # only the eigenvectors of the `top` largest eigenvalues (Jacobi rebuilds them from its rotations): the same
    # eigenvalues, the full call's last columns up to rounding; the reference (robust_eigh) slices the same way
    for k in sorted({1, max(D - 1, 1)}):
        ev_k, vec_k = torch.ops.dga_fast.batched_eigh(W, k)
        assert vec_k.shape == (M, D, k) and torch.equal(ev_k, ev)
        torch.testing.assert_close(vec_k, vec[..., D - k:], rtol=0, atol=50 * tol)
        r_ev_k, r_vec_k = robust_eigh(W, top=k)
        assert r_vec_k.shape == (M, D, k)
        torch.testing.assert_close(W @ r_vec_k, r_vec_k * r_ev_k[:, None, D - k:], rtol=0, atol=50 * tol * top)
    # a matrix's result does not depend on the batch (torch.linalg.eigh's can, for odd D; Jacobi's lanes are matrices)
    for m in range(min(M, 3)):
        e1, v1 = torch.ops.dga_fast.batched_eigh(W[m:m + 1].contiguous())
        assert torch.equal(e1[0], ev[m]) and torch.equal(v1[0], vec[m])


def test_native_mstep_rejects_bad_input():
    x, resp, means = _data(2, 5, 3, 4, 1.0, False, 0, torch.float32, 0)
    mom, sca, eig = torch.ops.dga_fast.mstep_moments, torch.ops.dga_fast.mstep_scatter, torch.ops.dga_fast.batched_eigh
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        mom(x.half(), resp, RESP_EPS)
    with pytest.raises(TypeError, match="resp must be"):
        mom(x, resp.double(), RESP_EPS)
    with pytest.raises(ValueError, match="x must be \\[G, N, D\\]"):
        sca(x[0], resp, means, RESP_EPS)
    with pytest.raises(ValueError, match="resp must be \\[G, N, K\\]"):
        sca(x, resp[:, :4], means, RESP_EPS)
    with pytest.raises(ValueError, match="means must be \\[G, K, D\\]"):
        sca(x, resp, means[:, :2], RESP_EPS)
    with pytest.raises(TypeError, match="means must be"):
        sca(x, resp, means.double(), RESP_EPS)
    with pytest.raises(ValueError, match="same device"):
        sca(x, resp, means.to("meta"), RESP_EPS)
    with pytest.raises(ValueError, match="W must be \\[M, D, D\\]"):
        eig(torch.zeros(2, 3, 4))
    for D in (3, 50):   # Jacobi and LAPACK: a non-finite matrix gets NaN eigenpairs (as torch.linalg.eigh), no error
        Wd = torch.eye(D).repeat(4, 1, 1)
        Wd[1, 2, 0] = float("nan")
        ev, vec = eig(Wd)
        assert bool(torch.isnan(ev[1]).all()) and torch.equal(ev[[0, 2, 3]], torch.ones(3, D))
    with pytest.raises(TypeError, match="W must be float32 or float64"):
        eig(torch.zeros(1, 2, 2, dtype=torch.float16))


def test_native_mstep_fakes():
    x, resp, means = (t.to("meta") for t in _data(2, 5, 3, 4, 1.0, False, 0, torch.float32, 0))
    nk, first = torch.ops.dga_fast.mstep_moments(x, resp, RESP_EPS)
    assert nk.shape == (2, 3) and first.shape == (2, 3, 4) and nk.device.type == "meta"
    assert torch.ops.dga_fast.mstep_scatter(x, resp, means, RESP_EPS).shape == (2, 3, 4, 4)
    ev, vec = torch.ops.dga_fast.batched_eigh(torch.empty(6, 4, 4, device="meta"))
    assert ev.shape == (6, 4) and vec.shape == (6, 4, 4)


def test_mstep_dispatch(set_backend, monkeypatch):
    x, resp, means = _data(2, 9, 3, 4, 1.0, False, 0, torch.float32, 1)
    called = []
    for name in ("mstep_moments", "mstep_scatter", "batched_eigh"):
        real = getattr(torch.ops.dga_fast, name)
        monkeypatch.setattr(torch.ops.dga_fast, name, lambda *a, _r=real, _n=name: called.append(_n) or _r(*a))
    cfg = MStepConfig(d_max=2)
    floor = torch.full((2,), 1e-6)
    set_backend("reference")
    ref = m_step(x, resp, cfg, floor, kernels=ops.MSTEP)
    assert not called and ops.MSTEP.pairs(resp) is not None
    set_backend("auto")
    nat = m_step(x, resp, cfg, floor, kernels=ops.MSTEP)
    assert sorted(set(called)) == ["batched_eigh", "mstep_moments", "mstep_scatter"] and ops.MSTEP.pairs(resp) is None
    torch.testing.assert_close(nat.means, ref.means, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(nat.noise, ref.noise, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(nat.log_weights, ref.log_weights, rtol=1e-5, atol=1e-6)
    assert torch.equal(nat.dims, ref.dims) and torch.equal(nat.active, ref.active)
