"""The C++ ops of dga_fast._C against the PyTorch reference (exact plans), their input validation, and a fuzz
run in a subprocess that must never die by a signal."""
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_

from dga_fast import native, ops
from dga_fast.ops.plans import reference as ref
from helpers import random_state

pytestmark = pytest.mark.skipif(not native.available(), reason="dga_fast._C not built (DGA_FAST_NO_EXT=1)")
# the CUDA kernels are checked where the extension was built with them and a GPU is present (tests/test_cuda.py
# fails loudly on a GPU machine whose build lacks them)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and native.has_cuda() else [])


def _plan_inputs(G, K, n_inactive, seed, ties):
    g = torch.Generator().manual_seed(seed)
    active = torch.rand(G, K, generator=g) > 0.3
    if n_inactive == 0:
        active[:] = True                                            # all slots full
    elif n_inactive == K:
        active[:] = False
        active[:, 0] = True                                         # all but one inactive
    spread = torch.rand(G, K, generator=g)
    if ties:
        spread = (spread * 4).round() / 4                           # many equal spreads
    counts = torch.randint(0, 40, (G, K), generator=g)
    mass = torch.where(torch.rand(G, K, generator=g) < 0.2, 0.0, 50 * torch.rand(G, K, generator=g))
    return active, spread, counts, mass


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=60)
@given(st_.integers(1, 4), st_.integers(1, 9), st_.sampled_from([0, 1, 3, "all"]), st_.booleans(),
       st_.floats(0.0, 0.8), st_.integers(1, 9), st_.floats(0.0, 30.0), st_.integers(0, 2**16))
def test_split_and_filter_plans_match_reference(device, G, K, n_inactive, ties, threshold, max_c, min_count,
                                                seed):
    n_inactive = K if n_inactive == "all" else min(n_inactive, K)
    active, spread, counts, mass = (t.to(device) for t in _plan_inputs(G, K, n_inactive, seed, ties))
    max_c = min(max_c, K)
    got = torch.ops.dga_fast.split_plan(active, spread, counts, threshold, max_c, min_count)
    want = ref.split_plan(active, spread, counts, threshold, max_c, min_count)
    for a, b in zip(got, want):
        assert a.device == active.device and torch.equal(a, b.to(a.dtype)), (a, b)
    assert bool(((active.sum(1) + got[2]) <= torch.clamp(active.sum(1), min=max_c)).all())
    keep, order = torch.ops.dga_fast.filter_plan(active, mass, min_count)
    keep_r, order_r = ref.filter_plan(active, mass, min_count)
    assert torch.equal(keep, keep_r) and torch.equal(order, order_r)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=25)
@given(st_.integers(1, 3), st_.sampled_from([0, 1, 7, 50, 300, 1031]), st_.integers(1, 7), st_.integers(1, 6),
       st_.integers(0, 2**16))
