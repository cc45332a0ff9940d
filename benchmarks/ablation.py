#!/usr/bin/env python
"""The study the method exists for: the EncDiff baseline against Dynamic Gaussian Anchoring, Skip Dropout, both,
and both with DyGA as the published code runs it, on the demo's latent recipe (the ``tiny-latent`` preset on a
trained first stage), several seeds, each run scored with FactorVAE, DCI (D/C/I), MIG and anchor purity.

    # pieces (each resumable: the same command continues interrupted runs and skips scored ones)
    python benchmarks/ablation.py --dataset synthetic-shapes --first-stage runs/d/base-s0/first_stage \
        --budget cpu --variants baseline,dyga+skip_dropout --seeds 0,1,2 --out benchmarks/results/study-shapes-a
    # the table of several pieces
    python benchmarks/ablation.py --merge benchmarks/results/study-shapes-*.json --out benchmarks/results/study-shapes
    # learning curves: every checkpoint of the runs scored (the study's budget is where they plateau)
    python benchmarks/ablation.py ... --variants baseline --budget cpu --curve --out benchmarks/results/curves-shapes
    # one GPU, twelve trainings at a time
    python benchmarks/ablation.py ... --budget gpu --device cuda --jobs 12

Variants (everything else equal: model, schedule and data from the budget; see ``study_job.VARIANTS``):
  baseline          anchoring off, skip_dropout 0     (EncDiff)
  dyga              anchoring on,  skip_dropout 0
  skip_dropout      anchoring off, skip_dropout 0.2
  dyga+skip_dropout anchoring on,  skip_dropout 0.2   (the method)
  published         dyga+skip_dropout with ``--published-dyga`` (coin split, min-max shift, refit per epoch)
  dyga+skip_dropout@align0.5   the method with align_max 0.5 instead of 0.1 (a 5x stronger pull to the anchors)
  dyga+skip_dropout@fixed0.3   the method with one fixed lambda 0.3 (align=0.3) instead of the adaptive one

A first stage comes from ``make demo`` (``runs/demo/first_stage``, SyntheticShapes) or from
``python -m dga_fast train-autoencoder --dataset synthetic-sprites --image-size 32 --out RUN``. Every run of a
seed starts from the same seed (same batches, same initial weights where the shapes agree).
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

from study_job import BUDGETS, VARIANTS, run_job  # noqa: E402

SCORES = ("factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness", "mig",
          "anchor_purity_above_chance", "shift_rel", "components_mean")
LABELS = ("FactorVAE", "DCI D", "DCI C", "DCI I", "MIG", "anchor purity (above chance)",
          "DyGA shift ‖c′ − c‖/‖c‖", "Gaussians per unit")
# the last two are not scores but what DyGA did at the run's last refit (study_job.refit_summary; absent in
# pieces run before they were logged); the paired table compares the scores alone
METRICS = SCORES[:6]


def _stat(vals: list) -> dict:
    vals = [v for v in vals if v is not None]   # a score the budget does not compute is None
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def _cell(s: dict) -> str:
    return "—" if s["mean"] is None else f"{s['mean']:.3f} ± {s['std']:.3f}"


def _last(rows: list[dict]) -> dict:
    """``{(dataset, variant, seed): row}`` of the last scored step of each run."""
    last = {}
    for r in rows:
        key = (r["dataset"], r["variant"], r["seed"])
        if key not in last or r["step"] > last[key]["step"]:
            last[key] = r
    return last


def summarise(rows: list[dict]) -> dict:
    """``{dataset: {variant: {score: {mean, std, n}}}}`` over the seeds of the last scored step of each run."""
    out: dict = {}
    for (d, v, _), r in sorted(_last(rows).items()):
        out.setdefault(d, {}).setdefault(v, {s: [] for s in SCORES})
        for s in SCORES:
            out[d][v][s].append(r.get(s))
    return {d: {v: {s: _stat(x) for s, x in vs.items()} for v, vs in _in_variant_order(dv)} for d, dv in out.items()}


def _in_variant_order(per_variant: dict) -> list:
    """The ``(variant, value)`` items in the order of ``VARIANTS``."""
    return sorted(per_variant.items(), key=lambda kv: list(VARIANTS).index(kv[0]))


def paired(rows: list[dict]) -> dict:
    """``{dataset: {variant: {score: {mean, std, n, wins}}}}``: per seed, the variant's score minus the baseline's
    of the same seed (same batches and initial weights), over the seeds both have; ``wins`` counts the seeds where
    the variant scored higher. Pairing removes the seed's share of the spread that both runs have in common."""
    last = _last(rows)
    out: dict = {}
    for (d, v, seed), r in sorted(last.items()):
        base = last.get((d, "baseline", seed))
        if v == "baseline" or base is None:
            continue
        diffs = out.setdefault(d, {}).setdefault(v, {s: [] for s in METRICS})
        for s in METRICS:
            if r.get(s) is not None and base.get(s) is not None:
                diffs[s].append(r[s] - base[s])
    return {d: {v: {s: {**_stat(x), "wins": sum(e > 0 for e in x)} for s, x in vs.items()}
                for v, vs in _in_variant_order(dv)}
            for d, dv in out.items()}


