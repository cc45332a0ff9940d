"""``python -m dga_fast evaluate RUN_DIR``: disentanglement metrics of a trained run, ``metrics.json`` and
plots (DCI importance matrix, mutual-information heatmap, latent-unit scatter with the Gaussian regions)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

METRICS = ("mig", "dci", "sap", "modularity", "factor_vae", "beta_vae", "infomec", "tad", "anchor_purity", "fid",
           "factor_fidelity")
# what `evaluate` computes unless told otherwise (TAD only applies to binary attributes, as CelebA's;
# anchor_purity generates images: units x components x 16 DDIM samples; fid generates one image per sample and
# needs the Inception weights; factor_fidelity trains an image probe and generates one image per sample)
DEFAULT_METRICS = ("mig", "dci", "sap", "modularity", "factor_vae", "beta_vae", "infomec")


def _heatmap(matrix, xlabels, ylabels, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .viz import save_figure
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1 + 0.5 * m.shape[1], 1 + 0.35 * m.shape[0]), dpi=100)
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(m.shape[1]), xlabels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(m.shape[0]), ylabels, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    return save_figure(fig, path)


def metric_calls(rep, ds, samples: int | None = None, seed: int = 0, model=None, progress: bool = False,
                 n_jobs: int | None = None, fid_weights=None) -> dict:
    """``{metric name: () -> result}`` for representation ``rep(images) -> [N, U]`` on ``ds``; ``samples`` as in
    ``evaluate_run``; ``model`` (for ``anchor_purity``, which generates images) the model ``rep`` reads;
    ``n_jobs`` DCI's classifier processes (None: its default); ``fid_weights`` the Inception weight file (None:
    downloaded on first use)."""
    from . import metrics as M
    from .metrics.factor_fidelity import model_reconstruction
    n = samples
    kw = {} if n is None else {"num_train": n, "num_test": max(n // 2, 10)}
    return {
        "mig": lambda: M.mig(rep, ds, seed=seed, **({} if n is None else {"num_train": n})),
        "dci": lambda: M.dci(rep, ds, seed=seed, **kw, **({} if n_jobs is None else {"n_jobs": n_jobs})),
        "sap": lambda: M.sap(rep, ds, seed=seed, **kw),
        "modularity": lambda: M.modularity_explicitness(rep, ds, seed=seed, **kw),
        "factor_vae": lambda: M.factor_vae_score(
            rep, ds, seed=seed, **({} if n is None else {"num_variance_estimate": n, "num_train": max(n // 10, 5),
                                                          "num_eval": max(n // 20, 5)})),
        "beta_vae": lambda: M.beta_vae_score(
            rep, ds, seed=seed, **({} if n is None else {"num_train": max(n // 10, 5), "num_eval": max(n // 20, 5)})),
        "infomec": lambda: M.infomec(rep, ds, seed=seed, **({} if n is None else {"num_samples": n})),
        "tad": lambda: M.tad(rep, ds, seed=seed, **({} if n is None else {"num_samples": n})),
        "anchor_purity": lambda: M.anchor_purity(model, ds, seed=seed, progress=progress,
                                                 **({} if n is None else {"n_base": max(2, min(16, n // 10))})),
        "fid": lambda: M.fid(model, ds, seed=seed, weights=fid_weights, progress=progress,
                             **({} if n is None else {"n": n})),
        "factor_fidelity": lambda: M.factor_fidelity(model_reconstruction(model, seed=seed), ds, seed=seed,
                                                     **({} if n is None else {"n": n})),
    }


def _refuse_diverged(run_dir: Path, force: bool) -> None:
    from .divergence import diverged_in_log
    from .log_plot import read_records
    log = run_dir / "log.jsonl"
    if not log.is_file():
        return
    event = diverged_in_log(read_records(log))
    if event is not None and not force:
        raise ValueError(f"{run_dir}: the training diverged (log.jsonl: loss mean {event['loss_mean']} back near its "
                         f"first steps' {event['start']} since step {event['high_since']}, best {event['best']}); its "
                         f"scores would describe a broken model. Retrain (e.g. --on-diverge rollback or a lower "
                         f"--lr), or pass --force to score it anyway")


def evaluate_run(run_dir, metrics=DEFAULT_METRICS, samples: int | None = None, seed: int = 0, dataset=None,
                 progress: bool = True, fid_weights=None, projections=(), force: bool = False) -> dict:
    """Compute ``metrics`` for the latest checkpoint of ``run_dir`` on its dataset (or ``dataset``) and
    write ``metrics.json`` and the plots into ``run_dir``. A run whose log says its training diverged (a
    ``diverged`` line no ``recovered`` or ``rollback`` line follows, ``dga_fast.divergence``) is refused unless
    ``force``: its scores would describe a model that predicts (nearly) nothing. ``samples`` scales every sample
    count down (the train count of each metric; test/eval counts are half of it); None keeps DESIGN §7's
    defaults.
    ``projections``: any of ``projection_plot.PROJECTIONS`` (``pacmap``, ``umap``): a plot of every unit's tokens in
    that 2-D embedding, coloured by the factor the unit best explains (``OUT/<name>_units.png``)."""
    from .projection_plot import PROJECTIONS, plot_unit_projections
    from .runs import load_run
    from .viz import plot_anchors

    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(METRICS)}")
    bad = [p for p in projections if p not in PROJECTIONS]
    if bad:
        raise ValueError(f"unknown plot(s) {bad}; choose from {list(PROJECTIONS)}")
    if samples is not None and samples < 20:
        raise ValueError(f"samples must be >= 20, got {samples}")
    run_dir = Path(run_dir)
    _refuse_diverged(run_dir, force)
    model, ds = load_run(run_dir)
    ds = dataset if dataset is not None else ds
    if not hasattr(ds, "images_from_factors"):
        raise ValueError(f"the run's dataset {type(ds).__name__} has no ground-truth factors to evaluate against")
    model.eval()

    def rep(images):
        return model.representation(images.to(model.device))

    n = samples
    calls = metric_calls(rep, ds, n, seed, model=model, progress=progress, fid_weights=fid_weights)
    results, seconds = {}, {}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(metrics), desc="evaluate")
    for name in metrics:
        if bar is not None:
            bar.set_postfix_str(name)
        t = time.perf_counter()
        results[name] = calls[name]()
        seconds[name] = round(time.perf_counter() - t, 2)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    U = model.config["num_units"]
    factor_names = list(getattr(ds, "factor_names", [f"factor {i}" for i in range(len(ds.factor_sizes))]))
    units = [f"unit {u}" for u in range(U)]
    plots = []
    if "dci" in results:
        plots.append(_heatmap(results["dci"]["importance_matrix"], factor_names, units,
                              "DCI importance (unit x factor)", run_dir / "dci_importance.png").name)
    if "mig" in results:
        plots.append(_heatmap(results["mig"]["mutual_information"], factor_names, units,
                              "mutual information (nats)", run_dir / "mutual_information.png").name)
    if (run_dir / "log.jsonl").is_file():
        from .log_plot import plot_training_log
        plots.append(plot_training_log(run_dir).name)
    anchored = model.anchoring is not None and model.anchoring.fitted
    projected = {}
    if anchored or projections:
        f = ds.sample_factors(min(1024, n or 1024), np.random.default_rng(seed))
        tokens = model.collect_tokens(ds.images_from_factors(f))
        assign = model.anchoring.assign(tokens) if anchored else None          # [N, U], shared by the plots
        if anchored:
            plot_anchors(model.anchoring, tokens, range(min(4, U)), run_dir / "anchors_eval.png", assign=assign)
            plots.append("anchors_eval.png")
        for method in projections:
            projected[method] = plot_unit_projections(tokens, f, factor_names, run_dir / f"{method}_units.png",
                                                      method=method, dyga=model.anchoring, seed=seed,
                                                      assign=assign)["units"]
            plots.append(f"{method}_units.png")
    headline = {
        "mig": results.get("mig", {}).get("mig"),
        "dci_disentanglement": results.get("dci", {}).get("disentanglement"),
        "dci_completeness": results.get("dci", {}).get("completeness"),
        "dci_informativeness": results.get("dci", {}).get("informativeness_test"),
        "sap": results.get("sap", {}).get("sap"),
        "modularity": results.get("modularity", {}).get("modularity"),
        "explicitness": results.get("modularity", {}).get("explicitness"),
        "factor_vae": results.get("factor_vae", {}).get("factor_vae"),
        "beta_vae": results.get("beta_vae", {}).get("beta_vae"),
        "infom": results.get("infomec", {}).get("infom"),
        "infoe": results.get("infomec", {}).get("infoe"),
        "infoc": results.get("infomec", {}).get("infoc"),
        "tad": results.get("tad", {}).get("tad"),
        "fid": results.get("fid", {}).get("fid"),
    }
    per_factor = {}
    if "dci" in results:
        per_factor["informativeness"] = dict(zip(factor_names, results["dci"]["informativeness_per_factor"]))
    if "factor_fidelity" in results:
        per_factor["factor_fidelity"] = results["factor_fidelity"]["fidelity"]
    out = {"scores": {k: v for k, v in headline.items() if v is not None}, "per_factor": per_factor,
           "seconds": seconds,
           "samples": samples, "seed": seed, "details": results, "plots": plots,
           **({"projections": projected} if projected else {})}
    (run_dir / "metrics.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _mse(a, b):  # [B, ...] x2 -> [B]
    return (a - b).pow(2).flatten(1).mean(1)


def _seeded_noise(model, n: int, seed: int):
    """Starting noise ``[n, *diffusion_shape]``, one independent draw per image, from a generator seeded by
    ``seed``."""
    import torch
    return torch.randn((n,) + tuple(model.diffusion_shape), generator=torch.Generator().manual_seed(seed)) \
        .to(model.device)


def self_reconstruction(model, x, steps: int = 50, seed: int = 0, eta: float = 0.0,
                        guidance: float | None = None) -> dict:
    """How much a model's samples depend on the image they were encoded from: images ``x [N, C, H, W]`` are
    encoded and sampled (DDIM from seeded noise, one draw per image; ``eta > 0`` adds seeded noise at each
    step; ``guidance``: see ``AnchoredDiffusion.sample``); ``ratio`` = MSE(sample_i, x_i) / MSE(sample_i, x_{i+1}) (means over i, the other image taken
    cyclically, compared with the same sample). 1 means the sample is as close to another image as to its
    source (the units carry nothing); 0 is a perfect reconstruction. ``closer_to_other``: the fraction of
    samples nearer the other image than their source. One noise draw per image (not one for all) averages the
    ratio over N draws: with a single shared draw it moved by about 0.1 between seeds."""
    if len(x) < 2:
        raise ValueError("self_reconstruction needs at least 2 images")
    import torch
    s = model.sample(model.encode(x), steps=steps, eta=eta, noise=_seeded_noise(model, len(x), seed),
                     generator=torch.Generator().manual_seed(seed + 1), guidance=guidance)
    own, other = _mse(s, x), _mse(s, x.roll(1, 0))
    return {"ratio": round(float(own.mean()) / max(float(other.mean()), 1e-12), 4),
            "mse_to_source": round(float(own.mean()), 5), "mse_to_other": round(float(other.mean()), 5),
            "closer_to_other": round(float((own >= other).float().mean()), 4), "images": len(x)}


def interchange_effect(model, src, tgt, steps: int = 50, seed: int = 0) -> list[float]:
    """Per unit u: the mean pixel MSE between the sample of ``src`` and the sample of ``src`` with unit u's
    token taken from ``tgt`` (the same seeded noise for both samples of an image): how much each unit changes
    the image."""
    noise = _seeded_noise(model, len(src), seed)
    ts, tt = model.encode(src), model.encode(tgt)
    base = model.sample(ts, steps=steps, noise=noise)
    out = []
    for u in range(ts.shape[1]):
        mixed = ts.clone()
        mixed[:, u] = tt[:, u]
        out.append(round(float(_mse(model.sample(mixed, steps=steps, noise=noise), base).mean()), 5))
    return out
