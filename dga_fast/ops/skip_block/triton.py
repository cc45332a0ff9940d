"""Fused decoder input of the U-Net: skip dropout, concatenation, GroupNorm, SiLU — forward and backward.

``v = cat(h, skip · keep / (1 − p))`` over channels, ``x̂ = (v − mean_g) · rstd_g`` per (sample, group),
``a = x̂ · γ_c + β_c``, ``y = a · σ(a)``. One program per (sample, group) walks the group's channels ×
pixels in ``[BLOCK_C, BLOCK_S]`` tiles: the forward makes one pass for the statistics (block means and M2
combined with Chan's formula, so no E[v²] − E[v]² cancellation) and one pass that writes ``v`` and ``y``;
the backward makes one pass for the two group sums and the per-channel partial γ/β sums and one that writes
the input gradients:
``g_v = rstd (g_x̂ − mean(g_x̂) − x̂ mean(g_x̂ x̂)) + g_vcat`` with ``g_x̂ = g_y σ(a)(1 + a(1 − σ(a))) γ``.
Statistics and arithmetic in float32; outputs in the input dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

GN_EPS = 1e-5


@triton.jit
def _load_v(p_h, p_skip, p_keep, b, c, offs_s, m, Ch, Cs, HW, scale):
    """``v[b, c, s]`` of the concatenation for a [BLOCK_C, BLOCK_S] tile (``c`` [BLOCK_C], ``m`` the mask)."""
    from_h = c < Ch
    cs = c - Ch
    m_h = m & from_h[:, None]
    m_s = m & (~from_h)[:, None]
    b_h = tl.load(p_h + (b * Ch + c)[:, None] * HW + offs_s[None, :], mask=m_h, other=0.0).to(tl.float32)
    b_s = tl.load(p_skip + (b * Cs + cs)[:, None] * HW + offs_s[None, :], mask=m_s, other=0.0).to(tl.float32)
    keep = tl.load(p_keep + b * Cs + cs, mask=(~from_h) & (cs < Cs), other=0.0).to(tl.float32)
    return tl.where(from_h[:, None], b_h, b_s * (keep * scale)[:, None])


@triton.jit
def _skip_block_fwd_kernel(
    p_h,       # [B, Ch, HW]
    p_skip,    # [B, Cs, HW]
    p_keep,    # [B, Cs] float32 (1 keep, 0 drop)
    p_gamma,   # [C] float32
    p_beta,    # [C] float32
    p_x,       # [B, C, HW] out: the concatenation (input dtype)
    p_y,       # [B, C, HW] out: SiLU(GroupNorm(x)) (input dtype)
    p_mean,    # [B, G] float32 out
    p_rstd,    # [B, G] float32 out
    Ch, Cs, HW, G, Cg, scale, eps,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    g = tl.program_id(1).to(tl.int64)
    C = Ch + Cs
    arange_c = tl.arange(0, BLOCK_C)
    arange_s = tl.arange(0, BLOCK_S)
    n_a = 0.0
    mean = 0.0
    m2 = 0.0
    for c0 in range(0, Cg, BLOCK_C):
        c = g * Cg + c0 + arange_c
        m_c = (c0 + arange_c) < Cg
        for s0 in range(0, HW, BLOCK_S):
            offs_s = s0 + arange_s
            m = m_c[:, None] & (offs_s < HW)[None, :]
            v = _load_v(p_h, p_skip, p_keep, b, c, offs_s, m, Ch, Cs, HW, scale)
            n_b = tl.sum(m.to(tl.float32))
            mean_b = tl.sum(v) / n_b
            m2_b = tl.sum(tl.where(m, (v - mean_b) * (v - mean_b), 0.0))
            n = n_a + n_b
            delta = mean_b - mean
            mean = mean + delta * (n_b / n)
            m2 = m2 + m2_b + delta * delta * (n_a * n_b / n)
            n_a = n
    rstd = 1.0 / tl.sqrt(m2 / n_a + eps)
    tl.store(p_mean + b * G + g, mean)
    tl.store(p_rstd + b * G + g, rstd)
    for c0 in range(0, Cg, BLOCK_C):
        c = g * Cg + c0 + arange_c
        m_c = (c0 + arange_c) < Cg
        gam = tl.load(p_gamma + c, mask=m_c, other=0.0)
        bet = tl.load(p_beta + c, mask=m_c, other=0.0)
        for s0 in range(0, HW, BLOCK_S):
            offs_s = s0 + arange_s
            m = m_c[:, None] & (offs_s < HW)[None, :]
            v = _load_v(p_h, p_skip, p_keep, b, c, offs_s, m, Ch, Cs, HW, scale)
            a = (v - mean) * rstd * gam[:, None] + bet[:, None]
            y = a / (1.0 + tl.exp(-a))
            off = (b * C + c)[:, None] * HW + offs_s[None, :]
            tl.store(p_x + off, v.to(p_x.dtype.element_ty), mask=m)
            tl.store(p_y + off, y.to(p_y.dtype.element_ty), mask=m)


@triton.jit
def _norm_silu_grad(p_x, p_gy, off, m, mean, rstd, gam, bet):
    """For a tile of the concatenation: ``x̂`` and ``g_a = g_y · SiLU'(a)`` with ``a = x̂ γ + β`` (both 0 where
    masked, since the masked ``g_y`` loads as 0)."""
    v = tl.load(p_x + off, mask=m, other=0.0).to(tl.float32)
    gy = tl.load(p_gy + off, mask=m, other=0.0).to(tl.float32)
    xh = (v - mean) * rstd
    a = xh * gam[:, None] + bet[:, None]
    sig = 1.0 / (1.0 + tl.exp(-a))
    return xh, gy * sig * (1.0 + a * (1.0 - sig))


@triton.jit
def _skip_block_bwd_kernel(
    p_x,       # [B, C, HW] the forward's concatenation
    p_gy,      # [B, C, HW] gradient of y
    p_gx,      # [B, C, HW] gradient of the concatenation output (zeros when unused)
    p_keep,    # [B, Cs] float32
    p_gamma,   # [C]
    p_beta,    # [C]
    p_mean,    # [B, G]
    p_rstd,    # [B, G]
    p_gh,      # [B, Ch, HW] out (input dtype)
    p_gskip,   # [B, Cs, HW] out (input dtype)
    p_dgamma,  # [B, C] float32 out: per-sample partial sums of γ's gradient
    p_dbeta,   # [B, C] float32 out
    Ch, Cs, HW, G, Cg, scale,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    g = tl.program_id(1).to(tl.int64)
    C = Ch + Cs
    mean = tl.load(p_mean + b * G + g)
    rstd = tl.load(p_rstd + b * G + g)
    arange_c = tl.arange(0, BLOCK_C)
    arange_s = tl.arange(0, BLOCK_S)
    sum_gxh = 0.0
    sum_gxh_xh = 0.0
    for c0 in range(0, Cg, BLOCK_C):
        c = g * Cg + c0 + arange_c
        m_c = (c0 + arange_c) < Cg
        gam = tl.load(p_gamma + c, mask=m_c, other=0.0)
        bet = tl.load(p_beta + c, mask=m_c, other=0.0)
        acc_g = tl.zeros((BLOCK_C,), dtype=tl.float32)
        acc_b = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for s0 in range(0, HW, BLOCK_S):
            offs_s = s0 + arange_s
            m = m_c[:, None] & (offs_s < HW)[None, :]
            off = (b * C + c)[:, None] * HW + offs_s[None, :]
            xh, ga = _norm_silu_grad(p_x, p_gy, off, m, mean, rstd, gam, bet)
            acc_g += tl.sum(ga * xh, axis=1)
            acc_b += tl.sum(ga, axis=1)
            gxh = ga * gam[:, None]
            sum_gxh += tl.sum(gxh)
            sum_gxh_xh += tl.sum(gxh * xh)
        tl.store(p_dgamma + b * C + c, acc_g, mask=m_c)
        tl.store(p_dbeta + b * C + c, acc_b, mask=m_c)
    n = Cg * HW * 1.0
    mean_gxh = sum_gxh / n
    mean_gxh_xh = sum_gxh_xh / n
    for c0 in range(0, Cg, BLOCK_C):
        c = g * Cg + c0 + arange_c
        m_c = (c0 + arange_c) < Cg
        gam = tl.load(p_gamma + c, mask=m_c, other=0.0)
        bet = tl.load(p_beta + c, mask=m_c, other=0.0)
        from_h = c < Ch
        cs = c - Ch
        keep = tl.load(p_keep + b * Cs + cs, mask=m_c & (~from_h), other=0.0).to(tl.float32)
        for s0 in range(0, HW, BLOCK_S):
            offs_s = s0 + arange_s
            m = m_c[:, None] & (offs_s < HW)[None, :]
            off = (b * C + c)[:, None] * HW + offs_s[None, :]
            xh, ga = _norm_silu_grad(p_x, p_gy, off, m, mean, rstd, gam, bet)
            gx_out = tl.load(p_gx + off, mask=m, other=0.0).to(tl.float32)
            gxh = ga * gam[:, None]
            gv = rstd * (gxh - mean_gxh - xh * mean_gxh_xh) + gx_out
            tl.store(p_gh + (b * Ch + c)[:, None] * HW + offs_s[None, :], gv.to(p_gh.dtype.element_ty),
                     mask=m & from_h[:, None])
            tl.store(p_gskip + (b * Cs + cs)[:, None] * HW + offs_s[None, :],
                     (gv * (keep * scale)[:, None]).to(p_gskip.dtype.element_ty), mask=m & (~from_h)[:, None])


def _blocks(Cg: int, HW: int) -> tuple[int, int]:
    BLOCK_S = min(triton.next_power_of_2(max(HW, 1)), 256)
    BLOCK_C = min(triton.next_power_of_2(max(Cg, 1)), max(1, 2048 // BLOCK_S))
    return BLOCK_C, BLOCK_S


def _check(h, skip, keep_mask, gamma, beta, groups):
    for name, t in (("h", h), ("skip", skip)):
        if t.dim() != 4:
            raise ValueError(f"{name} must be [B, C, H, W], got shape {tuple(t.shape)}")
        if t.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise TypeError(f"{name} must be float16, bfloat16 or float32 for the Triton skip block, got {t.dtype}")
    if skip.dtype != h.dtype:
        raise TypeError(f"skip dtype {skip.dtype} differs from h dtype {h.dtype}")
    B, Ch, H, W = h.shape
    if skip.shape[0] != B or skip.shape[2:] != h.shape[2:]:
        raise ValueError(f"skip {tuple(skip.shape)} must match h {tuple(h.shape)} in batch and spatial size")
    Cs = skip.shape[1]
    C = Ch + Cs
    if tuple(keep_mask.shape) != (B, Cs):
        raise ValueError(f"keep_mask must have shape [{B}, {Cs}], got {tuple(keep_mask.shape)}")
    for name, t in (("weight", gamma), ("bias", beta)):
        if tuple(t.shape) != (C,):
            raise ValueError(f"{name} must have shape [{C}], got {tuple(t.shape)}")
    if not isinstance(groups, int) or groups < 1 or C % groups:
        raise ValueError(f"groups must be a positive int dividing the {C} channels, got {groups!r}")
    for name, t in (("skip", skip), ("keep_mask", keep_mask), ("weight", gamma), ("bias", beta)):
        if t.device != h.device:
            raise ValueError(f"{name} is on {t.device} but h is on {h.device}")


def skip_block_fwd(h: torch.Tensor,          # [B, Ch, H, W]
                   skip: torch.Tensor,       # [B, Cs, H, W]
                   keep_mask: torch.Tensor,  # [B, Cs]
                   p: float,
                   gamma: torch.Tensor,      # [C]
                   beta: torch.Tensor,       # [C]
                   groups: int):
    """Returns ``x_cat, y`` (input dtype, ``[B, C, H, W]``) and ``mean, rstd`` (``[B, groups]`` float32)."""
    _check(h, skip, keep_mask, gamma, beta, groups)
    B, Ch, H, W = h.shape
    Cs = skip.shape[1]
    C, HW = Ch + Cs, H * W
    h, skip = h.contiguous(), skip.contiguous()
    keep = keep_mask.to(torch.float32).contiguous()
    gamma, beta = gamma.to(torch.float32).contiguous(), beta.to(torch.float32).contiguous()
    x = torch.empty(B, C, H, W, dtype=h.dtype, device=h.device)
    y = torch.empty_like(x)
    mean = torch.empty(B, groups, dtype=torch.float32, device=h.device)
    rstd = torch.empty_like(mean)
    if B == 0 or HW == 0:
        return x, y, mean, rstd
    Cg = C // groups
    BLOCK_C, BLOCK_S = _blocks(Cg, HW)
    scale = 1.0 / (1.0 - p) if p > 0 else 1.0
    _skip_block_fwd_kernel[(B, groups)](h, skip, keep, gamma, beta, x, y, mean, rstd, Ch, Cs, HW, groups, Cg,
                                        scale, GN_EPS, BLOCK_C=BLOCK_C, BLOCK_S=BLOCK_S)
    return x, y, mean, rstd


def skip_block_bwd(g_y: torch.Tensor,       # [B, C, H, W]
                   g_x: torch.Tensor,       # [B, C, H, W] gradient of the concatenation output
                   x: torch.Tensor,         # [B, C, H, W] the forward's concatenation
                   keep_mask: torch.Tensor, p: float, gamma: torch.Tensor, beta: torch.Tensor,
                   mean: torch.Tensor, rstd: torch.Tensor, groups: int, Ch: int):
    """Gradients to ``h``, ``skip``, ``weight`` and ``bias``."""
    B, C, H, W = x.shape
    Cs, HW = C - Ch, H * W
    g_y, g_x, x = g_y.contiguous(), g_x.contiguous(), x.contiguous()
    keep = keep_mask.to(torch.float32).contiguous()
    gamma, beta = gamma.to(torch.float32).contiguous(), beta.to(torch.float32).contiguous()
    gh = torch.empty(B, Ch, H, W, dtype=x.dtype, device=x.device)
    gs = torch.empty(B, Cs, H, W, dtype=x.dtype, device=x.device)
    dgamma = torch.zeros(B, C, dtype=torch.float32, device=x.device)
    dbeta = torch.zeros_like(dgamma)
    if B and HW:
        Cg = C // groups
        BLOCK_C, BLOCK_S = _blocks(Cg, HW)
        scale = 1.0 / (1.0 - p) if p > 0 else 1.0
        _skip_block_bwd_kernel[(B, groups)](x, g_y, g_x, keep, gamma, beta, mean.contiguous(), rstd.contiguous(),
                                            gh, gs, dgamma, dbeta, Ch, Cs, HW, groups, Cg, scale,
                                            BLOCK_C=BLOCK_C, BLOCK_S=BLOCK_S)
    return gh, gs, dgamma.sum(0), dbeta.sum(0)
