"""How Dynamic Gaussian Anchoring normalises tokens and shifts them toward their anchor, as strategy objects
(``DynamicGaussianAnchoring(shift=...)``):

- ``OurShift`` (``"ours"``, DESIGN §4): the refit's statistics (mean, one RMS scale per unit) are stored and
  reused at use time; the anchor is mapped back to token coordinates; λ per (sample, unit) or fixed.
- ``PublishedShift`` (``"published"``, DESIGN §6a): what the published code does, for comparisons: min-max
  normalisation ``(x − max)/(max − min)``, at refit time over the refit's tokens and at use time over each
  batch anew; the anchor, in those coordinates, mixed into the raw token; one λ per batch. Plain PyTorch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ops
from .distributed import Reducer
from .mixture.normalise import Normaliser
from .ops.anchor_shift.reference import published_anchor_shift


@dataclass(frozen=True)
class OurShift:
    name = "ours"

    def fit_normaliser(self, x: torch.Tensor,  # [U, N, Dc]
                       reducer: Reducer, n_total: int) -> Normaliser:
        return Normaliser.fit(x, reducer=reducer, n_total=n_total, moments=ops.group_moments)

    def use_stats(self, dyga, tokens: torch.Tensor):  # tokens [B, U, Dc] -> (shift [U, Dc], scale [U])
        """The normalisation ``assign`` and ``responsibilities`` apply: the refit's, stored."""
        return dyga.norm_shift, dyga.norm_scale

    def __call__(self, dyga, tokens: torch.Tensor) -> torch.Tensor:  # [B, U, Dc]
        return ops.anchor_shift(tokens, dyga.state, dyga.norm_shift, dyga.norm_scale, dyga.align,
                                dyga.align_max)


@dataclass(frozen=True)
class PublishedShift:
    name = "published"

    def fit_normaliser(self, x: torch.Tensor,  # [U, N, Dc]
                       reducer: Reducer, n_total: int) -> Normaliser:
        return Normaliser.fit_minmax(x, reducer=reducer)

    def use_stats(self, dyga, tokens: torch.Tensor):  # tokens [B, U, Dc] -> (shift [U, Dc], scale [U])
        """The batch's own min-max normalisation, as the shift uses it."""
        norm = Normaliser.fit_minmax(tokens.detach().transpose(0, 1))
        return norm.shift, norm.scale

    def __call__(self, dyga, tokens: torch.Tensor) -> torch.Tensor:  # [B, U, Dc]
        return published_anchor_shift(tokens, dyga.state, dyga.align_max)


SHIFTS = {"ours": OurShift(), "published": PublishedShift()}


def shift_rule(name: str):
    """The strategy ``DynamicGaussianAnchoring(shift=name)`` uses."""
    if name not in SHIFTS:
        raise ValueError(f"shift must be one of {sorted(SHIFTS)}, got {name!r}")
    return SHIFTS[name]
