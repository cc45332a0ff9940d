"""The gradient of the HDDC E-step to its data, shared by the autograd of the fused ops (the Triton kernel's
and the native CPU op's): the mixture parameters are fitted by EM, not by gradients, so only ``x`` gets one."""
from __future__ import annotations

import torch
from torch import Tensor


def setup_context(ctx, inputs, output):
    """``setup_context`` of an E-step op ``(x, means, components, w, inv_b, const) -> (log_resp, loglik)``."""
    x, means, components, w, inv_b, const = inputs
    ctx.save_for_backward(x, means, components, w, inv_b, const, output[0])


def backward(ctx, g_lr: Tensor | None, g_ll: Tensor | None):
    """With ``gp_k = ∂L/∂log p_k = g_lr_k − r_k Σ_j g_lr_j + r_k g_ll`` and
    ``∂log p_k/∂x = −(z/b_k + Q_k(w_k ⊙ y_k))``: ``∂L/∂x = −Σ_k gp_k (x − μ_k)/b_k − Σ_k Q_k (gp_k w_k ⊙ y_k)``,
    as GEMMs in float32 (float64 for float64 input)."""
    x, means, q, w, inv_b, const, log_resp = ctx.saved_tensors
    G, N, D = x.shape
    K, DM = q.shape[1], q.shape[3]
    dt = torch.promote_types(x.dtype, torch.float32)
    xf, means, q, w, inv_b = (t.to(dt) for t in (x, means, q, w, inv_b))
    g_lr = torch.zeros_like(log_resp, dtype=dt) if g_lr is None else g_lr.to(dt)
    g_ll = torch.zeros(G, N, device=x.device, dtype=dt) if g_ll is None else g_ll.to(dt)
    active = torch.isfinite(const).unsqueeze(1)                                   # [G, 1, K]
    r = log_resp.to(dt).exp()
    gp = torch.where(active, g_lr - r * g_lr.sum(-1, keepdim=True) + r * g_ll.unsqueeze(-1), 0.0)
    a = gp * torch.where(active, inv_b.unsqueeze(1), 0.0)                         # [G, N, K]
    gx = xf * a.sum(-1, keepdim=True) - a @ means
    qflat = q.permute(0, 2, 1, 3).reshape(G, D, K * DM)                          # [G, D, K*DM]
    mq = (means.unsqueeze(-2) @ q).reshape(G, 1, K * DM)                           # Q_kᵀ μ_k
    y = (xf @ qflat - mq).view(G, N, K, DM)
    v = (gp.unsqueeze(-1) * w.unsqueeze(1) * y).reshape(G, N, K * DM)
    gx = gx + v @ qflat.transpose(1, 2)
    return (-gx).to(x.dtype), None, None, None, None, None
