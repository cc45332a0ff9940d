"""The divergence guard (``dga_fast.divergence``): the rule on loss sequences, and in training a run made to fall
back to predicting nothing (the U-Net's output layer zeroed and frozen) warned about, stopped with a checkpoint,
rolled back at half the learning rate, and watched across ``--resume``."""
import json
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dga_fast.data import SyntheticShapes
from dga_fast.divergence import (DivergenceGuard, DivergenceWarning, TrainingDiverged, diverged_in_log,
                                 replay)
from dga_fast.train import fit
from helpers import tiny

FIT = dict(batch_size=8, lr=2e-3, refit_every=1000, refit_warmup=1000, ckpt_every=10, log_every=5, progress=False,
           diverge_patience=20)
KILL = 30   # the step after which the U-Net predicts nothing


def _learning_then_flat(n_learn=100, n_flat=100, start=0.8, low=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand(n_learn + n_flat, generator=g) - 0.5) * 0.02
    learn = [low + (start - low) * math.exp(-i / 15) for i in range(n_learn)]
    return [(i + 1, v + float(e)) for i, (v, e) in enumerate(zip(learn + [start] * n_flat, noise))]


def test_sustained_return_to_the_start_level_fires_once_after_patience():
    losses = _learning_then_flat()
    events = replay(losses, patience=50, window=20)
    assert [e["event"] for e in events] == ["diverged"]
    e = events[0]
    assert 100 < e["high_since"] <= 120 and e["step"] == e["high_since"] + 49
    assert e["start"] > 0.4 and e["best"] < 0.1 and e["loss_mean"] > 0.7


def test_a_spike_shorter_than_patience_and_a_run_that_never_learned_do_not_fire():
    base = _learning_then_flat(200, 0)
    spiked = [(s, v + (0.7 if 120 <= s < 150 else 0.0)) for s, v in base]
    assert replay(spiked, patience=50, window=20) == []
    flat = [(s, 0.8 + 0.05 * math.sin(s)) for s in range(1, 400)]
    assert replay(flat, patience=50, window=20) == []


def test_recovery_is_reported_and_rearms_the_guard():
    up = _learning_then_flat(100, 100)
    back = [(201 + i, 0.05) for i in range(60)]
    again = [(261 + i, 0.8) for i in range(100)]
    kinds = [e["event"] for e in replay(up + back + again, patience=50, window=20)]
    assert kinds == ["diverged", "recovered", "diverged"]
    records = [{"event": "diverged", "step": 5}, {"event": "recovered", "step": 9}]
    assert diverged_in_log(records) is None
    assert diverged_in_log(records + [{"event": "diverged", "step": 12}])["step"] == 12
    assert diverged_in_log(records + [{"event": "diverged", "step": 12}, {"event": "rollback", "step": 3}]) is None


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(1, 199), seed=st.integers(0, 2**16))
def test_state_round_trip_gives_the_same_events(cut, seed):
    losses = _learning_then_flat(seed=seed)
    whole = replay(losses, patience=30, window=7)
    a = DivergenceGuard(patience=30, window=7)
    first = [e for s, v in losses[:cut] if (e := a.update(s, v))]
    b = DivergenceGuard(patience=30, window=7)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    rest = [e for s, v in losses[cut:] if (e := b.update(s, v))]
    assert first + rest == whole


@pytest.mark.parametrize("bad, match", [(dict(on_diverge="ignore"), "on_diverge"),
                                        (dict(patience=0), "diverge_patience"),
                                        (dict(patience=2.5), "diverge_patience"),
                                        (dict(fraction=0.0), "fraction")])
def test_guard_rejects_bad_options(bad, match):
    with pytest.raises(ValueError, match=match):
        DivergenceGuard(**bad)


def test_train_config_validates_the_guard_and_rollback_needs_a_run_dir():
    with pytest.raises(ValueError, match="on_diverge"):
        fit(tiny(anchoring=None), SyntheticShapes(16), None, steps=2, **{**FIT, "on_diverge": "panic"})
    with pytest.raises(ValueError, match="rollback.*out_dir"):
        fit(tiny(anchoring=None), SyntheticShapes(16), None, steps=2, **{**FIT, "on_diverge": "rollback"})


# ---------------------------------------------------------------------------------------------- in training
def _kill(model, freeze=True):
    out = model.unet.out[-1]
    with torch.no_grad():
        out.weight.zero_()
        out.bias.zero_()
    for p in out.parameters():
        p.requires_grad_(not freeze)


def _killer(step, model):
    """From step KILL on, every step: the U-Net's output layer zero and frozen (deterministic across resume)."""
    if step >= KILL:
        _kill(model)


def _events(run):
    return [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines() if '"event"' in s]


def _train(run, steps, **kw):
    return fit(tiny(anchoring=None), SyntheticShapes(16), run, steps=steps, **{**FIT, **kw})


@pytest.fixture(scope="module")
def warned_run(tmp_path_factory):
    """90 steps with the U-Net predicting nothing from step KILL on, on_diverge="warn"."""
    run = tmp_path_factory.mktemp("warn") / "run"
    with pytest.warns(DivergenceWarning, match="diverged"):
        h = _train(run, 90, callback=_killer)
    return run, h


