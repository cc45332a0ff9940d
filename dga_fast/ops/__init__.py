"""The one place that chooses a backend for every op of dga_fast.

Backends: ``reference`` (plain PyTorch, ``dga_fast.reference``; the oracle of every kernel), ``triton`` (fused
kernels in ``dga_fast.kernels`` behind ``torch.ops.dga_fast.*`` custom ops: the HDDC E-step, the anchor shift and
the skip block) and ``native`` (the C++ extension ``dga_fast._C``: the spread / split / filter plans on CPU
tensors and on CUDA tensors in a CUDA build, the HDDC E-step, the M-step's sums and eigendecompositions
(``hddc_mstep``) and the normaliser's sums on CPU tensors). ``auto``
(the default) takes Triton for CUDA tensors when Triton is installed, the native ops where they are built for
the tensors' device, and the reference otherwise. The backend is chosen once, by ``registry``: the environment
variable ``DGA_FAST_BACKEND`` (``auto``, ``reference``, ``triton`` or ``native``) read when dga_fast is imported,
or ``dga_fast.use_backend(name)`` (a context manager, for tests and benchmarks); a forced backend applies
everywhere; ``triton`` on CPU tensors runs the kernels in Triton's interpreter (set ``TRITON_INTERPRET=1`` before
dga_fast is imported; slow, for tests). float64 inputs never take a Triton kernel: they compute in float32.
"""
from __future__ import annotations

import torch

from .. import reference
from .._validation import check_float_tensor
from ..mixture.state import MixtureState
from .axis_cem import axis_cem_assign  # noqa: F401  (re-exported)
from .hddc_mstep import MSTEP, batched_eigh, mstep_moments, mstep_scatter  # noqa: F401  (re-exported)
from .registry import BACKENDS, backend, use_backend  # noqa: F401  (re-exported)
from .registry import use_native as _use_native


def _impl(name: str):
    return getattr(reference, name)


_TRITON_OK: bool | None = None


def triton_available() -> bool:
    """Whether Triton imports and the custom ops register (cached in a module global, which torch.compile
    reads as a constant)."""
    global _TRITON_OK
    if _TRITON_OK is None:
        try:
            from .. import custom_ops  # noqa: F401  (registers torch.ops.dga_fast.*)
            _TRITON_OK = True
        except Exception:  # noqa: BLE001 - no Triton, or a broken install: the reference serves
            _TRITON_OK = False
    return _TRITON_OK


def _use_triton(x: torch.Tensor) -> bool:
    """Dispatch rule of the ops that have a Triton kernel (see the module docstring)."""
    b = backend()
    if b == "reference" or x.dtype == torch.float64:
        return False
    if b == "triton":
        if not triton_available():
            raise RuntimeError("DGA_FAST_BACKEND=triton but Triton (or dga_fast.kernels) cannot be imported")
        return True
    return x.is_cuda and triton_available()


def _fused_estep(t: torch.Tensor) -> bool:
    """Whether ``hddc_estep`` has a fused kernel for tensors like ``t``: Triton (CUDA) or the native CPU op."""
    return _use_triton(t) or (t.device.type == "cpu" and _use_native(t))


