"""train --logger tensorboard: event files read back (scalars, refit numbers, image grids, hyperparameters), and
logging images does not change what is trained."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dga_fast.checkpoint import latest_checkpoint, read_tensors
from dga_fast.loggers import flatten, make_logger

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("tensorboard", reason="the tensorboard package is in requirements.txt; absent, its logger is untestable")


def _train(out, cfg, *extra):
    cmd = [sys.executable, "-m", "dga_fast", "train", "--out", str(out), "--config", str(cfg), "--image-size", "16",
           "--steps", "6", "--ckpt-every", "3", "--no-progress", *extra]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr


def test_tensorboard_event_files_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  log_every: 2\n  refit_warmup: 3\n  refit_every: 3\n  refit_samples: 64\n"
                   "  batch_size: 8\n  lr: 0.0015\n")
    _train(tmp_path / "tb", cfg, "--logger", "tensorboard", "--image-every", "3")
    _train(tmp_path / "plain", cfg)
    acc = EventAccumulator(str(tmp_path / "tb" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    rows = [json.loads(line) for line in (tmp_path / "tb" / "log.jsonl").read_text().splitlines()]
    assert loss == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in rows if "loss" in r]
    assert [e.step for e in acc.Scalars("train/lr")] == [2, 4, 6]
    for tag in ("train/images_per_s", "refit/seconds", "refit/components_mean", "refit/components/unit_09"):
        assert tag in tags["scalars"], tag
    refits = [r for r in rows if r.get("event") == "refit"]
    assert [e.step for e in acc.Scalars("refit/seconds")] == [r["step"] for r in refits] == [3, 6]
    assert acc.Scalars("refit/components/unit_00")[-1].value == refits[-1]["components"][0]
    for tag in ("images/inputs_and_samples", "images/interchange"):
        ims = acc.Images(tag)
        assert [i.step for i in ims] == [3, 6] and ims[0].width > 16 and ims[0].height > 16
    start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hp = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hp["train.lr"].number_value == pytest.approx(0.0015) and hp["model.image_size"].number_value == 16
    assert hp["dataset.name"].string_value == "synthetic-shapes"
    # the image grids sample with their own generator and restore train mode: the trained weights are the same
    wa = read_tensors(latest_checkpoint(tmp_path / "tb") / "model.safetensors")
    wb = read_tensors(latest_checkpoint(tmp_path / "plain") / "model.safetensors")
    assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)
    assert not (tmp_path / "plain" / "tensorboard").exists()


def test_flatten_and_bad_logger(tmp_path):
    assert flatten({"model": {"a": 1, "b": (1, 2), "c": None}, "x": "s"}) == \
        {"model.a": 1, "model.b": "[1, 2]", "model.c": "null", "x": "s"}
    with pytest.raises(ValueError, match="logger must be one of"):
        make_logger("wandb", tmp_path, {}, 1, False)