def verdict(summary: dict) -> list[str]:
    """Per dataset: does the method beat the baseline by more than one standard deviation (the larger of the
    two) on FactorVAE or DCI disentanglement?"""
    lines = []
    for d, vs in summary.items():
        if "baseline" not in vs:
            continue
        methods = [v for v in vs if v.startswith("dyga+skip_dropout")]   # the method and its tuned variants
        for v, s in ((v, s) for v in methods for s in ("factor_vae", "dci_disentanglement")):
            b, m = vs["baseline"][s], vs[v][s]
            diff, sd = m["mean"] - b["mean"], max(b["std"], m["std"])
            word = "beats" if diff > sd else ("is below" if diff < -sd else "is within one std of")
            if min(b["n"], m["n"]) < 2:
                word = "(one seed: no std, no verdict) vs"
            lines.append(f"- {d}, {s}: {v} {word} the baseline "
                         f"({m['mean']:.3f} vs {b['mean']:.3f}, difference {diff:+.3f}, std {sd:.3f})")
    return lines


def _head(labels, first="variant") -> str:
    return f"| {first} | " + " | ".join(labels) + " | seeds |\n|---|" + "---|" * (len(labels) + 1) + "\n"


def _paired_cell(s: dict) -> str:
    return "—" if s["mean"] is None else f"{s['mean']:+.3f} ± {s['std']:.3f} ({s['wins']}/{s['n']})"


def markdown(summary: dict, meta: dict, pairs: dict | None = None) -> str:
    head = _head(LABELS)
    parts = [f"# Study: {meta['what']}\n\nmean ± std over seeds. Device: {meta['device']}.\n"
             f"Commands: {'; '.join('`' + c + '`' for c in meta['commands'])}\n"]
    for d, vs in summary.items():
        body = "".join(f"| {v} | " + " | ".join(_cell(s[k]) for k in SCORES)
                       + f" | {s[SCORES[0]]['n']} |\n" for v, s in vs.items())
        parts.append(f"\n## {d}\n\n" + head + body)
        if (pairs or {}).get(d):
            body = "".join(f"| {v} − baseline | " + " | ".join(_paired_cell(s[k]) for k in METRICS)
                           + f" | {s[SCORES[0]]['n']} |\n" for v, s in pairs[d].items())
            parts.append("\nPaired by seed: mean ± std of (variant − baseline of the same seed), and in brackets "
                         "the seeds where the variant is higher.\n\n" + _head(LABELS[:len(METRICS)], "pair")
                         + body)
    lines = verdict(summary)
    if lines:
        parts.append("\n" + "\n".join(lines) + "\n")
    return "".join(parts)


