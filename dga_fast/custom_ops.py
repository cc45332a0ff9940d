"""``torch.library`` custom ops over the Triton launch functions: a fake (meta) implementation so
``torch.compile`` keeps whole graphs, and registered autograd. Imported lazily by ``dga_fast.ops`` the
first time a Triton path is taken, so that importing dga_fast never needs Triton."""
from __future__ import annotations

import torch
from torch import Tensor

from . import estep_grad


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


hddc_estep.register_autograd(estep_grad.backward, setup_context=estep_grad.setup_context)


# ----------------------------------------------------------------------------------------- anchor shift
@torch.library.custom_op("dga_fast::anchor_shift", mutates_args=())
def anchor_shift(c: Tensor,           # [B, U, D]
                 shift: Tensor,       # [U, D]
                 scale: Tensor,       # [U]
                 means: Tensor,       # [U, K, D]
                 components: Tensor,  # [U, K, D, DM]
                 w: Tensor,           # [U, K, DM]
                 inv_b: Tensor,       # [U, K]
                 const: Tensor,       # [U, K]
                 align: float, align_max: float, adaptive: bool) -> tuple[Tensor, Tensor]:
    from .kernels.anchor_shift import anchor_shift_fwd
    return anchor_shift_fwd(c, shift, scale, means, components, w, inv_b, const, align, align_max, adaptive)


@anchor_shift.register_fake
def _anchor_shift_fake(c, shift, scale, means, components, w, inv_b, const, align, align_max, adaptive):
    return torch.empty_like(c), c.new_empty(c.shape[:2], dtype=torch.int32)


@torch.library.custom_op("dga_fast::anchor_shift_backward", mutates_args=())
def anchor_shift_backward(grad: Tensor, c: Tensor, shift: Tensor, scale: Tensor, means: Tensor, kstar: Tensor,
                          align: float, align_max: float, adaptive: bool) -> Tensor:
    from .kernels.anchor_shift import anchor_shift_bwd
    return anchor_shift_bwd(grad, c, shift, scale, means, kstar, align, align_max, adaptive)


@anchor_shift_backward.register_fake
def _anchor_shift_backward_fake(grad, c, shift, scale, means, kstar, align, align_max, adaptive):
    return torch.empty_like(c)


def _anchor_shift_setup(ctx, inputs, output):
    c, shift, scale, means = inputs[:4]
    ctx.align, ctx.align_max, ctx.adaptive = inputs[8:11]
    ctx.save_for_backward(c, shift, scale, means, output[1])


def _anchor_shift_bwd(ctx, g_out, g_k):
    """Gradient to the tokens only (k* is discrete; the mixture is fitted by EM, not by gradients)."""
    c, shift, scale, means, kstar = ctx.saved_tensors
    if g_out is None:
        return (None,) * 11
    gc = anchor_shift_backward(g_out, c, shift, scale, means, kstar, ctx.align, ctx.align_max, ctx.adaptive)
    return (gc,) + (None,) * 10


anchor_shift.register_autograd(_anchor_shift_bwd, setup_context=_anchor_shift_setup)


# ----------------------------------------------------------------------------------------- skip block
@torch.library.custom_op("dga_fast::skip_dropout_concat_norm_silu", mutates_args=())
def skip_block(h: Tensor,          # [B, Ch, H, W]
               skip: Tensor,       # [B, Cs, H, W]
               keep_mask: Tensor,  # [B, Cs]
               p: float,
               weight: Tensor,     # [Ch + Cs]
               bias: Tensor,       # [Ch + Cs]
               groups: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from .kernels.skip_block import skip_block_fwd
    return skip_block_fwd(h, skip, keep_mask, p, weight, bias, groups)


@skip_block.register_fake
def _skip_block_fake(h, skip, keep_mask, p, weight, bias, groups):
    B, Ch, H, W = h.shape
    x = h.new_empty(B, Ch + skip.shape[1], H, W)
    stats = h.new_empty(B, groups, dtype=torch.float32)
    return x, torch.empty_like(x), stats, torch.empty_like(stats)


@torch.library.custom_op("dga_fast::skip_dropout_concat_norm_silu_backward", mutates_args=())
def skip_block_backward(g_y: Tensor, g_x: Tensor, x: Tensor, keep_mask: Tensor, p: float, weight: Tensor,
                        bias: Tensor, mean: Tensor, rstd: Tensor, groups: int,
                        h_channels: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from .kernels.skip_block import skip_block_bwd
    return skip_block_bwd(g_y, g_x, x, keep_mask, p, weight, bias, mean, rstd, groups, h_channels)


@skip_block_backward.register_fake
def _skip_block_backward_fake(g_y, g_x, x, keep_mask, p, weight, bias, mean, rstd, groups, h_channels):
    B, C, H, W = x.shape
    return (x.new_empty(B, h_channels, H, W), x.new_empty(B, C - h_channels, H, W),
            weight.new_empty(C, dtype=torch.float32), weight.new_empty(C, dtype=torch.float32))


def _skip_block_setup(ctx, inputs, output):
    h, skip, keep_mask, p, weight, bias, groups = inputs
    ctx.p, ctx.groups, ctx.h_channels = p, groups, h.shape[1]
    ctx.dtypes = (weight.dtype, bias.dtype)
    x, _, mean, rstd = output
    ctx.save_for_backward(x, keep_mask, weight, bias, mean, rstd)


def _skip_block_bwd(ctx, g_x, g_y, g_mean, g_rstd):
    """Gradients to ``h``, ``skip``, ``weight`` and ``bias`` (none to the mask; the statistics outputs are
    saved for the backward and take no gradient)."""
    x, keep_mask, weight, bias, mean, rstd = ctx.saved_tensors
    g_y = torch.zeros_like(x) if g_y is None else g_y
    g_x = torch.zeros_like(x) if g_x is None else g_x
    gh, gs, gw, gb = skip_block_backward(g_y, g_x, x, keep_mask, ctx.p, weight, bias, mean, rstd, ctx.groups,
                                         ctx.h_channels)
    return gh, gs, None, None, gw.to(ctx.dtypes[0]), gb.to(ctx.dtypes[1]), None


skip_block.register_autograd(_skip_block_bwd, setup_context=_skip_block_setup)
