"""Every op of dga_fast, one folder per op (``ops/<op>/``: ``__init__.py`` the public function, ``reference.py``
the plain-PyTorch path, ``naive.py`` the brute-force oracle where the reference is not itself the oracle,
``triton.py`` the Triton kernel and its launch, ``custom_op.py`` its ``torch.library`` registration; the native
kernels are the ops of ``dga_fast._C``, csrc/):

- ``hddc_estep``: the fused HDDC E-step (Triton; native CPU; reference);
- ``hddc_mstep``: the M-step's weighted sums and eigendecompositions, as ``MSTEP`` (native CPU; reference);
- ``axis_cem``: the split test's projection and classification-EM steps, as ``AXIS`` (native CPU; reference);
- ``kmeans``: the Lloyd step and loop of the initial partition (native CPU; reference);
- ``anchor_shift``: the anchor shift and the token assignments (Triton; reference);
- ``skip_block``: skip dropout + concat + GroupNorm + SiLU (Triton; reference);
- ``plans``: spread / split / filter (native CPU and CUDA plans; reference);
- ``group_moments``: the normaliser's sums (native CPU; reference).

The backend is chosen once, by ``registry``: ``DGA_FAST_BACKEND`` (``auto``, ``reference``, ``triton`` or
``native``) read when dga_fast is imported, or ``dga_fast.use_backend(name)`` (a context manager, for tests and
benchmarks). ``auto`` (the default) takes Triton for CUDA tensors when Triton is installed, the native ops where
they are built for the tensors' device, and the reference otherwise; a forced backend applies everywhere;
``triton`` on CPU tensors runs the kernels in Triton's interpreter (set ``TRITON_INTERPRET=1`` before dga_fast is
imported; slow, for tests). float64 inputs never take a Triton kernel: they compute in float32.
"""
from __future__ import annotations

from .anchor_shift import anchor_assign, anchor_log_resp, anchor_shift
from .axis_cem import AXIS, axis_cem_assign, axis_cem_iterate, axis_project
from .group_moments import group_moments
from .hddc_estep import hddc_estep
from .hddc_mstep import MSTEP, batched_eigh, mstep_moments, mstep_scatter
from .kmeans import kmeans_assign, kmeans_lloyd
from .plans import filter_components, mixture_spread, split_components
from .registry import BACKENDS, backend, triton_available, use_backend
from .skip_block import skip_dropout_concat_norm_silu

__all__ = ["AXIS", "BACKENDS", "MSTEP", "anchor_assign", "anchor_log_resp", "anchor_shift", "axis_cem_assign",
           "axis_cem_iterate", "axis_project", "backend",
           "batched_eigh", "filter_components", "group_moments", "hddc_estep", "kmeans_assign", "kmeans_lloyd", "mixture_spread", "mstep_moments",
           "mstep_scatter", "skip_dropout_concat_norm_silu", "split_components", "triton_available",
           "use_backend"]
