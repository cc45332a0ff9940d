"""The guard of a run's latent units (issue 13): after every refit, compare each unit's token spread with the
largest it had during the run; warn about the units below ``threshold`` of their peak, and when every unit is
below it (the encoder gives one token per unit whatever the image) act on ``on_collapse``."""
from __future__ import annotations

import warnings

ON_COLLAPSE = ("warn", "stop")


class EncoderCollapse(RuntimeError):
    """Every latent unit's token spread fell below the threshold of its peak; raised by ``on_collapse="stop"``
    after the training state was checkpointed."""

    def __init__(self, message: str, step: int, checkpoint=None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


class CollapseWarning(UserWarning):
    pass


class CollapseGuard:
    """``update(step, spread)`` returns the indices of the units below ``threshold · peak`` (warning about them)
    and whether all units are; ``peak`` is part of the training state (kept across ``--resume``)."""

    def __init__(self, threshold: float = 0.1, on_collapse: str = "warn", peak: list[float] | None = None):
        if on_collapse not in ON_COLLAPSE:
            raise ValueError(f"on_collapse must be one of {ON_COLLAPSE}, got {on_collapse!r}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"collapse_threshold must be in [0, 1), got {threshold}")
        self.threshold, self.on_collapse = float(threshold), on_collapse
        self.peak = list(peak) if peak else None

    def update(self, step: int, spread: list[float]) -> tuple[list[int], bool]:
        if self.peak is None or len(self.peak) != len(spread):
            self.peak = [0.0] * len(spread)
        self.peak = [max(p, float(s)) for p, s in zip(self.peak, spread)]
        low = [u for u, (s, p) in enumerate(zip(spread, self.peak)) if s < self.threshold * p or p == 0.0]
        if low:
            rel = ", ".join(f"{u}: {spread[u] / self.peak[u]:.1%}" if self.peak[u] else f"{u}: constant"
                            for u in low)
            warnings.warn(f"step {step}: latent unit(s) {low} fell below {self.threshold:.0%} of their peak token "
                          f"spread (spread / peak: {rel}); their tokens hardly depend on the image any more",
                          CollapseWarning, stacklevel=3)
        return low, len(low) == len(spread)

    def message(self, step: int) -> str:
        return (f"step {step}: every latent unit's token spread is below {self.threshold:.0%} of its peak: the "
                f"encoder gives the same tokens for every image and the U-Net generates unconditionally. "
                f"See the README's 'Why the encoder has normalisation'.")
