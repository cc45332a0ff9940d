#!/usr/bin/env python
"""dga_fast benchmark harness: every op and pipeline of the library against its baselines.

One harness for all row families. A family builds its inputs once and returns cases; each case is a
(provider, mode) pair with a callable that is timed (median of ``--repeats`` after one warm-up) and a
correctness check run in the same process. A speed-up is printed and stored only when the checks of both
rows it compares passed in this run.

    python benchmarks/throughput.py                 # every family, default sizes (< 5 min on 2 CPU cores)
    python benchmarks/throughput.py --only refit    # one family
    python benchmarks/throughput.py --size large    # GPU-scale problems
    python benchmarks/throughput.py --json out.json # JSON elsewhere (default: benchmarks/results/<device>.json)

Families:
  refit  the full DynamicGaussianAnchoring refit (init → EM → split → filter → merge → EM) of U units ×
         N tokens × D dims (also with DGA_FAST_BACKEND=reference: what kernels and native ops add), against
         scikit-learn GaussianMixture(covariance_type="full") given the true number of components of every
         unit (summed over units), and against a per-component Python-loop
         EM with torch.distributions.MultivariateNormal (benchmarks/loop_baseline.py, the published code's
         approach; timed on --loop-units units and scaled to all U, marked "extrapolated").
  anchor the anchor shift (DyGA's training-time forward) and its backward, modes fwd / bwd / full:
         reference, torch.compile(reference) (CUDA), Triton (CUDA).
  skip   skip_dropout_concat_norm_silu forward / backward / both, the same providers.
  plans  DyGA's spread / split / filter steps: reference against the ops of dga_fast._C ("native": C++ on
         CPU, CUDA kernels on a GPU).
  metrics the default disentanglement-metric suite (MIG, SAP, modularity, DCI, FactorVAE; DESIGN §7
         sample counts) on U units × 6 factors; one timed run (target: under 2 minutes on 2 CPU cores).
  estep  the HDDC E-step of a fitted DyGA state (cost ~2·D·(d+1) per sample and component) against a
         full-covariance E-step (Cholesky solves, ~D² per sample and component), both batched over units;
         then the fused kernel's shape (G=20, D=32, K=32, d=8; N = 4k / 100k / 1M for small / default /
         large): reference, torch.compile(reference) (CUDA) and Triton (CUDA), with the fraction of the
         measured copy bandwidth the kernel achieves (bytes of X read + outputs written).
  train  one training step of the small model at 64x64: pixel diffusion vs latent diffusion (first stage's
         16x16x3 latents, precomputed as the latent cache gives them), same widths and batch (items_per_s =
         images/s; the speed-up is the images/s ratio), and the cost of one DyGA refit (once per epoch).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SIZES = {
    #            units, tokens, dims
    "small": dict(units=4, tokens=2000, dim=16),
    "default": dict(units=20, tokens=10_000, dim=32),
    "large": dict(units=20, tokens=100_000, dim=32),
}


@dataclass
class Case:
    family: str
    provider: str
    mode: str
    fn: Callable[[], object]
    check: Callable[[object], dict]     # result of fn -> {"ok": bool, ...metrics}
    repeats: int | None = None          # override of --repeats (slow baselines)
    scale: float = 1.0                  # multiply the measured time (extrapolated baselines)
    note: str = ""
    warmup: bool = True                 # False: the checked first call is also the first timed one
    roofline: tuple | None = None       # (bytes moved, peak bytes/s): report the achieved fraction
    items: int | None = None            # images (or samples) per call: report items_per_s


@dataclass
class Row:
    family: str
    provider: str
    mode: str
    median_s: float | None
    times_s: list = field(default_factory=list)
    peak_mem_mb: float | None = None
    check: dict = field(default_factory=dict)
    note: str = ""


# ---------------------------------------------------------------------------------------------- timing
def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(case: Case, repeats: int, device: torch.device) -> Row:
    """Warm-up call (its result is the one checked), then the median of ``repeats`` timed calls. Without
    warm-up (slow, cache-free work) the checked first call is timed as one of the repeats."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = case.fn()
    _sync(device)
    first = (time.perf_counter() - t0) * case.scale
    check = case.check(out)
    times = [] if case.warmup else [first]
    if device.type == "cuda" and case.warmup:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range((case.repeats or repeats) - len(times)):
        t0 = time.perf_counter()
        case.fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * case.scale)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    if case.roofline is not None:
        nbytes, bw = case.roofline
        med = statistics.median(times)
        check = {**check, "achieved_TBps": round(nbytes / med / 1e12, 3),
                 "fraction_of_copy_bandwidth": round(nbytes / med / bw, 3)}
    if case.items:
        check = {**check, "items_per_s": round(case.items / statistics.median(times), 3)}
    return Row(case.family, case.provider, case.mode, statistics.median(times), times, peak, check, case.note)


