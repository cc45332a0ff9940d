"""DDPM noise schedule (ε-prediction) and the DDIM sampler."""
from __future__ import annotations

import torch
from torch import nn

from .. import _rng


class DiffusionSchedule(nn.Module):
    """Linear β schedule (``beta_start`` → ``beta_end`` over ``timesteps``), stored as float64 buffers."""

    def __init__(self, timesteps: int = 1000, beta_schedule: str = "linear", beta_start: float = 0.0015,
                 beta_end: float = 0.0155):
        super().__init__()
        if beta_schedule != "linear":
            raise ValueError(f"beta_schedule must be 'linear', got {beta_schedule!r}")
        if not (0 < beta_start < beta_end < 1):
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        if timesteps < 2:
            raise ValueError(f"timesteps must be >= 2, got {timesteps}")
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        self.timesteps = timesteps
        self.register_buffer("alphas_cumprod", torch.cumprod(1.0 - betas, 0), persistent=False)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε``."""
        a = self.alphas_cumprod[t].to(x0.dtype).view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    @torch.no_grad()
    def ddim(self, eps_fn, x_T: torch.Tensor, steps: int = 50, eta: float = 0.0,
             generator: torch.Generator | None = None, clip: float | None = 1.0) -> torch.Tensor:
        """DDIM (Song et al. 2021) from ``x_T`` over ``steps`` evenly spaced timesteps; ``eta = 0`` is
        deterministic. ``eps_fn(x_t, t [B])`` predicts the noise. The predicted ``x0`` is clamped to
        ``[-clip, clip]`` (pixels live in ``[-1, 1]``; latents are not clamped: ``clip=None``)."""
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps must be in [1, {self.timesteps}], got {steps}")
        ts = torch.linspace(self.timesteps - 1, 0, steps, dtype=torch.float64).round().long().tolist()
        x = x_T
        B = x.shape[0]
        for i, t in enumerate(ts):
            a_t = self.alphas_cumprod[t]
            a_prev = self.alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
            eps = eps_fn(x, torch.full((B,), t, device=x.device, dtype=torch.long))
            x0 = ((x - (1 - a_t).sqrt().to(x.dtype) * eps) / a_t.sqrt().to(x.dtype))
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
            sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp_min(0).sqrt()
            dir_coef = (1 - a_prev - sigma ** 2).clamp_min(0).sqrt()
            x = a_prev.sqrt().to(x.dtype) * x0 + dir_coef.to(x.dtype) * eps
            if eta > 0 and i + 1 < len(ts):
                noise = _rng.randn(x.shape, generator, x.device, x.dtype)
                x = x + sigma.to(x.dtype) * noise
        return x
