"""How much of a study score's spread is the metric's own sampling: one trained run scored with several seeds.

    python benchmarks/metric_noise.py runs/study/synthetic-shapes/baseline-seed0 [more runs] \
        [--seeds 100,101,102,103,104] [--budget cpu] [--samples N] [--out noise.json]

Each run (its latest checkpoint) is scored as the study scores it (``study_job.score``: principal directions
refitted on 1024 seeded images, then FactorVAE, DCI and MIG on the budget's sample counts), once per seed of
``--seeds``, without anchor purity. The std over these seeds is the metric's noise for a fixed model; the study's
std over training seeds contains it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from study_job import BUDGETS, score  # noqa: E402

SCORES = ("factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness", "mig")


def noise(run: Path, seeds: list[int], budget: str, samples: int | None = None) -> dict:
    from dga_fast.runs import load_run
    model, ds = load_run(run)
    rows = [score(model, ds, {"budget": budget, "seed": s, "eval_samples": samples, "purity": False}) for s in seeds]
    return {"seeds": seeds, "budget": budget, "samples": samples or BUDGETS[budget]["eval"]["samples"],
            **{k: {"mean": statistics.fmean(r[k] for r in rows), "std": statistics.stdev(r[k] for r in rows),
                   "values": [r[k] for r in rows]} for k in SCORES}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="study run directories (or any training run)")
    p.add_argument("--seeds", default="100,101,102,103,104", help="comma-separated metric seeds (at least 2)")
    p.add_argument("--budget", default="cpu", choices=sorted(BUDGETS), help="the study budget whose samples to use")
    p.add_argument("--samples", type=int, default=None,
                   help="metric samples instead of the budget's (FactorVAE votes samples/10 and samples/20)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="JSON file")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if len(seeds) < 2:
        p.error("--seeds needs at least 2 seeds (a std)")
    if args.samples is not None and args.samples < 100:
        p.error("--samples must be >= 100")
    for run in args.runs:
        if not (run / "config.json").is_file():
            raise FileNotFoundError(f"{run}/config.json not found: pass a training run directory")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    out = {}
    for run in args.runs:
        out[str(run)] = r = noise(run, seeds, args.budget, args.samples)
        print(f"{run}: " + ", ".join(f"{k} {r[k]['mean']:.3f} ± {r[k]['std']:.3f}" for k in SCORES), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
