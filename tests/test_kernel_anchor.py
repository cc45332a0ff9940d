"""The fused Triton anchor shift (forward and backward; Triton's interpreter on CPU) against the reference."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast.ops.anchor_shift import reference
from helpers import random_state

pytest.importorskip("triton")
from dga_fast.ops.anchor_shift import custom_op  # noqa: E402,F401  (registers torch.ops.dga_fast.*)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
shapes = st_.tuples(st_.integers(1, 70),     # B
                    st_.integers(1, 3),      # U
                    st_.integers(1, 7),      # K
                    st_.sampled_from([1, 3, 16, 19]),   # D
                    st_.integers(1, 5))      # dmax
# output rounding of the token dtype on top of float32 arithmetic
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}


def _case(B, U, K, D, dmax, seed, n_inactive=0, scale=1.0):
    st = random_state(U, K, D, dmax, seed=seed, n_inactive=n_inactive).to(dtype=torch.float32)
    g = torch.Generator().manual_seed(seed + 3)
    shift = scale * torch.randn(U, D, generator=g)
    sc = scale * (0.5 + torch.rand(U, generator=g))
    lab = torch.randint(0, K, (B, U), generator=g)
    mu = st.means[torch.arange(U).unsqueeze(0), lab]                                  # [B, U, D] normalised
    c = (mu + 0.5 * torch.randn(B, U, D, generator=g)) * sc[:, None] + shift
    return st, shift, sc, c


def _kernel(c, st, shift, sc, align="adaptive", align_max=0.1):
    s = st.trim_dims().to(device=DEV)
    w, inv_b, const = s.cost_terms()
    ad = align == "adaptive"
    return torch.ops.dga_fast.anchor_shift(c.to(DEV), shift.to(DEV), sc.to(DEV), s.means, s.components, w, inv_b,
                                           const, 0.0 if ad else float(align), align_max, ad)


def _clear(c, st, shift, sc, margin=1e-3):
    """[B, U] True where the reference's best component leads the second by more than ``margin`` (in log
    responsibility): there the kernel must pick the same k*."""
    lr = reference.anchor_log_resp(c.double(), st.to(dtype=torch.float64), shift.double(), sc.double())
    if lr.shape[-1] == 1:
        return torch.ones(lr.shape[:2], dtype=torch.bool), lr.argmax(-1)
    top = lr.topk(2, -1).values
    return (top[..., 0] - top[..., 1]) > margin, lr.argmax(-1)


@settings(max_examples=20)
@given(shapes, st_.integers(0, 2), st_.sampled_from([1e-3, 1.0, 1e3]), st_.sampled_from(["adaptive", 0.3]),
       st_.sampled_from([torch.float32, torch.float16, torch.bfloat16]), st_.integers(0, 2**16))
def test_kernel_anchor_shift_matches_reference(shape, n_inactive, scale, align, dtype, seed):
    B, U, K, D, dmax = shape
    st, shift, sc, c = _case(B, U, K, D, dmax, seed, n_inactive, scale)
    c = c.to(dtype)
    out, kstar = _kernel(c, st, shift, sc, align)
    assert out.dtype == dtype and out.shape == c.shape and kstar.shape == (B, U)
    clear, k_ref = _clear(c, st, shift, sc)
    assert bool((kstar.cpu().long() == k_ref)[clear].all())
    assert bool(st.active[torch.arange(U).unsqueeze(0), kstar.cpu().long()].all()), "k* must be an active slot"
    ref = reference.anchor_shift(c, st, shift, sc, align, 0.1)
    torch.testing.assert_close(out.cpu()[clear], ref[clear], **TOL[dtype])


@settings(max_examples=12)
@given(shapes, st_.integers(0, 2), st_.sampled_from(["adaptive", 0.3]), st_.integers(0, 2**16))
def test_kernel_anchor_shift_gradient(shape, n_inactive, align, seed):
    """Gradient to the tokens with a random upstream gradient, against autograd through the float64
    reference (rows with an unambiguous k* only)."""
    B, U, K, D, dmax = shape
    st, shift, sc, c = _case(B, U, K, D, dmax, seed, n_inactive)
    clear, _ = _clear(c, st, shift, sc)
    gout = torch.randn(B, U, D, generator=torch.Generator().manual_seed(seed + 9))
    ck = c.to(DEV).requires_grad_()
    out, _ = _kernel(ck, st, shift, sc, align)
    (gk,) = torch.autograd.grad(out, ck, gout.to(DEV))
    cr = c.double().requires_grad_()
    ref = reference.anchor_shift(cr, st.to(dtype=torch.float64), shift.double(), sc.double(), align, 0.1)
    (gr,) = torch.autograd.grad(ref, cr, gout.double())
    torch.testing.assert_close(gk.double().cpu()[clear], gr[clear], rtol=1e-4, atol=1e-5)


@settings(max_examples=8)
@given(shapes, st_.integers(0, 2**16))
def test_kernel_anchor_shift_slot_permutation(shape, seed):
    B, U, K, D, dmax = shape
    st, shift, sc, c = _case(B, U, K, D, dmax, seed, 1)
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(seed))
    out, k = _kernel(c, st, shift, sc)
    out_p, k_p = _kernel(c, st.index_slots(perm.expand(U, K)), shift, sc)
    clear, _ = _clear(c, st, shift, sc)
    torch.testing.assert_close(out_p.cpu()[clear], out.cpu()[clear], rtol=1e-6, atol=1e-6)
    assert bool((perm[k_p.cpu().long()] == k.cpu().long())[clear].all())


def test_anchor_shift_reference_gradcheck():
    st, shift, sc, c = _case(5, 2, 3, 4, 2, seed=1)
    st64 = st.to(dtype=torch.float64)
    for align in ("adaptive", 0.3):
        assert torch.autograd.gradcheck(
            lambda x: reference.anchor_shift(x, st64, shift.double(), sc.double(), align, 0.1),
            (c.double().requires_grad_(),), eps=1e-6, atol=1e-6)


def test_dyga_forward_uses_the_kernel(set_backend):
    from dga_fast import DynamicGaussianAnchoring
    from dga_fast.data import make_unit_tokens
    data = make_unit_tokens(2, 400, 6, seed=0)
    dyga = DynamicGaussianAnchoring(2, 6, init_components=3, seed=0).refit(data.tokens).to(DEV)
    tok = data.tokens[:50].to(DEV)
    set_backend("reference")
    ref, k_ref = dyga(tok), dyga.assign(tok)
    set_backend("triton")
    got, k_got = dyga(tok), dyga.assign(tok)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(k_got, k_ref)


def test_kernel_anchor_shift_bad_input():
    from dga_fast.ops.anchor_shift.triton import anchor_shift_fwd
    st, shift, sc, c = _case(4, 2, 3, 4, 2, seed=0)
    s = st.trim_dims()
    w, inv_b, const = s.cost_terms()
    with pytest.raises(TypeError, match="c must be"):
        anchor_shift_fwd(c.double(), shift, sc, s.means, s.components, w, inv_b, const, 0.0, 0.1, True)
    with pytest.raises(ValueError, match="shift must have shape"):
        anchor_shift_fwd(c, shift[:1], sc, s.means, s.components, w, inv_b, const, 0.0, 0.1, True)
