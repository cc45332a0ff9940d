"""DyGA structure recovery: per unit, the true number of values, the Gaussians found and the ARI of the hard
assignment against the true labels, with the refit time, on the hard token setting or the default
``make_unit_tokens``.

    python benchmarks/dyga_quality.py --setting hard      # 20 units x 20k tokens, levels up to 40, Zipf, a
                                                          # collapsed and a dying unit; jitter 0.1 and 0.15
    python benchmarks/dyga_quality.py --setting hard --seeds 0 1 2 3 4 5 --out results.json
    python benchmarks/dyga_quality.py --setting dying --dtype float32 float64 --activation relu silu
                                                          # 36 dying units: constant up to a relative noise
                                                          # of 1e-7 ... 1e-3, six units each
    python benchmarks/dyga_quality.py --setting default   # make_unit_tokens(20, 20k, 32): 3..15 uniform levels

A unit is flagged (``!``) when its ARI is below 0.95 or its count is more than 10% off its number of values.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

ARI_MIN, COUNT_TOL = 0.95, 0.10
DYING_NOISE = (1e-7, 1e-6, 1e-5, 1e-4, 3e-4, 1e-3)


def tokens_for(setting: str, n: int, seed: int, jitter: float, activation: str = "relu", dtype: str = "float32"):
    from dga_fast.data import UnitSpec, make_published_tokens, make_unit_tokens
    kw = dict(n=n, seed=seed, jitter=jitter, activation=activation, final_relu=activation == "relu",
              dtype=getattr(torch, dtype))
    if setting == "hard":
        return make_published_tokens(**kw)
    if setting == "dying":
        return make_published_tokens([UnitSpec(1, near_collapsed=r) for r in DYING_NOISE for _ in range(6)], **kw)
    if setting == "default":
        return make_unit_tokens(20, n, 32, seed=seed)
    raise ValueError(f"setting must be 'hard', 'dying' or 'default', got {setting!r}")


def unit_table(dyga, data) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score
    found = dyga.n_components.tolist()
    pred = dyga.assign(data.tokens)
    rows = []
    for u in range(data.tokens.shape[1]):
        lv = int(data.levels[u])
        ari = 1.0 if lv == 1 and found[u] == 1 else float(adjusted_rand_score(data.labels[:, u], pred[:, u]))
        ok = ari >= ARI_MIN and abs(found[u] - lv) <= COUNT_TOL * lv
        rows.append({"unit": u, "levels": lv, "found": int(found[u]), "ari": round(ari, 4), "ok": ok})
    return rows


def run_one(args, seed: int, jitter: float, activation: str, dtype: str) -> dict:
    from dga_fast import DynamicGaussianAnchoring
    data = tokens_for(args.setting, args.n, seed, jitter, activation, dtype)
    U, D = data.tokens.shape[1:]
    times = []
    for _ in range(args.repeats):
        dyga = DynamicGaussianAnchoring(U, D, max_components=args.max_components)
        t0 = time.perf_counter()
        dyga.refit(data.tokens)
        times.append(time.perf_counter() - t0)
    rows = unit_table(dyga, data)
    if args.setting == "dying":
        for r in rows:
            r["near_collapsed"] = DYING_NOISE[r["unit"] // 6]
    multi = [r["ari"] for r in rows if r["levels"] > 1]
    return {"seed": seed, "jitter": jitter, "activation": activation, "dtype": dtype, "refit_seconds": times,
            "mean_ari_multi_level": sum(multi) / len(multi) if multi else None,
            "min_ari": min(r["ari"] for r in rows), "units_ok": sum(r["ok"] for r in rows),
            "single_value_units_one_gaussian": all(r["found"] == 1 for r in rows if r["levels"] == 1),
            "n_split": dyga.last_refit["n_split"].tolist(), "n_merged": dyga.last_refit["n_merged"].tolist(),
            "units": rows}


def _name(run: dict) -> str:
    """``s0 j0.15`` (and the activation and dtype where they are not ReLU and float32)."""
    extra = "" if (run["activation"], run["dtype"]) == ("relu", "float32") else f" {run['activation']} {run['dtype']}"
    return f"s{run['seed']} j{run['jitter']:g}{extra}"


def print_table(runs: list[dict]):
    """One row per unit, a column pair (found, ARI) per run."""
    head = " ".join(f"{_name(r):>14}" for r in runs)
    print(f"{'unit':>4} {'levels':>6} {head}")
    for u, first in enumerate(runs[0]["units"]):
        cells = []
        for r in runs:
            row = r["units"][u]
            cells.append(f"{row['found']:>4} {row['ari']:>7.3f}{' ' if row['ok'] else '!'} ")
        print(f"{u:>4} {first['levels']:>6} " + " ".join(f"{c:>14}" for c in cells))
    for r in runs:
        mean = "-" if r["mean_ari_multi_level"] is None else f"{r['mean_ari_multi_level']:.4f}"
        print(f"{_name(r)}: mean ARI (multi-level) {mean}, "
              f"min ARI {r['min_ari']:.3f}, units ok {r['units_ok']}/{len(r['units'])}, single-value units one "
              f"Gaussian: {r['single_value_units_one_gaussian']}, refit s "
              f"{', '.join(f'{t:.2f}' for t in r['refit_seconds'])}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", default="hard", choices=("hard", "dying", "default"))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--jitter", type=float, nargs="+", default=[0.1, 0.15],
                    help="the hard setting's jitter, as a fraction of the level gap (one run per value)")
    ap.add_argument("--activation", default=["relu"], nargs="+", choices=("relu", "silu"),
                    help="hard and dying settings: the token MLP's activation (silu: smooth tokens), one run each")
    ap.add_argument("--dtype", default=["float32"], nargs="+", choices=("float32", "float64"),
                    help="the tokens' dtype, one run each")
    ap.add_argument("--max-components", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the tables and timings as JSON here")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.n < 2:
        ap.error("--repeats must be >= 1 and --n >= 2")
    jitters = args.jitter if args.setting == "hard" else [0.1]
    runs = [run_one(args, seed, j, act, dt) for seed in args.seeds for j in jitters for act in args.activation
            for dt in args.dtype]
    print_table(runs)
    summary = {"setting": args.setting, "n": args.n, "max_components": args.max_components,
               "ari_min": ARI_MIN, "count_tolerance": COUNT_TOL, "torch": torch.__version__,
               "command": "python benchmarks/dyga_quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "runs": runs}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
