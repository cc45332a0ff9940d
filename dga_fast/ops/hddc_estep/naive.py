"""Brute-force oracle of the HDDC E-step (the tests compare every backend with it): float64, from the implied full
covariances, explicit centring, a linear solve per component."""
from __future__ import annotations

import math

import torch

from ...mixture.state import MixtureState


def brute_estep(x: torch.Tensor, st: MixtureState):
    """Float64 E-step from the implied full covariances, explicit centring."""
    x = x.double()
    cov = st.covariances().double()
    G, K, D, _ = cov.shape
    eye = torch.eye(D, dtype=torch.float64)
    cov = torch.where(st.active[..., None, None], cov, eye)
    z = x.unsqueeze(2) - st.means.double().unsqueeze(1)                       # [G,N,K,D]
    sol = torch.linalg.solve(cov.unsqueeze(1), z.unsqueeze(-1)).squeeze(-1)
    maha = (z * sol).sum(-1)
    logdet = torch.linalg.slogdet(cov)[1]
    lp = -0.5 * (maha + logdet.unsqueeze(1) + D * math.log(2 * math.pi)) + st.log_weights.double().unsqueeze(1)
    lp = torch.where(st.active.unsqueeze(1), lp, torch.full_like(lp, float("-inf")))
    ll = torch.logsumexp(lp, -1)
    return lp - ll.unsqueeze(-1), ll
