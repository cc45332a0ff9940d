"""Vector quantiser with an EMA codebook and restarts of dead codes (the first stage's bottleneck)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    """``z [B, D, H, W]`` → nearest of ``num_codes`` codes of dimension ``D``, straight-through gradient.

    The codebook is not trained by gradient: each code is the exponential moving average (``decay``) of the
    vectors assigned to it (van den Oord et al. 2017, appendix). The first training batch initialises the
    codes from its own vectors. A code that no vector of the last ``restart_after`` training batches chose is
    *dead* and restarts on a random vector of the current batch, so the codebook follows the encoder.
    ``usage()`` is the fraction of codes alive. Single process: the EMA statistics are not all-reduced.
    """

    def __init__(self, num_codes: int = 2048, dim: int = 3, decay: float = 0.99, eps: float = 1e-5,
                 restart_after: int = 50):
        super().__init__()
        if num_codes < 2 or dim < 1:
            raise ValueError(f"num_codes must be >= 2 and dim >= 1, got {num_codes}, {dim}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        if restart_after < 1:
            raise ValueError(f"restart_after must be >= 1, got {restart_after}")
        self.num_codes, self.dim, self.decay, self.eps = num_codes, dim, decay, eps
        self.restart_after = restart_after
        self.register_buffer("codebook", torch.randn(num_codes, dim))     # [K, D]
        self.register_buffer("ema_count", torch.ones(num_codes))          # [K]
        self.register_buffer("ema_sum", self.codebook.clone())            # [K, D]
        self.register_buffer("idle", torch.zeros(num_codes, dtype=torch.int64))   # batches since last chosen
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.int64))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N] code indices
        c = self.codebook
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ c.T + c.pow(2).sum(1)
        return d.argmin(1)

    def usage(self) -> float:
        """Fraction of codes chosen within the last ``restart_after`` training batches."""
        return float((self.idle < self.restart_after).float().mean())

    @torch.no_grad()
    def _pick(self, flat: torch.Tensor, n: int, generator=None) -> torch.Tensor:   # [N, D] -> [n, D]
        idx = torch.randint(0, flat.shape[0], (n,), device=flat.device, generator=generator)
        return flat[idx] + 1e-3 * flat.std() * torch.randn(n, self.dim, device=flat.device, generator=generator)

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:   # [N, D]: the codes start on the first batch's vectors
        self.codebook.copy_(self._pick(flat, self.num_codes))
        self.ema_sum.copy_(self.codebook)
        self.ema_count.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:   # [N, D], [N]
        count = torch.bincount(idx, minlength=self.num_codes).to(flat.dtype)
        total = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(total, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        self.idle.add_(1).masked_fill_(count > 0, 0)
        dead = self.idle >= self.restart_after
        n_dead = int(dead.sum())
        if n_dead:
            fresh = self._pick(flat, n_dead)
            self.codebook[dead] = fresh
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
            self.idle[dead] = 0
            self.restarts.add_(n_dead)

    def forward(self, z: torch.Tensor):  # [B, D, H, W] -> (q [B, D, H, W], commitment loss, codes [B, H, W])
        B, D, H, W = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)
        if self.training and not bool(self.initialised):
            self._initialise(flat.detach().float())
        idx = self.nearest(flat.detach())                  # one search per call: the batch is quantised by
        q = self.codebook[idx].to(z.dtype)                 # the codes before this batch's EMA update
        if self.training:
            self._update(flat.detach().float(), idx)
        commit = F.mse_loss(flat, q.detach())
        q = flat + (q - flat).detach()                                      # straight-through
        return q.view(B, H, W, D).permute(0, 3, 1, 2), commit, idx.view(B, H, W)
