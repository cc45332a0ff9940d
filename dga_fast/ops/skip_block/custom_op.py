"""``torch.library`` custom ops over the Triton launch functions of ``skip_block`` (``triton.py``): a fake (meta)
implementation so ``torch.compile`` keeps whole graphs, and registered autograd. Imported by
``ops.registry.triton_available`` the first time a Triton path is taken, so importing dga_fast never needs Triton."""
from __future__ import annotations

import torch
from torch import Tensor


@torch.library.custom_op("dga_fast::skip_dropout_concat_norm_silu", mutates_args=())
def skip_block(h: Tensor,          # [B, Ch, H, W]
               skip: Tensor,       # [B, Cs, H, W]
               keep_mask: Tensor,  # [B, Cs]
               p: float,
               weight: Tensor,     # [Ch + Cs]
               bias: Tensor,       # [Ch + Cs]
               groups: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from .triton import skip_block_fwd
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
    from .triton import skip_block_bwd
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
