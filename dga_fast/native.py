"""The C++ extension ``dga_fast._C`` (csrc/): CPU ops over the torch-free core of spread / split / filter,
registered as ``torch.ops.dga_fast.{mixture_spread, split_plan, filter_plan}``, with their fake
implementations for ``torch.compile``. Loaded lazily by ``dga_fast.ops``; absent when the package was
installed with ``DGA_FAST_NO_EXT=1``."""
from __future__ import annotations

import torch

_LOADED: bool | None = None


def available() -> bool:
    """Whether ``dga_fast._C`` imports (cached)."""
    global _LOADED
    if _LOADED is None:
        try:
            from . import _C  # noqa: F401  (registers the ops)
            _register_fakes()
            _LOADED = True
        except ImportError:
            _LOADED = False
    return _LOADED


def _register_fakes():
    @torch.library.register_fake("dga_fast::mixture_spread")
    def _spread_fake(x, labels, means):
        G, K = means.shape[:2]
        return means.new_empty(G, K, dtype=torch.int64), means.new_empty(G, K, dtype=torch.float32)

    @torch.library.register_fake("dga_fast::split_plan")
    def _split_fake(active, spread, counts, threshold, max_components, min_count):
        return (counts.new_empty(active.shape), counts.new_empty(active.shape, dtype=torch.int8),
                counts.new_empty(active.shape[:1]))

    @torch.library.register_fake("dga_fast::filter_plan")
    def _filter_fake(active, mass, min_size):
        return active.new_empty(active.shape), active.new_empty(active.shape, dtype=torch.int64)
