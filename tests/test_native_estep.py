"""The native fused HDDC E-step on CPU (``torch.ops.dga_fast.hddc_estep_native``, csrc/core/estep_core.*) against
the float64 brute-force oracle, its gradient, its input validation and the backend dispatch."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast import native, ops
from dga_fast.ops.hddc_estep import reference
from helpers import brute_estep, random_state

pytestmark = pytest.mark.skipif(not native.available(), reason="dga_fast._C not built (DGA_FAST_NO_EXT=1)")

shapes = st_.tuples(st_.integers(1, 3),                       # G
                    st_.sampled_from([1, 2, 15, 16, 17, 70, 257, 300]),   # N: a 16-row tile, a 256-row task
                    st_.integers(1, 9),                       # K (1: a single slot)
                    st_.sampled_from([1, 2, 5, 16, 19, 33]),  # D
                    st_.integers(1, 6))                       # dmax


def _native(x, st):
    s = st.trim_dims().to(dtype=x.dtype)
    return torch.ops.dga_fast.hddc_estep_native(x, s.means, s.components, *s.cost_terms())


def _data(st, N, scale, seed):
    g = torch.Generator().manual_seed(seed + 1)
    lab = torch.randint(0, st.K, (st.G, N), generator=g)
    centre = st.means[torch.arange(st.G).unsqueeze(1), lab]                    # near some component
    return centre + scale * torch.randn(st.G, N, st.D, generator=g, dtype=torch.float64)


@settings(max_examples=25, deadline=None)
@given(shapes, st_.integers(0, 3), st_.sampled_from([1e-4, 1.0, 1e4]),
       st_.sampled_from([torch.float32, torch.float64]), st_.integers(0, 2**16))
def test_native_estep_matches_oracle(shape, n_inactive, scale, dtype, seed):
    G, N, K, D, dmax = shape
    st = random_state(G, K, D, dmax, seed=seed, n_inactive=n_inactive, scale=scale)
    st = st.to(dtype=dtype).to(dtype=torch.float64)                 # the parameters as the op sees them
    x = _data(st, N, scale, seed).to(dtype)
    lr, ll = _native(x, st)
    assert lr.dtype == ll.dtype == dtype and lr.shape == (G, N, K) and ll.shape == (G, N)
    lr_o, ll_o = brute_estep(x.double(), st)                         # oracle on the rounded input
    # float32: ~1e-6 relative error of the cost terms, which reach ~1e4 here; float64: ~1e-15 of them
    tol = dict(rtol=2e-5, atol=2e-3) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-8)
    torch.testing.assert_close(ll.double(), ll_o, **tol)
    act = st.active.unsqueeze(1).expand_as(lr_o)
    torch.testing.assert_close(lr.double()[act], lr_o[act], **tol)
    assert bool(torch.isneginf(lr[~act]).all()), "inactive slots must get -inf log-responsibility"


@settings(max_examples=15, deadline=None)
@given(shapes, st_.integers(0, 3), st_.integers(0, 2**16))
def test_native_estep_equals_reference(shape, n_inactive, seed):
    """The op behind ``ops.hddc_estep`` on CPU against the reference path on the same float32 state."""
    G, N, K, D, dmax = shape
    st = random_state(G, K, D, dmax, seed=seed, n_inactive=n_inactive).to(dtype=torch.float32)
    x = _data(st, N, 1.0, seed).float()
    lr, ll = _native(x, st)
    lr_r, ll_r = reference.hddc_estep(x, st)
    torch.testing.assert_close(ll, ll_r, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(lr, lr_r, rtol=1e-5, atol=1e-4)


@settings(max_examples=10, deadline=None)
@given(shapes, st_.integers(0, 3), st_.sampled_from([torch.float32, torch.float64]), st_.integers(0, 2**16))
def test_native_estep_gradient(shape, n_inactive, dtype, seed):
    """Gradient to x with a random upstream gradient on both outputs, against autograd through the float64
    oracle."""
    G, N, K, D, dmax = shape
    st = random_state(G, K, D, dmax, seed=seed, n_inactive=n_inactive).to(dtype=dtype)
    x = _data(st, N, 1.0, seed).to(dtype)
    g = torch.Generator().manual_seed(seed + 7)
    g_lr = torch.where(st.active.unsqueeze(1), torch.randn(G, N, K, generator=g, dtype=torch.float64), 0.0)
    g_ll = torch.randn(G, N, generator=g, dtype=torch.float64)
    xn = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(_native(xn, st), [xn], [g_lr.to(dtype), g_ll.to(dtype)])
    xr = x.double().requires_grad_()
    lr_r, ll_r = brute_estep(xr, st.to(dtype=torch.float64))
    (gr,) = torch.autograd.grad([torch.where(torch.isfinite(lr_r), lr_r, 0.0), ll_r], [xr], [g_lr, g_ll])
    rtol = 1e-3 if dtype == torch.float32 else 1e-8
    torch.testing.assert_close(gx.double(), gr, rtol=rtol, atol=rtol * float(gr.abs().max()) + 1e-6)


def test_native_estep_row_results_do_not_depend_on_the_batch():
    """A group's rows get bit-identical results alone or inside a larger batch (more groups, more rows, padded
    slots): what keeps a unit's mixture the one it gets fitted alone (mixture/reduce.py)."""
    st = random_state(3, 4, 7, 3, seed=5, n_inactive=1).to(dtype=torch.float32)
    x = _data(st, 300, 1.0, 5).float()
    lr, ll = _native(x, st)
    one = st.index_groups(torch.tensor([1]))
    lr1, ll1 = _native(x[1:2, :37].contiguous(), one)
    assert torch.equal(ll1[0], ll[1, :37]) and torch.equal(lr1[0], lr[1, :37])


