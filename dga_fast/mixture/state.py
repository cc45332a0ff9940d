"""MixtureState: the padded, batched parameters of G HDDC mixtures with at most K components each."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from .reduce import sum_slots

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class MixtureState:
    """Parameters of ``G`` high-dimensional Gaussian mixtures, padded to ``K`` component slots.

    Component ``k`` of group ``g`` has covariance
    ``Σ = Q diag(a) Qᵀ + b (I − Q Qᵀ)`` with ``Q = components[g, k, :, :dims[g, k]]``,
    ``a = eigvals[g, k, :dims[g, k]]`` and ``b = noise[g, k]``.
    Inactive slots have ``log_weights = -inf`` and are ignored everywhere.
    """

    means: torch.Tensor        # [G, K, D]
    components: torch.Tensor   # [G, K, D, dmax]  columns = Q_k, zero beyond d_k
    eigvals: torch.Tensor      # [G, K, dmax]     a_kj, 1.0 beyond d_k
    noise: torch.Tensor        # [G, K]           b_k
    log_weights: torch.Tensor  # [G, K]           log pi_k, -inf when inactive
    dims: torch.Tensor         # [G, K]  int64    d_k
    active: torch.Tensor       # [G, K]  bool

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, G: int, K: int, D: int, dmax: int, *, dtype=torch.float32, device=None) -> "MixtureState":
        dmax = max(int(dmax), 1)
        return cls(
            means=torch.zeros(G, K, D, dtype=dtype, device=device),
            components=torch.zeros(G, K, D, dmax, dtype=dtype, device=device),
            eigvals=torch.ones(G, K, dmax, dtype=dtype, device=device),
            noise=torch.ones(G, K, dtype=dtype, device=device),
            log_weights=torch.full((G, K), float("-inf"), dtype=dtype, device=device),
            dims=torch.zeros(G, K, dtype=torch.int64, device=device),
            active=torch.zeros(G, K, dtype=torch.bool, device=device),
        )

    # ------------------------------------------------------------------ shape
    @property
    def G(self) -> int:
        return self.means.shape[0]

    @property
    def K(self) -> int:
        return self.means.shape[1]

    @property
    def D(self) -> int:
        return self.means.shape[2]

    @property
    def dmax(self) -> int:
        return self.components.shape[3]

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def device(self) -> torch.device:
        return self.means.device

    # ------------------------------------------------------------------ functional helpers
    def tensors(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def apply(self, fn) -> "MixtureState":
        """A new state with ``fn(tensor)`` applied to every field."""
        return MixtureState(**{k: fn(v) for k, v in self.tensors().items()})

    def clone(self) -> "MixtureState":
        return self.apply(torch.clone)

    def to(self, device=None, dtype=None) -> "MixtureState":
        def move(t):
            if t.is_floating_point() and dtype is not None:
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)
        return self.apply(move)

    def index_groups(self, idx: torch.Tensor) -> "MixtureState":
        return self.apply(lambda t: t[idx])

    def index_slots(self, order: torch.Tensor) -> "MixtureState":
        """Gather component slots: ``order [G, K']`` of slot indices (per group)."""
        def gather(t):
            shape = order.shape + t.shape[2:]
            idx = order.reshape(order.shape + (1,) * (t.dim() - 2)).expand(shape)
            return torch.gather(t, 1, idx)
        return self.apply(gather)

    def scatter_groups(self, idx: torch.Tensor, sub: "MixtureState") -> "MixtureState":
        """A copy of ``self`` whose groups ``idx`` are replaced by ``sub`` (same K)."""
        out = self.clone()
        for name, t in out.tensors().items():
            t[idx] = getattr(sub, name)
        return out

    def used_slots(self) -> int:
        """1 + the highest active slot index over all groups (at least 1)."""
        k = torch.arange(self.K, device=self.device)
        top = torch.where(self.active, k, torch.full_like(k, -1)).amax()
        return max(int(top) + 1, 1)

    def resize(self, K: int) -> "MixtureState":
        """Truncate to, or pad with empty slots up to, ``K`` slots. Truncation must not drop active slots."""
        if K == self.K:
            return self
        if K < self.K:
            if bool(self.active[:, K:].any()):
                raise ValueError(f"cannot truncate a mixture to {K} slots: slot >= {K} is active")
            return self.apply(lambda t: t[:, :K].contiguous())
        pad = MixtureState.empty(self.G, K - self.K, self.D, self.dmax, dtype=self.dtype, device=self.device)
        return MixtureState(**{n: torch.cat([t, getattr(pad, n)], dim=1) for n, t in self.tensors().items()})

    def trim_dims(self) -> "MixtureState":
        """Drop subspace columns beyond the largest d_k (cheaper E-steps); keeps at least one column. A no-op
        inside ``torch.compile`` (the width is data-dependent; the padded columns carry zero weight)."""
        if torch.compiler.is_compiling():
            return self
        dm = max(int(self.dims.max()) if self.dims.numel() else 1, 1)
        if dm >= self.dmax:
            return self
        s = self.tensors()
        s["components"] = self.components[..., :dm]
        s["eigvals"] = self.eigvals[..., :dm]
        return MixtureState(**s)

    def n_components(self) -> torch.Tensor:
        return self.active.sum(dim=1)

    # ------------------------------------------------------------------ model quantities
    def dim_mask(self) -> torch.Tensor:
        """``[G, K, dmax]`` True for j < d_k."""
        j = torch.arange(self.dmax, device=self.device)
        return j < self.dims.unsqueeze(-1)

    def cost_terms(self):
        """Coefficients of the E-step cost ``C = Σ_j w_j y_j² + ‖z‖²/b + c`` (DESIGN §3).

        Returns ``w [G,K,dmax]`` (zero on padded dims), ``inv_b [G,K]`` and ``const [G,K]`` (+inf for
        inactive slots), in the state's dtype (at least float32).
        """
        dt = torch.promote_types(self.dtype, torch.float32)
        a = self.eigvals.to(dt)
        b = self.noise.to(dt)
        m = self.dim_mask()
        inv_b = 1.0 / b
        w = torch.where(m, 1.0 / a - inv_b.unsqueeze(-1), torch.zeros_like(a))
        log_a = sum_slots(torch.where(m, torch.log(a), torch.zeros_like(a)))
        d = self.dims.to(dt)
        const = log_a + (self.D - d) * torch.log(b) - 2.0 * self.log_weights.to(dt) + self.D * LOG_2PI
        const = torch.where(self.active, const, torch.full_like(const, float("inf")))
        return w, inv_b, const

    def covariances(self) -> torch.Tensor:
        """The implied full covariances ``Σ_k`` ``[G, K, D, D]``."""
        m = self.dim_mask()
        Q = self.components * m.unsqueeze(-2).to(self.dtype)
        a = torch.where(m, self.eigvals, torch.zeros_like(self.eigvals))
        b = self.noise[..., None, None]
        eye = torch.eye(self.D, dtype=self.dtype, device=self.device)
        QQt = Q @ Q.transpose(-1, -2)
        return (Q * a.unsqueeze(-2)) @ Q.transpose(-1, -2) + b * (eye - QQt)

    def weights(self) -> torch.Tensor:
        return torch.exp(self.log_weights)

    def validate(self, name: str = "state") -> "MixtureState":
        G, K, D = self.means.shape
        expect = {
            "components": (G, K, D, self.dmax), "eigvals": (G, K, self.dmax), "noise": (G, K),
            "log_weights": (G, K), "dims": (G, K), "active": (G, K),
        }
        for field, shape in expect.items():
            t = getattr(self, field)
            if tuple(t.shape) != shape:
                raise ValueError(f"{name}.{field} must have shape {shape}, got {tuple(t.shape)}")
        if self.dims.dtype != torch.int64:
            raise TypeError(f"{name}.dims must be int64, got {self.dims.dtype}")
        if self.active.dtype != torch.bool:
            raise TypeError(f"{name}.active must be bool, got {self.active.dtype}")
        if G and not bool(self.active.any(dim=1).all()):
            raise ValueError(f"{name} has a group without any active component")
        return self
