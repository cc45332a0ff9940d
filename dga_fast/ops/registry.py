"""The backend registry of the ops: which implementation serves them, chosen once, not looked up per call.

``DGA_FAST_BACKEND`` (``auto``, ``reference``, ``triton`` or ``native``) is read when dga_fast is imported;
``use_backend(name)`` switches it for a block (tests, benchmarks). The choice is a module global, which
``torch.compile`` reads as a constant. ``use_triton(t)`` and ``use_native(t)`` are the two rules every op's
public function asks (``ops/<op>/__init__.py``); ``triton_available()`` imports Triton and registers the ops'
Triton custom ops once."""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

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


_TRITON_OK: bool | None = None


def triton_available() -> bool:
    """Whether Triton imports and the ops' Triton custom ops register (``<op>/custom_op.py``; cached in a module
    global, which torch.compile reads as a constant)."""
    global _TRITON_OK
    if _TRITON_OK is None:
        try:
            import triton  # noqa: F401
            from .anchor_shift import custom_op as _a  # noqa: F401  (registers torch.ops.dga_fast.*)
            from .hddc_estep import custom_op as _e  # noqa: F401
            from .skip_block import custom_op as _s  # noqa: F401
            _TRITON_OK = True
        except Exception:  # noqa: BLE001 - no Triton, or a broken install: the reference serves
            _TRITON_OK = False
    return _TRITON_OK


def use_triton(x) -> bool:
    """The rule of the ops that have a Triton kernel: never for float64 or under ``reference``; always under
    ``triton`` (CPU tensors then run in Triton's interpreter, ``TRITON_INTERPRET=1``); for CUDA tensors when
    Triton is available under ``auto``."""
    if _current == "reference" or x.dtype == torch.float64:
        return False
    if _current == "triton":
        if not triton_available():
            raise RuntimeError("DGA_FAST_BACKEND=triton but Triton (or the ops' Triton kernels) cannot be imported")
        return True
    return x.is_cuda and triton_available()


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


def use_native_cpu(t, dtypes=None) -> bool:
    """``use_native`` for the CPU-only native ops: ``t`` is a CPU tensor (of one of ``dtypes``, when given)."""
    return t.device.type == "cpu" and (dtypes is None or t.dtype in dtypes) and use_native(t)


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