def test_warn_fires_within_a_few_log_intervals_and_training_goes_on(warned_run):
    run, h = warned_run
    assert h["step"] == 90
    div = [e for e in _events(run) if e["event"] == "diverged"]
    assert len(div) == 1 and div[0]["on_diverge"] == "warn"
    # the loss is back near the untrained level within the window; the guard fires patience steps later
    assert KILL < div[0]["high_since"] <= KILL + 20 and div[0]["step"] - KILL <= 8 * FIT["log_every"]
    assert div[0]["loss_mean"] > 0.6


def test_stop_raises_with_a_checkpoint_and_evaluate_refuses(tmp_path):
    run = tmp_path / "s"
    with pytest.warns(DivergenceWarning), pytest.raises(TrainingDiverged, match="diverged") as e:
        _train(run, 120, callback=_killer, on_diverge="stop")
    assert e.value.checkpoint is not None and e.value.checkpoint.is_dir()
    state = json.loads((e.value.checkpoint / "train_state.json").read_text())
    assert state["step"] == e.value.step and state["divergence"]["fired"] is True
    from dga_fast.evaluate import evaluate_run
    with pytest.raises(ValueError, match="diverged.*--force"):
        evaluate_run(run, ["dci"], samples=20)


def test_rollback_returns_before_the_jump_at_half_the_lr_and_trains_on(tmp_path):
    run = tmp_path / "r"
    seen = []

    def kill_once(step, model):
        seen.append(step)
        if step == KILL and seen.count(KILL) == 1:
            _kill(model)
        elif len(seen) > 1 and step < seen[-2]:    # rolled back: the restored layer trains again
            _kill_restore_grad(model)

    with pytest.warns(DivergenceWarning):
        h = _train(run, 110, callback=kill_once, on_diverge="rollback")
    events = _events(run)
    rb = [e for e in events if e["event"] == "rollback"]
    assert len(rb) == 1 and rb[0]["step"] <= KILL < rb[0]["high_since"] and rb[0]["lr_scale"] == 0.5
    assert rb[0]["step"] == (rb[0]["high_since"] - 20) // FIT["ckpt_every"] * FIT["ckpt_every"]   # window 20
    assert not [e for e in events if e["event"] == "diverged"]          # cut from the log with the diverged stretch
    assert (run / "diverged").is_dir()                                  # the diverged checkpoints, set aside
    rows = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines() if '"loss"' in s]
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps) and steps[-1] == 110                   # one monotone log
    after = [r for r in rows if r["step"] > rb[0]["step"]]
    assert all(r["lr"] == pytest.approx(FIT["lr"] * 0.5) for r in after)
    losses = [v for s, v in h["losses"] if s > rb[0]["step"]]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20 < 0.6
    state = json.loads(sorted((run / "checkpoints").iterdir())[-1].joinpath("train_state.json").read_text())
    assert state["divergence"]["lr_scale"] == 0.5 and state["divergence"]["rollbacks"] == 1


def _kill_restore_grad(model):
    for p in model.unet.out[-1].parameters():
        p.requires_grad_(True)


def test_guard_state_survives_resume(tmp_path, warned_run):
    whole = [e for e in _events(warned_run[0]) if e["event"] == "diverged"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        _train(tmp_path / "parts", 60, callback=_killer)     # stops inside the high stretch (checkpoint at 60)
    state = json.loads((tmp_path / "parts" / "checkpoints" / "step_0000060" / "train_state.json").read_text())
    assert state["divergence"]["high_since"] is not None and not state["divergence"]["fired"]
    with pytest.warns(DivergenceWarning):
        fit(tiny(anchoring=None), SyntheticShapes(16), tmp_path / "parts", steps=90, resume=True,
            callback=_killer, **FIT)
    parts = [e for e in _events(tmp_path / "parts") if e["event"] == "diverged"]
    assert [(e["step"], e["high_since"]) for e in parts] == [(e["step"], e["high_since"]) for e in whole]


def test_cli_on_diverge_stop_exits_4_with_a_checkpoint_and_evaluate_says_why(tmp_path, monkeypatch, capsys):
    from dga_fast import AnchoredDiffusion, cli, presets
    from helpers import TINY
    micro = dict(model={k: v for k, v in TINY.items() if k not in ("image_size", "anchoring")},
                 train={**{k: v for k, v in FIT.items() if k not in ("progress", "diverge_patience")}, "steps": 120})
    monkeypatch.setitem(presets.PRESETS, "tiny", micro)

    class FallsFlat(AnchoredDiffusion):   # from its KILL-th loss on, the U-Net predicts nothing
        def loss(self, *args, **kw):
            self.n_losses = getattr(self, "n_losses", 0) + 1
            if self.n_losses > KILL:
                _kill(self)
            return super().loss(*args, **kw)
    monkeypatch.setattr("dga_fast.model.AnchoredDiffusion", FallsFlat)
    out = tmp_path / "run"
    with pytest.warns(DivergenceWarning):
        rc = cli.main(["train", "--out", str(out), "--image-size", "16", "--no-anchoring", "--on-diverge", "stop",
                       "--diverge-patience", "20", "--no-progress"])
    assert rc == 4
    assert "--on-diverge stop" in capsys.readouterr().err
    fired = [e for e in _events(out) if e["event"] == "diverged"][0]["step"]
    assert (out / "checkpoints" / f"step_{fired:07d}").is_dir()
    assert cli.main(["evaluate", str(out), "--metrics", "dci", "--samples", "20", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "--force" in err