# ---------------------------------------------------------------------------------------------- families
def family_refit(args, device) -> list[Case]:
    import numpy as np
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture

    from dga_fast import DynamicGaussianAnchoring
    from dga_fast.data import hard_setting, make_published_tokens, make_unit_tokens
    from dga_fast.mixture.normalise import Normaliser
    from loop_baseline import loop_refit

    sz = SIZES[args.size]
    U, N, D = sz["units"], sz["tokens"], sz["dim"]
    if args.tokens == "published":   # issue 12's hard setting: ReLU MLP tokens, up to 40 Zipf levels
        data = make_published_tokens(hard_setting(U), n=N, dim=D, seed=args.seed)
    else:
        data = make_unit_tokens(U, N, D, seed=args.seed)
    tokens = data.tokens.to(device)
    labels = data.labels.numpy()
    levels = data.levels.tolist()

    def mean_ari(pred, units):
        return float(np.mean([adjusted_rand_score(labels[:, u], pred[:, i]) for i, u in enumerate(units)]))

    dyga = DynamicGaussianAnchoring(U, D, seed=args.seed,
                                    max_components=max(32, int(data.levels.max()) + 8)).to(device)

    def run_dyga():
        dyga.refit(tokens)
        return dyga.assign(tokens).cpu().numpy()

    def run_dyga_reference():   # every op on the PyTorch reference: what the kernels and native ops add
        old = os.environ.get("DGA_FAST_BACKEND")
        os.environ["DGA_FAST_BACKEND"] = "reference"
        try:
            return run_dyga()
        finally:
            if old is None:
                del os.environ["DGA_FAST_BACKEND"]
            else:
                os.environ["DGA_FAST_BACKEND"] = old

    def check_dyga(pred):
        n = dyga.n_components.cpu()
        ari = mean_ari(pred, range(U))
        exact = int((n == data.levels).sum())
        return {"ok": ari >= 0.9 and int(n.max()) <= dyga.max_components, "mean_ari": round(ari, 4),
                "units_with_exact_count": f"{exact}/{U}", "n_components": n.tolist(), "true_levels": levels}

    x_np = data.tokens.numpy()

    def run_sklearn():
        pred = np.empty((N, U), dtype=np.int64)
        for u in range(U):
            gm = GaussianMixture(levels[u], covariance_type="full", random_state=args.seed)
            pred[:, u] = gm.fit_predict(x_np[:, u])
        return pred

    def check_sklearn(pred):
        ari = mean_ari(pred, range(U))
        return {"ok": True, "mean_ari": round(ari, 4), "given": "true number of components"}

    lu = [u for u in range(U) if levels[u] > 1][:args.loop_units]     # a collapsed unit would NaN the loop EM
    xn = data.tokens.transpose(0, 1)[lu].float()
    xn = Normaliser.fit(xn)(xn)

    def run_loop():
        return np.stack([loop_refit(xn[i], seed=args.seed).numpy() for i in range(len(lu))], axis=1)

    def check_loop(pred):
        return {"ok": True, "mean_ari": round(mean_ari(pred, lu), 4), "units_timed": len(lu)}

    return [
        Case("refit", "dga_fast", "full", run_dyga, check_dyga, note=f"{U} units x {N} tokens x {D} dims"),
        Case("refit", "dga_fast-reference", "full", run_dyga_reference, check_dyga,
             note="the same refit with DGA_FAST_BACKEND=reference (no Triton kernels, no native ops)"),
        Case("refit", "sklearn-gmm-full", "full", run_sklearn, check_sklearn, repeats=1,
             note="GaussianMixture(covariance_type='full') per unit with the true K, summed over units"),
        Case("refit", "loop-mvn", "full", run_loop, check_loop, repeats=1, scale=U / len(lu),
             note=f"per-component loop EM with MultivariateNormal, timed on {len(lu)} of {U} units, "
                  f"extrapolated x{U / len(lu):g}"),
    ]