def plot_curves(rows: list[dict], path: Path) -> Path:
    """Every score over the training steps, one line per (dataset, variant, seed): the learning curves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(SCORES), figsize=(3.2 * len(SCORES), 3.2), dpi=100)
    runs = sorted({(r["dataset"], r["variant"], r["seed"]) for r in rows})
    for key in runs:
        pts = sorted((r["step"], r) for r in rows if (r["dataset"], r["variant"], r["seed"]) == key)
        for ax, s, label in zip(axes, SCORES, LABELS):
            ax.plot([p for p, _ in pts], [float("nan") if r.get(s) is None else r[s] for _, r in pts], marker=".",
                    lw=1, label=" ".join(map(str, key)))
            ax.set(title=label, xlabel="step")
    for ax, s in zip(axes, SCORES):
        if all(r.get(s) is None for r in rows):
            ax.text(0.5, 0.5, "not scored at this budget", ha="center", va="center", transform=ax.transAxes)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write(stem: Path, rows: list[dict], meta: dict) -> None:
    summary, pairs = summarise(rows), paired(rows)
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(str(stem) + ".json").write_text(json.dumps({**meta, "summary": summary, "paired": pairs, "runs": rows},
                                                    indent=1) + "\n")
    md = markdown(summary, meta, pairs)
    Path(str(stem) + ".md").write_text(md)
    print(md)
    print(f"wrote {stem}.md and {stem}.json")
    if len({r["step"] for r in rows}) > 1:
        print(f"wrote {plot_curves(rows, Path(str(stem) + '.png'))}")


def merge(paths: list[Path], stem: Path) -> int:
    rows, commands, devices, what = [], [], set(), set()
    seen, first_stages = set(), {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        if d.get("first_stage_fingerprint"):
            first_stages.setdefault(d["first_stage_fingerprint"], []).append(str(p))
        commands += d.get("commands", [])
        devices.add(d.get("device", "?"))
        what.add(d.get("what", "?"))
        for r in d["runs"]:
            key = (r["dataset"], r["variant"], r["seed"], r["step"], r["budget"], r.get("eval_samples"))
            if key not in seen:
                seen.add(key)
                rows.append(r)
    budgets = {(r["budget"], r.get("eval_samples", BUDGETS[r["budget"]]["eval"]["samples"])) for r in rows}
    if len(budgets) > 1:
        raise SystemExit(f"the pieces use different budgets or metric samples {sorted(budgets)}: merge one at a "
                         "time")
    if len(first_stages) > 1:
        raise SystemExit(f"the pieces ran on different first stages (weights fingerprints: {first_stages}): "
                         "merge the pieces of one first stage")
    write(stem, rows, {"what": "; ".join(sorted(what)), "device": ", ".join(sorted(devices)), "commands": commands,
                       "first_stage_fingerprint": next(iter(first_stages), None),
                       "merged_from": [str(p) for p in paths], "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return 0


def _fingerprint(first_stage: Path) -> str:
    """SHA-256 of the first stage's weights (the latent cache's key): pieces of one study share it."""
    from dga_fast.latent_cache import weights_fingerprint
    from dga_fast.nn import FirstStage
    return weights_fingerprint(FirstStage.load(first_stage))


def _parse_list(text: str, what: str, allowed=None) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise SystemExit(f"--{what} is empty")
    if allowed is not None:
        bad = [t for t in items if t not in allowed]
        if bad:
            raise SystemExit(f"unknown {what} {bad}; choose from {list(allowed)}")
    return items


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--merge", nargs="+", type=Path, default=None, help="JSON files of pieces to merge into --out")
    p.add_argument("--dataset", default="synthetic-shapes", choices=("synthetic-shapes", "synthetic-sprites"))
    p.add_argument("--first-stage", type=Path, help="a trained first stage (required unless --merge)")
    p.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--curve", action="store_true", help="score every checkpoint, not only the last")
    p.add_argument("--eval-samples", type=int, default=None,
                   help="metric samples instead of the budget's (scores stored beside the budget's; the trainings "
                        "are the budget's)")
    p.add_argument("--jobs", type=int, default=1, help="trainings at a time (processes)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per training (default: cores / jobs)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--runs-dir", type=Path, default=None, help="default runs/study-BUDGET")
    p.add_argument("--out", type=Path, required=True, help="output stem: writes STEM.md and STEM.json")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    if args.first_stage is None:
        p.error("--first-stage is required (a first stage trained on --dataset)")
    if not args.first_stage.exists():
        raise FileNotFoundError(f"--first-stage {args.first_stage} does not exist")
    variants = _parse_list(args.variants, "variants", VARIANTS)
    seeds = [int(s) for s in _parse_list(args.seeds, "seeds")]
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.eval_samples is not None and args.eval_samples < 100:
        p.error("--eval-samples must be >= 100")
    import torch

    from bench.harness import device_name, git_commit
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    runs_dir = args.runs_dir or Path("runs") / f"study-{args.budget}"
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = [dict(budget=args.budget, dataset=args.dataset, variant=v, seed=s, device=str(device), curve=args.curve,
                 runs_dir=str(runs_dir), first_stage=str(args.first_stage), threads=threads,
                 eval_samples=args.eval_samples)
            for s in seeds for v in variants]
    t0 = time.perf_counter()
    rows = []
    if args.jobs == 1:
        for j in jobs:
            rows += run_job(j)
            print(json.dumps(rows[-1]), flush=True)
    else:
        import multiprocessing as mp
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
            for r in ex.map(run_job, jobs):
                rows += r
                print(json.dumps(r[-1]), flush=True)
    b = BUDGETS[args.budget]
    meta = {"what": f"latent tiny-latent recipe, budget `{args.budget}` ({b['train']['steps']} steps, "
                    f"{b['train_images']} training images, metrics on "
                    f"{args.eval_samples or b['eval']['samples']} samples)",
            "device": device_name(device), "minutes": round((time.perf_counter() - t0) / 60, 1),
            "commands": ["python benchmarks/ablation.py " + " ".join(argv)], "first_stage": str(args.first_stage),
            "first_stage_fingerprint": _fingerprint(args.first_stage),
            "torch": torch.__version__, "python": platform.python_version(), "commit": git_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write(args.out, rows, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
