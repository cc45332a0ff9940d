"""Latent-unit tokens shaped like the published model's (DESIGN §6a), with the kinds of units a trained
encoder produces: many levels, levels of very unequal frequency, collapsed units, units carrying two factors.

Each unit ``u`` has a scalar: the position of its level on ``[-1, 1]`` (evenly spaced) plus a jitter that is a
fraction of the level gap. The scalar goes through the unit's own MLP ``1 → hidden[0] → … → dim`` with PyTorch's
default ``nn.Linear`` initialisation and a ReLU after every layer (the official token MLP is 1 → 256 → 512 → 32:
most token coordinates are then exactly zero), or a SiLU with a linear last layer (``activation="silu"``,
``final_relu=False``: smooth tokens). A *collapsed* unit has one constant scalar (its tokens are identical, as a
dead encoder unit gives); a *near-collapsed* unit's scalar is that constant times ``1 + r·ε`` (``ε`` standard
normal, ``r = near_collapsed``): a dying unit, constant up to a relative noise ``r``; a *fine* unit
(``rel_gap = g``) has its levels at that constant times ``1 + g·l``, so that they differ by a relative ``g``;
a *mixed* unit carries two factors, its scalar a coarse position for the first and a fine offset for the second,
and its true labels are the joint values (``L1·L2`` of them).

Every unit draws from its own generator seeded by ``(seed, unit)``, so a unit's tokens do not depend on the
other units' settings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .tokens import UnitTokens


@dataclass(frozen=True)
class UnitSpec:
    """One latent unit: ``levels`` values (``levels2 > 0``: a second factor mixed in, ``levels·levels2`` joint
    values), ``zipf`` the exponent of the level frequencies (0: uniform; p_l ∝ (l + 1)^−zipf, in a random
    order of the levels), ``collapsed``: one constant scalar whatever the labels; ``near_collapsed = r > 0``:
    that constant times ``1 + r·ε``, one value up to a relative noise ``r``; ``rel_gap = g > 0``: the levels at
    that constant times ``1 + g·l`` (relative spacing ``g``, the jitter a fraction of ``g``); ``jitter``: this
    unit's jitter as a fraction of the level gap (``None``: ``make_published_tokens``' ``jitter``)."""
    levels: int
    zipf: float = 0.0
    levels2: int = 0
    collapsed: bool = False
    near_collapsed: float = 0.0
    rel_gap: float = 0.0
    jitter: float | None = None

    def __post_init__(self):
        if self.levels < 1 or self.levels2 < 0:
            raise ValueError(f"levels must be >= 1 and levels2 >= 0, got {self.levels}, {self.levels2}")
        if self.near_collapsed < 0 or self.rel_gap < 0 or (self.jitter is not None and self.jitter < 0):
            raise ValueError(f"near_collapsed, rel_gap and jitter must be >= 0, got {self.near_collapsed}, "
                             f"{self.rel_gap}, {self.jitter}")
        if sum((self.collapsed, self.near_collapsed > 0, self.rel_gap > 0 or self.levels2 > 0)) > 1:
            raise ValueError("a UnitSpec is at most one of collapsed, near_collapsed and fine (rel_gap) or mixed "
                             "(levels2)")

    @property
    def n_values(self) -> int:
        return 1 if self.collapsed or self.near_collapsed > 0 else self.levels * max(self.levels2, 1)


def hard_setting(num_units: int = 20, max_levels: int = 40, zipf: float = 1.0,
                 near_collapsed: float = 1e-4) -> list[UnitSpec]:
    """The hard token set: level counts 2..``max_levels`` spread over the units, Zipf frequencies, unit 0
    collapsed, unit 1 near-collapsed (constant up to a relative noise ``near_collapsed``: a dying unit), units 2
    and 3 mixed (3 × 4 and 2 × 5 joint values)."""
    if num_units < 5:
        raise ValueError(f"num_units must be >= 5 for the hard setting, got {num_units}")
    n_plain = num_units - 4
    lv = [2 + round(i * (max_levels - 2) / max(n_plain - 1, 1)) for i in range(n_plain)]
    return ([UnitSpec(1, collapsed=True), UnitSpec(1, near_collapsed=near_collapsed),
             UnitSpec(3, zipf, levels2=4), UnitSpec(2, zipf, levels2=5)]
            + [UnitSpec(L, zipf) for L in lv])


def _mlp(g: torch.Generator, widths: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Weights of ``nn.Linear`` layers with PyTorch's default init: U(±1/√fan_in) for weight and bias."""
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_in, fan_out, generator=g, dtype=torch.float64) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=g, dtype=torch.float64) * 2 - 1) * bound
        layers.append((w, b))
    return layers


