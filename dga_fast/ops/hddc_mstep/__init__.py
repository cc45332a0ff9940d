"""The HDDC M-step's heavy parts (DESIGN §3): the weighted sums (masses, first moments, centred scatter
matrices) and the eigendecomposition of the small symmetric matrices, as ``MSTEP`` (an ``MStepKernels`` the
EM driver, ``init_state`` and the merge step receive).

Backends: the native CPU ops ``torch.ops.dga_fast.{mstep_moments, mstep_scatter, batched_eigh}``
(``csrc/core/mstep_core.*``, ``csrc/mstep_op.cpp``: one pass over a group's rows per sum, each row meeting only
its significant slots, double accumulators, the groups' fixed row chunks in parallel; batched Jacobi for small D
(``csrc/core/jacobi_core.*``), LAPACK beyond, on slices of the batch in parallel) for CPU float32 / float64
tensors, else the PyTorch reference (``mixture.mstep``: a segmented GEMM over the significant (sample,
component) pairs, ``robust_eigh``). The oracle of both is ``naive``.
"""
from __future__ import annotations

import torch

from ...mixture.mstep import RESP_EPS, MStepKernels, Pairs, moments, robust_eigh, scatter_matrices
from ..registry import use_native_cpu


def _native(t: torch.Tensor) -> bool:
    return use_native_cpu(t, (torch.float32, torch.float64))


def significant_pairs(resp: torch.Tensor  # [G, N, K]
                      ) -> Pairs | None:
    """The reference's index of the pairs with ``r_ik > RESP_EPS``; ``None`` where the native sums serve
    (they find the pairs as they read ``resp``)."""
    return None if _native(resp) else Pairs.of(resp)


def mstep_moments(x: torch.Tensor,      # [G, N, D]
                  resp: torch.Tensor,   # [G, N, K]
                  pairs: Pairs | None = None) -> tuple[torch.Tensor, torch.Tensor]:   # [G, K], [G, K, D]
    """Soft masses ``Σ_i r_ik`` and first moments ``Σ_i r_ik x_i`` over the pairs with ``r_ik > RESP_EPS``."""
    if _native(x) and resp.dtype == x.dtype:
        return torch.ops.dga_fast.mstep_moments(x, resp, RESP_EPS)
    return moments(x, resp, pairs)


def mstep_scatter(x: torch.Tensor,      # [G, N, D]
                  resp: torch.Tensor,   # [G, N, K]
                  means: torch.Tensor,  # [G, K, D]
                  pairs: Pairs | None = None) -> torch.Tensor:   # [G, K, D, D]
    """Centred scatter matrices ``Σ_i r_ik (x_i − μ_k)(x_i − μ_k)ᵀ`` over the pairs with ``r_ik > RESP_EPS``
    (exactly symmetric)."""
    if _native(x) and resp.dtype == x.dtype == means.dtype:
        return torch.ops.dga_fast.mstep_scatter(x, resp, means, RESP_EPS)
    return scatter_matrices(x, resp, means, pairs)


def batched_eigh(W: torch.Tensor,         # [M, D, D] symmetric
                 top: int | None = None   # only the eigenvectors of the `top` largest eigenvalues
                 ) -> tuple[torch.Tensor, torch.Tensor]:   # [M, D] ascending, [M, D, top or D] ascending
    """``mixture.mstep.robust_eigh`` of a batch of small symmetric matrices; natively on CPU (batched Jacobi for
    small D, which rebuilds only the ``top`` wanted eigenvectors from its rotations; LAPACK beyond; slices of the
    batch in parallel; no matrix's result depends on the others)."""
    if _native(W):
        return torch.ops.dga_fast.batched_eigh(W, 0 if top is None else int(top))
    return robust_eigh(W, top=top)


MSTEP = MStepKernels(pairs=significant_pairs, moments=mstep_moments, scatter=mstep_scatter, eigh=batched_eigh)
