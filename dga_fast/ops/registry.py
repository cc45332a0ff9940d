"""The backend registry of the ops: which implementation serves them, chosen once, not looked up per call.

``DGA_FAST_BACKEND`` (``auto``, ``reference``, ``triton`` or ``native``) is read when dga_fast is imported;
``use_backend(name)`` switches it for a block (tests, benchmarks). The choice is a module global, which
``torch.compile`` reads as a constant."""
from __future__ import annotations

import os
from contextlib import contextmanager

BACKENDS = ("auto", "reference", "triton", "native")


def _validate(name, source: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{source} must be a str, one of {BACKENDS}, got {type(name).__name__}")
    name = name.strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {name!r}")
    return name


_current = _validate(os.environ.get("DGA_FAST_BACKEND", "auto"), "DGA_FAST_BACKEND")


def backend() -> str:
    """The backend in force: ``auto``, ``reference``, ``triton`` or ``native``."""
    return _current


def use_native(t) -> bool:
    """Whether the ops of ``dga_fast._C`` serve tensor ``t``: under ``auto`` and ``native``, for CPU tensors, and
    CUDA tensors in a CUDA build, when the extension is built (``native`` without a kernel for ``t`` raises)."""
    if _current not in ("auto", "native"):
        return False
    from .. import native
    if _current == "native" and not native.serves(t.device):
        raise RuntimeError(f"DGA_FAST_BACKEND=native but dga_fast._C has no kernels for {t.device.type} tensors "
                           "(reinstall without DGA_FAST_NO_EXT=1 / DGA_FAST_NO_CUDA=1)")
    return native.serves(t.device)


@contextmanager
def use_backend(name: str):
    """Force ``name`` for the ops called inside the block (restored on exit, also on an exception)."""
    global _current
    new = _validate(name, "backend")
    old, _current = _current, new
    try:
        yield new
    finally:
        _current = old
