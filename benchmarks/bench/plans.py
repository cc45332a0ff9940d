"""Row family ``plans``: DyGA's spread / split / filter steps, reference against the native ops of dga_fast._C."""
from __future__ import annotations

import torch

from .harness import SIZES, Case, sync

def family_plans(args, device) -> list[Case]:
    """DyGA's spread / split / filter steps: the PyTorch reference against the ops of dga_fast._C (C++ on CPU,
    CUDA kernels on a GPU with a CUDA build), G=20 units, K=32 slots; the spread over N tokens × D=32 dims.
    Each native row is checked to give exactly the reference's plan (spread to 1e-6)."""
    from dga_fast import native
    from dga_fast.ops.plans import reference as ref

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
