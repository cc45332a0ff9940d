"""``torch.library`` custom ops over the Triton launch functions of ``anchor_shift`` (``triton.py``): a fake (meta)
implementation so ``torch.compile`` keeps whole graphs, and registered autograd. Imported by
``ops.registry.triton_available`` the first time a Triton path is taken, so importing dga_fast never needs Triton."""
from __future__ import annotations

import torch
from torch import Tensor


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
    from .triton import anchor_shift_fwd
    return anchor_shift_fwd(c, shift, scale, means, components, w, inv_b, const, align, align_max, adaptive)


@anchor_shift.register_fake
def _anchor_shift_fake(c, shift, scale, means, components, w, inv_b, const, align, align_max, adaptive):
    return torch.empty_like(c), c.new_empty(c.shape[:2], dtype=torch.int32)


@torch.library.custom_op("dga_fast::anchor_shift_backward", mutates_args=())
def anchor_shift_backward(grad: Tensor, c: Tensor, shift: Tensor, scale: Tensor, means: Tensor, kstar: Tensor,
                          align: float, align_max: float, adaptive: bool) -> Tensor:
    from .triton import anchor_shift_bwd
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


