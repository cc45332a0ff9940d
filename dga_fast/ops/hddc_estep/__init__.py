"""The fused HDDC E-step (DESIGN §3): log-responsibilities ``[G, N, K]`` and per-sample log-likelihood ``[G, N]``.

Backends: the Triton kernel (``triton.py``, registered as ``torch.ops.dga_fast.hddc_estep`` by ``custom_op.py``)
for CUDA tensors; the native CPU op ``torch.ops.dga_fast.hddc_estep_native`` (``csrc/core/estep_core.*``) for CPU
tensors; else the PyTorch reference (``reference.py``). The oracle of all three is ``naive.py``."""
from __future__ import annotations

import torch

from ..._validation import check_float_tensor
from ...mixture.state import MixtureState
from ..registry import use_native_cpu, use_triton
from .reference import hddc_estep as reference_estep


def fused(t: torch.Tensor) -> bool:
    """Whether ``hddc_estep`` has a fused kernel for tensors like ``t``: Triton (CUDA) or the native CPU op."""
    return use_triton(t) or use_native_cpu(t)


def hddc_estep(x: torch.Tensor,  # [G, N, D]
               state: MixtureState) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-responsibilities ``[G, N, K]`` and per-sample log-likelihood ``[G, N]`` of every group's rows."""
    check_float_tensor("x", x, 3, finite=False)
    if x.shape[0] != state.G or x.shape[2] != state.D:
        raise ValueError(f"x must have shape [G={state.G}, N, D={state.D}] to match the mixture state, "
                         f"got {tuple(x.shape)}")
    if use_triton(x):
        check_float_tensor("x", x)
        st = state.trim_dims()
        w, inv_b, const = st.cost_terms()
        return torch.ops.dga_fast.hddc_estep(x, st.means, st.components, w, inv_b, const)
    if use_native_cpu(x):   # the op checks x's values as it reads them
        dt = torch.promote_types(x.dtype, torch.float32)
        st = state.trim_dims()
        terms = (st.means, st.components, *st.cost_terms())
        return torch.ops.dga_fast.hddc_estep_native(x.to(dt), *(t.to(dt) for t in terms))
    check_float_tensor("x", x)
    return reference_estep(x, state)
