"""Free-parameter counts, BIC and ICL (HDclassif conventions: larger is better)."""
from __future__ import annotations

import math

import torch

from .state import MixtureState


def n_free_params(state: MixtureState, model: str) -> torch.Tensor:  # [G]
    """Free parameters of each group's mixture (Bouveyron et al. 2007, Table 1), active components only:
    means and weights ``K·D + K − 1``, orientations ``Σ_k d_k (D − (d_k + 1)/2)``, plus the variances of
    the submodel."""
    D = state.D
    act = state.active.to(torch.float64)
    K = act.sum(1)
    d = state.dims.to(torch.float64) * act
    rho = K * D + K - 1
    tau = (d * (D - (d + 1) / 2.0)).sum(1)
    if model == "AkjBkQkDk":
        var = d.sum(1) + K
    elif model == "AkBkQkDk":
        var = 2 * K
    elif model == "ABkQkDk":
        var = 1 + K
    elif model == "AkjBQkDk":
        var = d.sum(1) + 1
    else:
        raise ValueError(f"model must be one of AkjBkQkDk, AkBkQkDk, ABkQkDk, AkjBQkDk, got {model!r}")
    return rho + tau + var


def bic(total_loglik: torch.Tensor,  # [G] Σ_i log p(x_i)
        state: MixtureState, model: str, n: int) -> torch.Tensor:  # [G]
    """``BIC = 2·LL − m·log N``."""
    return 2.0 * total_loglik.to(torch.float64) - n_free_params(state, model) * math.log(n)


def icl(bic_value: torch.Tensor,   # [G]
        log_resp: torch.Tensor     # [G, N, K]
        ) -> torch.Tensor:         # [G]
    """``ICL = BIC + 2 Σ_i Σ_k t_ik log t_ik`` (BIC minus twice the classification entropy)."""
    t = log_resp.exp()
    ent = torch.where(t > 0, t * log_resp, torch.zeros_like(t)).sum((1, 2))
    return bic_value + 2.0 * ent.to(torch.float64)
