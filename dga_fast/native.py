"""The C++ extension ``dga_fast._C`` (csrc/): CPU ops, and CUDA ops in a CUDA build, over the torch-free core
of spread / split / filter and the fused HDDC E-step on CPU, registered as
``torch.ops.dga_fast.{mixture_spread, split_plan, filter_plan, hddc_estep_native, group_moments, mstep_moments,
mstep_scatter, batched_eigh, axis_project, axis_cem_assign, axis_cem_iterate,
kmeans_assign, kmeans_lloyd}``,
with their fake implementations for ``torch.compile`` and meta tensors. Loaded lazily by ``dga_fast.ops``;
absent when the package was installed with ``DGA_FAST_NO_EXT=1``; CPU-only when torch has no CUDA, nvcc was
missing, or ``DGA_FAST_NO_CUDA=1`` was set at install time."""
from __future__ import annotations

import torch

from . import estep_grad

_LOADED: bool | None = None
_CUDA: bool | None = None


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


def has_cuda() -> bool:
    """Whether the extension was built with its CUDA kernels."""
    global _CUDA
    if _CUDA is None:   # cached in a module global, which torch.compile reads as a constant
        _CUDA = False
        if available():
            from . import _C
            _CUDA = bool(_C.built_with_cuda())
    return _CUDA


def serves(device: torch.device) -> bool:
    """Whether the native ops have a kernel for tensors on ``device``."""
    return available() and (device.type == "cpu" or (device.type == "cuda" and has_cuda()))


def _same_device(**tensors: torch.Tensor) -> None:
    """The dispatcher sends a call mixing meta and real tensors to the fake: reject it as the kernels do."""
    (first, t0), *rest = tensors.items()
    for name, t in rest:
        if t.device != t0.device:
            raise ValueError(f"{name} must be on the same device as {first} ({t0.device}), got {t.device}")


def _register_fakes():
    @torch.library.register_fake("dga_fast::mixture_spread")
    def _spread_fake(x, labels, means):
        _same_device(x=x, labels=labels, means=means)
        G, K = means.shape[:2]
        return means.new_empty(G, K, dtype=torch.int64), means.new_empty(G, K, dtype=torch.float32)

    @torch.library.register_fake("dga_fast::split_plan")
    def _split_fake(active, spread, counts, threshold, max_components, min_count):
        _same_device(active=active, spread=spread, counts=counts)
        return (counts.new_empty(active.shape), counts.new_empty(active.shape, dtype=torch.int8),
                counts.new_empty(active.shape[:1]))

    @torch.library.register_fake("dga_fast::hddc_estep_native")
    def _estep_fake(x, means, components, w, inv_b, cst):
        _same_device(x=x, means=means, components=components, w=w, inv_b=inv_b, cst=cst)
        G, N, _ = x.shape
        return x.new_empty(G, N, means.shape[1]), x.new_empty(G, N)

    torch.library.register_autograd("dga_fast::hddc_estep_native", estep_grad.backward,
                                    setup_context=estep_grad.setup_context)

    @torch.library.register_fake("dga_fast::group_moments")
    def _moments_fake(x):
        G, _, D = x.shape
        return (x.new_empty(G, D, dtype=torch.float64), x.new_empty(G, dtype=torch.float64),
                x.new_empty(G, dtype=torch.float64))

    @torch.library.register_fake("dga_fast::filter_plan")
    def _filter_fake(active, mass, min_size):
        _same_device(active=active, mass=mass)
        return active.new_empty(active.shape), active.new_empty(active.shape, dtype=torch.int64)

    @torch.library.register_fake("dga_fast::mstep_moments")
    def _mstep_moments_fake(x, resp, eps):
        _same_device(x=x, resp=resp)
        G, _, D = x.shape
        return x.new_empty(G, resp.shape[2]), x.new_empty(G, resp.shape[2], D)

    @torch.library.register_fake("dga_fast::mstep_scatter")
    def _mstep_scatter_fake(x, resp, means, eps):
        _same_device(x=x, resp=resp, means=means)
        G, _, D = x.shape
        return x.new_empty(G, resp.shape[2], D, D)

    @torch.library.register_fake("dga_fast::batched_eigh")
    def _eigh_fake(W, top=0):
        D = W.shape[-1]
        return W.new_empty(W.shape[:2]), W.new_empty(W.shape[0], D, D if top <= 0 or top > D else top)

    @torch.library.register_fake("dga_fast::axis_cem_assign")
    def _cem_fake(t, comp, prev, base, mean, var):
        _same_device(t=t, comp=comp, prev=prev, base=base, mean=mean, var=var)
        G, n = t.shape
        return (comp.new_empty(G, n), comp.new_empty(G), base.new_empty(base.shape), base.new_empty(base.shape),
                base.new_empty(base.shape))

    @torch.library.register_fake("dga_fast::axis_project")
    def _axis_project_fake(x, labels, means, q):
        _same_device(x=x, labels=labels, means=means, q=q)
        return x.new_empty(x.shape[:2], dtype=torch.float64)

    @torch.library.register_fake("dga_fast::axis_cem_iterate")
    def _cem_iterate_fake(t, comp, cls, cnt, s1, s2, v_floor, iters):
        _same_device(t=t, comp=comp, cls=cls, cnt=cnt, s1=s1, s2=s2, v_floor=v_floor)
        return cls.new_empty(cls.shape), cnt.new_empty(cnt.shape), s1.new_empty(s1.shape), s2.new_empty(s2.shape)

    @torch.library.register_fake("dga_fast::kmeans_assign")
    def _kmeans_fake(x, centers):
        _same_device(x=x, centers=centers)
        G, n, D = x.shape
        K = centers.shape[1]
        return x.new_empty(G, n, dtype=torch.int64), x.new_empty(G, K), x.new_empty(G, K, D)

    @torch.library.register_fake("dga_fast::kmeans_lloyd")
    def _lloyd_fake(x, centers, max_iter):
        _same_device(x=x, centers=centers)
        return x.new_empty(x.shape[:2], dtype=torch.int64), centers.new_empty(centers.shape)
