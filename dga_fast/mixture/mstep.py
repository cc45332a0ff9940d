"""Batched HDDC M-step for the submodels AkjBkQkDk, AkBkQkDk, ABkQkDk and AkjBQkDk."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..distributed import LOCAL, Reducer
from .dims import bic_dims, cattell_dims
from .reduce import segment_sums, sum_slots
from .state import MixtureState

MODELS = ("AkjBkQkDk", "AkBkQkDk", "ABkQkDk", "AkjBQkDk")
D_SELECT = ("cattell", "bic")

# Responsibilities at or below this are left out of the scatter matrices: each dropped term weighs less
# than 1e-7 of one sample, far below float32 resolution of the sums it would join.
RESP_EPS = 1e-7
# Rows per tile of the segmented scatter GEMM.
TILE = 128


@dataclass(frozen=True)
class MStepConfig:
    model: str = "AkjBkQkDk"
    d_select: str = "cattell"
    threshold: float = 0.2
    d_max: int = 8            # already resolved against D (see dims.default_d_max)
    min_mass: float = 2.0     # components with less soft mass are deactivated


@dataclass
class Pairs:
    """The (sample, component) pairs with ``r_ik > RESP_EPS``, sorted by component (stable: samples in order):
    ``sample [E]`` (g·N + i), ``comp [E]`` (g·K + k), ``r [E]`` and ``counts [G·K]`` pairs per component."""
    sample: torch.Tensor
    comp: torch.Tensor
    r: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def of(cls, resp: torch.Tensor) -> "Pairs":   # resp [G, N, K]
        G, N, K = resp.shape
        flat = torch.nonzero(resp.reshape(-1) > RESP_EPS).squeeze(1)   # row-major (g, i, k)
        comp = (flat // (N * K)) * K + flat % K
        comp, order = torch.sort(comp, stable=True)
        flat = flat[order]
        return cls(sample=flat // K, comp=comp, r=resp.reshape(-1).index_select(0, flat),
                   counts=torch.bincount(comp, minlength=G * K))


def moments(x: torch.Tensor,       # [G, N, D]
            resp: torch.Tensor,    # [G, N, K]
            pairs: Pairs | None = None) -> tuple[torch.Tensor, torch.Tensor]:   # [G, K], [G, K, D]
    """Soft masses ``n_k = Σ_i r_ik`` and first moments ``Σ_i r_ik x_i`` over the significant pairs, each
    component's terms added in sample order (``reduce.segment_sums``): the same for a unit in any batch."""
    G, N, D = x.shape
    K = resp.shape[-1]
    pairs = Pairs.of(resp) if pairs is None else pairs
    nk = segment_sums(pairs.r, pairs.counts).view(G, K)
    rows = x.reshape(-1, D).index_select(0, pairs.sample) * pairs.r.unsqueeze(-1)
    return nk, segment_sums(rows, pairs.counts).view(G, K, D)


