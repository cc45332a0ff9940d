"""Plots: latent units' tokens in 2-D (PCA) with their Gaussians as 2-σ ellipses, and image grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _pca_basis(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre ``[D]`` and top-2 principal directions ``[D, 2]`` of ``x [N, D]`` (float64)."""
    c = x.mean(0)
    _, _, vh = torch.linalg.svd(x - c, full_matrices=False)
    basis = vh[:2].T
    if basis.shape[1] < 2:   # one-dimensional tokens: pad with a zero axis
        basis = torch.nn.functional.pad(basis, (0, 2 - basis.shape[1]))
    return c, basis


def add_ellipse(ax, mean, cov, lw: float = 1.2):
    """The 2-σ ellipse of a 2-D Gaussian (``mean [2]``, ``cov [2, 2]``) into the matplotlib axes ``ax``."""
    from matplotlib.patches import Ellipse
    vals, vecs = np.linalg.eigh(np.asarray(cov))
    vals = np.clip(vals, 0.0, None)
    angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
    ax.add_patch(Ellipse(mean, 2 * 2 * np.sqrt(vals[1]), 2 * 2 * np.sqrt(vals[0]), angle=angle,
                         fill=False, lw=lw, edgecolor="black", zorder=3))


def draw_unit(ax, tokens: torch.Tensor,      # [N, D] one unit's tokens
              labels: torch.Tensor,             # [N] component of every token
              means: torch.Tensor,              # [K, D] in token coordinates (active components)
              covariances: torch.Tensor,        # [K, D, D] in token coordinates
              title: str = "", max_points: int = 5000, names=None):
    """2-D PCA scatter of the tokens coloured by component, each Gaussian's 2-σ ellipse projected onto the
    same plane, drawn into the matplotlib axes ``ax``; ``names``: a text per Gaussian written beside its mean."""
    import matplotlib.pyplot as plt

    x = tokens.detach().double().cpu()
    c, P = _pca_basis(x)
    sel = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:max_points]
    xy = ((x[sel] - c) @ P).numpy()
    lab = labels.detach().cpu()[sel].numpy()
    mu2 = ((means.detach().double().cpu() - c) @ P).numpy()
    cov2 = (P.T @ covariances.detach().double().cpu() @ P).numpy()
    cmap = plt.get_cmap("tab20")
    ax.scatter(xy[:, 0], xy[:, 1], c=[cmap(int(k) % 20) for k in lab], s=3, alpha=0.5, linewidths=0)
    for k in range(mu2.shape[0]):
        add_ellipse(ax, mu2[k], cov2[k])
        ax.plot(*mu2[k], marker="x", color="black", ms=5, zorder=4)
        if names is not None:
            ax.annotate(str(names[k]), mu2[k], fontsize=8, color="crimson", xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")


def save_figure(fig, path) -> Path:
    """Tight layout, write ``path`` (folders created), close the figure."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_anchored_unit(ax, dyga, u: int,
                       tokens: torch.Tensor,   # [N, D] unit u's tokens
                       assign: torch.Tensor,   # [N] their component slots (dyga.assign)
                       title: str = "", name_slots: bool = False):
    """``draw_unit`` of unit ``u`` of the fitted ``dyga``: its active Gaussians in token coordinates, the tokens
    coloured by Gaussian; ``name_slots`` writes each Gaussian's slot index beside its mean."""
    act = dyga.active[u].cpu()
    slots = torch.nonzero(act).squeeze(1)
    remap = torch.cumsum(act.long(), 0) - 1                                   # slot -> index among active
    cov = dyga.state.index_groups(torch.tensor([u], device=dyga.means.device)).covariances()[0]
    cov = (cov * dyga.norm_scale[u] ** 2).cpu()[act]
    draw_unit(ax, tokens, remap[assign.cpu()], dyga.means[u].cpu()[act], cov, title,
              names=slots.tolist() if name_slots else None)


def plot_anchors(dyga, tokens: torch.Tensor, units, path, titles=None, assign=None) -> Path:
    """One panel per unit in ``units``: the tokens ``[N, U, D]`` and the unit's Gaussians of ``dyga``
    (``assign [N, U]``: the tokens' components, when the caller already has them)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = list(units)
    cols = min(4, len(units))
    rows = (len(units) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), dpi=100, squeeze=False)
    assign = dyga.assign(tokens) if assign is None else assign                # [N, U]
    for i, u in enumerate(units):
        title = titles[i] if titles else f"unit {u}: {int(dyga.active[u].sum())} Gaussians"
        draw_anchored_unit(axes.flat[i], dyga, u, tokens[:, u], assign[:, u], title)
    for ax in list(axes.flat)[len(units):]:
        ax.axis("off")
    return save_figure(fig, path)


def image_grid(images: torch.Tensor, nrow: int, pad: int = 2) -> np.ndarray:
    """``[N, C, H, W]`` in [0, 1] → an ``[rows·(H+pad), nrow·(W+pad), 3]`` uint8 array, row-major."""
    imgs = images.detach().float().clamp(0, 1).cpu()
    if imgs.shape[1] == 1:
        imgs = imgs.expand(-1, 3, -1, -1)
    N, C, H, W = imgs.shape
    rows = (N + nrow - 1) // nrow
    grid = torch.ones(3, rows * (H + pad) + pad, nrow * (W + pad) + pad)
    for i in range(N):
        r, c = divmod(i, nrow)
        y0, x0 = pad + r * (H + pad), pad + c * (W + pad)
        grid[:, y0:y0 + H, x0:x0 + W] = imgs[i, :3]
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_grid(images: torch.Tensor, nrow: int, path) -> Path:
    """Write ``images [N, C, H, W]`` as a PNG grid with ``nrow`` images per row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, image_grid(images, nrow))
    return path


def interchange_grid(model, ds, n: int, steps: int, seed: int):
    """Rows: ``n`` sources, ``n`` targets, then the sources with unit ``u`` swapped in from the targets."""
    from .data.batches import get_batch
    g = torch.Generator().manual_seed(seed)
    src = get_batch(ds, torch.randint(0, len(ds), (n,), generator=g))
    tgt = get_batch(ds, torch.randint(0, len(ds), (n,), generator=g))
    rows = [src, tgt]
    for u in range(model.config["num_units"]):
        rows.append(model.interchange(src, tgt, u, steps=steps, generator=torch.Generator().manual_seed(seed)))
    return torch.cat(rows)