def _triton_ok(device) -> str | None:
    """None when the Triton rows can run here, else why not."""
    if device.type != "cuda":
        return "Triton rows skipped: no CUDA device (the kernels are tested on CPU in Triton's interpreter)"
    from dga_fast import ops
    return None if ops.triton_available() else "Triton rows skipped: Triton is not importable"


def _copy_bandwidth(device) -> float:
    """Achieved device-to-device copy bandwidth (bytes read + written per second): the roofline's peak."""
    a = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    _sync(device)
    return 2 * a.numel() * 10 / (time.perf_counter() - t0)


def _random_state(G, K, D, d, device, seed=0):
    """A fitted-looking HDDC state: orthonormal subspaces of dimension d, all K slots active."""
    from dga_fast.mixture import MixtureState
    g = torch.Generator().manual_seed(seed)
    st = MixtureState.empty(G, K, D, d)
    st.components = torch.linalg.qr(torch.randn(G, K, D, D, generator=g))[0][..., :d].contiguous()
    st.noise = 0.05 + 0.1 * torch.rand(G, K, generator=g)
    st.eigvals = st.noise.unsqueeze(-1) * (2 + 4 * torch.rand(G, K, d, generator=g))
    st.dims = torch.full((G, K), d, dtype=torch.int64)
    st.means = 2 * torch.randn(G, K, D, generator=g)
    st.active = torch.ones(G, K, dtype=torch.bool)
    st.log_weights = torch.full((G, K), -math.log(K))
    return st.to(device=device)


