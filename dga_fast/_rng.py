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