def _labels(g: torch.Generator, n: int, L: int, zipf: float) -> torch.Tensor:
    p = (torch.arange(L, dtype=torch.float64) + 1.0).pow(-zipf)
    p = p[torch.randperm(L, generator=g)]
    return torch.multinomial(p / p.sum(), n, replacement=True, generator=g)


# the scalar of a collapsed unit, and the base of near-collapsed and fine units
CONSTANT = 0.3


def _scalar(g: torch.Generator, spec: UnitSpec, n: int, jitter: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scalar [n] float64, joint label [n] int64)`` of one unit."""
    jitter = jitter if spec.jitter is None else spec.jitter
    zero = torch.zeros(n, dtype=torch.int64)
    if spec.collapsed:
        return torch.full((n,), CONSTANT, dtype=torch.float64), zero
    if spec.near_collapsed > 0:
        return CONSTANT * (1.0 + spec.near_collapsed * torch.randn(n, generator=g, dtype=torch.float64)), zero
    if spec.rel_gap > 0:
        label = _labels(g, n, spec.levels, spec.zipf)
        rel = spec.rel_gap * (label.to(torch.float64) + jitter * torch.randn(n, generator=g, dtype=torch.float64))
        return CONSTANT * (1.0 + rel), label
    L1, L2 = spec.levels, max(spec.levels2, 1)
    label = _labels(g, n, L1 * L2, spec.zipf)
    # the second factor as a fine offset inside the coarse step of the first (blocks 1.5 steps apart)
    pos = ((label // L2) * (L2 + 0.5) + label % L2).to(torch.float64)
    top = (L1 - 1) * (L2 + 0.5) + L2 - 1
    if top == 0:
        return pos, label
    gap = 2.0 / top
    pos = pos * gap - 1.0
    return pos + jitter * gap * torch.randn(n, generator=g, dtype=torch.float64), label


def make_published_tokens(units: list[UnitSpec] | None = None, n: int = 20_000, dim: int = 32, *,
                          hidden: tuple[int, ...] = (256, 512), activation: str = "relu", final_relu: bool = True,
                          jitter: float = 0.1, scale: float = 2.0, dtype: torch.dtype = torch.float32,
                          seed: int = 0) -> UnitTokens:
    """Tokens ``[n, U, dim]`` (``U = len(units)``; default ``hard_setting()``) through per-unit MLPs shaped like the
    published feature extractor's. ``scale`` multiplies the scalar before the MLP (a trained encoder's outputs
    span a few units). ``labels [n, U]`` are the true (joint) values, ``levels [U]`` their counts (1 for a
    collapsed unit)."""
    units = hard_setting() if units is None else list(units)
    if not units:
        raise ValueError("units must hold at least one UnitSpec")
    if activation not in ("relu", "silu"):
        raise ValueError(f"activation must be 'relu' or 'silu', got {activation!r}")
    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be >= 1, got n={n}, dim={dim}")
    act = torch.relu if activation == "relu" else torch.nn.functional.silu
    toks, labels = [], []
    for u, spec in enumerate(units):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + u)
        s, lab = _scalar(g, spec, n, jitter)
        h = (s * scale).unsqueeze(-1)
        layers = _mlp(g, [1, *hidden, dim])
        for i, (w, b) in enumerate(layers):
            h = h @ w + b
            if i < len(layers) - 1 or final_relu:
                h = act(h)
        toks.append(h)
        labels.append(lab)
    tokens = torch.stack(toks, 1).to(dtype).contiguous()
    levels = torch.tensor([s.n_values for s in units], dtype=torch.int64)
    return UnitTokens(tokens=tokens, labels=torch.stack(labels, 1), levels=levels)