def family_estep(args, device) -> list[Case]:
    """Two parts: (1) a fitted DyGA state of the refit family's tokens, reference vs a full-covariance
    E-step, with a float64 oracle; (2) the fused kernel's shape of DESIGN §8 (G=20 units, D=32, K=32, d=8;
    N=1M at --size large) for the reference, torch.compile(reference) and Triton, with the memory roofline."""
    from dga_fast import DynamicGaussianAnchoring
    from dga_fast.data import make_unit_tokens
    from dga_fast.reference import hddc_estep as ref_estep

    sz = SIZES[args.size]
    U, N, D = sz["units"], sz["tokens"], sz["dim"]
    data = make_unit_tokens(U, N, D, seed=args.seed)
    dyga = DynamicGaussianAnchoring(U, D, seed=args.seed).refit(data.tokens).to(device)
    st = dyga.state.resize(dyga.state.used_slots())
    x = ((data.tokens.to(device) - dyga.norm_shift) / dyga.norm_scale[:, None]).transpose(0, 1).contiguous()
    # exact float64 oracle on a slice, explicit centring
    xs = x[:, :512].double()
    cov = st.covariances().double()
    cov = torch.where(st.active[..., None, None], cov, torch.eye(D, dtype=torch.float64, device=device))
    mvn = torch.distributions.MultivariateNormal(st.means.double(), covariance_matrix=cov)
    lp = mvn.log_prob(xs.transpose(0, 1).unsqueeze(2)).transpose(0, 1) + st.log_weights.double().unsqueeze(1)
    oracle = torch.logsumexp(lp, -1)
    chol = torch.linalg.cholesky(cov.float())
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)              # [U, K]

    def run_ref():
        return ref_estep(x, st)

    def full_cov():
        # batched full-covariance E-step: z = x − μ_k materialised per component chunk, triangular solve
        out = []
        for s in range(0, N, 2048):
            z = x[:, s:s + 2048].unsqueeze(1) - st.means.unsqueeze(2)                   # [U, K, n, D]
            y = torch.linalg.solve_triangular(chol, z.transpose(-1, -2), upper=False)   # [U, K, D, n]
            m = y.square().sum(-2)                                                       # [U, K, n]
            lp = -0.5 * (m + logdet.unsqueeze(-1) + D * math.log(2 * math.pi)) + st.log_weights.unsqueeze(-1)
            out.append(torch.logsumexp(lp, 1))
        return torch.cat(out, 1)

    def check(out, name):
        ll = out[1] if isinstance(out, tuple) else out
        err = float(((ll[:, :512].double() - oracle).abs() / (1 + oracle.abs())).max())
        return {"ok": err < 1e-3, "max_rel_err_vs_fp64": err, "what": name}

    Kact = int(st.active.sum(1).max())
    note = f"{U} units x {N} tokens x {D} dims, up to {Kact} components, d <= {int(st.dims.max())}"
    cases = [
        Case("estep", "dga_fast-reference", "fwd", run_ref, lambda o: check(o, "hddc"), note=note),
        Case("estep", "full-covariance", "fwd", full_cov, lambda o: check(o, "full"), note=note),
    ]

    # part 2: the kernel's shape
    NK = {"small": 4096, "default": 100_000, "large": 1_000_000}[args.size]
    G2, K2, d2 = 20, 32, 8
    st2 = _random_state(G2, K2, D, d2, device, args.seed)
    lab = torch.randint(0, K2, (G2, NK), generator=torch.Generator().manual_seed(1)).to(device)
    x2 = st2.means[torch.arange(G2, device=device).unsqueeze(1), lab] + 0.3 * torch.randn(G2, NK, D, device=device)
    w2, ib2, c2 = st2.trim_dims().cost_terms()
    ref_ll = ref_estep(x2[:, :2048], st2)[1]
    nbytes = x2.numel() * 4 + G2 * NK * (K2 + 1) * 4          # X read + log_resp and loglik written (fp32)
    note2 = f"G={G2} x N={NK} x D={D}, K={K2}, d={d2}; bytes moved {nbytes / 1e9:.2f} GB"

    def check2(out, name):
        err = float(((out[1][:, :2048] - ref_ll).abs() / (1 + ref_ll.abs())).max())
        return {"ok": err < 1e-4, "max_rel_err_vs_reference": err, "what": name}

    cases.append(Case("estep-kernel", "reference", "fwd", lambda: ref_estep(x2, st2),
                      lambda o: check2(o, "reference"), note=note2))
    if device.type == "cuda":
        compiled = torch.compile(lambda xx: ref_estep(xx, st2), dynamic=False)
        cases.append(Case("estep-kernel", "compiled", "fwd", lambda: compiled(x2),
                          lambda o: check2(o, "torch.compile(reference)"), note=note2))
    why = _triton_ok(device)
    if why:
        print("  " + why)
    else:
        peak = _copy_bandwidth(device)

        s2 = st2.trim_dims()
        case = Case("estep-kernel", "triton", "fwd",
                    lambda: torch.ops.dga_fast.hddc_estep(x2, s2.means, s2.components, w2, ib2, c2),
                    lambda o: check2(o, "triton"), note=note2 + f"; copy bandwidth {peak / 1e12:.2f} TB/s")
        case.roofline = (nbytes, peak)
        cases.append(case)
    return cases


