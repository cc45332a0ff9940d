"""Row family ``metrics``: the default disentanglement-metric suite."""
from __future__ import annotations

import torch

from .harness import SIZES, Case, sync

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
