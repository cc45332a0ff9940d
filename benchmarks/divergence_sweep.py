#!/usr/bin/env python
"""How often the study's recipe diverges: seeds x learning rates of one variant (default: the EncDiff baseline) on
the ``cpu`` budget of ``study_job`` (the ``tiny-latent`` preset on a trained first stage, 4,000 steps, its cosine
schedule), trained resumably, not scored. Every run's loss log is replayed through the divergence guard
(``dga_fast.divergence``, default settings) and summarised: diverged or not, the first high step, the step the
guard fires, the largest jump of the 20-step running mean after step 200, and the final loss.

    python benchmarks/divergence_sweep.py --dataset synthetic-sprites --first-stage RUN/first_stage \\
        --lrs 2e-3 --seeds 0-7 --runs-dir /tmp/div --out benchmarks/results/divergence/sprites-baseline

The table (``OUT.json``) is rewritten after every run, so an interrupted sweep keeps what it finished; the same
command continues it (finished runs are read from their logs, interrupted ones resume from their checkpoints).
``--train k=v`` and ``--model k=v`` override the training and model config of every run (e.g. ``--train
grad_clip=0.5``, ``--model qk_norm=true``); give such a sweep its own ``--runs-dir``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def _override(text: str):
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def summarise(run_dir: Path, steps: int) -> dict:
    """A run's row: every step's loss (from its last checkpoint) replayed through the divergence guard, the
    guard's events in its log, and the 20-step running mean of the loss."""
    from dga_fast.checkpoint import latest_checkpoint, read_json
    from dga_fast.divergence import DivergenceGuard, replay
    from dga_fast.log_plot import read_records
    ck = latest_checkpoint(run_dir)
    losses = read_json(ck / "train_state.json")["losses"] if ck else []
    logged = [r for r in read_records(run_dir / "log.jsonl") if r.get("event") in ("diverged", "recovered", "rollback")]
    found = replay(losses)
    w = DivergenceGuard().window
    means = [(losses[i][0], sum(v for _, v in losses[i - w + 1:i + 1]) / w) for i in range(w - 1, len(losses))]
    late = [(s, m) for s, m in means if s > 200]
    rise = max(((b[1] - a[1], b[0]) for a, b in zip(late, late[1:])), default=(0.0, None))
    div = next((e for e in found if e["event"] == "diverged"), None)
    return {"finished": bool(losses) and losses[-1][0] >= steps, "diverged": div is not None,
            "high_since": div["high_since"] if div else None, "fired_at": div["step"] if div else None,
            "guard_events_replayed": found, "guard_events_logged": logged,
            "largest_step_rise_of_running_mean": round(rise[0], 4), "at_step": rise[1],
            "max_running_mean_after_200": round(max((m for _, m in late), default=float("nan")), 4),
            "best_running_mean": round(min((m for _, m in late), default=float("nan")), 4),
            "final_running_mean": round(means[-1][1], 4) if means else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic-sprites")
    p.add_argument("--first-stage", type=Path, required=True)
    p.add_argument("--variant", default="baseline")
    p.add_argument("--lrs", default="2e-3,1e-3,5e-4")
    p.add_argument("--seeds", default="0-7")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--budget", default="cpu", help="the study_job budget (model, data, schedule; default cpu)")
    p.add_argument("--train", action="append", default=[], type=_override, metavar="K=V")
    p.add_argument("--model", action="append", default=[], type=_override, metavar="K=V",
                   help="model config overrides of every run, e.g. --model qk_norm=true")
    p.add_argument("--runs-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True, help="table path without .json")
    args = p.parse_args(argv)
    if not args.first_stage.exists():
        raise FileNotFoundError(f"--first-stage {args.first_stage} does not exist")
    import study_job
    lrs = [float(v) for v in args.lrs.split(",")]
    rows, out = [], args.out.with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    for lr in lrs:
        for seed in _seeds(args.seeds):
            train = {"lr": lr, "steps": args.steps, **dict(args.train)}
            job = dict(dataset=args.dataset, variant=args.variant, seed=seed, budget=args.budget,
                       device=args.device, runs_dir=str(args.runs_dir / f"lr{lr:g}"), first_stage=str(args.first_stage),
                       threads=args.threads, train=train, model=dict(args.model))
            t0 = time.perf_counter()
            print(f"== {args.variant} lr {lr:g} seed {seed}", flush=True)
            study_job.train(job)
            row = {"lr": lr, "seed": seed, "train": train, "model": dict(args.model),
                   "seconds_this_call": round(time.perf_counter() - t0, 1),
                   **summarise(study_job.job_dir(job), args.steps)}
            rows.append(row)
            print(f"   diverged {row['diverged']} (high since {row['high_since']}, fired at {row['fired_at']}), "
                  f"best {row['best_running_mean']}, final {row['final_running_mean']}", flush=True)
            table = {"command": "python benchmarks/divergence_sweep.py " + " ".join(argv or sys.argv[1:]),
                     "dataset": args.dataset, "variant": args.variant, "budget": args.budget, "steps": args.steps,
                     "machine": platform.processor() or platform.machine(), "rows": rows}
            out.write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
