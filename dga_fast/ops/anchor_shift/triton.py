"""Fused anchor shift of Dynamic Gaussian Anchoring (DESIGN §4), forward and backward.

Forward, per token ``c`` of unit ``u``: normalise ``x = (c − shift_u) / scale_u``, find the most responsible
component ``k* = argmin_k C_k(x)`` (the same cost as the E-step; the log-sum-exp is not needed for an
argmax), map its mean back to token coordinates ``μ = μ_{k*}·scale_u + shift_u``, and shift
``c' = c + λ (μ − c)`` with ``λ = align_max · exp(−‖c − μ‖₁ / (‖c‖₁ + ε))`` (adaptive) or a constant.
Backward: ``∂L/∂c = (1 − λ) g + (g·(μ − c)) ∂λ/∂c`` with
``∂λ/∂c = λ (−sign(c − μ) / S + ‖c − μ‖₁ sign(c) / S²)``, ``S = ‖c‖₁ + ε`` (no gradient to the mixture).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..hddc_estep.triton_cost import component_cost, dot_precision, pow2

EPS = 1e-6


@triton.jit
def _anchor_shift_fwd_kernel(
    p_c,       # [B, U, D]  float16/bfloat16/float32
    p_shift,   # [U, D]     fp32
    p_scale,   # [U]        fp32
    p_mu,      # [U, K, D]  fp32, normalised coordinates
    p_q,       # [U, K, D, DM]
    p_w,       # [U, K, DM]
    p_ib,      # [U, K]
    p_cst,     # [U, K]     +inf on inactive slots
    p_out,     # [B, U, D]  c's dtype
    p_k,       # [B, U]     int32 out: k*
    B, U, K, D, DM, align, align_max, eps,
    ADAPTIVE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    u = tl.program_id(1).to(tl.int64)
    offs_b = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_d = tl.arange(0, BLOCK_D)
    offs_m = tl.arange(0, BLOCK_M)
    m_b = offs_b < B
    m_d = offs_d < D
    m_m = offs_m < DM
    m_bd = m_b[:, None] & m_d[None, :]
    rows = offs_b.to(tl.int64) * U + u                                                   # [BLOCK_B]
    b_c = tl.load(p_c + rows[:, None] * D + offs_d[None, :], mask=m_bd, other=0.0).to(tl.float32)
    b_shift = tl.load(p_shift + u * D + offs_d, mask=m_d, other=0.0)
    scale = tl.load(p_scale + u)
    b_x = tl.where(m_bd, (b_c - b_shift[None, :]) / scale, 0.0)
    best = tl.full((BLOCK_B,), float("inf"), dtype=tl.float32)
    kstar = tl.zeros((BLOCK_B,), dtype=tl.int32)
    for k in tl.static_range(BLOCK_K):                                                   # unrolled, as the E-step
        cost = component_cost(b_x, p_mu, p_q, p_w, p_ib, p_cst, u * K + k, u * K, D, DM, offs_d, offs_m, m_d, m_m,
                              tl.full((), k, tl.int32) < K, PRECISION)
        better = cost < best                                                             # first minimum wins
        best = tl.where(better, cost, best)
        kstar = tl.where(better, k, kstar)
    b_mu = tl.load(p_mu + (u * K + kstar.to(tl.int64))[:, None] * D + offs_d[None, :], mask=m_bd, other=0.0)
    b_mu = tl.where(m_bd, b_mu * scale + b_shift[None, :], 0.0)
    if ADAPTIVE:
        l1 = tl.sum(tl.abs(b_c - b_mu), axis=1)
        s = tl.sum(tl.abs(b_c), axis=1) + eps
        lam = align_max * tl.exp(-l1 / s)
    else:
        lam = tl.full((BLOCK_B,), 0.0, dtype=tl.float32) + align
    b_out = b_c + lam[:, None] * (b_mu - b_c)
    tl.store(p_out + rows[:, None] * D + offs_d[None, :], b_out.to(p_out.dtype.element_ty), mask=m_bd)
    tl.store(p_k + rows, kstar, mask=m_b)


@triton.jit
def _anchor_shift_bwd_kernel(
    p_c,       # [B, U, D]
    p_g,       # [B, U, D]  upstream gradient
    p_shift,   # [U, D]
    p_scale,   # [U]
    p_mu,      # [U, K, D]
    p_k,       # [B, U]     int32 k* from the forward
    p_gc,      # [B, U, D]  out, c's dtype
    B, U, K, D, align, align_max, eps,
    ADAPTIVE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    u = tl.program_id(1).to(tl.int64)
    offs_b = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_d = tl.arange(0, BLOCK_D)
    m_b = offs_b < B
    m_d = offs_d < D
    m_bd = m_b[:, None] & m_d[None, :]
    rows = offs_b.to(tl.int64) * U + u
    b_c = tl.load(p_c + rows[:, None] * D + offs_d[None, :], mask=m_bd, other=0.0).to(tl.float32)
    b_g = tl.load(p_g + rows[:, None] * D + offs_d[None, :], mask=m_bd, other=0.0).to(tl.float32)
    kstar = tl.load(p_k + rows, mask=m_b, other=0).to(tl.int64)
    b_shift = tl.load(p_shift + u * D + offs_d, mask=m_d, other=0.0)
    scale = tl.load(p_scale + u)
    b_mu = tl.load(p_mu + (u * K + kstar)[:, None] * D + offs_d[None, :], mask=m_bd, other=0.0)
    b_mu = tl.where(m_bd, b_mu * scale + b_shift[None, :], 0.0)
    if ADAPTIVE:
        b_diff = b_c - b_mu
        l1 = tl.sum(tl.abs(b_diff), axis=1)
        s = tl.sum(tl.abs(b_c), axis=1) + eps
        lam = align_max * tl.exp(-l1 / s)
        gdot = tl.sum(b_g * (b_mu - b_c), axis=1)                                        # g·(μ − c)
        sgn_d = tl.where(b_diff > 0, 1.0, tl.where(b_diff < 0, -1.0, 0.0))
        sgn_c = tl.where(b_c > 0, 1.0, tl.where(b_c < 0, -1.0, 0.0))
        dlam = lam[:, None] * (-sgn_d / s[:, None] + (l1 / (s * s))[:, None] * sgn_c)
        b_gc = b_g * (1.0 - lam[:, None]) + gdot[:, None] * dlam
    else:
        b_gc = b_g * (1.0 - align)
    tl.store(p_gc + rows[:, None] * D + offs_d[None, :], b_gc.to(p_gc.dtype.element_ty), mask=m_bd)


def _check(c, shift, scale, means, q=None, w=None, inv_b=None, const=None):
    if c.dim() != 3:
        raise ValueError(f"c must be [B, U, D], got shape {tuple(c.shape)}")
    if c.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"c must be float16, bfloat16 or float32 for the Triton anchor shift, got {c.dtype}")
    B, U, D = c.shape
    K = means.shape[1]
    expect = {"shift": (shift, (U, D)), "scale": (scale, (U,)), "means": (means, (U, K, D))}
    if q is not None:
        DM = q.shape[3]
        expect.update({"components": (q, (U, K, D, DM)), "w": (w, (U, K, DM)), "inv_b": (inv_b, (U, K)),
                       "const": (const, (U, K))})
    for name, (t, shape) in expect.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {tuple(t.shape)}")
        if t.device != c.device:
            raise ValueError(f"{name} is on {t.device} but c is on {c.device}")


def _f32(*ts):
    return tuple(t.to(torch.float32).contiguous() for t in ts)


def _block_b(B: int, cuda: bool) -> int:
    return 64 if cuda else max(16, min(128, triton.next_power_of_2(max(B, 1))))


def anchor_shift_fwd(c: torch.Tensor,        # [B, U, D]
                     shift: torch.Tensor,    # [U, D]
                     scale: torch.Tensor,    # [U]
                     means: torch.Tensor,    # [U, K, D]
                     q: torch.Tensor,        # [U, K, D, DM]
                     w: torch.Tensor,        # [U, K, DM]
                     inv_b: torch.Tensor,    # [U, K]
                     const: torch.Tensor,    # [U, K]
                     align: float, align_max: float, adaptive: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted tokens ``[B, U, D]`` (c's dtype) and ``k* [B, U]`` (int32)."""
    _check(c, shift, scale, means, q, w, inv_b, const)
    B, U, D = c.shape
    K, DM = means.shape[1], q.shape[3]
    c = c.contiguous()
    shift, scale, means, q, w, inv_b, const = _f32(shift, scale, means, q, w, inv_b, const)
    out = torch.empty_like(c)
    kstar = torch.empty(B, U, dtype=torch.int32, device=c.device)
    if B == 0 or U == 0:
        return out, kstar
    BLOCK_B = _block_b(B, c.is_cuda)
    grid = (triton.cdiv(B, BLOCK_B), U)
    _anchor_shift_fwd_kernel[grid](c, shift, scale, means, q, w, inv_b, const, out, kstar,
                                   B, U, K, D, DM, float(align), float(align_max), EPS,
                                   ADAPTIVE=bool(adaptive), BLOCK_B=BLOCK_B, BLOCK_D=pow2(D, 16),
                                   BLOCK_M=pow2(DM, 16), BLOCK_K=pow2(K, 1), PRECISION=dot_precision(c.is_cuda))
    return out, kstar


