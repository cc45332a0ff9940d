"""DyGA structure recovery: per-unit table (true values -> Gaussians found, ARI of the hard assignment against the
true labels) and the refit time, on the hard token setting of issue 12 or the default ``make_unit_tokens``.

    python benchmarks/dyga_quality.py --setting hard      # 20 units x 20k tokens, levels up to 40, Zipf
    python benchmarks/dyga_quality.py --setting default   # make_unit_tokens(20, 20k, 32): 3..15 uniform levels
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def tokens_for(setting: str, n: int, seed: int):
    from dga_fast.data import make_published_tokens, make_unit_tokens
    if setting == "hard":
        return make_published_tokens(n=n, seed=seed)
    if setting == "default":
        return make_unit_tokens(20, n, 32, seed=seed)
    raise ValueError(f"setting must be 'hard' or 'default', got {setting!r}")


def unit_table(dyga, data) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score
    found = dyga.n_components.tolist()
    pred = dyga.assign(data.tokens)
    rows = []
    for u in range(data.tokens.shape[1]):
        lv = int(data.levels[u])
        ari = 1.0 if lv == 1 and found[u] == 1 else float(adjusted_rand_score(data.labels[:, u], pred[:, u]))
        rows.append({"unit": u, "levels": lv, "found": int(found[u]), "ari": round(ari, 4)})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", default="hard", choices=("hard", "default"))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-components", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the table and timings as JSON here")
    args = ap.parse_args(argv)
    from dga_fast import DynamicGaussianAnchoring
    data = tokens_for(args.setting, args.n, args.seed)
    U, D = data.tokens.shape[1:]
    times = []
    for _ in range(args.repeats):
        dyga = DynamicGaussianAnchoring(U, D, max_components=args.max_components)
        t0 = time.perf_counter()
        dyga.refit(data.tokens)
        times.append(time.perf_counter() - t0)
    rows = unit_table(dyga, data)
    multi = [r["ari"] for r in rows if r["levels"] > 1]
    print(f"{'unit':>4} {'levels':>6} {'found':>5} {'ARI':>6}")
    for r in rows:
        print(f"{r['unit']:>4} {r['levels']:>6} {r['found']:>5} {r['ari']:>6.3f}")
    summary = {"setting": args.setting, "n": args.n, "seed": args.seed, "max_components": args.max_components,
               "refit_seconds": times, "mean_ari_multi_level": sum(multi) / len(multi),
               "collapsed_ok": all(r["found"] == 1 for r in rows if r["levels"] == 1),
               "n_split": dyga.last_refit["n_split"].tolist(), "n_merged": dyga.last_refit["n_merged"].tolist(),
               "torch": torch.__version__, "units": rows}
    print(f"mean ARI over multi-level units {summary['mean_ari_multi_level']:.4f}; collapsed units one Gaussian: "
          f"{summary['collapsed_ok']}; refit s {', '.join(f'{t:.2f}' for t in times)}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