def _op_cases(family, fns, inputs, gouts, note, device, tol) -> list[Case]:
    """Rows (provider × mode) for a differentiable op. ``fns``: provider -> callable(*inputs) returning a
    tensor or tuple; ``inputs``: tensors, those with ``requires_grad`` get gradients; ``gouts``: upstream
    gradients of the outputs. Every row is checked against the float64 reference in the same run."""
    diff = [t for t in inputs if t.requires_grad]

    def outs(o):
        return o if isinstance(o, tuple) else (o,)

    def grads(f):
        o = outs(f(*inputs))
        return torch.autograd.grad(o, diff, gouts[:len(o)])

    ref64_in = [t.detach().double().requires_grad_(t.requires_grad) for t in inputs]
    ref64_out = outs(fns["reference"](*ref64_in))
    ref64_g = torch.autograd.grad(ref64_out, [t for t in ref64_in if t.requires_grad],
                                  [g.double() for g in gouts[:len(ref64_out)]])

    def err(got, want):
        return max(float(((a.detach().double() - b.detach()).abs() / (tol + b.detach().abs())).max())
                   for a, b in zip(got, want))

    cases = []
    for prov, f in fns.items():
        def fwd(f=f):
            with torch.no_grad():
                return outs(f(*inputs))

        def full(f=f):
            return grads(f)

        held = {}

        def bwd(f=f, held=held):
            if "o" not in held:
                held["o"] = outs(f(*inputs))
            return torch.autograd.grad(held["o"], diff, gouts[:len(held["o"])], retain_graph=True)

        def chk_fwd(o, prov=prov):
            e = err(o, ref64_out)
            return {"ok": e < 1.0, "max_err_vs_fp64_in_tol_units": round(e, 4), "tol": tol}

        def chk_grad(o, prov=prov):
            e = err(o, ref64_g)
            return {"ok": e < 1.0, "max_err_vs_fp64_in_tol_units": round(e, 4), "tol": tol}

        cases += [Case(family, prov, "fwd", fwd, chk_fwd, note=note),
                  Case(family, prov, "bwd", bwd, chk_grad, note=note),
                  Case(family, prov, "full", full, chk_grad, note=note)]
    return cases


def _providers(ref_fn, triton_fn, device) -> dict:
    fns = {"reference": ref_fn}
    if device.type == "cuda":
        fns["compiled"] = torch.compile(ref_fn, dynamic=False)
    why = _triton_ok(device)
    if why:
        print("  " + why)
    else:
        fns["triton"] = triton_fn
    return fns


