"""Reference HDDC E-step (plain PyTorch): the oracle of the fused kernel and the CPU path."""
from __future__ import annotations

import torch

from ..mixture.state import MixtureState


def hddc_estep(x: torch.Tensor,  # [G, N, D]
               state: MixtureState) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-responsibilities ``[G, N, K]`` and per-sample log-likelihood ``[G, N]``.

    Exact cost of DESIGN §3 in float32 (float64 for float64 input), as three batched GEMMs and no tensor
    of size N·K·D: ``y = Qᵀx − Qᵀμ`` for all components at once, ``Σ_j w_j y_j²`` as a GEMM against the
    block-diagonal ``w``, and ``‖x − μ‖² = ‖x‖² − 2xᵀμ + ‖μ‖²`` by expansion. The expansion loses about
    ``eps·(‖x‖² + ‖μ‖²)/b`` of absolute precision in the cost, so callers pass data centred and scaled
    per group (the mixture core, HDDC and DynamicGaussianAnchoring all do).
    """
    dt = torch.promote_types(x.dtype, torch.float32)
    st = state.trim_dims()
    G, N, D = x.shape
    K, dm = st.K, st.dmax
    w, inv_b, const = st.cost_terms()                         # [G,K,dm], [G,K], [G,K]
    xf = x.to(dt)
    mu = st.means.to(dt)
    Q = st.components.to(dt)                                  # [G,K,D,dm]
    Qflat = Q.permute(0, 2, 1, 3).reshape(G, D, K * dm)
    y = torch.baddbmm(-(mu.unsqueeze(-2) @ Q).reshape(G, 1, K * dm), xf, Qflat)   # Q_kᵀ(x − μ_k)
    # block-diagonal [G, K*dm, K] holding w_kj in row k*dm + j, column k
    wblock = (w.unsqueeze(-1) * torch.eye(K, dtype=dt, device=x.device).unsqueeze(1)).reshape(G, K * dm, K)
    cost = torch.baddbmm(const.unsqueeze(1) + (inv_b * mu.square().sum(-1)).unsqueeze(1),
                         xf, (-2.0 * inv_b).unsqueeze(1) * mu.transpose(1, 2))          # [G,N,K]
    cost.baddbmm_(y.square_(), wblock)
    cost.addcmul_(xf.square().sum(-1, keepdim=True), inv_b.unsqueeze(1))
    logp = cost.mul_(-0.5)                                    # [G,N,K], -inf on inactive slots
    top = logp.amax(-1, keepdim=True)
    # terms below e^-80 of the largest are negligible; clamping keeps exp off its slow underflow path
    loglik = (logp - top).clamp_min_(-80.0).exp_().sum(-1).log_().add_(top.squeeze(-1))   # [G,N]
    log_resp = logp.sub_(loglik.unsqueeze(-1))
    return log_resp, loglik
