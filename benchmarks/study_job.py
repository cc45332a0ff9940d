"""One run of the study (``benchmarks/ablation.py``): a variant of the demo's latent recipe (the ``tiny-latent``
preset on a trained first stage) trained on a dataset's training split, resumably, then scored.

A run lives in ``RUNS/<dataset>/<variant>-seed<S>/`` (a normal training run: ``config.json``, ``log.jsonl``,
``checkpoints/``). An interrupted run continues from its last checkpoint when the same job is started again;
``scores/step_XXXXXXX.json`` holds the scores of a checkpoint, so a finished job costs nothing the second time.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

VARIANTS = {
    "baseline": dict(anchoring=False, skip_dropout=0.0),             # EncDiff
    "dyga": dict(anchoring=True, skip_dropout=0.0),
    "skip_dropout": dict(anchoring=False, skip_dropout=0.2),
    "dyga+skip_dropout": dict(anchoring=True, skip_dropout=0.2),     # the method, our DyGA
    "published": dict(anchoring=True, skip_dropout=0.2, published=True),   # the method, DyGA as published
    # the method with a 5x stronger pull toward the anchors: at the default align_max 0.1 the adaptive shift
    # moves a token by about 2% of its norm (shift_rel in the refit log), which the U-Net can all but ignore
    "dyga+skip_dropout@align0.5": dict(anchoring=True, skip_dropout=0.2, anchoring_opts=dict(align_max=0.5)),
    # the method with one fixed lambda 0.3 for every token: the adaptive rule's exp(-|c - mu|_1 / |c|_1) leaves
    # the tokens far from their anchor almost unmoved; here every token goes 30% of the way to its anchor
    "dyga+skip_dropout@fixed0.3": dict(anchoring=True, skip_dropout=0.2, anchoring_opts=dict(align=0.3)),
}

# model: overrides of the tiny-latent preset's model; train: of its training config; eval: metric samples
# (FactorVAE votes samples/10 and samples/20, as `evaluate --samples`), anchor purity's base images and steps
BUDGETS = {
    "smoke": dict(train_images=48, held_out=8,
                  model=dict(num_units=3, unit_dim=8, base_channels=16, channel_mult=(1, 2), encoder_channels=8,
                             attention_resolutions=(2,), num_heads=2,
                             anchoring=dict(init_components=2, max_components=4, em_iters=3, min_cluster_size=2)),
                  train=dict(steps=4, batch_size=4, refit_warmup=2, refit_every=2, refit_samples=32, ckpt_every=2),
                  eval=dict(samples=40, purity_base=2, purity_steps=2, probe_steps=2)),
    # the learning curves (--curve): the cpu budget trained twice as long, a checkpoint every 1000 steps; the
    # disentanglement scores only (anchor purity, the costliest, is scored by the study itself)
    "curve": dict(train_images=16384, held_out=256, model={},
                  train=dict(steps=6000, refit_warmup=300, refit_every=300, ckpt_every=1000),
                  eval=dict(samples=1000, purity_base=0, purity_steps=0, probe_steps=0)),
    # where the baseline's curves plateau (benchmarks/results/curves-{shapes,sprites}.json, seed 0: DCI D within
    # 0.01 of its best from step 4000 on both datasets; FactorVAE too noisy at 50 votes to say)
    "cpu": dict(train_images=16384, held_out=256, model={},
                train=dict(steps=4000, refit_warmup=400, refit_every=400, ckpt_every=1000),
                # anchor purity: 8 images per Gaussian, 10 DDIM steps (about 6x cheaper than the curve budget's)
                eval=dict(samples=1000, purity_base=8, purity_steps=10, probe_steps=400)),
    "gpu": dict(train_images=65536, held_out=256, model={},
                train=dict(steps=20000, batch_size=64, lr=1e-3, refit_warmup=1000, refit_every=1000,
                           refit_samples=4096, ckpt_every=2000),
                eval=dict(samples=5000, purity_base=32, purity_steps=50, probe_steps=1000)),
}

_PROBES: dict = {}


def job_dir(job: dict) -> Path:
    return Path(job["runs_dir"]) / job["dataset"] / f"{job['variant']}-seed{job['seed']}"


def _configs(job: dict, fs):
    """(model config, train config) of a job: the tiny-latent preset, the budget's and the variant's changes, then
    the job's own ``model`` and ``train`` overrides (``divergence_sweep.py --model/--train K=V``)."""
    from dga_fast.presets import PRESETS, use_published_dyga
    budget, variant = BUDGETS[job["budget"]], VARIANTS[job["variant"]]
    preset = PRESETS["tiny-latent"]
    model = {k: v for k, v in preset["model"].items() if k != "first_stage"}
    model.update(budget["model"], **job.get("model", {}), image_size=fs.config["image_size"],
                 skip_dropout=variant["skip_dropout"])
    train = {**preset["train"], **budget["train"], **job.get("train", {}), "seed": job["seed"], "progress": False}
    if not variant["anchoring"]:
        model["anchoring"] = None
    elif variant.get("published"):
        use_published_dyga(model, train)
    if variant.get("anchoring_opts"):
        model["anchoring"] = {**model["anchoring"], **variant["anchoring_opts"]}
    return model, train