def scatter_matrices(x: torch.Tensor,      # [G, N, D]
                     resp: torch.Tensor,   # [G, N, K]
                     means: torch.Tensor,  # [G, K, D]
                     pairs: Pairs | None = None
                     ) -> torch.Tensor:    # [G, K, D, D]
    """Centred scatter matrices ``Σ_i r_ik (x_i − μ_k)(x_i − μ_k)ᵀ`` of every component.

    A segmented GEMM over the (sample, component) pairs with ``r_ik > RESP_EPS`` (``Pairs``): their rows
    ``√r_ik (x_i − μ_k)`` packed into tiles of ``TILE`` rows (a tile never mixes components), one batched
    ``ZᵀZ`` over the tiles, and the tiles of a component added in order. The cost is ``O(E·D²)`` for ``E``
    significant pairs: about ``N·D²`` when responsibilities are nearly hard (most of a DyGA refit), at most
    the dense ``N·K·D²``; centring is exact (no ``E[xxᵀ] − μμᵀ`` cancellation), and nothing of size ``N·K·D``
    is formed unless the responsibilities are that dense.
    """
    G, N, D = x.shape
    K = resp.shape[-1]
    pairs = Pairs.of(resp) if pairs is None else pairs
    key, counts = pairs.comp, pairs.counts
    starts = torch.cumsum(counts, 0) - counts
    ntile = (counts + TILE - 1) // TILE
    tstart = torch.cumsum(ntile, 0) - ntile
    pos = torch.arange(key.numel(), device=x.device) - starts[key]
    dest = (tstart[key] + pos // TILE) * TILE + pos % TILE
    rows = x.reshape(-1, D).index_select(0, pairs.sample)
    rows.sub_(means.reshape(-1, D).index_select(0, key))
    rows.mul_(pairs.r.sqrt().unsqueeze(-1))
    n_tiles = int(ntile.sum())
    Z = torch.zeros(n_tiles * TILE, D, dtype=x.dtype, device=x.device).index_copy_(0, dest, rows)
    Z = Z.view(n_tiles, TILE, D)
    S = segment_sums(Z.transpose(1, 2) @ Z, ntile)                      # [G*K, D, D]
    return S.view(G, K, D, D)


def robust_eigh(W: torch.Tensor,  # [M, D, D] symmetric
                eigh: Callable = torch.linalg.eigh, *,
                top: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:   # [M, D], [M, D, top or D]
    """``torch.linalg.eigh`` (ascending) that does not fail on the scatter matrices of ReLU tokens. Entries at
    the rounding level of the matrix's largest diagonal (``eps·max diag``) are set to zero first: they carry no
    information, and their denormal products make LAPACK's float32 solver fail to converge on matrices whose
    dead coordinates are (nearly) all-zero rows. Should it still fail, the batch is solved in float64. A matrix
    with a non-finite entry gets NaN eigenpairs (``torch.linalg.eigh``'s answer), which the M-step deactivates.
    ``top``: only the eigenvectors of the ``top`` largest eigenvalues (the last ``top`` columns)."""
    D = W.shape[-1]
    keep = D if top is None or top <= 0 or top > D else int(top)
    if W.numel() == 0:
        ev, vec = torch.linalg.eigh(W)
        return ev, vec[..., D - keep:]
    tiny = W.diagonal(dim1=-2, dim2=-1).amax(-1).clamp_min(0) * torch.finfo(W.dtype).eps
    W = torch.where(W.abs() <= tiny[:, None, None], torch.zeros_like(W), W)
    try:
        ev, vec = eigh(W)
    except torch.linalg.LinAlgError:
        ev, vec = torch.linalg.eigh(W.to(torch.float64))
        ev, vec = ev.to(W.dtype), vec.to(W.dtype)
    return ev, vec[..., D - keep:]


@dataclass(frozen=True)
class MStepKernels:
    """The M-step's heavy parts, passed in by the caller (``mixture/`` never imports ``ops/``, which chooses the
    backend; ``dga_fast.ops.MSTEP`` is the dispatching set): ``pairs(resp)`` an index of the significant
    responsibilities that ``moments(x, resp, pairs)`` and ``scatter(x, resp, means, pairs)`` may share (or
    ``None``), and ``eigh(W [M, D, D], top=)`` with ``robust_eigh``'s contract (ascending, as ``torch.linalg.eigh``;
    rounding-level entries zeroed first; NaN eigenpairs for a non-finite matrix; ``top``: only the eigenvectors of
    the ``top`` largest eigenvalues). The default is plain PyTorch."""
    pairs: Callable = Pairs.of
    moments: Callable = moments
    scatter: Callable = scatter_matrices
    eigh: Callable = robust_eigh


REFERENCE = MStepKernels()


def top_vectors(evecs: torch.Tensor,   # [..., D, ≥ min(D, dl)] the last columns of ascending eigenvectors
                dl: int) -> torch.Tensor:  # [..., D, min(D, dl)]
    """The eigenvectors of the ``min(D, dl)`` largest eigenvalues, largest first."""
    D, n = evecs.shape[-2:]
    return evecs[..., n - min(D, dl):].flip(-1)


def subspace(evals: torch.Tensor,   # [..., D] decreasing
             evecs: torch.Tensor,   # [..., D, ≥ min(D, dl)] matching columns (at least the leading ones)
             d: torch.Tensor,       # [...] int64 intrinsic dimensions
             dl: int):
    """The pieces of an HDDC component from its eigenpairs, padded to ``dl`` subspace columns:
    ``mask [..., dl]`` (j < d), ``top [..., dl]`` (leading eigenvalues, 1.0 beyond D), ``kept [...]``
    (Σ_{j<d} λ_j) and ``Q [..., D, dl]`` (leading eigenvectors, zero beyond d)."""
    D = evals.shape[-1]
    mask = torch.arange(dl, device=evals.device) < d.unsqueeze(-1)
    top = evals[..., :dl] if D >= dl else torch.nn.functional.pad(evals, (0, dl - D), value=1.0)
    kept = torch.where(mask, top, torch.zeros_like(top)).sum(-1)
    Q = evecs[..., :dl] if D >= dl else torch.nn.functional.pad(evecs, (0, dl - D))
    return mask, top, kept, Q * mask.unsqueeze(-2).to(Q.dtype)


def _finite_only(active: torch.Tensor,  # [G, K]
                 nk: torch.Tensor,      # [G, K]
                 means: torch.Tensor,   # [G, K, D]
                 evals: torch.Tensor    # [G, K, D]
                 ) -> torch.Tensor:     # [G, K]
    """``active`` without components whose mean or eigenvalues are not finite; a group left without any
    keeps its heaviest finite component."""
    ok = torch.isfinite(means.sum(-1) + evals.sum(-1))   # a NaN or Inf anywhere makes the sum non-finite
    if bool(ok[active].all()):
        return active
    out = active & ok
    heaviest = torch.nn.functional.one_hot(torch.where(ok, nk, torch.full_like(nk, -1.0)).argmax(1),
                                           active.shape[1]).bool()
    return out | (heaviest & ~out.any(1, keepdim=True))


def m_step(x: torch.Tensor,           # [G, N, D] compute dtype (float32/float64)
           resp: torch.Tensor,        # [G, N, K]
           cfg: MStepConfig,
           floor: torch.Tensor,       # [G] variance floor (noise_floor × data scale)
           prev_active: torch.Tensor | None = None,  # [G, K]
           *, reducer: Reducer = LOCAL, n_total: int | None = None,
           kernels: MStepKernels = REFERENCE) -> MixtureState:
    """One M-step. Components whose soft mass is below ``cfg.min_mass`` (or that were inactive) are
    deactivated and the weights of the others renormalised; every group keeps at least its heaviest
    component, so no group is ever left empty and nothing becomes NaN. Only active components are
    eigendecomposed. With a ``reducer`` of several ranks (``x``: this rank's samples, ``n_total``: all ranks'),
    the sufficient statistics are summed over the ranks: the mass and first moment, then the second moment
    centred at the global means; every rank then derives the same parameters from the same sums. ``kernels``:
    the weighted sums and eigendecompositions (``MStepKernels``; ``dga_fast.ops.MSTEP`` for the native ones)."""
    G, N, D = x.shape
    K = resp.shape[-1]
    dt = x.dtype
    N = n_total if n_total is not None else reducer.sum_int(N)
    pairs = kernels.pairs(resp)
    nk, first = kernels.moments(x, resp, pairs)
    nk = reducer.sum(nk)                                                 # [G,K]
    active = nk >= cfg.min_mass
    if prev_active is not None:
        active &= prev_active
    heaviest = torch.nn.functional.one_hot(nk.argmax(1), K).bool()
    active |= heaviest & ~active.any(1, keepdim=True)
    safe_nk = torch.where(active, nk, torch.ones_like(nk)).clamp_min(torch.finfo(dt).tiny)
    means = reducer.sum(first) / safe_nk.unsqueeze(-1)                   # [G,K,D]
    means = torch.where(active.unsqueeze(-1), means, torch.zeros_like(means))
    dl = max(cfg.d_max, 1)
    W = reducer.sum(kernels.scatter(x, resp, means, pairs))[active] / safe_nk[active][:, None, None]
    W = 0.5 * (W + W.transpose(-1, -2))
    ev, vec = kernels.eigh(W, top=min(D, dl))                           # active components only, ascending
    evals = torch.ones(G, K, D, dtype=dt, device=x.device)
    evals[active] = ev.flip(-1)
    evals = evals.clamp_min(floor.reshape(G, 1, 1))                     # decreasing
    evecs = torch.zeros(G, K, D, min(D, dl), dtype=dt, device=x.device)   # the leading ones (inactive: unused)
    evecs[active] = top_vectors(vec, dl)
    # a component whose statistics are not finite (a degenerate fit) is deactivated, never propagated
    active = _finite_only(active, nk, means, evals)
    if cfg.d_select == "cattell":
        d = cattell_dims(evals, cfg.threshold, cfg.d_max)
    else:
        d = bic_dims(evals, safe_nk, torch.full((G,), N, device=x.device), cfg.d_max, floor)
    if cfg.d_max > 0:   # cannot estimate more directions than points − 1
        d = torch.minimum(d, (safe_nk.floor().long() - 1).clamp_min(1))
    mask, top, kept, Q = subspace(evals, evecs, d, dl)                   # [G,K,dl], ..., [G,K,D,dl]
    trace = evals.sum(-1)                                                # [G,K]
    df = d.to(dt)
    pi = torch.where(active, nk / N, torch.zeros_like(nk))
    pi = pi / sum_slots(pi, 1, keepdim=True)
    if cfg.model == "AkBkQkDk":
        a = (kept / df.clamp_min(1.0)).unsqueeze(-1).expand_as(top)
    elif cfg.model == "ABkQkDk":
        a_g = sum_slots(pi * kept, 1) / sum_slots(pi * df, 1).clamp_min(torch.finfo(dt).tiny)
        a = a_g.reshape(G, 1, 1).expand_as(top)
    else:
        a = top
    a = a.clamp_min(floor.reshape(G, 1, 1))
    resid = ((trace - kept) / (D - df).clamp_min(1.0))                   # per-component noise
    if cfg.model == "AkjBQkDk":
        b_g = sum_slots(pi * (trace - kept), 1) / sum_slots(pi * (D - df), 1).clamp_min(torch.finfo(dt).tiny)
        b = b_g.unsqueeze(1).expand_as(resid)
    else:
        b = resid
    b = b.clamp_min(floor.reshape(G, 1))
    log_w = torch.where(active, torch.log(pi.clamp_min(torch.finfo(dt).tiny)),
                        torch.full_like(pi, float("-inf")))
    empty = MixtureState.empty(G, K, D, dl, dtype=dt, device=x.device)
    am = active.unsqueeze(-1)
    return MixtureState(
        means=torch.where(am, means, empty.means),
        components=torch.where(am.unsqueeze(-1), Q, empty.components),
        eigvals=torch.where(am & mask, a, empty.eigvals),
        noise=torch.where(active, b, empty.noise),
        log_weights=log_w,
        dims=torch.where(active, d, empty.dims),
        active=active,
    )
