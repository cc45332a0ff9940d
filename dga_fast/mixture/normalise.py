"""The one centre-and-scale step of the mixture core, shared by DynamicGaussianAnchoring (fit and use), the
anchor ops and HDDC: per group, subtract the mean and divide by one isotropic scale (the RMS of the centred
coordinates), so that the noise floor and every tolerance are relative to the data."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..distributed import LOCAL, Reducer
from .reduce import sum_samples

# a group whose centred RMS is below this many machine epsilons (of the data's dtype) of its RMS magnitude is
# collapsed: constant up to rounding (float32: 7.6e-6, float64: 1.4e-14)
COLLAPSE_EPS = 64.0
# the floor of a component's variance set by the tokens' own rounding: its standard deviation is this many of the
# tokens' epsilons times their RMS magnitude. Values rounded to a grid of step up to eps·|x| then look continuous
# to the structure search instead of a comb of grid values (a unit that varies by a few steps of its grid)
TOKEN_PRECISION = 8.0
# the floor set by the refit's arithmetic, this many of its dtype's epsilons times D (normalised variance): the
# E-step's float32 projections of O(√D)-norm vectors carry errors of about eps·D in its quadratic terms, which
# are divided by the noise variance b; a b above the floor keeps them below a tenth of a nat
COMPUTE_PRECISION = 16.0
# the formats whose rounding a group's tokens may carry (coarsest first), and the rows checked for it
_FORMATS = (torch.bfloat16, torch.float16, torch.float32, torch.float64)
_EPS_ROWS = 4096


@dataclass
class Normaliser:
    shift: torch.Tensor       # [G, D] group means
    scale: torch.Tensor       # [G]    RMS of the centred coordinates (1.0 for a collapsed group)
    collapsed: torch.Tensor   # [G]    bool: the group's data is constant up to rounding
    magnitude: torch.Tensor   # [G]    float64 RMS of the coordinates themselves (uncentred)

    @classmethod
    def fit(cls, x: torch.Tensor,  # [G, N, D] (this rank's rows)
            *, reducer: Reducer = LOCAL, n_total: int | None = None, moments=None) -> "Normaliser":
        """Statistics in float64 (summed over the ranks of ``reducer``), returned in ``x``'s dtype.

        ``moments``: a fused ``x -> group_sums(x)`` for one process (``dga_fast.ops.group_moments``: the native
        op on CPU); used when ``reducer`` has a single rank."""
        G, N, D = x.shape
        n = n_total if n_total is not None else reducer.sum_int(N)
        if moments is not None and reducer.world == 1:
            shift, dev2, sq = moments(x)
        else:
            shift, dev2, sq = group_sums(x, reducer=reducer, n_total=n)
        var, mag = dev2 / (n * D), sq / (n * D)                                  # [G]
        collapsed = var.sqrt() <= COLLAPSE_EPS * torch.finfo(x.dtype).eps * mag.sqrt()
        scale = torch.where(collapsed, torch.ones_like(var), var.sqrt())
        return cls(shift=shift.to(x.dtype), scale=scale.to(x.dtype), collapsed=collapsed,
                   magnitude=mag.sqrt().to(torch.float64))

    @classmethod
    def fit_minmax(cls, x: torch.Tensor,  # [G, N, D] (this rank's rows)
                   *, reducer: Reducer = LOCAL) -> "Normaliser":
        """The published code's normalisation (DESIGN §6a), kept for comparisons: ``(x − max) / (max − min)``
        with one max and min per group over all its rows and dims (so the range is [−1, 0]); a group with
        ``max − min`` below the collapse tolerance gets scale 1 and is collapsed."""
        G, N, D = x.shape
        flat = x.reshape(G, N * D).to(torch.float64)
        inf = flat.new_full((G,), float("inf"))
        hi = reducer.max(flat.amax(1) if N else -inf)                            # [G]
        lo = -reducer.max(-flat.amin(1) if N else -inf)
        mag = torch.maximum(hi.abs(), lo.abs())
        collapsed = (hi - lo) <= COLLAPSE_EPS * torch.finfo(x.dtype).eps * mag
        scale = torch.where(collapsed, torch.ones_like(hi), hi - lo)
        return cls(shift=hi.unsqueeze(1).expand(G, D).to(x.dtype).contiguous(), scale=scale.to(x.dtype),
                   collapsed=collapsed, magnitude=mag)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:   # [G, N, D] -> [G, N, D] normalised
        return normalise(x, self.shift, self.scale)

    def variance_floor(self, noise_floor: float, token_eps: torch.Tensor,  # [G] float64 (``token_eps``)
                       D: int, dtype: torch.dtype) -> torch.Tensor:      # [G] in ``dtype``
        """The smallest variance a component of each group may have, in normalised coordinates: the largest of
        - ``noise_floor``: relative to the group's own spread (its per-coordinate variance is 1 there);
        - ``(TOKEN_PRECISION · token_eps · magnitude / scale)²``: relative to the tokens' magnitude, at their own
          rounding. A group whose spread is a few of its rounding steps (a dying unit, constant up to a relative
          noise near its precision) then gets one Gaussian, while levels many steps apart are still told apart;
        - ``COMPUTE_PRECISION · eps(dtype) · D``: what the refit's arithmetic in ``dtype`` resolves.
        No structure below the floor can justify a split or keep two components apart."""
        rel = TOKEN_PRECISION * token_eps.to(self.magnitude.device) * self.magnitude / self.scale.to(torch.float64)
        arith = COMPUTE_PRECISION * torch.finfo(dtype).eps * D
        floor = rel.square().clamp_min(max(float(noise_floor), arith))
        return floor.to(dtype)


def token_eps(x: torch.Tensor,  # [G, N, D] (this rank's rows)
              *, reducer: Reducer = LOCAL) -> torch.Tensor:   # [G] float64
    """The precision each group's tokens actually have: the machine epsilon of the narrowest of bfloat16,
    float16, float32 and ``x``'s dtype that holds every value of the group's first ``_EPS_ROWS`` rows (on
    every rank) exactly. Tokens made in bfloat16 or float32 and cast up keep that format's rounding grid."""
    G = x.shape[0]
    rows = x[:, :_EPS_ROWS]
    eps = torch.full((G,), torch.finfo(x.dtype).eps, dtype=torch.float64, device=x.device)
    todo = torch.ones(G, dtype=torch.bool, device=x.device)
    for fmt in (f for f in _FORMATS if torch.finfo(f).eps > torch.finfo(x.dtype).eps):   # coarsest first
        lost = (rows.to(fmt).to(x.dtype) != rows).flatten(1).any(1).to(torch.int32)     # [G] a value not held
        holds = (reducer.max(lost) == 0) & todo
        eps = torch.where(holds, torch.full_like(eps, torch.finfo(fmt).eps), eps)
        todo &= ~holds
    return eps


