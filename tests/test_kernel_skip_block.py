"""The fused Triton skip-dropout / concat / GroupNorm / SiLU block (forward and backward; Triton's
interpreter on CPU) against the reference."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast.ops.skip_block import reference

pytest.importorskip("triton")
from dga_fast.ops.skip_block import custom_op  # noqa: E402,F401  (registers torch.ops.dga_fast.*)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
# channels of h and skip, groups dividing their sum, spatial sizes (odd, 1, non-power-of-two)
cases = st_.tuples(st_.integers(1, 3),                        # B
                   st_.integers(1, 6), st_.integers(1, 6),    # Ch, Cs
                   st_.integers(1, 4),                        # groups candidate
                   st_.integers(1, 7), st_.integers(1, 6))    # H, W
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float16: dict(rtol=5e-3, atol=5e-3),
       torch.bfloat16: dict(rtol=3e-2, atol=3e-2)}


def _inputs(B, Ch, Cs, gcand, H, W, scale, dtype, seed):
    C = Ch + Cs
    groups = max(g for g in range(1, gcand + 1) if C % g == 0)
    g = torch.Generator().manual_seed(seed)
    h = (scale * torch.randn(B, Ch, H, W, generator=g) + scale).to(dtype)
    skip = (scale * torch.randn(B, Cs, H, W, generator=g)).to(dtype)
    keep = (torch.rand(B, Cs, generator=g) > 0.3).float()
    w = 1 + 0.3 * torch.randn(C, generator=g)
    b = 0.2 * torch.randn(C, generator=g)
    return h, skip, keep, w, b, groups


def _kernel(h, skip, keep, p, w, b, groups):
    x, y, _, _ = torch.ops.dga_fast.skip_dropout_concat_norm_silu(h.to(DEV), skip.to(DEV), keep.to(DEV), p,
                                                                  w.to(DEV), b.to(DEV), groups)
    return x, y


@settings(max_examples=20)
@given(cases, st_.sampled_from([0.0, 0.2]), st_.sampled_from([1e-3, 1.0, 1e3]),
       st_.sampled_from([torch.float32, torch.float16, torch.bfloat16]), st_.integers(0, 2**16))
def test_kernel_skip_block_forward(case, p, scale, dtype, seed):
    h, skip, keep, w, b, groups = _inputs(*case, scale, dtype, seed)
    x, y = _kernel(h, skip, keep, p, w, b, groups)
    xr, yr = reference.skip_dropout_concat_norm_silu(h, skip, keep, p, w, b, groups)
    assert x.dtype == y.dtype == dtype
    torch.testing.assert_close(x.cpu(), xr, **TOL[dtype])
    torch.testing.assert_close(y.cpu(), yr, **TOL[dtype])


@settings(max_examples=12)
@given(cases, st_.sampled_from([0.0, 0.2]), st_.integers(0, 2**16))
def test_kernel_skip_block_gradients(case, p, seed):
    """All four gradients, with random upstream gradients on both outputs, against autograd through the
    float64 reference."""
    h, skip, keep, w, b, groups = _inputs(*case, 1.0, torch.float32, seed)
    g = torch.Generator().manual_seed(seed + 5)
    gx = torch.randn(h.shape[0], h.shape[1] + skip.shape[1], *h.shape[2:], generator=g)
    gy = torch.randn(gx.shape, generator=g)
    args = [t.to(DEV).requires_grad_() for t in (h, skip, w, b)]
    x, y = _kernel(args[0], args[1], keep, p, args[2], args[3], groups)
    got = torch.autograd.grad([x, y], args, [gx.to(DEV), gy.to(DEV)])
    ref_args = [t.double().requires_grad_() for t in (h, skip, w, b)]
    xr, yr = reference.skip_dropout_concat_norm_silu(ref_args[0], ref_args[1], keep.double(), p, ref_args[2],
                                                     ref_args[3], groups)
    want = torch.autograd.grad([xr, yr], ref_args, [gx.double(), gy.double()])
    for name, a, e in zip(("h", "skip", "weight", "bias"), got, want):
        torch.testing.assert_close(a.double().cpu(), e, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_skip_block_reference_gradcheck():
    h, skip, keep, w, b, groups = _inputs(2, 3, 2, 5, 3, 2, 1.0, torch.float64, 0)

    def f(h, skip, w, b):
        return reference.skip_dropout_concat_norm_silu(h, skip, keep.double(), 0.2, w, b, groups)
    assert torch.autograd.gradcheck(f, tuple(t.double().requires_grad_() for t in (h, skip, w, b)))


def test_decoder_input_module_uses_the_kernel(set_backend):
    from dga_fast.nn.skip_dropout import DecoderInput
    torch.manual_seed(0)
    mod = DecoderInput(4, 4, 2, 0.2).train().to(DEV)
    h, skip = torch.randn(2, 4, 5, 5, device=DEV), torch.randn(2, 4, 5, 5, device=DEV)
    set_backend("reference")
    torch.manual_seed(1)
    xr, yr = mod(h, skip)
    set_backend("triton")
    torch.manual_seed(1)                                   # the same keep mask
    xt, yt = mod(h, skip)
    torch.testing.assert_close(xt, xr)
    torch.testing.assert_close(yt, yr, rtol=1e-4, atol=1e-5)


def test_kernel_skip_block_bad_input():
    from dga_fast.ops.skip_block.triton import skip_block_fwd
    h, skip, keep, w, b, groups = _inputs(2, 3, 3, 2, 4, 4, 1.0, torch.float32, 0)
    with pytest.raises(ValueError, match="groups"):
        skip_block_fwd(h, skip, keep, 0.1, w, b, 4)
    with pytest.raises(ValueError, match="keep_mask"):
        skip_block_fwd(h, skip, keep[:, :1], 0.1, w, b, groups)
    with pytest.raises(TypeError, match="h must be"):
        skip_block_fwd(h.double(), skip.double(), keep, 0.1, w, b, groups)