def test_mixture_spread_matches_reference(device, G, N, K, D, seed):
    g = torch.Generator().manual_seed(seed)
    x, means = torch.randn(G, N, D, generator=g).to(device), torch.randn(G, K, D, generator=g).to(device)
    labels = torch.randint(0, K, (G, N), generator=g).to(device)
    c, s = torch.ops.dga_fast.mixture_spread(x, labels, means)
    c_r, s_r = ref.mixture_spread(x, labels, means)
    assert torch.equal(c, c_r)
    # float32 means of up to 1031 distances summed in different orders: a few ulp apart (1.5e-6 seen)
    torch.testing.assert_close(s, s_r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_split_and_filter_components_native_equals_reference(device, set_backend):
    st = random_state(3, 6, 5, 2, seed=1, n_inactive=2).to(device=device, dtype=torch.float32)
    spread, counts = torch.rand(3, 6, device=device), torch.randint(5, 50, (3, 6), device=device)
    mass = 40 * torch.rand(3, 6, device=device)
    set_backend("native")
    a, na = ops.split_components(st, spread, counts, 0.2, 6, 4.5)
    f = ops.filter_components(st, mass, 10.0)
    set_backend("reference")
    b, nb = ops.split_components(st, spread, counts, 0.2, 6, 4.5)
    h = ops.filter_components(st, mass, 10.0)
    assert torch.equal(na, nb)
    for x_, y_ in ((a, b), (f, h)):
        for name, t in x_.tensors().items():
            assert torch.equal(t, getattr(y_, name)), name


@pytest.mark.parametrize("device", DEVICES)
def test_native_ops_reject_bad_input(device):
    x, means = torch.randn(2, 5, 3, device=device), torch.randn(2, 4, 3, device=device)
    labels = torch.randint(0, 4, (2, 5), device=device)
    active = torch.ones(2, 4, dtype=torch.bool, device=device)
    spread, counts = torch.rand(2, 4, device=device), torch.ones(2, 4, dtype=torch.long, device=device)
    op = torch.ops.dga_fast
    other = "meta" if device == "cpu" else "cpu"      # a second device: every input must share the first's
    with pytest.raises(ValueError, match="same device"):
        op.mixture_spread(x, labels.to(other), means)
    with pytest.raises(ValueError, match="same device"):
        op.split_plan(active, spread, counts.to(other), 0.1, 4, 1.0)
    with pytest.raises(ValueError, match="same device"):
        op.filter_plan(active.to(other), spread, 1.0)
    with pytest.raises(TypeError, match="x must be"):
        op.mixture_spread(x.double(), labels, means)
    with pytest.raises(TypeError, match="labels must be"):
        op.mixture_spread(x, labels.int(), means)
    with pytest.raises(ValueError, match="must be"):
        op.mixture_spread(x[0], labels, means)                               # rank
    with pytest.raises(ValueError, match="sizes disagree"):
        op.mixture_spread(x, labels[:, :3], means)
    with pytest.raises(ValueError, match="outside"):
        op.mixture_spread(x, labels + 4, means)                              # out of range
    with pytest.raises(ValueError, match="outside"):
        op.mixture_spread(x, labels - 5, means)                              # negative
    with pytest.raises(ValueError, match="NaN"):
        op.mixture_spread(torch.full_like(x, float("nan")), labels, means)
    c, s = op.mixture_spread(x.transpose(1, 2).contiguous().transpose(1, 2), labels, means)   # non-contiguous ok
    assert torch.equal(c, op.mixture_spread(x, labels, means)[0])
    with pytest.raises(TypeError, match="active must be"):
        op.split_plan(active.int(), spread, counts, 0.1, 4, 1.0)
    with pytest.raises(ValueError, match="must all be"):
        op.split_plan(active, spread[:, :2], counts, 0.1, 4, 1.0)
    with pytest.raises(ValueError, match="max_components"):
        op.split_plan(active, spread, counts, 0.1, 0, 1.0)
    with pytest.raises(TypeError, match="mass must be"):
        op.filter_plan(active, counts, 1.0)
    with pytest.raises(ValueError, match="K >= 1"):
        op.filter_plan(active[:, :0], spread[:, :0], 1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_fuzz_never_crashes_the_process(device):
    """Many malformed calls in a child process (wrong dtypes, ranks, sizes, devices, NaN / Inf, out-of-range
    labels, transposed tensors): each must raise a Python exception or return, never kill the process."""
    code = f"device, other = {device!r}, {'meta' if device == 'cpu' else 'cpu'!r}\n" + textwrap.dedent("""
        import random, torch
        import dga_fast.native as n
        assert n.available()
        op = torch.ops.dga_fast
        rng = random.Random(0)
        dtypes = [torch.float32, torch.float64, torch.int64, torch.int32, torch.bool, torch.int8]
        def t(shape):
            d = rng.choice(dtypes)
            x = torch.randn(shape) * 10 if d.is_floating_point else torch.randint(-5, 9, shape).to(d)
            if d.is_floating_point and rng.random() < 0.2:
                x.view(-1)[0] = float(rng.choice(["nan", "inf"])) if x.numel() else 0
            if x.dim() > 1 and rng.random() < 0.3:
                x = x.transpose(0, 1)
            return x.to(other if rng.random() < 0.1 else device)
        def shape():
            return tuple(rng.randint(0, 5) for _ in range(rng.randint(0, 4)))
        raised = ok = 0
        for i in range(4000):
            which = rng.randrange(14 if device == "cpu" else 3)   # the E- and M-step ops are CPU-only
            try:
                if which == 0:
                    op.mixture_spread(t(shape()), t(shape()), t(shape()))
                elif which == 1:
                    op.split_plan(t(shape()), t(shape()), t(shape()), rng.uniform(-1, 2), rng.randint(-3, 9),
                                  rng.uniform(-5, 50))
                elif which == 2:
                    op.filter_plan(t(shape()), t(shape()), rng.uniform(-5, 50))
                elif which == 3:
                    op.hddc_estep_native(*(t(shape()) for _ in range(6)))
                elif which == 4:   # consistent shapes [G,N,D], [G,K,D], [G,K,D,M], [G,K,M], [G,K], [G,K], one altered
                    G, N, K, D, M = (rng.randint(0, 4) for _ in range(5))
                    args = [t(s_) for s_ in ((G, N, D), (G, K, D), (G, K, D, M), (G, K, M), (G, K), (G, K))]
                    good = [a.float().to(device) for a in args]
                    bad = rng.randrange(6)
                    good[bad] = args[bad]
                    op.hddc_estep_native(*good)
                elif which == 5:
                    op.group_moments(t(shape()))
                elif which == 6:
                    op.mstep_moments(t(shape()), t(shape()), rng.uniform(-1, 1))
                elif which == 7:
                    op.mstep_scatter(t(shape()), t(shape()), t(shape()), rng.uniform(-1, 1))
                elif which == 8:   # consistent shapes x [G,N,D], resp [G,N,K], means [G,K,D], one altered
                    G, N, K, D = (rng.randint(0, 4) for _ in range(4))
                    args = [t(s_) for s_ in ((G, N, D), (G, N, K), (G, K, D))]
                    good = [a.float().to(device) for a in args]
                    bad = rng.randrange(3)
                    good[bad] = args[bad]
                    op.mstep_moments(good[0], good[1], 1e-7)
                    op.mstep_scatter(*good, 1e-7)
                elif which == 9:
                    op.kmeans_assign(t(shape()), t(shape()))
                elif which == 10:
                    op.axis_cem_assign(*(t(shape()) for _ in range(6)))
                elif which == 11:
                    op.axis_cem_iterate(*(t(shape()) for _ in range(7)), rng.randint(-2, 5))
                elif which == 12:
                    op.axis_project(*(t(shape()) for _ in range(4)))
                else:
                    op.batched_eigh(t(shape()))
                ok += 1
            except (ValueError, TypeError, RuntimeError, IndexError):
                raised += 1
        if device == "cuda":
            torch.cuda.synchronize()   # an asynchronous kernel fault would surface here
        print("calls", ok + raised, "raised", raised)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "calls 4000" in proc.stdout