def anchor_shift_bwd(grad: torch.Tensor,     # [B, U, D]
                     c: torch.Tensor,        # [B, U, D]
                     shift: torch.Tensor, scale: torch.Tensor, means: torch.Tensor,
                     kstar: torch.Tensor,    # [B, U] int32
                     align: float, align_max: float, adaptive: bool) -> torch.Tensor:
    """Gradient to ``c`` (c's dtype)."""
    _check(c, shift, scale, means)
    if grad.shape != c.shape or kstar.shape != c.shape[:2]:
        raise ValueError(f"grad {tuple(grad.shape)} and kstar {tuple(kstar.shape)} must match c {tuple(c.shape)}")
    B, U, D = c.shape
    K = means.shape[1]
    c, grad, kstar = c.contiguous(), grad.contiguous(), kstar.to(torch.int32).contiguous()
    shift, scale, means = _f32(shift, scale, means)
    gc = torch.empty_like(c)
    if B == 0 or U == 0:
        return gc
    BLOCK_B = _block_b(B, c.is_cuda)
    grid = (triton.cdiv(B, BLOCK_B), U)
    _anchor_shift_bwd_kernel[grid](c, grad, shift, scale, means, kstar, gc, B, U, K, D, float(align),
                                   float(align_max), EPS, ADAPTIVE=bool(adaptive), BLOCK_B=BLOCK_B,
                                   BLOCK_D=pow2(D, 16))
    return gc
