"""How far the published anchor shift moves a trained model's tokens: its one λ per batch.

    python benchmarks/published_lambda.py runs/study/synthetic-shapes/published-seed{0,1,2} \
        [--images 16] [--batches 8] [--out lambda.json]

The published rule (DESIGN §6a, ``shift="published"``) mixes the selected mean into the raw token with
``λ = align_max · exp(−mean |c − μ| / |c|)`` over the whole batch. For each run (its latest checkpoint, which must
use that rule), on ``--batches`` seeded batches of ``--images`` images of the run's dataset (the training batch
size by default): λ, the mean and median of ``|c − μ| / |c|``, the fraction of token entries with ``|c| < 0.01``
and the relative shift ``‖c′ − c‖ / ‖c‖`` it gives.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch


def measure(model, ds, n: int, batches: int) -> dict:
    """λ and what it does on ``batches`` seeded batches of ``n`` images of ``ds`` (medians over the batches, and
    every batch's values)."""
    from dga_fast.ops.anchor_shift.reference import published_lambda
    from dga_fast.train import get_batch
    dyga = model.anchoring
    if dyga is None or not dyga.fitted or dyga.shift_rule.name != "published":
        raise ValueError("model: not a fitted model with shift='published' (train --published-dyga)")
    g = torch.Generator().manual_seed(0)
    rows = []
    model.eval()
    for _ in range(batches):
        with torch.no_grad():
            c = model.encode(get_batch(ds, torch.randint(len(ds), (n,), generator=g)))
            lam, mu = published_lambda(c.float(), dyga.state, dyga.align_max)
        ratio = (c - mu).abs() / (c.abs() + 1e-6)
        shift = (lam * (mu - c)).norm(dim=-1) / c.norm(dim=-1).clamp_min(1e-12)
        rows.append({"lambda": float(lam), "mean_ratio": float(ratio.mean()), "median_ratio": float(ratio.median()),
                     "frac_abs_below_0.01": float((c.abs() < 0.01).float().mean()), "shift_rel": float(shift.mean())})
    return {"images_per_batch": n, "batches": batches, "align_max": dyga.align_max,
            **{k: statistics.median(r[k] for r in rows) for k in rows[0]}, "per_batch": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories trained with the published DyGA")
    p.add_argument("--images", type=int, default=None, help="images per batch (default: the run's batch size)")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--out", type=Path, default=None, help="JSON file")
    args = p.parse_args(argv)
    if args.batches < 1 or (args.images is not None and args.images < 2):
        p.error("--batches must be >= 1 and --images >= 2")
    out = {}
    from dga_fast.runs import load_run, run_config
    for run in args.runs:
        model, ds = load_run(run)
        n = args.images or run_config(run)["train"]["batch_size"]
        try:
            out[str(run)] = measure(model, ds, n, args.batches)
        except ValueError as e:
            raise SystemExit(f"{run}: {e}") from None
        r = out[str(run)]
        print(f"{run}: λ {r['lambda']:.2e} (align_max {r['align_max']}), mean |c − μ|/|c| {r['mean_ratio']:.2f} "
              f"(median {r['median_ratio']:.2f}), shift ‖c′ − c‖/‖c‖ {r['shift_rel']:.2e}  [medians over batches]")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
