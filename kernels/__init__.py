"""Triton kernels of dga_fast (installed as ``dga_fast.kernels``), each with a launch function that
validates, allocates and picks the grid; ``dga_fast/custom_ops.py`` wraps them as ``torch.ops.dga_fast.*``
and ``dga_fast/ops.py`` dispatches to them (CUDA tensors, or ``DGA_FAST_BACKEND=triton``).

- ``hddc_estep``: the fused HDDC E-step (log-responsibilities and log-likelihood in one pass over X).
- ``anchor_shift``: DyGA's anchor shift, forward and backward.
- ``skip_block``: skip dropout + concatenation + GroupNorm + SiLU, forward and backward.
- ``_hddc_cost``: the per-component cost shared by the first two.
"""
