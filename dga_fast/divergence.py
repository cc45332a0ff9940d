"""The guard of a run's loss: training that fell back toward its untrained level and stays there has diverged.

A diffusion U-Net that blows up often lands on predicting (nearly) nothing: its L1 loss returns to E|ε| ≈ 0.8,
the level of its first steps, and the run trains on from there without a non-finite number to stop it. The
guard compares the mean of the last ``window`` losses with two levels: ``start`` (the mean of the first
``window`` steps) and ``best`` (the lowest running mean so far). A step is *high* when the running mean has
climbed back at least ``fraction`` of the way from ``best`` to ``start`` and lies at least ``rise`` above
``best`` (relative): a spike of a few steps barely moves the mean, and a run that never learned does not
count as high until its loss rises. After ``patience`` high steps in a row the run has diverged; the guard
reports it once, and again only after the loss has come back down (``recovered``).

``on_diverge`` says what the training loop does then: ``"warn"`` (a warning and a ``diverged`` log line),
``"stop"`` (checkpoint, raise ``TrainingDiverged``) or ``"rollback"`` (continue from the last checkpoint at or
before ``jump_after`` = the first high step − ``window``, the last step whose loss the first high mean did not
include, with the learning rate halved; at most ``max_rollbacks`` times, then as ``"stop"``). The
guard's state is part of the training state, so it survives ``--resume``.
"""
from __future__ import annotations

import math
import warnings
from collections import deque

ON_DIVERGE = ("warn", "stop", "rollback")


class TrainingDiverged(RuntimeError):
    """The loss climbed back toward its untrained level and stayed there; raised by ``on_diverge="stop"`` (and by
    ``"rollback"`` when no checkpoint before the jump is left, or after ``max_rollbacks``), after the training
    state was checkpointed (``checkpoint``, or None without a run directory)."""

    def __init__(self, message: str, step: int, checkpoint=None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


class DivergenceWarning(UserWarning):
    pass


class DivergenceGuard:
    """``update(step, loss)`` returns a ``diverged`` or ``recovered`` event dict when the run crosses either way,
    else None (module docstring). ``lr_scale`` (halved by each rollback) multiplies the scheduled learning rate."""

    def __init__(self, on_diverge: str = "warn", patience: int = 50, window: int = 20, fraction: float = 0.5,
                 rise: float = 0.5, max_rollbacks: int = 3):
        if on_diverge not in ON_DIVERGE:
            raise ValueError(f"on_diverge must be one of {ON_DIVERGE}, got {on_diverge!r}")
        for name, v in (("diverge_patience", patience), ("window", window)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if not rise >= 0.0:
            raise ValueError(f"rise must be >= 0, got {rise}")
        self.on_diverge, self.patience, self.window = on_diverge, patience, window
        self.fraction, self.rise, self.max_rollbacks = float(fraction), float(rise), int(max_rollbacks)
        self.recent: deque = deque(maxlen=window)
        self.start: float | None = None     # mean of the first `window` losses
        self.best = math.inf                # lowest running mean
        self.high_since: int | None = None  # first step of the current high stretch
        self.fired = False                  # the current high stretch was reported
        self.lr_scale = 1.0
        self.rollbacks = 0

    # ------------------------------------------------------------------ the rule
    def threshold(self) -> float:
        """The running mean above which a step is high (``inf`` while ``start`` is unknown)."""
        if self.start is None:
            return math.inf
        back = self.best + self.fraction * max(self.start - self.best, 0.0)
        return max(back, self.best * (1.0 + self.rise))

    def update(self, step: int, loss: float) -> dict | None:
        self.recent.append(float(loss))
        if len(self.recent) < self.window:
            return None
        mean = sum(self.recent) / self.window
        if self.start is None:
            self.start = mean
        high = mean > self.threshold()
        self.best = min(self.best, mean)
        if not high:
            was = self.fired
            self.high_since, self.fired = None, False
            return self._event("recovered", step, mean) if was else None
        if self.high_since is None:
            self.high_since = step
        if self.fired or step - self.high_since + 1 < self.patience:
            return None
        self.fired = True
        return self._event("diverged", step, mean)

    def _event(self, kind: str, step: int, mean: float) -> dict:
        e = {"event": kind, "step": step, "loss_mean": round(mean, 6), "best": round(self.best, 6),
             "start": round(self.start, 6), "lr_scale": self.lr_scale}
        if kind == "diverged":   # the first high mean covers steps high_since − window + 1 ..: the jump came after
            e.update(high_since=self.high_since, jump_after=max(self.high_since - self.window, 0),
                     on_diverge=self.on_diverge)
        return e

    def warn(self, event: dict) -> None:
        warnings.warn(self.message(event), DivergenceWarning, stacklevel=3)

    def message(self, event: dict) -> str:
        return (f"step {event['step']}: the training loss diverged: its mean over the last {self.window} steps "
                f"({event['loss_mean']:.4g}) has been back near its first steps' level ({event['start']:.4g}, best "
                f"{event['best']:.4g}) since step {event['high_since']}. Lower --lr, or train with --on-diverge "
                f"rollback (README 'The divergence guard').")

    # ------------------------------------------------------------------ training state
    def state_dict(self) -> dict:
        return {"recent": list(self.recent), "start": self.start, "best": None if math.isinf(self.best) else self.best,
                "high_since": self.high_since, "fired": self.fired, "lr_scale": self.lr_scale,
                "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict) -> None:
        self.recent = deque((float(v) for v in state.get("recent", [])), maxlen=self.window)
        self.start = state.get("start")
        best = state.get("best")
        self.best = math.inf if best is None else float(best)
        self.high_since = state.get("high_since")
        self.fired = bool(state.get("fired", False))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.rollbacks = int(state.get("rollbacks", 0))


def replay(losses, **guard_options) -> list[dict]:
    """The events a guard would have logged over ``losses`` (``[(step, loss), ...]``, e.g. a run's log): for
    runs trained before the guard, and for sweeps that look for divergence after the fact."""
    guard = DivergenceGuard(**guard_options)
    return [e for step, loss in losses if (e := guard.update(int(step), float(loss))) is not None]


def diverged_in_log(records) -> dict | None:
    """The last ``diverged`` event of a run's log records that no later ``recovered`` or ``rollback`` event
    answers, or None."""
    open_event = None
    for r in records:
        kind = r.get("event")
        if kind == "diverged":
            open_event = r
        elif kind in ("recovered", "rollback"):
            open_event = None
    return open_event
