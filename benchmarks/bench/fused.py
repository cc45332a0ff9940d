"""Row families of the fused ops (``anchor``, ``skip``) and ``estep``: reference, torch.compile(reference) and Triton, with a
random upstream gradient; the E-step also against a full-covariance E-step and the memory roofline."""
from __future__ import annotations

import math
import time

import torch

from .harness import SIZES, Case, sync

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
    sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    sync(device)
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


def _native_estep(device):
    """The native CPU E-step (``torch.ops.dga_fast.hddc_estep_native``) as ``f(x, state)``, or None where it does
    not serve (a CUDA device, or dga_fast._C not built)."""
    from dga_fast import native
    if device.type != "cpu" or not native.available():
        print("  native E-step rows skipped: " + ("CPU only" if device.type != "cpu" else "dga_fast._C not built"))
        return None

    def run(x, st):
        t = st.trim_dims()
        return torch.ops.dga_fast.hddc_estep_native(x, t.means, t.components, *t.cost_terms())
    return run


def family_estep(args, device) -> list[Case]:
    """Two parts: (1) a fitted DyGA state of the refit family's tokens, reference vs a full-covariance
    E-step, with a float64 oracle; (2) the fused kernel's shape of DESIGN §8 (G=20 units, D=32, K=32, d=8;
    N=1M at --size large) for the reference, torch.compile(reference) and Triton, with the memory roofline; on
    CPU both parts also for the native E-step of dga_fast._C."""
    from dga_fast import DynamicGaussianAnchoring
    from dga_fast.data import make_unit_tokens
    from dga_fast.ops.hddc_estep.reference import hddc_estep as ref_estep

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
    native = _native_estep(device)
    if native:
        cases.insert(0, Case("estep", "dga_fast-native", "fwd", lambda: native(x, st), lambda o: check(o, "native"),
                             note=note))

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
    if native:
        cases.append(Case("estep-kernel", "native", "fwd", lambda: native(x2, st2),
                          lambda o: check2(o, "native (C++, CPU)"), note=note2))
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
    from dga_fast.ops.anchor_shift import reference as anchor_reference

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
        return anchor_reference.anchor_shift(c, s.to(dtype=dt), shift.to(dt), scale.to(dt), "adaptive", 0.1)

    def tri_fn(c):
        return torch.ops.dga_fast.anchor_shift(c, shift, scale, s.means, s.components, w, ib, cst, 0.0, 0.1,
                                               True)[0]

    note = f"B={B} tokens x U={U} units x Dc={D}, K={K}, d={d}, adaptive λ"
    return _op_cases("anchor_shift", _providers(ref_fn, tri_fn, device), [c], [gout], note, device, 1e-4)


def family_skip(args, device) -> list[Case]:
    """skip_dropout_concat_norm_silu forward/backward: a decoder block input of the U-Net."""
    from dga_fast.ops.skip_block import reference as skip_reference

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
        return skip_reference.skip_dropout_concat_norm_silu(h, skip, keep.to(h.dtype), p, w, b, groups)

    def tri_fn(h, skip, w, b):
        return torch.ops.dga_fast.skip_dropout_concat_norm_silu(h, skip, keep, p, w, b, groups)[:2]

    note = f"h [{B},{Ch},{H},{H}] + skip [{B},{Cs},{H},{H}], {groups} groups, p={p}"
    return _op_cases("skip_block", _providers(ref_fn, tri_fn, device), [h, skip, w, b], gouts, note, device, 1e-3)
