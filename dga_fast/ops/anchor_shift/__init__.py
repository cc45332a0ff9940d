"""DyGA's anchor shift (DESIGN §4) and the token assignments it rests on: ``anchor_shift`` moves every token toward
the mean of its most responsible Gaussian; ``anchor_assign`` / ``anchor_log_resp`` give that component and the
responsibilities. Backends: the Triton kernels (``triton.py``, registered by ``custom_op.py``) for CUDA tensors;
the assignments through the fused E-step (``ops.hddc_estep``: Triton or native) wherever it has a kernel; else the
PyTorch reference (``reference.py``, also the oracle of the kernels)."""
from __future__ import annotations

import torch

from ...mixture.state import MixtureState
from ..hddc_estep import fused as _fused_estep
from ..hddc_estep import hddc_estep
from ..registry import use_triton
from . import reference


def anchor_shift(c: torch.Tensor,      # [B, U, Dc]
                 state: MixtureState, shift: torch.Tensor, scale: torch.Tensor,
                 align, align_max: float) -> torch.Tensor:
    """Shift every token toward the mean of its most responsible Gaussian (DESIGN §4)."""
    if use_triton(c):
        st = state.trim_dims()
        w, inv_b, const = st.cost_terms()
        adaptive = align == "adaptive"
        out, _ = torch.ops.dga_fast.anchor_shift(c, shift, scale, st.means, st.components, w, inv_b, const,
                                                 0.0 if adaptive else float(align), float(align_max), adaptive)
        return out
    return reference.anchor_shift(c, state, shift, scale, align, align_max)


def anchor_assign(c: torch.Tensor, state: MixtureState, shift: torch.Tensor,
                  scale: torch.Tensor) -> torch.Tensor:
    """Most responsible component ``[B, U]`` of every token."""
    if _fused_estep(c):   # slots past the last active one are −inf everywhere: never the first largest
        return _fused_log_resp(c, state.resize(state.used_slots()), shift, scale).argmax(-1).transpose(0, 1)
    return reference.anchor_assign(c, state, shift, scale)


def anchor_log_resp(c: torch.Tensor, state: MixtureState, shift: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:
    """Log-responsibilities ``[B, U, K]`` of tokens ``[B, U, Dc]`` under their unit mixtures."""
    if _fused_estep(c):
        return _fused_log_resp(c, state, shift, scale).transpose(0, 1)
    return reference.anchor_log_resp(c, state, shift, scale)


def _fused_log_resp(c: torch.Tensor, state: MixtureState, shift: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:   # [U, B, K]
    """The fused E-step (Triton or native) on the normalised tokens (contiguous ``[U, B, Dc]``), no gradient."""
    with torch.no_grad():
        log_resp, _ = hddc_estep(reference.normalise_tokens(c.detach(), shift, scale), state)
    return log_resp
