"""train's configuration: preset < --config file (YAML / JSON, a run's config.json included) < flags, and
--resume accepting the run's own values and refusing others with the stored value named."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dga_fast import train_setup
from dga_fast.cli import _train_sections, build_parser
from dga_fast.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def parse(*argv):
    return build_parser().parse_args(["train", "--out", "unused", *argv])


def test_layers_override_in_order(tmp_path):
    cfg = train_setup.requested(parse())
    assert cfg["model"]["image_size"] == PRESETS["tiny"]["model"]["image_size"]
    assert cfg["train"]["lr"] == PRESETS["tiny"]["train"]["lr"] and cfg["dataset"]["name"] == "synthetic-shapes"
    f = tmp_path / "c.yaml"
    f.write_text("preset: small\ntrain:\n  lr: 0.003\n  batch_size: 5\nmodel:\n  anchoring:\n    max_components: 9\n"
                 "dataset:\n  name: synthetic-sprites\n")
    cfg = train_setup.requested(parse("--config", str(f), "--batch-size", "7"))
    assert cfg["model"]["num_units"] == PRESETS["small"]["model"]["num_units"]          # the file's preset
    assert cfg["train"]["lr"] == 0.003 and cfg["train"]["batch_size"] == 7             # file, then the flag
    assert cfg["dataset"]["name"] == "synthetic-sprites"
    assert cfg["model"]["anchoring"]["max_components"] == 9                              # merged key by key
    cfg = train_setup.requested(parse("--config", str(f), "--preset", "tiny", "--no-anchoring"))
    assert cfg["model"]["num_units"] == PRESETS["tiny"]["model"]["num_units"] and cfg["model"]["anchoring"] is None
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"train": {"seed": 4}}))
    assert train_setup.requested(parse("--config", str(j)))["train"]["seed"] == 4


@pytest.mark.parametrize("text,suffix,match", [
    ("train: [1, 2]\n", ".yaml", "section 'train' must be a mapping"),
    ("trian:\n  lr: 1\n", ".yaml", "unknown keys"),
    ("train:\n  learning_rate: 1\n", ".yaml", "unknown train settings"),
    ("train: {lr: [\n", ".yaml", "not valid YAML"),
    ("{", ".json", "not valid JSON"),
    ("[1]", ".json", "must hold a mapping"),
    ("lr = 1", ".toml", "must end in"),
])
def test_bad_config_files(tmp_path, text, suffix, match):
    f = tmp_path / f"c{suffix}"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        train_setup.requested(parse("--config", str(f)))


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="--config"):
        train_setup.requested(parse("--config", str(tmp_path / "nope.yaml")))


def test_resume_accepts_equal_values_and_names_the_stored_one(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stored = train_setup.requested(parse("--image-size", "16", "--lr", "0.001", "--batch-size", "4"))
    stored["dataset"]["image_size"] = 16
    (out / "config.json").write_text(json.dumps({**stored, "world_size": 1, "global_batch_size": 4}))
    same = ("--image-size", "16", "--lr", "0.001", "--batch-size", "4", "--resume")
    _train_sections(parse(*same, "--steps", "99", "--ckpt-every", "3"), out)        # same command: accepted
    _train_sections(parse("--resume"), out)                                             # bare --resume too
    _train_sections(parse("--resume", "--config", str(out / "config.json")), out)     # its own config.json
    with pytest.raises(ValueError, match=r"train\.lr \(--lr\) = 0\.002, the run has 0\.001"):
        _train_sections(parse("--resume", "--lr", "0.002"), out)
    with pytest.raises(ValueError, match=r"model\.image_size \(--image-size\) = 32, the run has 16"):
        _train_sections(parse("--resume", "--image-size", "32"), out)
    with pytest.raises(ValueError, match="model.anchoring"):
        _train_sections(parse("--resume", "--no-anchoring"), out)
    with pytest.raises(FileNotFoundError, match="--resume"):
        _train_sections(parse("--resume"), tmp_path / "nowhere")


def test_cli_resume_with_the_same_command_and_a_yaml_config(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model:\n  image_size: 16\ntrain:\n  ckpt_every: 1\n  lr: 0.001\n")
    cmd = [sys.executable, "-m", "dga_fast", "train", "--out", str(tmp_path / "r"), "--config", str(cfg),
           "--batch-size", "4", "--no-progress"]
    p = subprocess.run(cmd + ["--steps", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["model"]["image_size"] == 16 and stored["train"]["lr"] == 0.001 and stored["train"]["batch_size"] == 4
    p = subprocess.run(cmd + ["--steps", "3", "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(cmd + ["--steps", "4", "--resume", "--batch-size", "8"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2 and "the run has 4" in p.stderr, p.stderr