def hddc_estep(x: torch.Tensor,  # [G, N, D]
               state: MixtureState) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-responsibilities ``[G, N, K]`` and per-sample log-likelihood ``[G, N]`` (DESIGN §3): the Triton
    kernel for CUDA tensors, the native CPU op (``csrc/core/estep_core.h``) for CPU tensors, else the reference."""
    check_float_tensor("x", x, 3, finite=False)
    if x.shape[0] != state.G or x.shape[2] != state.D:
        raise ValueError(f"x must have shape [G={state.G}, N, D={state.D}] to match the mixture state, "
                         f"got {tuple(x.shape)}")
    if _use_triton(x):
        check_float_tensor("x", x)
        st = state.trim_dims()
        w, inv_b, const = st.cost_terms()
        return torch.ops.dga_fast.hddc_estep(x, st.means, st.components, w, inv_b, const)
    if x.device.type == "cpu" and _use_native(x):   # the op checks x's values as it reads them
        dt = torch.promote_types(x.dtype, torch.float32)
        st = state.trim_dims()
        terms = (st.means, st.components, *st.cost_terms())
        return torch.ops.dga_fast.hddc_estep_native(x.to(dt), *(t.to(dt) for t in terms))
    check_float_tensor("x", x)
    return _impl("hddc_estep")(x, state)


def group_moments(x: torch.Tensor  # [G, N, D]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:   # [G, D], [G], [G] float64
    """The normaliser's sums of every group (``mixture.normalise.group_sums`` for one process): the refined mean,
    ``Σ‖x − μ‖²`` and ``Σ‖x‖²``; the native op (one pass per statistic, no float64 copy of ``x``) for CPU tensors."""
    check_float_tensor("x", x, 3, finite=False)
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and _use_native(x):
        return torch.ops.dga_fast.group_moments(x)   # checks x's values as it reads them
    check_float_tensor("x", x)
    return _impl("group_moments")(x)


def anchor_shift(c: torch.Tensor,      # [B, U, Dc]
                 state: MixtureState, shift: torch.Tensor, scale: torch.Tensor,
                 align, align_max: float) -> torch.Tensor:
    """Shift every token toward the mean of its most responsible Gaussian (DESIGN §4)."""
    if _use_triton(c):
        st = state.trim_dims()
        w, inv_b, const = st.cost_terms()
        adaptive = align == "adaptive"
        out, _ = torch.ops.dga_fast.anchor_shift(c, shift, scale, st.means, st.components, w, inv_b, const,
                                                 0.0 if adaptive else float(align), float(align_max), adaptive)
        return out
    return _impl("anchor_shift")(c, state, shift, scale, align, align_max)


def anchor_assign(c: torch.Tensor, state: MixtureState, shift: torch.Tensor,
                  scale: torch.Tensor) -> torch.Tensor:
    """Most responsible component ``[B, U]`` of every token."""
    if _fused_estep(c):
        return anchor_log_resp(c, state, shift, scale).argmax(-1)
    return _impl("anchor_assign")(c, state, shift, scale)


def anchor_log_resp(c: torch.Tensor, state: MixtureState, shift: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:
    """Log-responsibilities ``[B, U, K]`` of tokens ``[B, U, Dc]`` under their unit mixtures."""
    if _fused_estep(c):   # the fused E-step (Triton or native) on the normalised tokens
        with torch.no_grad():
            x = reference.anchor.normalise_tokens(c.detach(), shift, scale).contiguous()
            log_resp, _ = hddc_estep(x, state)
        return log_resp.transpose(0, 1)
    return _impl("anchor_log_resp")(c, state, shift, scale)


def mixture_spread(x: torch.Tensor, labels: torch.Tensor, means: torch.Tensor):
    """Per component hard-assigned count and mean distance to its mean."""
    if x.dtype == torch.float32 and means.dtype == torch.float32 and _use_native(x):
        return torch.ops.dga_fast.mixture_spread(x, labels, means)
    return _impl("mixture_spread")(x, labels, means)


def split_components(state: MixtureState, spread: torch.Tensor, counts: torch.Tensor,
                     threshold: float, max_components: int, min_count: float, offsets: torch.Tensor | None = None):
    """Split the widest components (largest ``spread``: any score) into free slots (DESIGN §4): the plan
    natively when built, its application (``reference.apply_split``; ``offsets`` places the children) in
    PyTorch."""
    if _use_native(spread):
        src, sign, n_split = torch.ops.dga_fast.split_plan(state.active, spread, counts, float(threshold),
                                                           int(max_components), float(min_count))
        return reference.split_filter.apply_split(state, src, sign, offsets), n_split
    return _impl("split_components")(state, spread, counts, threshold, max_components, min_count, offsets)


def filter_components(state: MixtureState, mass: torch.Tensor, min_size: float) -> MixtureState:
    """Drop light components, compact the slots, renormalise: the plan natively when built."""
    if _use_native(mass):
        keep, order = torch.ops.dga_fast.filter_plan(state.active, mass, float(min_size))
        return reference.split_filter.apply_filter(state, keep, order)
    return _impl("filter_components")(state, mass, min_size)


def skip_dropout_concat_norm_silu(h: torch.Tensor, skip: torch.Tensor, keep_mask: torch.Tensor, p: float,
                                  gn_weight: torch.Tensor, gn_bias: torch.Tensor,
                                  groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder ResBlock input: channel dropout of ``skip``, concat with ``h``, GroupNorm, SiLU."""
    if _use_triton(h):
        x_cat, y, _, _ = torch.ops.dga_fast.skip_dropout_concat_norm_silu(
            h, skip.to(h.dtype), keep_mask, float(p), gn_weight, gn_bias, int(groups))
        return x_cat, y
    return _impl("skip_dropout_concat_norm_silu")(h, skip, keep_mask, p, gn_weight, gn_bias, groups)