def test_native_estep_rejects_bad_input():
    st = random_state(2, 3, 4, 2, seed=0).to(dtype=torch.float32).trim_dims()
    x = torch.randn(2, 5, 4)
    w, ib, c = st.cost_terms()
    args = [x, st.means, st.components, w, ib, c]
    op = torch.ops.dga_fast.hddc_estep_native

    def call(i, value):
        a = list(args)
        a[i] = value
        return op(*a)

    with pytest.raises(TypeError, match="x must be float32 or float64"):
        call(0, x.half())
    with pytest.raises(TypeError, match="means must be"):
        call(1, st.means.double())
    with pytest.raises(ValueError, match="x must be \\[G, N, D\\]"):
        call(0, x[0])
    with pytest.raises(ValueError, match="components must be"):
        call(2, st.components[:, :, :3])
    with pytest.raises(ValueError, match="const must be"):
        call(5, c[:1])
    with pytest.raises(ValueError, match="same device"):
        call(3, w.to("meta"))
    with pytest.raises(ValueError, match="x contains NaN"):
        call(0, torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="must be finite"):
        call(4, torch.full_like(ib, float("inf")))
    with pytest.raises(ValueError, match="const must be finite"):
        call(5, torch.full_like(c, float("nan")))
    with pytest.raises(ValueError, match="active slot"):
        call(5, torch.full_like(c, float("inf")))
    lr, ll = call(0, x.transpose(1, 2).contiguous().transpose(1, 2).contiguous())   # contiguous copies are fine
    assert torch.isfinite(ll).all()


def test_dispatch_takes_the_native_estep_on_cpu(monkeypatch, set_backend):
    st = random_state(2, 3, 5, 2, seed=0).to(dtype=torch.float32)
    x = _data(st, 8, 1.0, 0).float()
    called = []
    real = torch.ops.dga_fast.hddc_estep_native
    monkeypatch.setattr(torch.ops.dga_fast, "hddc_estep_native", lambda *a: called.append(1) or real(*a))
    set_backend("reference")
    ops.hddc_estep(x, st)
    assert not called
    for name in ("auto", "native"):
        set_backend(name)
        ops.hddc_estep(x, st)
        assert len(called) == 1
        called.clear()
