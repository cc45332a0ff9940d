"""Anchor purity: the paper's Figure 1 (images generated from inside each Gaussian of a unit show one value of
one factor) as a number.

For every unit ``u`` and every active Gaussian ``k`` of its DyGA mixture: ``n_base`` real images are encoded, unit
``u``'s token of each is replaced by a draw from Gaussian ``k`` (the other units keep the base image's tokens),
images are generated from those tokens (DDIM, seeded noise shared by all regions), and an image probe trained on
real images (``ImageFactorProbe``) classifies their factors. A region's purity for factor ``f`` is the fraction
of its generated images whose predicted ``f`` is the region's most frequent value; a unit's purity for ``f`` is
the mean over its regions weighted by the mixture weights; the unit's purity is that of its factor, the one
whose purity is furthest above its pooled level (below). ``purity``
is the mean over units: 1 means every region yields a single value of the unit's factor.

A region can be pure without the unit controlling anything (a generator that renders one shape for every
image gives every region the same value), so each unit's purity is compared with its *pooled* level: the modal
fraction of all of the unit's generated images together (regions weighted). ``purity_above_chance`` is
``(within − pooled) / (1 − pooled)`` of each unit's factor, averaged over units: 0 when the regions do not differ
(a unit that changes nothing, a single Gaussian, or a factor the generator does not render), 1 when every region
yields its own single value. The unit's factor is the one furthest above its pooled level. Factors with
more than ``max_classes`` values are binned into that many equal ranges. The probe's held-out accuracy on real
images is reported beside (``probe_accuracy``): a factor it cannot read off real images scores near 0.
Cost: ``n_base`` generated images per Gaussian (units × components × n_base samples of ``steps`` DDIM steps).
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.dlib_adapter import as_factor_dataset
from ..mixture.normalise import denormalise_means
from ..np_random import as_random_state, int_seed
from .image_probe import ImageFactorProbe


def gaussian_draws(dyga, unit: int, k: int, n: int,
                   generator: torch.Generator) -> torch.Tensor:  # [n, Dc] in token coordinates
    """``n`` draws from Gaussian ``k`` of ``unit`` (HDDC covariance ``Q diag(a) Qᵀ + b (I − Q Qᵀ)``)."""
    st = dyga.state
    mu, Q = st.means[unit, k].double(), st.components[unit, k].double()          # [D], [D, dmax]
    a, b = st.eigvals[unit, k].double(), st.noise[unit, k].double()
    z = torch.randn(n, mu.shape[0], generator=generator, dtype=torch.float64)
    proj = z @ Q                                                                  # [n, dmax]
    x = mu + (proj * a.clamp_min(0).sqrt()) @ Q.T + b.clamp_min(0).sqrt() * (z - proj @ Q.T)
    x = denormalise_means(x[None], dyga.norm_shift[unit:unit + 1].double(), dyga.norm_scale[unit:unit + 1])[0]
    return x.to(dyga.norm_shift.dtype)


def _unit_purity(u: int, ks: list, w: np.ndarray,  # w [K] region weights (sum 1)
                 preds: np.ndarray,                  # [K, n, F] predicted classes per region
                 names: list) -> dict:
    """Within-region purity (weighted mean of each region's modal fraction), the pooled level (the modal
    fraction of all the unit's regions' images together, weighted) and, per factor, how far the first is above
    the second; the unit's factor is the one furthest above."""
    K, n, F = preds.shape
    modal = np.zeros((K, F))                                  # each region's modal fraction per factor
    pooled = np.zeros(F)
    for f in range(F):
        hist = np.stack([np.bincount(preds[k, :, f], minlength=int(preds[..., f].max()) + 1) / n
                         for k in range(K)])                                      # [K, C]
        modal[:, f] = hist.max(1)
        pooled[f] = float((w[:, None] * hist).sum(0).max())
    within = (w[:, None] * modal).sum(0)                                          # [F]
    above_all = np.where(pooled < 1.0, (within - pooled) / np.maximum(1.0 - pooled, 1e-12), 0.0)
    best = int(above_all.argmax())
    regions = [{"component": int(k), "weight": round(float(wk), 4), "purity": [round(float(v), 4) for v in m]}
               for k, wk, m in zip(ks, w, modal)]
    return {"unit": u, "factor": names[best], "purity": round(float(within[best]), 4),
            "pooled": round(float(pooled[best]), 4), "above_chance": round(float(above_all[best]), 4),
            "per_factor": {nm: round(float(p), 4) for nm, p in zip(names, within)},
            "above_per_factor": {nm: round(float(p), 4) for nm, p in zip(names, above_all)}, "regions": regions}


