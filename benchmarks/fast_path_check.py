"""The training fast path against the eager step over a whole run: ``fit`` of the ``tiny-latent`` preset for
``--steps`` steps (default 300; a refit on the preset's schedule, latents encoded on first use through a randomly
initialised first stage), once with ``fused_optimizer=True`` (the default) and once with ``False``, from the same
seed. Reports both loss curves (means over windows of 25 steps), the largest difference between the windows
relative to the eager curve's step-to-step noise, and each run's images/s from its log.

    python benchmarks/fast_path_check.py --out benchmarks/results/fast-path-300-steps.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.step import train_preset  # noqa: E402


def run(steps: int, fused: bool, seed: int, tmp: Path) -> dict:
    from dga_fast.data import SyntheticShapes
    from dga_fast.presets import PRESETS
    from dga_fast.train import TrainConfig

    cfg, train = PRESETS["tiny-latent"]["model"], PRESETS["tiny-latent"]["train"]
    ds = SyntheticShapes(cfg["image_size"], seed=seed)
    tcfg = TrainConfig(**{**train, "steps": steps, "progress": False, "seed": seed, "fused_optimizer": fused})
    hist, rows, wall = train_preset("tiny-latent", ds, tcfg, seed, torch.device("cpu"), tmp / str(fused))
    return {"losses": [v for _, v in hist["losses"]], "wall_s": round(wall, 1),
            "log_images_per_s_median": statistics.median(r["images_per_s"] for r in rows if "images_per_s" in r),
            "refit_steps": hist["refit_steps"]}


def windows(losses: list, w: int) -> list:
    return [statistics.fmean(losses[i:i + w]) for i in range(0, len(losses) - w + 1, w)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", type=int, default=25)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    if args.steps < 2 * args.window:
        p.error("--steps must be at least two windows")
    with tempfile.TemporaryDirectory() as tmp:
        fast, eager = (run(args.steps, f, args.seed, Path(tmp)) for f in (True, False))
    wf, we = windows(fast["losses"], args.window), windows(eager["losses"], args.window)
    # the eager curve's noise: the spread of its losses around their window mean, as a standard error of a mean
    noise = statistics.fmean(statistics.stdev(eager["losses"][i:i + args.window]) / args.window ** 0.5
                             for i in range(0, args.steps - args.window + 1, args.window))
    worst = max(abs(a - b) for a, b in zip(wf, we))
    res = {"what": "fit of tiny-latent with the fused AdamW (default) and the loop, same seed: loss curves",
           "command": " ".join(["python", "benchmarks/" + Path(__file__).name, *(sys.argv[1:] if argv is None else argv)]),
           "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "steps": args.steps, "window": args.window, "windows_fast": [round(v, 5) for v in wf],
           "windows_eager": [round(v, 5) for v in we], "max_window_difference": round(worst, 5),
           "window_standard_error": round(noise, 5), "within_noise": worst <= 3 * noise,
           "fast": {k: v for k, v in fast.items() if k != "losses"},
           "eager": {k: v for k, v in eager.items() if k != "losses"}}
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("windows")}, indent=1))
    print("windows (fast / eager):", [f"{a:.4f}/{b:.4f}" for a, b in zip(wf, we)])
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0 if res["within_noise"] else 1


if __name__ == "__main__":
    sys.exit(main())
