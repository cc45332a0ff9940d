"""NVTX ranges through the ``nvtx`` package (``torch.cuda.nvtx`` raises on CPU builds); a no-op when the
package is missing."""
from __future__ import annotations

import contextlib

try:
    import nvtx as _nvtx
except Exception:  # noqa: BLE001 - optional
    _nvtx = None


def nvtx_range(name: str):
    """Context manager marking ``name`` on the NVTX timeline (visible in Nsight Systems)."""
    if _nvtx is None:
        return contextlib.nullcontext()
    return _nvtx.annotate(name, domain="dga_fast")
