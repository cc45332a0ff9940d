"""Demos without downloads.

``python -m dga_fast demo`` (what ``make demo`` runs): the latent system on SyntheticShapes(32) on the CPU:
a first stage, then the ``tiny-latent`` preset with DyGA + Skip Dropout on its latents; writes the checkpoints,
``samples.png``, ``interchange.png``, ``reconstructions.png``, ``anchors.png``, ``loss.png`` and
``summary.json`` (see ``run_training_demo``).

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


def _reused_first_stage(path, expected: dict):
    from .nn import FirstStage
    fs, want = FirstStage.load(path), FirstStage(**expected).config
    if fs.config != want:
        raise ValueError(f"first_stage {path} was built with {fs.config}; the demo's preset needs {want}")
    return fs


def _fidelity(model, fs, ds, steps: int, seed: int, budget: int) -> dict:
    """Which factors survive the model's round trip ``sample(encode(x))`` and the first stage's
    ``decode(encode(x))`` (``metrics.factor_fidelity``, one image probe for both), on ``min(256, budget)`` images;
    the probe trains ``min(400, budget)`` steps on ``min(4096, 4·budget)`` images (the metrics' sample budget)."""
    from .metrics import factor_fidelity
    from .metrics.factor_fidelity import first_stage_reconstruction, model_reconstruction
    from .metrics.image_probe import ImageFactorProbe
    n = min(256, budget)
    probe = ImageFactorProbe.fit(ds, n_train=min(4096, 4 * budget), steps=min(400, budget), seed=seed)
    ours = factor_fidelity(model_reconstruction(model, steps, seed), ds, probe, n=n, seed=seed)
    first = factor_fidelity(first_stage_reconstruction(fs), ds, probe, n=n, seed=seed)
    return {"model": ours["fidelity"], "first_stage": first["fidelity"], "probe_accuracy_real": ours["accuracy_real"],
            "chance": ours["chance"], "images": n, "sample_steps": steps}


def run_training_demo(out="runs/demo", steps: int | None = None, seed: int = 0, progress: bool = True,
                      n_images: int = 6, sample_steps: int = 50, eval_samples: int | None = 1000,
                      ae_steps: int = 480, ae_minutes: float | None = 6.0, held_out: int = 256,
                      train_images: int = 8192, first_stage=None, train_seed: int | None = None) -> dict:
    """The latent system on SyntheticShapes(32), on the CPU in a few minutes (``make demo``):

    1. the first stage (``FirstStage``, the official VQ autoencoder) for ``ae_steps`` steps (about 3 minutes
       on a 2-core CPU; ``ae_minutes`` caps the time on a slower machine, which then trains fewer steps and
       is no longer reproducible step for step);
    2. the ``tiny-latent`` preset (DyGA + Skip Dropout) on the cached latents of ``train_images`` seeded images
       (so the cache is filled in the first epoch), ``held_out`` other images set aside;
    3. on held-out images: ``samples.png``, ``interchange.png``, ``reconstructions.png`` (first stage), the
       self-reconstruction ratio (``evaluate.self_reconstruction``, 64 images), the per-unit interchange
       effect, ``anchors.png``, ``loss.png``, and the disentanglement metrics with ``eval_samples`` samples each
       (DESIGN §7 uses 10k; None skips them) with each factor's informativeness and its fidelity through the model
       and through the first stage (``_fidelity``). Everything lands in ``summary.json``.

    ``first_stage`` (a saved ``FirstStage`` or a ``train-autoencoder`` run directory, e.g. an earlier demo's
    ``first_stage``) replaces step 1; its latent cache lands beside it. ``train_seed`` seeds step 2 alone
    (default ``seed``, which also picks the split): several diffusion seeds on one first stage."""
    from .data import IndexSubset, SyntheticShapes
    from .evaluate import interchange_effect, self_reconstruction
    from .latent_cache import LatentCache, LatentDataset, default_cache_dir, weights_fingerprint
    from .model import AnchoredDiffusion
    from .nn import FirstStage
    from .presets import PRESETS
    from .train import TrainConfig, fit
    from .train_autoencoder import evaluate_autoencoder, fit_autoencoder, split_indices
    from .viz import interchange_grid, plot_anchors, save_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    preset = PRESETS["tiny-latent"]
    size = preset["model"]["image_size"]
    ds = SyntheticShapes(size=size, seed=seed)
    train_idx, held = split_indices(len(ds), held_out, seed)     # the first stage's split as well
    # 1. the first stage
    t0 = time.perf_counter()
    if first_stage is None:
        fs_dir = out / "first_stage"
        torch.manual_seed(seed)
        fs = FirstStage(**preset["model"]["first_stage"])
        ae = fit_autoencoder(fs, ds, fs_dir, steps=ae_steps, max_seconds=ae_minutes * 60 if ae_minutes else None,
                             eval_images=held_out, eval_every=max(ae_steps // 4, 1),
                             ckpt_every=max(ae_steps // 4, 1), seed=seed, progress=progress,
                             run_info={"dataset": {"name": "synthetic-shapes", "data_dir": None, "image_size": size}})
        ae_info = {"steps": ae["step"], "held_out_psnr_db": ae["psnr"][-1][1]}
    else:
        fs_dir, fs = Path(first_stage), _reused_first_stage(first_stage, preset["model"]["first_stage"])
        ae_info = {"steps": 0, "reused": str(fs_dir), "held_out_psnr_db": evaluate_autoencoder(fs, ds, held)["psnr"]}
    ae_s = time.perf_counter() - t0
    # 2. latent diffusion on the training split, latents cached beside the first stage
    train_ds = IndexSubset(ds, train_idx[:train_images])
    key = {"name": "synthetic-shapes", "image_size": size,
           "split": f"{train_images} training images, {held_out} held out (seed {seed})"}
    cache = LatentCache(fs, train_ds, default_cache_dir(fs_dir, key, weights_fingerprint(fs)), key,
                        progress=progress)
    model_cfg = {k: v for k, v in preset["model"].items() if k != "first_stage"}
    train_seed = seed if train_seed is None else train_seed
    torch.manual_seed(train_seed)
    model = AnchoredDiffusion(**model_cfg, first_stage=fs)
    train_cfg = TrainConfig(**{**preset["train"], "seed": train_seed, "progress": progress,
                               **({"steps": steps} if steps else {})})
    t0 = time.perf_counter()
    hist = fit(model, LatentDataset(train_ds, cache), out, train_cfg,
               run_info={"dataset": {"name": "synthetic-shapes", "data_dir": None, "image_size": size,
                                     "first_stage": str(fs_dir.resolve())}})
    train_s = time.perf_counter() - t0
    # 3. what it learned, on held-out images
    t0 = time.perf_counter()
    model.eval()
    held_ds = IndexSubset(ds, held)
    x = held_ds.get_batch(torch.arange(min(64, held_out)))[0]
    save_grid(torch.cat([x[:n_images], fs.reconstruct(x[:n_images])]), n_images, out / "reconstructions.png")
    samples = model.sample(model.encode(x[:n_images]), steps=sample_steps,
                           generator=torch.Generator().manual_seed(seed))
    save_grid(torch.cat([x[:n_images], samples]), n_images, out / "samples.png")
    save_grid(interchange_grid(model, held_ds, n_images, sample_steps, seed), n_images, out / "interchange.png")
    selfrec = self_reconstruction(model, x, sample_steps, seed)
    effect = interchange_effect(model, x[:16], x[16:32], sample_steps, seed)
    tokens = model.collect_tokens(train_ds.get_batch(torch.arange(1024))[0])
    if model.anchoring is not None and model.anchoring.fitted:
        plot_anchors(model.anchoring, tokens, list(range(min(4, model.config["num_units"]))), out / "anchors.png")
    _plot_loss(hist["losses"], out / "loss.png")
    losses = [v for _, v in hist["losses"]]
    k = max(1, min(20, len(losses) // 5))
    evaluation = None
    if eval_samples is not None:
        from .evaluate import evaluate_run
        ev = evaluate_run(out, ("mig", "dci", "sap", "modularity", "factor_vae", "infomec"), eval_samples, seed,
                          progress=progress)
        evaluation = {"scores": ev["scores"], "informativeness_per_factor": ev["per_factor"]["informativeness"],
                      "factor_fidelity": _fidelity(model, fs, ds, min(sample_steps, 25), seed, eval_samples),
                      "samples": eval_samples, "seconds": round(sum(ev["seconds"].values()), 1)}
    summary = {
        "preset": "tiny-latent", "seed": seed, "train_seed": train_seed, "dataset": f"SyntheticShapes({size})",
        "train_images": len(train_ds), "held_out_images": held_out,
        "first_stage": {**ae_info, "seconds": round(ae_s, 1),
                        **fs.code_stats(x), "latent_shape": list(fs.latent_shape)},
        "steps": hist["step"], "train_seconds": round(train_s, 1),
        "loss_first": round(sum(losses[:k]) / k, 4), "loss_last": round(sum(losses[-k:]) / k, 4),
        "refit_steps": hist["refit_steps"],
        "n_components": model.anchoring.n_components.tolist() if model.anchoring is not None else None,
        "self_reconstruction": selfrec,
        "interchange_effect_per_unit": effect,
        "eval_seconds": round(time.perf_counter() - t0, 1),
        "checkpoint": str(sorted((out / "checkpoints").glob("step_*"))[-1]),
        "evaluation": evaluation,
        "files": [f for f in ("samples.png", "interchange.png", "reconstructions.png", "anchors.png", "loss.png",
                              "training.png", "metrics.json", "dci_importance.png", "mutual_information.png",
                              "anchors_eval.png") if (out / f).exists()] + ["summary.json"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
