"""Row family ``refit``: the full DyGA refit against scikit-learn (true K) and the per-component loop baseline."""
from __future__ import annotations

from .harness import SIZES, Case, sync

def family_refit(args, device) -> list[Case]:
    import numpy as np
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture

    from dga_fast import DynamicGaussianAnchoring, use_backend
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
        with use_backend("reference"):
            return run_dyga()

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
