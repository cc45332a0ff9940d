"""The split test's CEM step: the native op (``torch.ops.dga_fast.axis_cem_assign``, csrc/core/cem_core.h) and the
reference (``mixture.axis_split.cem_assign``) against the point-by-point oracle (``ops/axis_cem/naive.py``), with
hypothesis shapes (one point, one class, odd sizes, empty classes, ties), validation and dispatch; the split test
gives the same answer on both paths."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast import native, ops
from dga_fast.distributed import LOCAL
from dga_fast.mixture.axis_split import (AxisKernels, _class_stats, cem_assign, cem_iterate, principal_axis_test,
                                         project_on_axis)
from dga_fast.ops.axis_cem import naive
from helpers import random_state

pytestmark = pytest.mark.skipif(not native.available(), reason="dga_fast._C not built (DGA_FAST_NO_EXT=1)")


def _inputs(G, n, K, m, scale, seed, ties):
    g = torch.Generator().manual_seed(seed)
    t = scale * torch.randn(G, n, generator=g, dtype=torch.float64)
    if ties:   # points midway between class means: equal scores, the first class wins
        t = (t * 2).round() / 2
    comp = torch.randint(0, K, (G, n), generator=g)
    prev = torch.randint(0, m, (G, n), generator=g)
    cnt = torch.randint(0, 4, (G, K, m), generator=g).double()
    base = torch.where(cnt > 0, torch.log(cnt.clamp_min(1) / cnt.sum(-1, keepdim=True).clamp_min(1)),
                       torch.full_like(cnt, float("-inf")))
    mean = scale * (torch.randn(G, K, m, generator=g, dtype=torch.float64) if not ties
                    else torch.arange(m, dtype=torch.float64).expand(G, K, m) - 0.25 * m)
    var = scale ** 2 * (0.1 + torch.rand(G, K, generator=g, dtype=torch.float64))
    return t, comp, prev, base, mean, var


@settings(max_examples=25, deadline=None)
@given(st_.integers(1, 3), st_.sampled_from([0, 1, 2, 37, 200]), st_.integers(1, 5), st_.sampled_from([1, 2, 3, 8]),
       st_.sampled_from([1e-4, 1.0, 1e4]), st_.booleans(), st_.integers(0, 2**16))
def test_cem_step_matches_the_oracle(G, n, K, m, scale, ties, seed):
    args = _inputs(G, n, K, m, scale, seed, ties)
    want = naive.axis_cem_assign(*args)
    for name, got in (("native", torch.ops.dga_fast.axis_cem_assign(*args)), ("reference", cem_assign(*args))):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), name       # classes and changes
        for a, b in zip(got[2:], want[2:]):
            top = float(b.abs().max()) if b.numel() else 0.0
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * max(1.0, top), msg=name)


@settings(max_examples=20, deadline=None)
@given(st_.integers(1, 3), st_.sampled_from([0, 1, 2, 37, 200]), st_.integers(1, 5), st_.sampled_from([1, 2, 3, 8]),
       st_.sampled_from([1e-4, 1.0, 1e4]), st_.booleans(), st_.integers(0, 12), st_.integers(0, 2**16))
def test_cem_loop_matches_the_reference_loop(G, n, K, m, scale, ties, iters, seed):
    """The native loop (per-group stop) against the reference loop of reference steps (global stop): the same
    classes, the same statistics up to rounding (the class parameters between steps are computed in C++)."""
    t, comp, prev, *_ = _inputs(G, n, K, m, scale, seed, ties)
    cnt, s1, s2 = (a.view(G, K, m) for a in _class_stats(t, comp * m + prev, G, K * m, LOCAL))
    v_floor = (1e-4 * scale ** 2) * torch.ones(G, K, dtype=torch.float64)
    want = cem_iterate(t, comp, prev, cnt, s1, s2, v_floor, iters)
    got = torch.ops.dga_fast.axis_cem_iterate(t, comp, prev, cnt, s1, s2, v_floor, iters)
    assert torch.equal(got[0], want[0])
    for a, b in zip(got[1:], want[1:]):
        top = float(b.abs().max()) if b.numel() else 0.0
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * max(1.0, top))
    assert torch.equal(prev, _inputs(G, n, K, m, scale, seed, ties)[2])     # the inputs are not modified


def test_cem_loop_rejects_bad_input():
    t, comp, prev, base, *_ = _inputs(2, 5, 3, 2, 1.0, 0, False)
    cnt = torch.zeros(2, 3, 2, dtype=torch.float64)
    vf = torch.ones(2, 3, dtype=torch.float64)
    op = torch.ops.dga_fast.axis_cem_iterate
    with pytest.raises(TypeError, match="cls must be Long"):
        op(t, comp, prev.int(), cnt, cnt, cnt, vf, 3)
    with pytest.raises(ValueError, match="s2 must be \\[G, K, m\\]"):
        op(t, comp, prev, cnt, cnt, cnt[:, :2], vf, 3)
    with pytest.raises(ValueError, match="v_floor must be \\[G, K\\]"):
        op(t, comp, prev, cnt, cnt, cnt, vf[:, :1], 3)
    with pytest.raises(ValueError, match="iters must be >= 0"):
        op(t, comp, prev, cnt, cnt, cnt, vf, -1)
    with pytest.raises(ValueError, match="comp must lie in"):
        op(t, comp + 3, prev, cnt, cnt, cnt, vf, 3)
    out = op(*(a.to("meta") for a in (t, comp, prev, cnt, cnt, cnt, vf)), 3)   # the fake
    assert out[0].shape == (2, 5) and out[1].shape == out[3].shape == (2, 3, 2)


def test_cem_step_rejects_bad_input():
    t, comp, prev, base, mean, var = _inputs(2, 5, 3, 2, 1.0, 0, False)
    op = torch.ops.dga_fast.axis_cem_assign
    with pytest.raises(TypeError, match="t must be Double"):
        op(t.float(), comp, prev, base, mean, var)
    with pytest.raises(TypeError, match="comp must be Long"):
        op(t, comp.int(), prev, base, mean, var)
    with pytest.raises(ValueError, match="prev must be \\[G, n\\]"):
        op(t, comp, prev[:, :3], base, mean, var)
    with pytest.raises(ValueError, match="var must be \\[G, K\\]"):
        op(t, comp, prev, base, mean, var[:, :2])
    with pytest.raises(ValueError, match="comp must lie in"):
        op(t, comp + 3, prev, base, mean, var)
    with pytest.raises(ValueError, match="same device"):
        op(t, comp, prev, base.to("meta"), mean, var)
    cls, changed, cnt, s1, s2 = op(*(a.to("meta") for a in (t, comp, prev, base, mean, var)))   # the fake
    assert cls.shape == (2, 5) and changed.shape == (2,) and cnt.shape == s2.shape == (2, 3, 2)


def test_split_test_is_the_same_on_both_paths(set_backend, monkeypatch):
    st = random_state(3, 5, 6, 2, seed=1, n_inactive=1).to(dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 400, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (3, 400), generator=g)
    floor = torch.full((3,), 1e-6, dtype=torch.float64)
    called = []
    real = {name: getattr(torch.ops.dga_fast, name) for name in ("axis_project", "axis_cem_assign", "axis_cem_iterate")}
    set_backend("reference")
    ref = principal_axis_test(x, labels, st, 400, floor, kernels=ops.AXIS)
    set_backend("auto")
    for name, op in real.items():
        monkeypatch.setattr(torch.ops.dga_fast, name, lambda *a, _n=name, _op=op: called.append(_n) or _op(*a))
    steps_only = AxisKernels(project=ops.axis_project, assign=ops.axis_cem_assign)
    for kernels, want in ((steps_only, {"axis_project", "axis_cem_assign"}), (ops.AXIS, {"axis_project", "axis_cem_iterate"})):
        called.clear()
        nat = principal_axis_test(x, labels, st, 400, floor, kernels=kernels)
        assert set(called) == want
        for a, b in ((nat.gain, ref.gain), (nat.smaller, ref.smaller), (nat.offsets, ref.offsets)):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(st_.integers(1, 3), st_.sampled_from([0, 1, 37, 300]), st_.integers(1, 5), st_.sampled_from([1, 2, 7, 32]),
       st_.sampled_from([1e-4, 1.0, 1e4]), st_.sampled_from([torch.float32, torch.float64]), st_.integers(0, 2**16))
def test_axis_projection_matches_the_oracle(G, n, K, D, scale, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (scale * torch.randn(G, n, D, generator=g, dtype=torch.float64)).to(dtype)
    means = (scale * torch.randn(G, K, D, generator=g, dtype=torch.float64)).to(dtype)
    q = torch.nn.functional.normalize(torch.randn(G, K, D, generator=g, dtype=torch.float64), dim=-1).to(dtype)
    labels = torch.randint(0, K, (G, n), generator=g)
    want = naive.axis_project(x, labels, means, q)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    top = 3.0 * scale * (1 + D ** 0.5)
    for name, got in (("native", torch.ops.dga_fast.axis_project(x, labels, means, q)),
                      ("reference", project_on_axis(x, labels, means, q))):
        assert got.dtype == torch.float64 and got.shape == (G, n), name
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * top, msg=name)
    torch.testing.assert_close(torch.ops.dga_fast.axis_project(x, labels, means, q), want, rtol=1e-12, atol=1e-12 * top)


def test_axis_projection_rejects_bad_input():
    x, means, q = torch.randn(2, 5, 3), torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    labels = torch.zeros(2, 5, dtype=torch.int64)
    op = torch.ops.dga_fast.axis_project
    with pytest.raises(TypeError, match="labels must be Long"):
        op(x, labels.int(), means, q)
    with pytest.raises(ValueError, match="q must be \\[G, K, D\\]"):
        op(x, labels, means, q[:, :2])
    with pytest.raises(TypeError, match="means must be Float"):
        op(x, labels, means.double(), q)
    with pytest.raises(ValueError, match="labels must lie in"):
        op(x, labels + 4, means, q)
    assert op(*(a.to("meta") for a in (x, labels, means, q))).shape == (2, 5)   # the fake
