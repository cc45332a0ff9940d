"""Which ground-truth factors a checkpoint's latent units carry, and whether a circular factor is folded.

    python benchmarks/factor_probe.py runs/i14/cos-1500/checkpoints/step_0001500 [more checkpoints] \
        [--images 3000] [--seed 5] [--out probe.json]

For each checkpoint of a ``SyntheticShapes`` run (pixel or latent), on ``--images`` seeded images:
- ``probe``: per factor, the held-out accuracy of a logistic regression from all tokens (standardised; the first
  two thirds of the images train it, the last third tests it);
- ``eta2``: per factor and unit, the fraction of the unit's scalar variance explained by the factor's level
  (the correlation ratio: count-weighted between-level variance / total variance, in [0, 1]);
- ``level_means``: for each factor, the level means of its best unit. A circular factor (the hues) whose
  means rise and fall again is *folded*: mirror levels share a value, and only a second unit with high
  ``eta2`` can tell them apart (issue 14's note).
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch


def probe_checkpoint(ck: Path, x: torch.Tensor, f: np.ndarray, names) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from dga_fast import AnchoredDiffusion
    model = AnchoredDiffusion.load(ck).eval()
    with torch.no_grad():
        units = torch.cat([model.latent_units(b) for b in x.split(500)]).numpy()     # [N, U]
        tokens = torch.cat([model.encode(b) for b in x.split(500)]).flatten(1).numpy()  # [N, U*Dc]
    n_train = 2 * len(x) // 3
    feats = (tokens - tokens[:n_train].mean(0)) / (tokens[:n_train].std(0) + 1e-6)
    out = {"checkpoint": str(ck), "probe": {}, "eta2": {}, "level_means": {}}
    for j, name in enumerate(names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(max_iter=1000).fit(feats[:n_train], f[:n_train, j])
        out["probe"][name] = round(float(clf.score(feats[n_train:], f[n_train:, j])), 3)
        levels = np.unique(f[:, j])
        means = np.stack([units[f[:, j] == lv].mean(0) for lv in levels])           # [L, U]
        counts = np.array([(f[:, j] == lv).sum() for lv in levels])[:, None]       # [L, 1]
        between = (counts * (means - units.mean(0)) ** 2).sum(0) / len(units)
        eta = between / units.var(0).clip(1e-12)                                    # <= 1
        out["eta2"][name] = [round(float(e), 3) for e in eta]
        out["level_means"][name] = [round(float(m), 3) for m in means[:, int(eta.argmax())]]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.images < 30:
        raise ValueError(f"--images must be >= 30, got {args.images}")
    from dga_fast import AnchoredDiffusion
    from dga_fast.data import SyntheticShapes
    size = AnchoredDiffusion.load(args.checkpoints[0]).config["image_size"]
    data = SyntheticShapes(size)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))[:args.images]
    x, f = data.get_batch(idx)
    rows = [probe_checkpoint(ck, x, np.asarray(f), data.factor_names) for ck in args.checkpoints]
    for r in rows:
        print(r["checkpoint"])
        for name in data.factor_names:
            top = sorted(r["eta2"][name], reverse=True)[:2]
            print(f"  {name:12s} probe {r['probe'][name]:.2f}  eta2 best/2nd {top[0]:.2f}/{top[1]:.2f}  "
                  f"level means {r['level_means'][name]}")
    if args.out:
        args.out.write_text(json.dumps({"images": args.images, "seed": args.seed, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
