"""Random draws that accept a generator on any device (a CPU generator with CUDA tensors included)."""
from __future__ import annotations

import torch


def randn(shape, generator: torch.Generator | None, device, dtype=None) -> torch.Tensor:
    """``torch.randn`` drawn on the generator's device (so a seeded CPU generator gives the same numbers
    whatever the model's device), then moved to ``device``."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def randint(high: int, shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """``torch.randint(0, high, shape)`` drawn on the generator's device, then moved to ``device``."""
    if generator is None:
        return torch.randint(0, high, shape, device=device)
    return torch.randint(0, high, shape, generator=generator, device=generator.device).to(device)


class SharedStream:
    """Draws ``[G, ...]`` for G groups from one generator (the draws of group g depend on G)."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def rand(self, G: int, *shape, dtype=torch.float32) -> torch.Tensor:
        g = self.generator
        return torch.rand(G, *shape, generator=g, device=g.device, dtype=dtype)

    def randint(self, high: int, G: int, *shape) -> torch.Tensor:
        g = self.generator
        return torch.randint(0, high, (G, *shape), generator=g, device=g.device)


class UnitStreams:
    """One CPU generator per group, seeded by ``(seed, unit)``: group g's draws depend on its unit id and the
    seed only, never on which other units share the batch (DESIGN §4, per-unit independence)."""

    def __init__(self, seed: int, units):
        self.seed = int(seed)
        self.units = [int(u) for u in units]
        self.generators = [torch.Generator().manual_seed(unit_seed(self.seed, u)) for u in self.units]

    def __len__(self) -> int:
        return len(self.units)

    def select(self, idx) -> "UnitStreams":
        """The streams of groups ``idx`` (the generators themselves, so their state moves on together)."""
        out = UnitStreams.__new__(UnitStreams)
        out.seed, out.units = self.seed, [self.units[int(i)] for i in idx]
        out.generators = [self.generators[int(i)] for i in idx]
        return out

    def _check(self, G: int):
        if G != len(self.generators):
            raise ValueError(f"UnitStreams holds {len(self.generators)} unit streams, asked for {G} groups")

    def rand(self, G: int, *shape, dtype=torch.float32) -> torch.Tensor:
        self._check(G)
        return torch.stack([torch.rand(*shape, generator=g, dtype=dtype) for g in self.generators])

    def randint(self, high: int, G: int, *shape) -> torch.Tensor:
        self._check(G)
        return torch.stack([torch.randint(0, high, shape, generator=g) for g in self.generators])


def unit_seed(seed: int, unit: int) -> int:
    """A 63-bit seed mixed from ``(seed, unit)`` (splitmix64 finaliser), distinct for distinct pairs."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(unit) + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def as_streams(generator) -> "SharedStream | UnitStreams":
    """A ``torch.Generator`` becomes a ``SharedStream``; streams pass through."""
    if isinstance(generator, (SharedStream, UnitStreams)):
        return generator
    if isinstance(generator, torch.Generator):
        return SharedStream(generator)
    raise TypeError(f"generator must be a torch.Generator or UnitStreams, got {type(generator).__name__}")
