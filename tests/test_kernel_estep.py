"""The fused Triton HDDC E-step (``torch.ops.dga_fast.hddc_estep``; Triton's interpreter on CPU) against the
float64 oracle and the reference, its gradient, and the dispatch rule."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast import ops
from helpers import brute_estep, random_state

pytest.importorskip("triton")
from dga_fast.ops.hddc_estep import custom_op  # noqa: E402,F401  (registers torch.ops.dga_fast.*)

DEV = "cuda" if torch.cuda.is_available() else "cpu"

shapes = st_.tuples(st_.integers(1, 3),      # G
                    st_.integers(1, 70),     # N (crosses a 64-row block on CUDA)
                    st_.integers(1, 9),      # K
                    st_.sampled_from([1, 2, 5, 16, 19]),   # D
                    st_.integers(1, 6))      # dmax
# float32 arithmetic: relative error ~1e-6 of the cost terms, which reach ~1e4 here
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-3), torch.float16: dict(rtol=2e-5, atol=2e-3),
       torch.bfloat16: dict(rtol=2e-5, atol=2e-3)}


def _kernel(x, st):
    s = st.trim_dims().to(device=DEV, dtype=torch.float32)
    w, inv_b, const = s.cost_terms()
    return torch.ops.dga_fast.hddc_estep(x.to(DEV), s.means, s.components, w, inv_b, const)


def _data(st, N, scale, seed):
    g = torch.Generator().manual_seed(seed + 1)
    G, D = st.G, st.D
    lab = torch.randint(0, st.K, (G, N), generator=g)
    centre = st.means[torch.arange(G).unsqueeze(1), lab]                        # near some component
    return centre + scale * torch.randn(G, N, D, generator=g, dtype=torch.float64)


@settings(max_examples=20)
@given(shapes, st_.integers(0, 3), st_.sampled_from([1e-3, 1.0, 1e3]),
       st_.sampled_from([torch.float32, torch.float16, torch.bfloat16]), st_.integers(0, 2**16))
def test_kernel_estep_matches_oracle(shape, n_inactive, scale, dtype, seed):
    G, N, K, D, dmax = shape
    st = random_state(G, K, D, dmax, seed=seed, n_inactive=n_inactive, scale=scale)
    st = st.to(dtype=torch.float32).to(dtype=torch.float64)                     # parameters as the kernel sees them
    x = _data(st, N, scale, seed).to(dtype)
    lr, ll = _kernel(x, st)
    assert lr.dtype == ll.dtype == torch.float32 and lr.shape == (G, N, K) and ll.shape == (G, N)
    lr_o, ll_o = brute_estep(x.double(), st)                                    # oracle on the rounded input
    torch.testing.assert_close(ll.double().cpu(), ll_o, **TOL[dtype])
    act = st.active.unsqueeze(1).expand_as(lr_o)
    torch.testing.assert_close(lr.double().cpu()[act], lr_o[act], **TOL[dtype])
    assert bool(torch.isneginf(lr.cpu()[~act]).all()), "inactive slots must get -inf log-responsibility"
    # log-responsibilities are log p_k - ll in float32: normalised to a few ulp of |ll| (which reaches ~300 here)
    lse = torch.logsumexp(lr.double(), -1).cpu().abs()
    assert bool((lse <= 1e-5 + 4 * torch.finfo(torch.float32).eps * ll_o.abs()).all()), lse.max()


@settings(max_examples=10)
@given(shapes, st_.integers(0, 2**16))
def test_kernel_estep_slot_permutation(shape, seed):
    G, N, K, D, dmax = shape
    st = random_state(G, K, D, dmax, seed=seed, n_inactive=1).to(dtype=torch.float32)
    x = _data(st, N, 1.0, seed).float()
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(seed))
    lr, ll = _kernel(x, st)
    lr_p, ll_p = _kernel(x, st.index_slots(perm.expand(G, K)))
    torch.testing.assert_close(ll_p, ll, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(lr_p, lr[..., perm], rtol=1e-6, atol=1e-5)


@settings(max_examples=10)
@given(shapes, st_.integers(0, 3), st_.integers(0, 2**16))
def test_kernel_estep_gradient(shape, n_inactive, seed):
    """Gradient to x with a random upstream gradient on both outputs, against autograd through the float64
    brute-force oracle."""
    G, N, K, D, dmax = shape
    st = random_state(G, K, D, dmax, seed=seed, n_inactive=n_inactive).to(dtype=torch.float32)
    x = _data(st, N, 1.0, seed).float()
    g = torch.Generator().manual_seed(seed + 7)
    g_lr, g_ll = torch.randn(G, N, K, generator=g), torch.randn(G, N, generator=g)
    g_lr = torch.where(st.active.unsqueeze(1), g_lr, 0.0)      # -inf outputs take no gradient
    xk = x.to(DEV).requires_grad_()
    lr, ll = _kernel(xk, st)
    (gx,) = torch.autograd.grad([lr, ll], [xk], [g_lr.to(DEV), g_ll.to(DEV)])
    xr = x.double().requires_grad_()
    lr_r, ll_r = brute_estep(xr, st.to(dtype=torch.float64))
    (gr,) = torch.autograd.grad([torch.where(torch.isfinite(lr_r), lr_r, 0.0), ll_r], [xr],
                                [g_lr.double(), g_ll.double()])
    torch.testing.assert_close(gx.double().cpu(), gr, rtol=1e-3, atol=1e-3 * float(gr.abs().max()) + 1e-4)


def test_dispatch_rule(monkeypatch, set_backend):
    st = random_state(2, 3, 5, 2, seed=0).to(dtype=torch.float32)
    x = _data(st, 8, 1.0, 0).float().to(DEV)           # Triton needs CUDA tensors, or the interpreter on CPU
    st = st.to(device=DEV)
    called = []
    real = torch.ops.dga_fast.hddc_estep

    class Spy:
        def __call__(self, *a):
            called.append(True)
            return real(*a)

    monkeypatch.setattr(torch.ops.dga_fast, "hddc_estep", Spy())
    set_backend("reference")
    ops.hddc_estep(x, st)
    assert not called
    set_backend("triton")
    lr_t, ll_t = ops.hddc_estep(x, st)
    assert called
    lr_r, ll_r = ops.hddc_estep(x.double(), st.to(dtype=torch.float64))           # float64: reference
    assert ll_r.dtype == torch.float64 and len(called) == 1
    torch.testing.assert_close(ll_t.double(), ll_r, rtol=1e-5, atol=1e-4)
    set_backend("auto")
    ops.hddc_estep(x.cpu(), st.to(device="cpu"))              # auto: CPU tensors -> native op or reference
    ops.hddc_estep(x, st)
    assert len(called) == (2 if x.is_cuda else 1)                                 # auto: Triton for CUDA only


def test_kernel_estep_bad_input():
    st = random_state(1, 2, 4, 2, seed=0).to(dtype=torch.float32)
    s = st.trim_dims()
    w, inv_b, const = s.cost_terms()
    from dga_fast.ops.hddc_estep.triton import hddc_estep_fwd
    with pytest.raises(TypeError, match="x must be"):
        hddc_estep_fwd(torch.zeros(1, 3, 4, dtype=torch.int32), s.means, s.components, w, inv_b, const)
    with pytest.raises(ValueError, match="means must have shape"):
        hddc_estep_fwd(torch.zeros(1, 3, 4), s.means[:, :1], s.components, w, inv_b, const)


def test_compile_fullgraph_over_the_estep():
    st = random_state(2, 3, 5, 2, seed=0).to(dtype=torch.float32)
    s = st.trim_dims().to(device=DEV)
    w, inv_b, const = s.cost_terms()
    x = _data(st, 8, 1.0, 0).float().to(DEV)

    def f(x):
        lr, ll = torch.ops.dga_fast.hddc_estep(x, s.means, s.components, w, inv_b, const)
        return lr.exp().sum(-1) + ll

    got = torch.compile(f, fullgraph=True, backend="eager" if not torch.cuda.is_available() else "inductor")(x)
    torch.testing.assert_close(got, f(x))
