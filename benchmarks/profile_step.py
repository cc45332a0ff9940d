"""Where a training step of the study's recipe spends its time (torch.profiler on CPU): the share of the
encoder, the anchoring, the U-Net forward, the backward and AdamW, how many operator calls a step makes and
how long they take on average (the per-op overhead at these tiny spatial sizes), and the top operators.

    python benchmarks/profile_step.py                                   # tiny-latent, batch 16 and 64, 2 threads
    python benchmarks/profile_step.py --preset paper --batch 16 --threads 2 --out profile.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

RANGES = ("encode", "anchor", "unet", "backward", "optimizer")


def profile_batch(preset: str, batch: int, steps: int, seed: int) -> dict:
    from bench.step import build
    model, x, z = build(preset, batch, seed, torch.device("cpu"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss = model.loss(x, generator=torch.Generator().manual_seed(seed), latents=z)
        opt.zero_grad(set_to_none=True)
        with torch.profiler.record_function("backward"):
            loss.backward()
        with torch.profiler.record_function("optimizer"):
            opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    plain = (time.perf_counter() - t0) / steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return summarise(prof.key_averages(), steps, plain, preset, batch)


def summarise(avg, steps: int, plain_s: float, preset: str, batch: int) -> dict:
    by_key = {e.key: e for e in avg}
    ranges = {r: by_key[r].cpu_time_total / 1e3 / steps for r in RANGES if r in by_key}   # ms per step
    ops = [e for e in avg if e.key.startswith("aten::")]
    calls = sum(e.count for e in ops) / steps
    self_ms = sum(e.self_cpu_time_total for e in ops) / 1e3 / steps
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:15]
    return {"preset": preset, "batch": batch, "threads": torch.get_num_threads(),
            "step_ms_unprofiled": round(plain_s * 1e3, 2), "images_per_s": round(batch / plain_s, 1),
            "ranges_ms": {k: round(v, 2) for k, v in ranges.items()},
            "aten_calls_per_step": round(calls), "aten_self_ms_per_step": round(self_ms, 2),
            "mean_us_per_aten_call": round(self_ms * 1e3 / max(calls, 1), 1),
            "top_ops": [{"op": e.key, "calls_per_step": round(e.count / steps, 1),
                         "self_ms_per_step": round(e.self_cpu_time_total / 1e3 / steps, 2)} for e in top]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny-latent", choices=("tiny-latent", "paper"))
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="profiled steps (after two warm-up steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the profiles as JSON here")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.threads < 1 or min(args.batch) < 1:
        ap.error("--steps, --threads and --batch must be >= 1")
    torch.set_num_threads(args.threads)
    rows = [profile_batch(args.preset, b, args.steps, args.seed) for b in args.batch]
    for r in rows:
        print(f"{r['preset']} batch {r['batch']}, {r['threads']} threads: {r['step_ms_unprofiled']} ms/step "
              f"({r['images_per_s']} images/s); {r['aten_calls_per_step']} aten calls/step, "
              f"{r['mean_us_per_aten_call']} us self time each")
        print("  ranges (ms/step): " + ", ".join(f"{k} {v}" for k, v in r["ranges_ms"].items()))
        for o in r["top_ops"][:10]:
            print(f"  {o['op']:<40} {o['calls_per_step']:>7} calls {o['self_ms_per_step']:>8} ms")
    out = {"command": "python benchmarks/profile_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "torch": torch.__version__, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
