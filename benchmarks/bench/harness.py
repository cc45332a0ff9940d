"""The harness of ``benchmarks/throughput.py``: cases, timing (median of repeats after a warm-up, peak memory on
CUDA), the speed-up table (printed only when both rows' checks passed in the run) and the JSON output."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

BENCH = Path(__file__).resolve().parent.parent          # benchmarks/

SIZES = {
    #            units, tokens, dims
    "small": dict(units=4, tokens=2000, dim=16),
    "default": dict(units=20, tokens=10_000, dim=32),
    "large": dict(units=20, tokens=100_000, dim=32),
}


@dataclass
class Case:
    family: str
    provider: str
    mode: str
    fn: Callable[[], object]
    check: Callable[[object], dict]     # result of fn -> {"ok": bool, ...metrics}
    repeats: int | None = None          # override of --repeats (slow baselines)
    scale: float = 1.0                  # multiply the measured time (extrapolated baselines)
    note: str = ""
    warmup: bool = True                 # False: the checked first call is also the first timed one
    roofline: tuple | None = None       # (bytes moved, peak bytes/s): report the achieved fraction
    items: int | None = None            # images (or samples) per call: report items_per_s
    flop_per_item: float | None = None  # floating-point operations per item: report gflop_per_s


@dataclass
class Row:
    family: str
    provider: str
    mode: str
    median_s: float | None
    times_s: list = field(default_factory=list)
    peak_mem_mb: float | None = None
    check: dict = field(default_factory=dict)
    note: str = ""


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(case: Case, repeats: int, device: torch.device) -> Row:
    """Warm-up call (its result is the one checked), then the median of ``repeats`` timed calls. Without
    warm-up (slow, cache-free work) the checked first call is timed as one of the repeats."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = case.fn()
    sync(device)
    first = (time.perf_counter() - t0) * case.scale
    check = case.check(out)
    times = [] if case.warmup else [first]
    if device.type == "cuda" and case.warmup:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range((case.repeats or repeats) - len(times)):
        t0 = time.perf_counter()
        case.fn()
        sync(device)
        times.append((time.perf_counter() - t0) * case.scale)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    if case.roofline is not None:
        nbytes, bw = case.roofline
        med = statistics.median(times)
        check = {**check, "achieved_TBps": round(nbytes / med / 1e12, 3),
                 "fraction_of_copy_bandwidth": round(nbytes / med / bw, 3)}
    if case.items:
        check = {**check, "items_per_s": round(case.items / statistics.median(times), 3)}
        if case.flop_per_item:
            check["gflop_per_s"] = round(check["items_per_s"] * case.flop_per_item / 1e9, 2)
    return Row(case.family, case.provider, case.mode, statistics.median(times), times, peak, check, case.note)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def slug(name: str) -> str:
    keep = "".join(c.lower() if c.isalnum() else "-" for c in name)
    return "-".join(p for p in keep.split("-") if p)[:60]


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def triton_version():
    try:
        import triton
        return triton.__version__
    except Exception:  # noqa: BLE001 - triton absent or broken on this machine
        return None


def run(families: dict, speedups: list, doc: str, argv=None) -> int:
    """Parse the command line, run the chosen families' cases, print and store the rows and the speed-ups
    (``speedups``: ``(family, faster provider, baseline provider[, mode])``)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=sorted(families), action="append", help="run only this family")
    p.add_argument("--size", choices=sorted(SIZES), default="default")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loop-units", type=int, default=2, help="units the loop baseline is timed on")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", choices=("simple", "published"), default="simple",
                   help="refit rows: make_unit_tokens (3..15 uniform levels) or make_published_tokens' hard setting")
    p.add_argument("--em-k", type=int, default=8, help="em rows: the fixed number of components")
    p.add_argument("--json", type=Path, default=None, help="output JSON (default results/<device>.json)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.loop_units < 1 or args.em_k < 1:
        p.error("--repeats, --loop-units and --em-k must be >= 1")
    device = torch.device(args.device)
    dev_name = device_name(device)
    rows: list[Row] = []
    for fam in args.only or list(families):
        print(f"== {fam} ({args.size}) on {dev_name}", flush=True)
        for case in families[fam](args, device):
            row = measure(case, args.repeats, device)
            rows.append(row)
            status = "ok" if row.check.get("ok") else "CHECK FAILED"
            metrics = {k: v for k, v in row.check.items() if k not in ("ok", "n_components", "true_levels")}
            print(f"  {row.provider:<22} {row.mode:<5} {row.median_s:9.4f} s  [{status}] {metrics}"
                  + (f"  ({row.note})" if row.note else ""), flush=True)
    found = []
    for fam, fast, base, *mode in speedups:
        mode = mode[0] if mode else None

        def pick(prov):
            return next((r for r in rows if r.family == fam and r.provider == prov
                         and (mode is None or r.mode == mode)), None)
        a, b = pick(fast), pick(base)
        if a is None or b is None:
            continue
        label = f"{fam}{'/' + mode if mode else ''}"
        if a.check.get("ok") and b.check.get("ok"):
            # rows that count images: their rates (they may time different batches); others: their times
            rates = "items_per_s" in a.check and "items_per_s" in b.check
            s = a.check["items_per_s"] / b.check["items_per_s"] if rates else b.median_s / a.median_s
            found.append({"family": fam, "mode": mode or a.mode, "provider": fast, "baseline": base,
                             "speedup": round(s, 2)})
            print(f"speed-up {label}: {fast} vs {base}: {s:.1f}x")
        else:
            print(f"speed-up {label}: {fast} vs {base}: not reported (a correctness check failed)")
    out = {
        "device": dev_name, "device_type": device.type, "size": args.size, "sizes": SIZES[args.size],
        "torch": torch.__version__, "triton": triton_version(), "python": platform.python_version(),
        "commit": git_commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "peak_memory_note": "peak_mem_mb is torch.cuda.max_memory_allocated on CUDA; not measured on CPU",
        "rows": [asdict(r) for r in rows], "speedups": found,
    }
    path = args.json or BENCH / "results" / f"{slug(dev_name)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if all(r.check.get("ok") for r in rows) else 1
