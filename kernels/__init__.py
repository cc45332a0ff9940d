"""Triton kernels of dga_fast (installed as ``dga_fast.kernels``).

Empty for now: the fused HDDC E-step, anchor shift and skip-dropout kernels arrive with their own issue
and are dispatched from ``dga_fast/ops.py``.
"""
