#!/usr/bin/env python
"""The ablation the method exists for: the EncDiff baseline against Dynamic Gaussian Anchoring, Skip Dropout,
and both, trained on SyntheticShapes with the same budget and several seeds, each scored with the FactorVAE
score and DCI (plus MIG). Writes a markdown table (mean ± std over seeds) and JSON.

    python benchmarks/ablation.py --budget small            # this 2-core CPU (about 45 minutes)
    python benchmarks/ablation.py --budget gpu --jobs 12    # one GPU, twelve trainings at a time
    python benchmarks/ablation.py --budget smoke            # seconds: checks the pipeline end to end

Variants (everything else equal, model and schedule from the budget):
  baseline          anchoring=None, skip_dropout=0     (EncDiff)
  dyga              anchoring on,   skip_dropout=0
  skip_dropout      anchoring=None, skip_dropout=0.2
  dyga+skip_dropout anchoring on,   skip_dropout=0.2   (the method)

Every variant is trained from the same seed (same initial encoder weights where shapes agree, same batches).
The representation scored is the model's (the projection of each unit's token on its first principal
direction); the principal directions of every variant are refitted on the final weights before scoring, so
the baseline is scored the same way as the anchored variants.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

VARIANTS = {
    "baseline": dict(anchoring=None, skip_dropout=0.0),
    "dyga": dict(anchoring=True, skip_dropout=0.0),
    "skip_dropout": dict(anchoring=None, skip_dropout=0.2),
    "dyga+skip_dropout": dict(anchoring=True, skip_dropout=0.2),
}

# model: overrides of the tiny preset's model; train: TrainConfig; eval: samples per metric (FactorVAE
# votes are samples/10 and samples/20, as `evaluate --samples`)
BUDGETS = {
    "smoke": dict(seeds=1, image_size=16, model=dict(num_units=4, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                                                    attention_resolutions=(2,), num_heads=2),
                  train=dict(steps=3, batch_size=4, refit_warmup=2, refit_every=2, refit_samples=64),
                  eval=40),
    "small": dict(seeds=2, image_size=32, model={},
                  train=dict(steps=300, batch_size=16, lr=2e-3, refit_warmup=100, refit_every=100,
                             refit_samples=1024),
                  eval=1000),
    "gpu": dict(seeds=3, image_size=32, model={},
                train=dict(steps=2500, batch_size=64, lr=1e-3, refit_warmup=500, refit_every=500,
                           refit_samples=4096),
                eval=5000),
}


def _model_config(budget: dict, variant: str) -> dict:
    from dga_fast.presets import PRESETS
    cfg = {**PRESETS["tiny"]["model"], **budget["model"], "image_size": budget["image_size"]}
    v = VARIANTS[variant]
    cfg["skip_dropout"] = v["skip_dropout"]
    if v["anchoring"] is None:
        cfg["anchoring"] = None
    return cfg


def run_one(job: dict) -> dict:
    """Train one (variant, seed) and score it. Runs in a worker process."""
    import numpy as np
    import torch

    from dga_fast import AnchoredDiffusion
    from dga_fast import metrics as M
    from dga_fast.data import SyntheticShapes
    from dga_fast.train import TrainConfig, fit, get_batch

    torch.set_num_threads(job["threads"])
    budget, variant, seed = BUDGETS[job["budget"]], job["variant"], job["seed"]
    device = torch.device(job["device"])
    ds = SyntheticShapes(budget["image_size"], seed=0)          # one dataset for every run
    torch.manual_seed(seed)
    model = AnchoredDiffusion(**_model_config(budget, variant)).to(device)
    run_dir = Path(job["runs_dir"]) / f"{variant}-seed{seed}"
    t0 = time.perf_counter()
    hist = fit(model, ds, run_dir, TrainConfig(**{**budget["train"], "seed": seed, "progress": False,
                                                "ckpt_every": budget["train"]["steps"]}),
               run_info={"dataset": {"name": "synthetic-shapes", "data_dir": None,
                                     "image_size": budget["image_size"]}})
    train_s = time.perf_counter() - t0
    model.eval()
    g = torch.Generator().manual_seed(seed + 12345)
    idx = torch.randperm(len(ds), generator=g)[:budget["train"]["refit_samples"]]
    model.refit_anchors(get_batch(ds, idx).to(device))      # fresh principal directions for every variant

    def rep(images):
        return model.representation(images.to(device))

    n = budget["eval"]
    t1 = time.perf_counter()
    fv = M.factor_vae_score(rep, ds, num_variance_estimate=n, num_train=max(n // 10, 5),
                            num_eval=max(n // 20, 5), seed=seed)
    dc = M.dci(rep, ds, num_train=n, num_test=max(n // 2, 10), seed=seed, n_jobs=1)
    mg = M.mig(rep, ds, num_train=n, seed=seed)
    losses = [v for _, v in hist["losses"]]
    k = max(1, min(20, len(losses) // 5))
    return {"variant": variant, "seed": seed, "factor_vae": fv["factor_vae"],
            "dci_disentanglement": dc["disentanglement"], "dci_completeness": dc["completeness"],
            "dci_informativeness": dc["informativeness_test"], "mig": mg["mig"],
            "final_loss": float(np.mean(losses[-k:])) if losses else None,
            "n_components": model.anchoring.n_components.tolist() if model.anchoring is not None else None,
            "train_seconds": round(train_s, 1), "eval_seconds": round(time.perf_counter() - t1, 1)}


SCORES = ("factor_vae", "dci_disentanglement", "dci_completeness", "mig")


def summarise(results: list[dict]) -> dict:
    out = {}
    for v in VARIANTS:
        rows = [r for r in results if r["variant"] == v]
        if not rows:
            continue
        out[v] = {}
        for s in SCORES:
            vals = [r[s] for r in rows]
            out[v][s] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    return out


def markdown(summary: dict, meta: dict) -> str:
    head = ("| variant | FactorVAE | DCI disentanglement | DCI completeness | MIG |\n"
            "|---|---|---|---|---|\n")
    body = "".join(f"| {v} | " + " | ".join(f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" for k in SCORES) + " |\n"
                   for v, s in summary.items())
    b = BUDGETS[meta["budget"]]
    return (f"# Ablation on SyntheticShapes({b['image_size']}), budget `{meta['budget']}`\n\n"
            f"{b['seeds'] if meta['seeds'] is None else meta['seeds']} seed(s) per variant, "
            f"{b['train']['steps']} steps of batch {b['train']['batch_size']}, metrics on {b['eval']} samples; "
            f"mean ± std over seeds. Device: {meta['device']}; {meta['minutes']:.1f} min in all.\n"
            f"Command: `{meta['command']}`\n\n" + head + body)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    p.add_argument("--seeds", type=int, default=None, help="seeds per variant (default: the budget's)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--jobs", type=int, default=1, help="trainings at a time (processes)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--runs-dir", type=Path, default=None, help="where the runs go (default runs/ablation-BUDGET)")
    p.add_argument("--out", type=Path, default=None,
                   help="output stem: writes STEM.md and STEM.json (default benchmarks/results/ablation-BUDGET-DEVICE)")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        p.error(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
    if args.jobs < 1 or (args.seeds is not None and args.seeds < 1):
        p.error("--jobs and --seeds must be >= 1")
    import torch

    from throughput import device_name, git_commit, slug
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seeds = args.seeds or BUDGETS[args.budget]["seeds"]
    runs_dir = args.runs_dir or Path("runs") / f"ablation-{args.budget}"
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = [dict(budget=args.budget, variant=v, seed=s, device=str(device), runs_dir=str(runs_dir), threads=threads)
            for s in range(seeds) for v in variants]
    t0 = time.perf_counter()
    results = []
    if args.jobs == 1:
        for j in jobs:
            results.append(run_one(j))
            print(json.dumps(results[-1]), flush=True)
    else:
        import multiprocessing as mp
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
            for r in ex.map(run_one, jobs):
                results.append(r)
                print(json.dumps(r), flush=True)
    dev = device_name(device)
    meta = {"budget": args.budget, "seeds": seeds, "device": dev, "minutes": (time.perf_counter() - t0) / 60,
            "command": "python benchmarks/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "torch": torch.__version__, "python": platform.python_version(), "commit": git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    summary = summarise(results)
    md = markdown(summary, meta)
    stem = args.out or HERE / "results" / f"ablation-{args.budget}-{slug(dev)}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(str(stem) + ".md").write_text(md)
    Path(str(stem) + ".json").write_text(json.dumps({**meta, "summary": summary, "runs": results}, indent=2) + "\n")
    print(md)
    print(f"wrote {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