def group_sums(x: torch.Tensor,  # [G, N, D] (this rank's rows)
               *, reducer: Reducer = LOCAL, n_total: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:   # [G, D], [G], [G] float64
    """Per group, over all ranks' rows: the mean (refined by a second pass ``μ = μ₀ + Σ(x − μ₀)/n``: the first
    pass's rounding error, up to ``n·eps·|x|``, would otherwise count as spread and keep a unit that is constant
    up to rounding from being recognised as collapsed), ``Σ‖x − μ‖²`` and ``Σ‖x‖²``, in float64, each group's rows
    added in order."""
    n = n_total if n_total is not None else reducer.sum_int(x.shape[1])
    x64 = x.to(torch.float64)
    shift = reducer.sum(sum_samples(x64)) / n                                 # [G, D]
    shift = shift + reducer.sum(sum_samples(x64 - shift.unsqueeze(1))) / n
    dev2 = reducer.sum(sum_samples((x64 - shift.unsqueeze(1)).square().sum(-1)))
    return shift, dev2, reducer.sum(sum_samples(x64.square().sum(-1)))


def normalise(x: torch.Tensor,      # [G, N, D]
              shift: torch.Tensor,  # [G, D]
              scale: torch.Tensor   # [G]
              ) -> torch.Tensor:    # [G, N, D] in the promoted dtype (at least float32)
    dt = torch.promote_types(x.dtype, torch.float32)
    # one contiguous copy, then in place: the same values as (x − shift) / scale, about 3× faster on a transposed
    # [B, U, D] → [U, B, D] view (the anchor assignment's tokens) and never slower
    out = x.to(dt, copy=True, memory_format=torch.contiguous_format)
    return out.sub_(shift.to(dt).unsqueeze(1)).div_(scale.to(dt)[:, None, None])


def denormalise_means(means: torch.Tensor,  # [G, K, D] normalised coordinates
                      shift: torch.Tensor,  # [G, D]
                      scale: torch.Tensor   # [G]
                      ) -> torch.Tensor:    # [G, K, D] data coordinates
    return means * scale.to(means.dtype)[:, None, None] + shift.to(means.dtype).unsqueeze(1)
