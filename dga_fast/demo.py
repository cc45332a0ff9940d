"""Demos without downloads.

``python -m dga_fast demo`` (what ``make demo`` runs): trains the ``tiny`` preset on SyntheticShapes(32)
on the CPU with DyGA refits, and writes a checkpoint, ``samples.png``, ``interchange.png``,
``anchors.png``, ``loss.png`` and ``summary.json``.

``python -m dga_fast anchors-demo``: fits DyGA alone on synthetic latent-unit tokens with known levels
and plots a few units.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .anchoring import DynamicGaussianAnchoring
from .data import make_unit_tokens


def run_anchor_demo(out="runs/anchors-demo", units: int = 20, tokens: int = 10_000, dim: int = 32,
                    seed: int = 0, n_plots: int = 4, progress: bool = True) -> dict:
    from sklearn.metrics import adjusted_rand_score

    from .viz import plot_anchors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = make_unit_tokens(units, tokens, dim, seed=seed)
    dyga = DynamicGaussianAnchoring(units, dim, seed=seed, progress=progress)
    t0 = time.perf_counter()
    dyga.refit(data.tokens)
    seconds = time.perf_counter() - t0
    assign = dyga.assign(data.tokens)                                      # [N, U]
    ari = [float(adjusted_rand_score(data.labels[:, u], assign[:, u])) for u in range(units)]
    # shifted tokens move toward their Gaussian's mean: the mean ratio of distances after / before
    shifted = dyga(data.tokens)
    mu = torch.gather(dyga.means, 1, assign.T.unsqueeze(-1).expand(-1, -1, dim)).transpose(0, 1)
    shrink = float(((shifted - mu).norm(dim=-1) / (data.tokens - mu).norm(dim=-1).clamp_min(1e-12)).mean())
    # plots: the units with the fewest, median and most levels (and a few between)
    order = sorted(range(units), key=lambda u: int(data.levels[u]))
    picks = sorted({order[round(i * (units - 1) / max(n_plots - 1, 1))] for i in range(n_plots)})
    plots = []
    for u in picks:
        p = out / f"unit_{u:02d}.png"
        plot_anchors(dyga, data.tokens, [u], p, assign=assign,
                     titles=[f"unit {u}: {int(data.levels[u])} true levels, {int(dyga.n_components[u])} "
                             f"Gaussians, ARI {ari[u]:.3f}"])
        plots.append(p.name)
    summary = {
        "units": units, "tokens": tokens, "dim": dim, "seed": seed,
        "refit_seconds": round(seconds, 3),
        "true_levels": data.levels.tolist(),
        "n_components": dyga.n_components.tolist(),
        "units_with_exact_count": int((dyga.n_components == data.levels).sum()),
        "adjusted_rand_index": [round(a, 4) for a in ari],
        "mean_adjusted_rand_index": round(sum(ari) / units, 4),
        "n_split": dyga.last_refit["n_split"].tolist(),
        "n_merged": dyga.last_refit["n_merged"].tolist(),
        "stage_seconds": dyga.last_refit["stages"],
        "mean_distance_ratio_after_anchor_shift": round(shrink, 4),
        "plots": plots,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _plot_loss(losses, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .viz import save_figure

    steps = np.array([s for s, _ in losses])
    vals = np.array([v for _, v in losses])
    w = max(1, len(vals) // 30)
    smooth = np.convolve(vals, np.ones(w) / w, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, vals, lw=0.6, alpha=0.4, label="loss")
    ax.plot(steps[w - 1:], smooth, lw=1.5, label=f"moving mean ({w})")
    ax.set_xlabel("step")
    ax.set_ylabel("ε-prediction L1 loss")
    ax.legend()
    save_figure(fig, path)


def run_training_demo(out="runs/demo", steps: int | None = None, seed: int = 0, progress: bool = True,
                      n_images: int = 6, sample_steps: int = 50, eval_samples: int | None = 1000) -> dict:
    """Train the tiny preset on SyntheticShapes(32) (CPU, a few minutes), write the demo artefacts, and
    evaluate the run (MIG, DCI, SAP, modularity/explicitness, FactorVAE with ``eval_samples`` samples per
    metric instead of DESIGN §7's 10k, to keep the demo short; None skips the evaluation)."""
    from .cli import interchange_grid
    from .data import SyntheticShapes
    from .model import AnchoredDiffusion
    from .presets import PRESETS
    from .train import TrainConfig, fit, get_batch
    from .viz import plot_anchors, save_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    preset = PRESETS["tiny"]
    train_cfg = TrainConfig(**{**preset["train"], "seed": seed, "progress": progress,
                               **({"steps": steps} if steps else {})})
    ds = SyntheticShapes(size=preset["model"]["image_size"], seed=seed)
    torch.manual_seed(seed)
    model = AnchoredDiffusion(**preset["model"])
    t0 = time.perf_counter()
    hist = fit(model, ds, out, train_cfg,
               run_info={"dataset": {"name": "synthetic-shapes", "data_dir": None,
                                     "image_size": preset["model"]["image_size"]}})
    train_s = time.perf_counter() - t0
    model.eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = get_batch(ds, torch.randint(0, len(ds), (n_images,), generator=g))
    samples = model.sample(model.encode(x), steps=sample_steps, generator=torch.Generator().manual_seed(seed))
    save_grid(torch.cat([x, samples]), n_images, out / "samples.png")
    grid = interchange_grid(model, ds, n_images, sample_steps, seed)
    save_grid(grid, n_images, out / "interchange.png")
    src, tgt = grid[:n_images], grid[n_images:2 * n_images]
    all_swapped = model.interchange(src, tgt, None, steps=sample_steps,
                                    generator=torch.Generator().manual_seed(seed))
    mse_tgt = float(((all_swapped - tgt) ** 2).mean())
    mse_src = float(((all_swapped - src) ** 2).mean())
    ref = get_batch(ds, torch.randint(0, len(ds), (1024,), generator=g))
    tokens = model.collect_tokens(ref)
    if model.anchoring is not None and model.anchoring.fitted:
        units = list(range(min(4, model.config["num_units"])))
        plot_anchors(model.anchoring, tokens, units, out / "anchors.png")
    _plot_loss(hist["losses"], out / "loss.png")
    losses = [v for _, v in hist["losses"]]
    k = max(1, min(20, len(losses) // 5))
    evaluation = None
    if eval_samples is not None:
        from .evaluate import evaluate_run
        ev = evaluate_run(out, ("mig", "dci", "sap", "modularity", "factor_vae"), eval_samples, seed,
                          progress=progress)
        evaluation = {"scores": ev["scores"], "samples": eval_samples,
                      "seconds": round(sum(ev["seconds"].values()), 1)}
    summary = {
        "preset": "tiny", "dataset": "SyntheticShapes(32)", "steps": hist["step"],
        "train_seconds": round(train_s, 1),
        "loss_first": round(sum(losses[:k]) / k, 4), "loss_last": round(sum(losses[-k:]) / k, 4),
        "refit_steps": hist["refit_steps"],
        "n_components": model.anchoring.n_components.tolist() if model.anchoring is not None else None,
        "interchange_all_units_mse_to_target": round(mse_tgt, 5),
        "interchange_all_units_mse_to_source": round(mse_src, 5),
        "checkpoint": str(sorted((out / "checkpoints").glob("step_*"))[-1]),
        "evaluation": evaluation,
        "files": [f for f in ("samples.png", "interchange.png", "anchors.png", "loss.png", "metrics.json",
                              "dci_importance.png", "mutual_information.png", "anchors_eval.png")
                  if (out / f).exists()] + ["summary.json"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
