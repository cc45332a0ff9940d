"""The benchmark harness, the demo and the backend switch run end to end (small sizes)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dga_fast import ops
from dga_fast.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_small_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--size", "small",
                           "--repeats", "1", "--loop-units", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    provs = {(r["family"], r["provider"]) for r in res["rows"]}
    assert {("refit", "dga_fast"), ("refit", "sklearn-gmm-full"), ("refit", "loop-mvn"),
            ("estep", "dga_fast-reference"), ("estep", "full-covariance")} <= provs
    assert all(r["check"]["ok"] for r in res["rows"])
    assert all(r["median_s"] > 0 for r in res["rows"])
    assert res["torch"] == torch.__version__ and "device" in res
    assert {s["baseline"] for s in res["speedups"]} == {"sklearn-gmm-full", "loop-mvn", "full-covariance"}
    assert "speed-up refit" in proc.stdout


def test_demo_writes_plots_and_summary(tmp_path):
    s = run_demo(tmp_path, units=4, tokens=1500, dim=8, n_plots=2, progress=False)
    assert len(s["plots"]) == 2
    for p in s["plots"]:
        assert (tmp_path / p).stat().st_size > 1000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mean_adjusted_rand_index"] >= 0.9
    assert len(summary["n_components"]) == 4


def test_backend_variable(monkeypatch):
    monkeypatch.setenv("DGA_FAST_BACKEND", "reference")
    assert ops.backend() == "reference"
    monkeypatch.setenv("DGA_FAST_BACKEND", "bogus")
    with pytest.raises(ValueError, match="DGA_FAST_BACKEND"):
        ops.backend()
