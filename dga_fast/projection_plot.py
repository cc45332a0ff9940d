"""``evaluate --plots pacmap|umap``: each latent unit's tokens in a nonlinear 2-D embedding (PaCMAP, as the paper's
Figure 1, or UMAP), coloured by the value of the ground-truth factor the unit best explains, with its Gaussian
regions.

The factor a unit best explains: the largest ``I(bin; factor) / H(factor)`` over the factors, with the bin the
token's first principal component cut into 20 equal-width bins (MIG's discretisation). The same quantity with the
token's most responsible Gaussian in place of its bin (``nmi_regions``) says how much of that the regions keep: a
unit with one Gaussian keeps nothing, however informative its tokens. A nonlinear embedding has no image of a
Gaussian, so each region is drawn as the 2-σ ellipse of its own tokens' embedded positions, labelled by its index.
The projection libraries are optional (``pip install pacmap`` / ``umap-learn``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .metrics.common import discretize, factor_entropy, mutual_info_matrix

PROJECTIONS = ("pacmap", "umap")
_PACKAGES = {"pacmap": "pacmap", "umap": "umap-learn"}


def embed_2d(x: np.ndarray, method: str, seed: int = 0) -> np.ndarray:  # [N, D] -> [N, 2]
    """``x`` embedded in 2-D by PaCMAP or UMAP (seeded)."""
    if method not in PROJECTIONS:
        raise ValueError(f"plot projection must be one of {PROJECTIONS}, got {method!r}")
    try:
        if method == "pacmap":
            import logging

            import pacmap
            logger = logging.getLogger(pacmap.pacmap.__name__)   # it warns on every seeded instance
            level = logger.level
            logger.setLevel(logging.ERROR)
            try:
                model = pacmap.PaCMAP(n_components=2, random_state=seed)
            finally:
                logger.setLevel(level)
        else:
            import umap
            model = umap.UMAP(n_components=2, random_state=seed, n_jobs=1)
    except ImportError as e:
        raise ImportError(f"--plots {method} needs the {_PACKAGES[method]} package (pip install "
                          f"{_PACKAGES[method]}); the other plots need nothing more") from e
    return np.asarray(model.fit_transform(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float64)


def _bins(tokens: torch.Tensor) -> np.ndarray:  # [N, D] -> [N]
    x = tokens.double()
    x = x - x.mean(0)
    pc = x @ torch.linalg.svd(x, full_matrices=False)[2][0]
    return discretize(pc.numpy()[:, None], 20)[:, 0]


def nmi_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:  # [N, U] discrete, [N, F] -> [U, F]
    """``I(code_u; factor_f) / H(factor_f)`` (0 for a single-valued factor)."""
    H = factor_entropy(factors)
    return np.where(H > 0, mutual_info_matrix(codes, factors) / np.where(H > 0, H, 1.0), 0.0)


def best_factors(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # [N, U], [N, F]
    """Per unit, the factor with the largest ``I(code; factor) / H(factor)`` and that value: ``[U]``, ``[U]``."""
    nmi = nmi_matrix(codes, factors)
    return nmi.argmax(1), nmi.max(1)


def _draw(ax, xy: np.ndarray, values: np.ndarray, regions: np.ndarray | None, title: str):
    import matplotlib.pyplot as plt

    from .viz import add_ellipse
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap=plt.get_cmap("viridis"), s=4, alpha=0.7, linewidths=0)
    if regions is not None:
        for k in np.unique(regions):
            pts = xy[regions == k]
            if len(pts) < 3:
                continue
            mu = pts.mean(0)
            add_ellipse(ax, mu, np.cov(pts.T), lw=1.0)
            ax.annotate(str(int(k)), mu, fontsize=7, ha="center", va="center", zorder=4)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    return sc


def plot_unit_projections(tokens: torch.Tensor,    # [N, U, D]
                          factors: np.ndarray,      # [N, F]
                          factor_names, path, *, method: str = "pacmap", dyga=None, units=None,
                          seed: int = 0, assign: torch.Tensor | None = None) -> dict:
    """One panel per unit (default: all): its tokens embedded in 2-D, coloured by the factor it best explains, with
    the Gaussian regions of ``dyga`` (when fitted). Writes ``path``; returns ``{"path", "units": [{unit, factor,
    nmi, nmi_regions (with a fitted dyga)}]}``. ``assign [N, U]``: ``dyga.assign(tokens)``, when the caller has it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .viz import save_figure
    tokens = tokens.detach().cpu()
    factors = np.asarray(factors)
    if tokens.dim() != 3 or factors.ndim != 2 or len(factors) != len(tokens):
        raise ValueError(f"tokens must be [N, U, D] and factors [N, F] with the same N, got {tuple(tokens.shape)} "
                         f"and {factors.shape}")
    U = tokens.shape[1]
    units = list(range(U)) if units is None else [int(u) for u in units]
    fitted = dyga is not None and dyga.fitted
    if fitted and assign is None:
        assign = dyga.assign(tokens.to(dyga.means.device))
    regions = assign.cpu().numpy() if fitted else None                                     # [N, U]
    best, score = best_factors(np.stack([_bins(tokens[:, u]) for u in range(U)], 1), factors)
    kept = nmi_matrix(regions, factors)[np.arange(U), best] if fitted else None
    cols = min(5, len(units))
    rows = (len(units) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), dpi=100, squeeze=False)
    info = []
    for i, u in enumerate(units):
        xy = embed_2d(tokens[:, u].double().numpy(), method, seed)
        f = int(best[u])
        title = f"unit {u}: {factor_names[f]}\nNMI {score[u]:.2f}" + (f", regions {kept[u]:.2f}" if fitted else "")
        _draw(axes.flat[i], xy, factors[:, f], regions[:, u] if fitted else None, title)
        info.append({"unit": u, "factor": factor_names[f], "nmi": round(float(score[u]), 4),
                     **({"nmi_regions": round(float(kept[u]), 4)} if fitted else {})})
    for ax in list(axes.flat)[len(units):]:
        ax.axis("off")
    fig.suptitle(f"{method.upper() if method == 'umap' else 'PaCMAP'} of each unit's tokens, coloured by the factor "
                 f"it best explains{' (ellipses: its Gaussian regions)' if fitted else ''}", fontsize=9)
    return {"path": str(save_figure(fig, Path(path))), "units": info}
