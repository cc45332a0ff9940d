"""Skip Dropout's decoder block input (DESIGN §6): channel dropout of the skip connection, concatenation with the
decoder features, GroupNorm and SiLU. Backends: the Triton kernels (``triton.py``, forward and backward, registered
by ``custom_op.py``) for CUDA tensors; else the PyTorch reference (``reference.py``, also the kernels' oracle)."""
from __future__ import annotations

import torch

from ..registry import use_triton
from .reference import skip_dropout_concat_norm_silu as _reference


def skip_dropout_concat_norm_silu(h: torch.Tensor, skip: torch.Tensor, keep_mask: torch.Tensor, p: float,
                                  gn_weight: torch.Tensor, gn_bias: torch.Tensor,
                                  groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder ResBlock input: channel dropout of ``skip``, concat with ``h``, GroupNorm, SiLU."""
    if use_triton(h):
        x_cat, y, _, _ = torch.ops.dga_fast.skip_dropout_concat_norm_silu(
            h, skip.to(h.dtype), keep_mask, float(p), gn_weight, gn_bias, int(groups))
        return x_cat, y
    return _reference(h, skip, keep_mask, p, gn_weight, gn_bias, groups)
