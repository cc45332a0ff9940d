"""The guard of issue 13: a warning naming the latent units whose token spread fell below the threshold of their
peak, and ``on_collapse="stop"`` (``--on-collapse stop``) checkpointing and stopping when all units are dead."""
import json
import warnings

import pytest
import torch

from dga_fast import AnchoredDiffusion
from dga_fast.collapse import CollapseGuard, CollapseWarning, EncoderCollapse
from dga_fast.data import SyntheticShapes
from dga_fast.train import fit

SMALL = dict(image_size=16, num_units=3, unit_dim=8, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
             attention_resolutions=(2,), num_heads=2, anchoring=dict(init_components=2, min_cluster_size=4))
FIT = dict(batch_size=4, refit_warmup=2, refit_every=2, refit_samples=48, log_every=2, progress=False)


def _kill_encoder(model):
    """Every image gets the same latent units from now on: the head's last layer outputs its bias only."""
    head = model.encoder.head[-1]
    with torch.no_grad():
        head.weight.zero_()
    for p in model.encoder.parameters():
        p.requires_grad_(False)


def test_guard_names_the_units_below_threshold():
    g = CollapseGuard(0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert g.update(1, [1.0, 2.0, 3.0]) == ([], False)
    with pytest.warns(CollapseWarning, match=r"unit\(s\) \[1\]"):
        assert g.update(2, [0.5, 0.1, 3.0]) == ([1], False)
    with pytest.warns(CollapseWarning):
        assert g.update(3, [0.05, 0.0, 0.2]) == ([0, 1, 2], True)
    assert g.peak == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("bad", [dict(on_collapse="ignore"), dict(threshold=1.5)])
def test_guard_rejects_bad_options(bad):
    with pytest.raises(ValueError, match="on_collapse|collapse_threshold"):
        CollapseGuard(**bad)


def test_dead_encoder_warns_then_stop_checkpoints(tmp_path):
    torch.manual_seed(0)
    m = AnchoredDiffusion(**SMALL)
    kill = lambda step, model: _kill_encoder(model) if step == 2 else None   # after the first refit
    with pytest.warns(CollapseWarning, match=r"latent unit\(s\) \[0, 1, 2\]"):
        fit(m, SyntheticShapes(16), tmp_path / "warn", steps=6, callback=kill, **FIT)
    events = [json.loads(s) for s in (tmp_path / "warn" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e.get("event") == "collapse"] == [4, 6]      # warn: training goes on

    torch.manual_seed(0)
    m = AnchoredDiffusion(**SMALL)
    with pytest.warns(CollapseWarning), pytest.raises(EncoderCollapse, match="every latent unit") as e:
        fit(m, SyntheticShapes(16), tmp_path / "stop", steps=6, callback=kill, on_collapse="stop", **FIT)
    assert e.value.step == 4 and (tmp_path / "stop" / "checkpoints" / "step_0000004").is_dir()
    state = json.loads((e.value.checkpoint / "train_state.json").read_text())
    assert state["step"] == 4 and len(state["spread_peak"]) == 3 and min(state["spread_peak"]) > 0


def test_cli_on_collapse_stop_exits_nonzero_with_checkpoint(tmp_path, monkeypatch, capsys):
    from dga_fast import cli, presets
    micro = dict(model={k: v for k, v in SMALL.items() if k != "image_size"},
                 train=dict(steps=8, ckpt_every=100, **{k: v for k, v in FIT.items() if k != "progress"}))
    monkeypatch.setitem(presets.PRESETS, "tiny", micro)

    class DeadEncoder(AnchoredDiffusion):
        def __init__(self, **config):
            super().__init__(**config)
            _kill_encoder(self)        # dead from the start: every unit's spread is 0 at the first refit
    monkeypatch.setattr("dga_fast.model.AnchoredDiffusion", DeadEncoder)
    out = tmp_path / "run"
    with pytest.warns(CollapseWarning):
        rc = cli.main(["train", "--out", str(out), "--image-size", "16", "--on-collapse", "stop", "--no-progress"])
    assert rc == 3
    assert "every latent unit" in capsys.readouterr().err
    assert (out / "checkpoints" / "step_0000002").is_dir()
    assert json.loads((out / "config.json").read_text())["model"]["encoder_norm"] == "group"   # today's default