def family_anchor(args, device) -> list[Case]:
    """Anchor shift (training-time forward of DynamicGaussianAnchoring and its backward): B tokens of
    U=20 units × Dc=32 against a K=16, d=8 mixture per unit."""
    from dga_fast import reference

    B = {"small": 512, "default": 8192, "large": 65536}[args.size]
    U, D, K, d = 20, 32, 16, 8
    st = _random_state(U, K, D, d, device, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    shift = torch.randn(U, D, generator=g).to(device)
    scale = (0.5 + torch.rand(U, generator=g)).to(device)
    lab = torch.randint(0, K, (B, U), generator=g).to(device)
    c = (st.means[torch.arange(U, device=device).unsqueeze(0), lab] + 0.3 * torch.randn(B, U, D, device=device))
    c = (c * scale[:, None] + shift).requires_grad_()
    gout = torch.randn(B, U, D, device=device)
    s = st.trim_dims()
    w, ib, cst = s.cost_terms()

    def ref_fn(c):
        dt = c.dtype
        return reference.anchor_shift(c, s.to(dtype=dt), shift.to(dt), scale.to(dt), "adaptive", 0.1)

    def tri_fn(c):
        return torch.ops.dga_fast.anchor_shift(c, shift, scale, s.means, s.components, w, ib, cst, 0.0, 0.1,
                                               True)[0]

    note = f"B={B} tokens x U={U} units x Dc={D}, K={K}, d={d}, adaptive λ"
    return _op_cases("anchor_shift", _providers(ref_fn, tri_fn, device), [c], [gout], note, device, 1e-4)


def family_skip(args, device) -> list[Case]:
    """skip_dropout_concat_norm_silu forward/backward: a decoder block input of the U-Net."""
    from dga_fast import reference

    B, Ch, H = {"small": (4, 16, 8), "default": (16, 64, 32), "large": (64, 128, 32)}[args.size]
    Cs, groups, p = Ch, 32 if Ch >= 64 else 8, 0.2
    g = torch.Generator().manual_seed(args.seed)
    h = torch.randn(B, Ch, H, H, generator=g).to(device).requires_grad_()
    skip = torch.randn(B, Cs, H, H, generator=g).to(device).requires_grad_()
    keep = (torch.rand(B, Cs, generator=g) > p).float().to(device)
    w = (1 + 0.1 * torch.randn(Ch + Cs, generator=g)).to(device).requires_grad_()
    b = (0.1 * torch.randn(Ch + Cs, generator=g)).to(device).requires_grad_()
    gouts = [torch.randn(B, Ch + Cs, H, H, device=device) for _ in range(2)]

    def ref_fn(h, skip, w, b):
        return reference.skip_dropout_concat_norm_silu(h, skip, keep.to(h.dtype), p, w, b, groups)

    def tri_fn(h, skip, w, b):
        return torch.ops.dga_fast.skip_dropout_concat_norm_silu(h, skip, keep, p, w, b, groups)[:2]

    note = f"h [{B},{Ch},{H},{H}] + skip [{B},{Cs},{H},{H}], {groups} groups, p={p}"
    return _op_cases("skip_block", _providers(ref_fn, tri_fn, device), [h, skip, w, b], gouts, note, device, 1e-3)


def family_plans(args, device) -> list[Case]:
    """DyGA's spread / split / filter steps: the PyTorch reference against the ops of dga_fast._C (C++ on CPU,
    CUDA kernels on a GPU with a CUDA build), G=20 units, K=32 slots; the spread over N tokens × D=32 dims.
    Each native row is checked to give exactly the reference's plan (spread to 1e-6)."""
    from dga_fast import native
    from dga_fast.reference import split_filter as ref

    N = {"small": 2000, "default": 10_000, "large": 100_000}[args.size]
    G, K, D = 20, 32, 32
    g = torch.Generator().manual_seed(args.seed)
    x, means = torch.randn(G, N, D, generator=g).to(device), torch.randn(G, K, D, generator=g).to(device)
    labels = torch.randint(0, K, (G, N), generator=g).to(device)
    active = (torch.rand(G, K, generator=g) > 0.4).to(device)
    spread, counts = torch.rand(G, K, generator=g).to(device), torch.randint(0, 500, (G, K), generator=g).to(device)
    mass = (50 * torch.rand(G, K, generator=g)).to(device)
    calls = {
        "mixture_spread": (lambda: ref.mixture_spread(x, labels, means),
                           lambda: torch.ops.dga_fast.mixture_spread(x, labels, means)),
        "split_plan": (lambda: ref.split_plan(active, spread, counts, 0.3, K, 20.0),
                       lambda: torch.ops.dga_fast.split_plan(active, spread, counts, 0.3, K, 20.0)),
        "filter_plan": (lambda: ref.filter_plan(active, mass, 10.0),
                        lambda: torch.ops.dga_fast.filter_plan(active, mass, 10.0)),
    }
    use_native = native.serves(device)
    if not use_native:
        print("  native rows skipped: " + ("dga_fast._C is not built" if not native.available()
                                           else f"dga_fast._C was built without {device.type} kernels"))
    cases = []
    for name, (ref_fn, nat_fn) in calls.items():
        want = ref_fn()

        def check(out, want=want, name=name):
            same = all(torch.equal(a, b.to(a.dtype)) if name != "mixture_spread" or i == 0
                       else torch.allclose(a, b, rtol=1e-6, atol=1e-6) for i, (a, b) in enumerate(zip(out, want)))
            return {"ok": bool(same), "same_as_reference": bool(same)}

        note = f"G={G}, K={K}" + (f", N={N}, D={D}" if name == "mixture_spread" else "")
        cases.append(Case(f"plans-{name}", "reference", "fwd", ref_fn, check, note=note))
        if use_native:
            cases.append(Case(f"plans-{name}", "native", "fwd", nat_fn, check, note=note))
    return cases


def family_metrics(args, device) -> list[Case]:
    """The default disentanglement suite (DESIGN §7 sample counts) on U units × 6 factors, the
    representation a fixed noisy linear map of the factors (so the time is the metrics', not a model's)."""
    import numpy as np

    from dga_fast import metrics as M
    from dga_fast.data import FactorsAsImages

    U = SIZES[args.size]["units"]
    n = {"small": 1000}.get(args.size, 10_000)            # DESIGN §7 defaults unless --size small
    ds = FactorsAsImages((10, 10, 10, 8, 4, 15))            # Shapes3D's factor sizes
    mix = np.random.default_rng(args.seed).standard_normal((6, U))
    k = min(6, U)
    mix[:k, :k] += 4 * np.eye(k)                              # the first units mostly one factor each

    def rep(x):
        z = x.numpy() @ mix
        return z + 0.1 * np.random.default_rng(len(x)).standard_normal(z.shape)

    calls = {
        "mig": lambda: M.mig(rep, ds, num_train=n, seed=args.seed)["mig"],
        "sap": lambda: M.sap(rep, ds, num_train=n, num_test=n // 2, seed=args.seed)["sap"],
        "modularity": lambda: M.modularity_explicitness(rep, ds, num_train=n, num_test=n // 2,
                                                        seed=args.seed)["modularity"],
        "dci": lambda: M.dci(rep, ds, num_train=n, num_test=n // 2, seed=args.seed)["disentanglement"],
        "factor_vae": lambda: M.factor_vae_score(rep, ds, num_variance_estimate=n, num_train=n, num_eval=n // 2,
                                                 seed=args.seed)["factor_vae"],
    }

    def suite():
        return {k: f() for k, f in calls.items()}

    def check(out):
        ok = all(0.0 <= v <= 1.0 for v in out.values()) and out["factor_vae"] > 0.5
        return {"ok": ok, **{k: round(v, 4) for k, v in out.items()}}

    note = (f"MIG, SAP, modularity, DCI (hist backend), FactorVAE on {U} units x 6 factors, {n} samples "
            "(FactorVAE: that many votes of batch 64)")
    return [Case("metrics", "dga_fast-suite", "full", suite, check, repeats=1, note=note, warmup=False)]


def family_train(args, device) -> list[Case]:
    """One optimizer step (loss, backward, AdamW) of the ``small`` model at 64×64, pixel diffusion against
    latent diffusion on the official first stage's 16×16×3 latents (same widths, same batch; the latents come
    precomputed, as from the latent cache), and the DyGA refit (encode ``refit`` images + refit) whose cost
    the published schedule pays once per epoch."""
    from dga_fast import AnchoredDiffusion, FirstStage
    from dga_fast.data import SyntheticShapes
    from dga_fast.presets import PRESETS

    B = {"small": 2, "default": 4, "large": 64}[args.size]
    n_refit = {"small": 256, "default": 1024, "large": 10_000}[args.size]
    cfg = {**PRESETS["small"]["model"], "image_size": 64}
    ds = SyntheticShapes(64)
    g = torch.Generator().manual_seed(args.seed)
    x = ds.get_batch(torch.randint(0, len(ds), (B,), generator=g))[0].to(device)
    x_refit = ds.get_batch(torch.randint(0, len(ds), (n_refit,), generator=g))[0]
    torch.manual_seed(args.seed)
    fs = FirstStage(image_size=64).to(device).eval()
    with torch.no_grad():
        z = fs.encode(x)
    models = {"pixel": AnchoredDiffusion(**cfg).to(device),
              "latent": AnchoredDiffusion(**cfg, first_stage=fs).to(device)}
    models["latent"].fit_latent_scale(z)
    cases = []
    for name, m in models.items():
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
        lat = z if name == "latent" else None

        def step(m=m, opt=opt, lat=lat):
            loss = m.loss(x, generator=torch.Generator(device).manual_seed(0), latents=lat)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())

        def check(loss):
            return {"ok": math.isfinite(loss), "loss": round(loss, 4), "batch": B}
        cases.append(Case("train", name, "step", step, check, items=B,
                          note=f"small model, 64x64 images, batch {B}; {'16x16x3 latents' if lat is not None else 'pixels'}"))
    lat_model = models["latent"]
    lat_model.anchoring.progress = False

    def refit():
        lat_model.refit_anchors(x_refit.to(device))
        return lat_model.last_refit

    def check_refit(d):
        return {"ok": all(math.isfinite(v) for v in d["spread"]), "components": d.get("components")}
    cases.append(Case("train", "refit", "epoch", refit, check_refit, repeats=1, warmup=False,
                      note=f"DyGA refit on {n_refit} images (encode + refit), once per epoch in the published "
                           f"schedule; an epoch of Shapes3D is 480,000 images"))
    return cases


FAMILIES = {"refit": family_refit, "estep": family_estep, "anchor": family_anchor, "skip": family_skip,
            "plans": family_plans, "metrics": family_metrics, "train": family_train}
# (family, faster provider, baseline provider)
SPEEDUPS = [("refit", "dga_fast", "sklearn-gmm-full"), ("refit", "dga_fast", "loop-mvn"),
            ("refit", "dga_fast", "dga_fast-reference"),
            ("estep", "dga_fast-reference", "full-covariance"),
            ("estep-kernel", "triton", "reference"), ("estep-kernel", "triton", "compiled"),
            ("estep-kernel", "compiled", "reference"), ("train", "latent", "pixel")]
SPEEDUPS += [(f"plans-{_op}", "native", "reference") for _op in ("mixture_spread", "split_plan", "filter_plan")]
for _fam in ("anchor_shift", "skip_block"):
    for _mode in ("fwd", "bwd", "full"):
        SPEEDUPS += [(_fam, "triton", "reference", _mode), (_fam, "triton", "compiled", _mode),
                     (_fam, "compiled", "reference", _mode)]


# ---------------------------------------------------------------------------------------------- output
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def slug(name: str) -> str:
    keep = "".join(c.lower() if c.isalnum() else "-" for c in name)
    return "-".join(p for p in keep.split("-") if p)[:60]


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=sorted(FAMILIES), action="append", help="run only this family")
    p.add_argument("--size", choices=sorted(SIZES), default="default")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loop-units", type=int, default=2, help="units the loop baseline is timed on")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", choices=("simple", "published"), default="simple",
                   help="refit rows: make_unit_tokens (3..15 uniform levels) or make_published_tokens' hard setting")
    p.add_argument("--json", type=Path, default=None, help="output JSON (default results/<device>.json)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.loop_units < 1:
        p.error("--repeats and --loop-units must be >= 1")
    device = torch.device(args.device)
    dev_name = device_name(device)
    rows: list[Row] = []
    for fam in args.only or list(FAMILIES):
        print(f"== {fam} ({args.size}) on {dev_name}", flush=True)
        for case in FAMILIES[fam](args, device):
            row = measure(case, args.repeats, device)
            rows.append(row)
            status = "ok" if row.check.get("ok") else "CHECK FAILED"
            metrics = {k: v for k, v in row.check.items() if k not in ("ok", "n_components", "true_levels")}
            print(f"  {row.provider:<22} {row.mode:<5} {row.median_s:9.4f} s  [{status}] {metrics}"
                  + (f"  ({row.note})" if row.note else ""), flush=True)
    speedups = []
    for fam, fast, base, *mode in SPEEDUPS:
        mode = mode[0] if mode else None

        def pick(prov):
            return next((r for r in rows if r.family == fam and r.provider == prov
                         and (mode is None or r.mode == mode)), None)
        a, b = pick(fast), pick(base)
        if a is None or b is None:
            continue
        label = f"{fam}{'/' + mode if mode else ''}"
        if a.check.get("ok") and b.check.get("ok"):
            s = b.median_s / a.median_s
            speedups.append({"family": fam, "mode": mode or a.mode, "provider": fast, "baseline": base,
                             "speedup": round(s, 2)})
            print(f"speed-up {label}: {fast} vs {base}: {s:.1f}x")
        else:
            print(f"speed-up {label}: {fast} vs {base}: not reported (a correctness check failed)")
    out = {
        "device": dev_name, "device_type": device.type, "size": args.size, "sizes": SIZES[args.size],
        "torch": torch.__version__, "triton": _triton_version(), "python": platform.python_version(),
        "commit": git_commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "peak_memory_note": "peak_mem_mb is torch.cuda.max_memory_allocated on CUDA; not measured on CPU",
        "rows": [asdict(r) for r in rows], "speedups": speedups,
    }
    path = args.json or HERE / "results" / f"{slug(dev_name)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if all(r.check.get("ok") for r in rows) else 1


def _triton_version():
    try:
        import triton
        return triton.__version__
    except Exception:  # noqa: BLE001 - triton absent or broken on this machine
        return None


if __name__ == "__main__":
    sys.exit(main())
