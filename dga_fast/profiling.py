"""Named ranges for profilers: NVTX through the ``nvtx`` package (``torch.cuda.nvtx`` raises on CPU builds; skipped
when the package is missing), and ``torch.profiler.record_function`` while a torch profiler runs, so that the
ranges also show on CPU (``benchmarks/profile_step.py``)."""
from __future__ import annotations

import contextlib

import torch

try:
    import nvtx as _nvtx
except Exception:  # noqa: BLE001 - optional
    _nvtx = None


@contextlib.contextmanager
def nvtx_range(name: str):
    """Context manager marking ``name`` on the NVTX timeline (visible in Nsight Systems) and, while a torch
    profiler is recording, as a ``record_function`` range."""
    with contextlib.ExitStack() as stack:
        if _nvtx is not None:
            stack.enter_context(_nvtx.annotate(name, domain="dga_fast"))
        if getattr(torch.autograd.profiler, "_is_profiler_enabled", False):
            stack.enter_context(torch.profiler.record_function(name))
        yield
