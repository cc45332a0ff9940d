"""``torch.library`` custom ops over the Triton launch functions: a fake (meta) implementation so
``torch.compile`` keeps whole graphs, and registered autograd. Imported lazily by ``dga_fast.ops`` the
first time a Triton path is taken, so that importing dga_fast never needs Triton."""
from __future__ import annotations

import torch
from torch import Tensor


# ----------------------------------------------------------------------------------------- HDDC E-step
@torch.library.custom_op("dga_fast::hddc_estep", mutates_args=())
def hddc_estep(x: Tensor,           # [G, N, D]
               means: Tensor,       # [G, K, D]
               components: Tensor,  # [G, K, D, DM]
               w: Tensor,           # [G, K, DM]
               inv_b: Tensor,       # [G, K]
               const: Tensor        # [G, K]
               ) -> tuple[Tensor, Tensor]:
    from .kernels.hddc_estep import hddc_estep_fwd
    return hddc_estep_fwd(x, means, components, w, inv_b, const)


@hddc_estep.register_fake
def _hddc_estep_fake(x, means, components, w, inv_b, const):
    G, N, _ = x.shape
    K = means.shape[1]
    return x.new_empty(G, N, K, dtype=torch.float32), x.new_empty(G, N, dtype=torch.float32)


def _hddc_estep_setup(ctx, inputs, output):
    x, means, components, w, inv_b, const = inputs
    ctx.save_for_backward(x, means, components, w, inv_b, const, output[0])


def _hddc_estep_backward(ctx, g_lr, g_ll):
    """Gradient to ``x`` only (the mixture parameters are fitted by EM, not by gradients). With
    ``gp_k = ∂L/∂log p_k = g_lr_k − r_k Σ_j g_lr_j + r_k g_ll`` and ``∂log p_k/∂x = −(z/b_k + Q_k(w_k ⊙ y_k))``:
    ``∂L/∂x = −Σ_k gp_k (x − μ_k)/b_k − Σ_k Q_k (gp_k w_k ⊙ y_k)``, as GEMMs in float32 (no fused kernel)."""
    x, means, q, w, inv_b, const, log_resp = ctx.saved_tensors
    G, N, D = x.shape
    K, DM = q.shape[1], q.shape[3]
    xf = x.float()
    g_lr = torch.zeros_like(log_resp) if g_lr is None else g_lr.float()
    g_ll = torch.zeros(G, N, device=x.device) if g_ll is None else g_ll.float()
    active = torch.isfinite(const).unsqueeze(1)                                   # [G, 1, K]
    r = log_resp.exp()
    gp = torch.where(active, g_lr - r * g_lr.sum(-1, keepdim=True) + r * g_ll.unsqueeze(-1), 0.0)
    a = gp * torch.where(active, inv_b.unsqueeze(1), 0.0)                         # [G, N, K]
    gx = xf * a.sum(-1, keepdim=True) - a @ means.float()
    qflat = q.float().permute(0, 2, 1, 3).reshape(G, D, K * DM)                  # [G, D, K*DM]
    mq = (means.float().unsqueeze(-2) @ q.float()).reshape(G, 1, K * DM)         # Q_kᵀ μ_k
    y = (xf @ qflat - mq).view(G, N, K, DM)
    v = (gp.unsqueeze(-1) * w.float().unsqueeze(1) * y).reshape(G, N, K * DM)
    gx = gx + v @ qflat.transpose(1, 2)
    return (-gx).to(x.dtype), None, None, None, None, None


hddc_estep.register_autograd(_hddc_estep_backward, setup_context=_hddc_estep_setup)
