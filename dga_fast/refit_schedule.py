"""The refit schedule of DyGA during training, as a strategy object the training loop calls after every step
(like gsplat's densification strategy): when to refit, on which images, and the collapse guard that reads
each refit's diagnostics."""
from __future__ import annotations

import math

import torch

from . import distributed as dist_
from .collapse import CollapseGuard
from .data.batches import get_batch, step_seed
from .profiling import nvtx_range


REFIT_SCHEDULES = ("steps", "epoch")
# the published schedule refits on all training images, or on a tenth of them above this many
PUBLISHED_FULL_REFIT_MAX = 100_000


class RefitSchedule:
    """Refit every ``every`` steps from step ``warmup`` on, on ``samples`` images drawn by ``(seed, step)``
    (the same on a resumed run). ``after_step`` returns the log events of the step (``refit``, ``collapse``);
    ``stop`` turns true when every unit is dead and ``on_collapse="stop"``. ``state_dict`` (refit steps and the
    guard's spread peaks) is part of the training state."""

    def __init__(self, every: int = 500, warmup: int = 500, samples: int = 2048, seed: int = 0,
                 collapse_threshold: float = 0.1, on_collapse: str = "warn", progress: bool = True):
        self.every, self.warmup, self.samples, self.seed, self.progress = every, warmup, samples, seed, progress
        self.guard = CollapseGuard(collapse_threshold, on_collapse)
        self.refit_steps: list[int] = []
        self.stop = False

    @classmethod
    def from_config(cls, cfg, n_images: int | None = None, world: int = 1) -> "RefitSchedule":
        """The schedule a ``TrainConfig`` describes. ``refit_schedule="steps"``: ``refit_every``,
        ``refit_warmup``, ``refit_samples``. ``"epoch"`` (the published code's, DESIGN §6a): once per epoch of the
        ``n_images`` training images at the global batch (``batch_size × world``), from the end of the first
        epoch on, on all of them (a tenth above 100,000); each refit starts from scratch, as every refit does."""
        every, warmup, samples = cfg.refit_every, cfg.refit_warmup, cfg.refit_samples
        if cfg.refit_schedule == "epoch":
            if not n_images:
                raise ValueError("refit_schedule='epoch' needs the number of training images")
            every = warmup = max(1, math.ceil(n_images / (cfg.batch_size * world)))
            samples = n_images if n_images <= PUBLISHED_FULL_REFIT_MAX else n_images // 10
        return cls(every, warmup, samples, cfg.seed, cfg.collapse_threshold, cfg.on_collapse, cfg.progress)

    def state_dict(self) -> dict:
        return {"refit_steps": list(self.refit_steps), "spread_peak": self.guard.peak}

    def load_state_dict(self, state: dict) -> None:
        self.refit_steps = list(state.get("refit_steps", []))
        peak = state.get("spread_peak")
        self.guard.peak = list(peak) if peak else None

    def due(self, step: int) -> bool:
        return step >= self.warmup and (step - self.warmup) % self.every == 0

    def after_step(self, step: int, model, dataset, R=dist_.LOCAL) -> list[dict]:
        if not self.due(step):
            return []
        with nvtx_range("refit"):
            self._refit(model, dataset, step, R)
        self.refit_steps.append(step)
        events = [{"step": step, "event": "refit", **model.last_refit}]
        low, all_dead = self.guard.update(step, model.last_refit["spread"])
        if low:
            events.append({"step": step, "event": "collapse", "units": low, "all": all_dead})
        self.stop = all_dead and self.guard.on_collapse == "stop"
        return events

    def _refit(self, model, dataset, step: int, R) -> None:
        """Refit on the step's seeded images; with several ranks each encodes every world-th of them and the
        refit is distributed."""
        g = torch.Generator().manual_seed(step_seed(self.seed, step, 3))
        n = len(dataset)
        idx = torch.randperm(n, generator=g)[:self.samples] if n > self.samples else torch.arange(n)
        idx = idx[R.rank::R.world]
        batches = (get_batch(dataset, idx[i:i + 256]) for i in range(0, len(idx), 256))
        dyga = model.anchoring
        shown = dyga.progress if dyga is not None else None
        if dyga is not None:
            dyga.progress = self.progress and R.rank == 0   # the refit's stages show as their own progress bar
        try:
            model.refit_anchors(batches)
        finally:
            if dyga is not None:
                dyga.progress = shown