def _data(job: dict, fs, fs_dir: Path):
    """(full dataset, training split with cached latents, held-out indices): the demo's split rule."""
    from dga_fast.data import IndexSubset
    from dga_fast.latent_cache import LatentCache, LatentDataset, default_cache_dir, weights_fingerprint
    from dga_fast.runs import make_dataset
    from dga_fast.train_autoencoder import split_indices
    budget = BUDGETS[job["budget"]]
    size = fs.config["image_size"]
    ds = make_dataset(job["dataset"], size)
    train_idx, held = split_indices(len(ds), budget["held_out"], 0)
    n = budget["train_images"]
    train_ds = IndexSubset(ds, train_idx[:n])
    key = {"name": job["dataset"], "image_size": size,
           "split": f"{n} training images, {budget['held_out']} held out (seed 0)"}
    cache = LatentCache(fs, train_ds, default_cache_dir(fs_dir, key, weights_fingerprint(fs)), key, progress=False)
    return ds, LatentDataset(train_ds, cache), held


def train(job: dict):
    """Train (or continue) the job's run; returns ``(model, dataset)``."""
    import torch

    from dga_fast import AnchoredDiffusion
    from dga_fast.nn import FirstStage
    from dga_fast.train import TrainConfig, fit
    torch.set_num_threads(job["threads"])
    fs_dir = Path(job["first_stage"])
    fs = FirstStage.load(fs_dir)
    ds, train_ds, _ = _data(job, fs, fs_dir)
    model_cfg, train_cfg = _configs(job, fs)
    torch.manual_seed(job["seed"])
    model = AnchoredDiffusion(**model_cfg, first_stage=fs).to(job["device"])
    out = job_dir(job)
    resume = any((out / "checkpoints").glob("step_*"))
    if resume:   # a run directory of another budget (or of older code) is never continued as this job
        stored = json.loads((out / "config.json").read_text()).get("study", {})
        want = {k: job[k] for k in ("budget", "variant", "seed")}
        if stored != want:
            raise ValueError(f"{out} holds a run of {stored or 'no study job'}, not {want}: use another --runs-dir")
    fit(model, train_ds, out, TrainConfig(**train_cfg), resume=resume,
        run_info={"dataset": {"name": job["dataset"], "data_dir": None, "image_size": fs.config["image_size"],
                              "first_stage": str(fs_dir.resolve())},
                  "study": {k: job[k] for k in ("budget", "variant", "seed")}})
    return model, ds


def _probe(ds, job: dict):
    from dga_fast.metrics.image_probe import ImageFactorProbe
    key = (job["dataset"], ds.size, job["budget"])
    if key not in _PROBES:
        _PROBES[key] = ImageFactorProbe.fit(ds, steps=BUDGETS[job["budget"]]["eval"]["probe_steps"], seed=0)
    return _PROBES[key]


