"""Data-parallel training and the distributed DyGA refit on 2 CPU processes (gloo, loopback), launched by
torchrun (tests/ddp_worker.py) or, for the kill / resume test, as the CLI under torchrun's environment."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from dga_fast.train import BatchStream

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")
ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("ddp_worker.py")


def _env(**extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return {**env, **extra}


def _torchrun(what, out, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(WORKER), what, str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(DGA_FAST_DIST_TIMEOUT="60"))
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("n,world,batch", [(12, 2, 5), (13, 2, 4), (7, 3, 2), (1, 2, 3), (10, 1, 3)])
def test_sampler_covers_every_sample_once_per_epoch(n, world, batch):
    streams = [BatchStream(n, batch, seed=4, world=world, rank=r) for r in range(world)]
    L = streams[0].epoch_length
    assert L == -(-n // world)
    for epoch in range(2):
        seen = []
        for s in streams:   # the positions [epoch·L, (epoch+1)·L) of the rank's stream, read through the steps
            steps = range(epoch * L // batch + 1, ((epoch + 1) * L - 1) // batch + 2)
            flat = torch.cat([s.indices(t) for t in steps])
            seen.append(flat[epoch * L - (steps[0] - 1) * batch:][:L])
        allidx = torch.cat(seen)
        counts = torch.bincount(allidx, minlength=n)
        assert bool((counts >= 1).all()), counts                      # every sample, every epoch
        if n % world == 0:
            assert bool((counts == 1).all()), counts                  # exactly once
        else:                                                         # the sampler's padding repeats a few
            assert int(counts.sum()) == world * L and int((counts - 1).sum()) == world * L - n
    again = BatchStream(n, batch, seed=4, world=world, rank=world - 1)
    assert torch.equal(again.indices(7), streams[-1].indices(7))      # any step from (seed, step) alone
    assert torch.equal(again.indices(1), streams[-1].indices(1))


def test_distributed_refit_matches_one_process_on_the_union(tmp_path):
    from safetensors.torch import load_file

    from dga_fast import DynamicGaussianAnchoring
    from dga_fast.data import make_unit_tokens
    _torchrun("refit", tmp_path)
    info = json.loads((tmp_path / "refit.json").read_text())
    assert info["world"] == 2
    assert all(info["same"].values()), info["same"]                   # bit-identical buffers on both ranks
    got = load_file(str(tmp_path / "refit.safetensors"))
    tokens = make_unit_tokens(4, 3000, 8, seed=3).tokens
    one = DynamicGaussianAnchoring(4, 8, seed=0, search_samples=1024).refit(tokens)
    want = one.state_dict()
    assert torch.equal(got["mix_active"], want["mix_active"]) and torch.equal(got["mix_dims"], want["mix_dims"])
    assert got["mix_active"].sum(1).tolist() == one.n_components.tolist()
    act = want["mix_active"]
    for name in ("mix_means", "mix_eigvals", "mix_noise", "mix_log_weights"):
        torch.testing.assert_close(got[name][act], want[name][act], atol=1e-4, rtol=1e-4, msg=name)
    for name in ("norm_shift", "norm_scale"):
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-4, msg=name)
    proj = [q[act] @ q[act].transpose(-1, -2) for q in (got["mix_components"], want["mix_components"])]
    torch.testing.assert_close(proj[0], proj[1], atol=1e-4, rtol=0)    # subspaces (eigenvector signs are free)


def test_ddp_training_keeps_the_ranks_identical(tmp_path):
    _torchrun("train", tmp_path)
    res = json.loads((tmp_path / "train.json").read_text())
    assert [c["step"] for c in res["checks"]] == [1, 2, 3, 4, 5]
    assert all(c["weights"] and c["buffers"] for c in res["checks"]), res["checks"]
    assert res["refit_steps"] == [2, 4] and res["fitted"]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["global_batch_size"] == 8
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000005"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out, extra, port, world=2, timeout_s=30):
    """The CLI on every rank, with the environment torchrun gives its workers."""
    procs = []
    for r in range(world):
        env = _env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), DGA_FAST_DIST_TIMEOUT=str(timeout_s))
        cmd = [sys.executable, "-m", "dga_fast", "train", "--out", str(out), "--no-progress", "--device", "cpu",
               *extra]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _stop_rank_1(out, sig, timeout_s=30):
    """Train on 2 ranks, send ``sig`` to rank 1 after the step-3 checkpoint; rank 0's (seconds it took to
    exit, stderr)."""
    procs = _launch(out, ["--image-size", "16", "--batch-size", "4", "--steps", "400", "--ckpt-every", "3"],
                    _free_port(), timeout_s=timeout_s)
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoints" / "step_0000003").exists():
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.2)
        procs[1].send_signal(sig)
        t0 = time.monotonic()
        _, err = procs[0].communicate(timeout=120)                      # no hang: it must exit by itself
        waited = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert procs[0].returncode not in (0, None)
    assert "rank 0/2" in err and "--resume" in err, err[-2000:]
    return waited, err


def test_a_hung_rank_stops_the_others_after_the_timeout(tmp_path):
    waited, err = _stop_rank_1(tmp_path / "run", signal.SIGSTOP, timeout_s=10)   # alive, silent
    assert 5 < waited < 60, waited


def test_killing_a_rank_stops_the_others_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    waited, _ = _stop_rank_1(out, signal.SIGKILL)
    assert waited < 60, waited
    last = max(int(p.name.split("_")[1]) for p in (out / "checkpoints").iterdir())
    target = last + 3
    procs = _launch(out, ["--resume", "--steps", str(target)], _free_port())
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert f"trained to step {target}" in outs[0][0] and "2 rank(s)" in outs[0][0]
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == target               # the log continues, nothing twice
    assert (out / "checkpoints" / f"step_{target:07d}").exists()