def _check(model, n_base: int, anchoring=None):
    dyga = anchoring if anchoring is not None else getattr(model, "anchoring", None)
    if dyga is None:
        raise ValueError("anchor_purity needs a model with DyGA anchoring (model.anchoring is None) or the "
                         "regions to score as anchoring=DynamicGaussianAnchoring(...) fitted to its tokens")
    if not dyga.fitted:
        raise ValueError("anchor_purity needs fitted anchors: call model.refit_anchors(images) first")
    if isinstance(n_base, bool) or not isinstance(n_base, int) or n_base < 2:
        raise ValueError(f"n_base must be an int >= 2, got {n_base!r}")
    return dyga


@torch.no_grad()
def anchor_purity(model, dataset, *, probe=None, anchoring=None, n_base: int = 16, steps: int = 25,
                  seed: int = 0, max_classes: int = 10, progress: bool = False) -> dict:
    """See the module docstring. ``model``: an ``AnchoredDiffusion`` with fitted DyGA (anything with
    ``anchoring``, ``encode(images)`` and ``sample(tokens, steps=, noise=)``); ``dataset``: ``sample_factors`` /
    ``images_from_factors`` / ``factor_sizes``; ``probe``: a callable images → ``[N, F]`` classes (default: an
    ``ImageFactorProbe`` fitted here with ``seed``); ``anchoring``: the regions to score (default
    ``model.anchoring``), e.g. a mixture fitted afterwards to the tokens of a model trained without DyGA (the
    model's own sampling is unchanged: it uses ``model.anchoring``, if any). Returns ``purity``,
    ``purity_above_chance``, per unit ``units`` (factor, purity, pooled level, per-factor values, regions) and ``probe_accuracy`` per factor."""
    from tqdm.auto import tqdm
    dyga = _check(model, n_base, anchoring)
    rng = as_random_state(seed)
    dataset = as_factor_dataset(dataset, rng)
    seed = int_seed(seed, rng)
    probe = probe if probe is not None else ImageFactorProbe.fit(dataset, seed=seed, max_classes=max_classes,
                                                                 progress=progress)
    names = list(getattr(dataset, "factor_names", [f"factor{i}" for i in range(len(dataset.factor_sizes))]))
    base = torch.as_tensor(dataset.images_from_factors(dataset.sample_factors(n_base, rng))).float()
    device = model.device if hasattr(model, "device") else torch.device("cpu")
    tokens = model.encode(base.to(device))                                       # [n, U, Dc]
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((n_base,) + tuple(getattr(model, "diffusion_shape", base.shape[1:])), generator=g)
    weights = dyga.state.log_weights.exp()
    units = []
    todo = [(u, k) for u in range(dyga.num_units) for k in range(dyga.max_components) if bool(dyga.active[u, k])]
    bar = tqdm(total=len(todo), desc="anchor purity", disable=not progress, leave=False)
    for u in range(dyga.num_units):
        ks = [k for (uu, k) in todo if uu == u]
        w = weights[u, ks].double()
        w = (w / w.sum()).numpy()
        preds = []
        for k in ks:
            t = tokens.clone()
            t[:, u] = gaussian_draws(dyga, u, k, n_base, g).to(t)
            preds.append(np.asarray(probe(model.sample(t, steps=steps, noise=noise.to(device)).cpu())))
            bar.update()
        units.append(_unit_purity(u, ks, w, np.stack(preds), names))   # preds [K, n, F]
    bar.close()
    return {"purity": round(float(np.mean([r["purity"] for r in units])), 4),
            "purity_above_chance": round(float(np.mean([r["above_chance"] for r in units])), 4),
            "units": units, "probe_accuracy": dict(getattr(probe, "accuracy", {})), "n_base": n_base, "steps": steps}
