"""Fused HDDC E-step: one pass over X, every component of a group per program, log-responsibilities and
per-sample log-likelihood written once.

Cost of DESIGN §3 for sample x and component k (z = x − μ_k, y = Q_kᵀ z):
    C_k = ‖z‖²·(1/b_k) + Σ_j w_kj y_j² + c_k,   log p_k = −C_k / 2,
    loglik = logsumexp_k log p_k,               log r_k = log p_k − loglik.
``‖z‖²`` is formed from the explicit difference (no ‖x‖² − 2xᵀμ + ‖μ‖² cancellation), the projection with
``tl.dot`` in IEEE fp32. Inactive slots carry ``c_k = +inf`` and come out as −inf log-responsibility.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_cost import component_cost, dot_precision, pow2


@triton.jit
def _hddc_estep_fwd_kernel(
    p_x,      # [G, N, D]  any float dtype, contiguous
    p_mu,     # [G, K, D]  fp32
    p_q,      # [G, K, D, DM] fp32
    p_w,      # [G, K, DM] fp32 (zero on padded subspace columns)
    p_ib,     # [G, K]     fp32, 1 / b_k
    p_c,      # [G, K]     fp32, +inf on inactive slots
    p_lr,     # [G, N, K]  fp32 out
    p_ll,     # [G, N]     fp32 out
    N, K, D, DM,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_n = tl.program_id(0)
    g = tl.program_id(1).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_m = tl.arange(0, BLOCK_M)
    offs_k = tl.arange(0, BLOCK_K)
    m_n = offs_n < N
    m_d = offs_d < D
    m_m = offs_m < DM
    rows = g * N + offs_n                                                   # [BLOCK_N] int64
    b_x = tl.load(p_x + rows[:, None] * D + offs_d[None, :], mask=m_n[:, None] & m_d[None, :],
                  other=0.0).to(tl.float32)                                 # [BLOCK_N, BLOCK_D]
    b_logp = tl.full((BLOCK_N, BLOCK_K), float("-inf"), dtype=tl.float32)
    # unrolled over the padded slots: with a compile-time k the column select folds to register moves
    for k in tl.static_range(BLOCK_K):
        cost = component_cost(b_x, p_mu, p_q, p_w, p_ib, p_c, g * K + k, g * K, D, DM, offs_d, offs_m, m_d, m_m,
                              tl.full((), k, tl.int32) < K, PRECISION)
        b_logp = tl.where(offs_k[None, :] == k, (-0.5 * cost)[:, None], b_logp)
    top = tl.max(b_logp, axis=1)                                                         # finite: >=1 active
    top_safe = tl.where(top == float("-inf"), 0.0, top)
    b_e = tl.where(b_logp - top_safe[:, None] < -80.0, 0.0, tl.exp(b_logp - top_safe[:, None]))
    loglik = tl.log(tl.sum(b_e, axis=1)) + top_safe
    tl.store(p_ll + rows, loglik, mask=m_n)
    tl.store(p_lr + rows[:, None] * K + offs_k[None, :], b_logp - loglik[:, None],
             mask=m_n[:, None] & (offs_k[None, :] < K))


def hddc_estep_fwd(x: torch.Tensor,       # [G, N, D] float16/bfloat16/float32
                   means: torch.Tensor,   # [G, K, D]
                   q: torch.Tensor,       # [G, K, D, DM]
                   w: torch.Tensor,       # [G, K, DM]
                   inv_b: torch.Tensor,   # [G, K]
                   const: torch.Tensor,   # [G, K]
                   block_n: int | None = None, precision: str | None = None,
                   num_warps: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the fused E-step: validate, allocate, grid ``(ceil(N / BLOCK_N), G)``. Returns
    ``log_resp [G, N, K]`` and ``loglik [G, N]`` in float32."""
    if x.dim() != 3:
        raise ValueError(f"x must be [G, N, D], got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"x must be float16, bfloat16 or float32 for the Triton E-step, got {x.dtype}")
    G, N, D = x.shape
    K, DM = q.shape[1], q.shape[3]
    expect = {"means": (means, (G, K, D)), "components": (q, (G, K, D, DM)), "w": (w, (G, K, DM)),
              "inv_b": (inv_b, (G, K)), "const": (const, (G, K))}
    for name, (t, shape) in expect.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}")
    x = x.contiguous()
    means, q, w, inv_b, const = (t.to(torch.float32).contiguous() for t in (means, q, w, inv_b, const))
    log_resp = torch.empty(G, N, K, dtype=torch.float32, device=x.device)
    loglik = torch.empty(G, N, dtype=torch.float32, device=x.device)
    if N == 0 or G == 0:
        return log_resp, loglik
    BLOCK_D, BLOCK_M, BLOCK_K = pow2(D, 16), pow2(DM, 16), pow2(K, 2)
    BLOCK_N = block_n or (64 if x.is_cuda else max(16, min(256, triton.next_power_of_2(N))))
    grid = (triton.cdiv(N, BLOCK_N), G)
    _hddc_estep_fwd_kernel[grid](x, means, q, w, inv_b, const, log_resp, loglik, N, K, D, DM,
                                 BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D, BLOCK_M=BLOCK_M, BLOCK_K=BLOCK_K,
                                 PRECISION=precision or dot_precision(x.is_cuda), num_warps=num_warps)
    return log_resp, loglik