def score(model, ds, job: dict) -> dict:
    """FactorVAE, DCI (D/C/I, and each factor's informativeness), MIG of the model's representation, anchor
    purity, and each factor's fidelity through ``sample(encode(x))`` (``metrics.factor_fidelity``). The principal directions
    (and DyGA's mixtures) are refitted on 1024 seeded images first, the same for every variant; a variant
    without DyGA is scored for purity on a mixture fitted to its tokens afterwards (its sampling unchanged)."""
    import torch

    from dga_fast import DynamicGaussianAnchoring
    from dga_fast import metrics as M
    from dga_fast.evaluate import metric_calls
    from dga_fast.train import get_batch
    ev, seed = BUDGETS[job["budget"]]["eval"], job["seed"]
    samples = job.get("eval_samples") or ev["samples"]     # --eval-samples: more precise metrics
    model.eval()
    device = model.device
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed + 12345))[:1024]
    x = get_batch(ds, idx).to(device)
    model.refit_anchors(x)
    regions = model.anchoring
    if regions is None:
        from dga_fast.presets import PRESETS
        opts = {**PRESETS["tiny-latent"]["model"]["anchoring"], **BUDGETS[job["budget"]]["model"].get("anchoring", {})}
        regions = DynamicGaussianAnchoring(model.config["num_units"], model.config["unit_dim"], **opts)
        regions.refit(model.collect_tokens(x))

    def rep(images):
        return model.representation(images.to(device))

    t = time.perf_counter()
    calls = metric_calls(rep, ds, samples, seed, n_jobs=1)     # evaluate --samples N's sample counts
    fv, dc, mg = calls["factor_vae"](), calls["dci"](), calls["mig"]()
    pur = {"purity": None, "purity_above_chance": None, "units": [], "probe_accuracy": None}
    if ev["purity_base"] and job.get("purity", True):   # 0: not scored (the curve budget)
        pur = M.anchor_purity(model, ds, probe=_probe(ds, job), anchoring=regions, n_base=ev["purity_base"],
                              steps=ev["purity_steps"], seed=seed)
    names = list(ds.factor_names)
    fidelity = None
    if ev["probe_steps"] and job.get("purity", True):   # the real-image probe reads the factors off sample(encode(x))
        from dga_fast.metrics import factor_fidelity
        from dga_fast.metrics.factor_fidelity import model_reconstruction
        fidelity = factor_fidelity(model_reconstruction(model, ev["purity_steps"] or 10, seed), ds,
                                   _probe(ds, job), n=min(256, samples), seed=seed)["fidelity"]
    return {"factor_vae": fv["factor_vae"], "dci_disentanglement": dc["disentanglement"],
            "informativeness_per_factor": dict(zip(names, dc["informativeness_per_factor"])),
            "factor_fidelity": fidelity,
            "dci_completeness": dc["completeness"], "dci_informativeness": dc["informativeness_test"],
            "mig": mg["mig"], "anchor_purity": pur["purity"], "anchor_purity_above_chance": pur["purity_above_chance"],
            "purity_factors": [u["factor"] for u in pur["units"]], "probe_accuracy": pur["probe_accuracy"],
            "n_components": regions.n_components.tolist(), "eval_seconds": round(time.perf_counter() - t, 1)}


def _scored(job: dict, model, ds, ck: Path) -> dict:
    n = job.get("eval_samples")      # scores of another sample count are stored beside the budget's
    path = job_dir(job) / "scores" / (f"{ck.name}.json" if not n else f"{ck.name}-samples{n}.json")
    if path.is_file():
        return json.loads(path.read_text())
    step = int(ck.name.split("_")[1])
    run_cfg = json.loads((job_dir(job) / "config.json").read_text())
    row = {**{k: job[k] for k in ("dataset", "variant", "seed", "budget")}, "step": step,
           "images": step * int(run_cfg.get("global_batch_size", run_cfg["train"]["batch_size"])),
           "eval_samples": n or BUDGETS[job["budget"]]["eval"]["samples"], **score(model, ds, job)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=1) + "\n")
    return row


def refit_summary(job: dict) -> dict:
    """What DyGA did to the run's tokens, from its log: the number of refits, and at the last refit the mean over
    units of ``shift_rel`` (‖c' − c‖ / ‖c‖), of the Gaussians per unit and of ``anchor_changed``; None without
    anchoring."""
    from dga_fast.log_plot import read_log
    _, refits = read_log(job_dir(job) / "log.jsonl")
    refits = [r for r in refits if "shift_rel" in r]
    if not refits:
        return {"refits": 0, "shift_rel": None, "components_mean": None, "anchor_changed": None}
    last = refits[-1]
    mean = lambda v: round(sum(v) / len(v), 6)   # noqa: E731
    return {"refits": len(refits), "shift_rel": mean(last["shift_rel"]), "components_mean": mean(last["components"]),
            "anchor_changed": mean(last["anchor_changed"])}


def run_job(job: dict) -> list[dict]:
    """Train the job's run (resuming it), score its last checkpoint (or, with ``job["curve"]``, every one);
    returns the score rows. Runs in a worker process."""
    import torch

    from dga_fast import AnchoredDiffusion
    t0 = time.perf_counter()
    model, ds = train(job)
    train_s = round(time.perf_counter() - t0, 1)
    cks = sorted((job_dir(job) / "checkpoints").glob("step_*"))
    rows = []
    for ck in (cks if job.get("curve") else cks[-1:]):
        m = model if ck == cks[-1] else AnchoredDiffusion.load(ck).to(job["device"])
        torch.manual_seed(0)
        rows.append({**_scored(job, m, ds, ck), "train_seconds_this_call": train_s, **refit_summary(job)})
    return rows
