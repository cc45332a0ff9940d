"""Anchor purity: the paper's Figure 1 (images generated from inside each Gaussian of a unit show one value of
one factor) as a number.

For every unit ``u`` and every active Gaussian ``k`` of its DyGA mixture: ``n_base`` real images are encoded, unit
``u``'s token of each is replaced by a draw from Gaussian ``k`` (the other units keep the base image's tokens),
images are generated from those tokens (DDIM, seeded noise shared by all regions), and an image probe trained on
real images (``ImageFactorProbe``) classifies their factors. A region's purity for factor ``f`` is the fraction
of its generated images whose predicted ``f`` is the region's most frequent value; a unit's purity for ``f`` is
the mean over its regions weighted by the mixture weights; the unit's purity is that of its factor, the one
whose purity is furthest above chance (below). ``purity``
is the mean over units: 1 means every region yields a single value of the unit's factor.

A unit that controls nothing yields the base images' values, so its purity is the chance level of that factor
(``chance``: the modal fraction of the probe's predictions on the base images themselves); ``purity_above_chance``
rescales each unit's purity to ``(p − chance) / (1 − chance)`` of its factor (0 at chance, 1 pure). Factors with
more than ``max_classes`` values are binned into that many equal ranges. The probe's held-out accuracy on real
images is reported beside (``probe_accuracy``): a factor it cannot read off real images scores near chance.
Cost: ``n_base`` generated images per Gaussian (units × components × n_base samples of ``steps`` DDIM steps).
"""
from __future__ import annotations

import numpy as np
import torch

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
    x = x * dyga.norm_scale[unit].double() + dyga.norm_shift[unit].double()
    return x.to(dyga.norm_shift.dtype)


def _modal_fraction(v: np.ndarray) -> float:
    return float(np.bincount(v).max() / len(v))


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
    model's own sampling is unchanged: it uses ``model.anchoring``, if any). Returns ``purity``, ``purity_above_chance``, per unit
    ``units`` (factor, purity, per-factor purities, regions) and ``chance`` / ``probe_accuracy`` per factor."""
    from tqdm.auto import tqdm
    dyga = _check(model, n_base, anchoring)
    probe = probe if probe is not None else ImageFactorProbe.fit(dataset, seed=seed, max_classes=max_classes,
                                                                 progress=progress)
    names = list(getattr(dataset, "factor_names", [f"factor{i}" for i in range(len(dataset.factor_sizes))]))
    rng = np.random.default_rng(seed)
    base = torch.as_tensor(dataset.images_from_factors(dataset.sample_factors(n_base, rng))).float()
    device = model.device if hasattr(model, "device") else torch.device("cpu")
    tokens = model.encode(base.to(device))                                       # [n, U, Dc]
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((n_base,) + tuple(getattr(model, "diffusion_shape", base.shape[1:])), generator=g)
    chance = [_modal_fraction(v) for v in np.asarray(probe(base)).T]
    weights = dyga.state.log_weights.exp()
    units = []
    todo = [(u, k) for u in range(dyga.num_units) for k in range(dyga.max_components) if bool(dyga.active[u, k])]
    bar = tqdm(total=len(todo), desc="anchor purity", disable=not progress, leave=False)
    for u in range(dyga.num_units):
        per_factor, regions = np.zeros(len(names)), []
        ks = [k for (uu, k) in todo if uu == u]
        w = weights[u, ks].double()
        w = (w / w.sum()).tolist()
        for k, wk in zip(ks, w):
            t = tokens.clone()
            t[:, u] = gaussian_draws(dyga, u, k, n_base, g).to(t)
            pred = np.asarray(probe(model.sample(t, steps=steps, noise=noise.to(device)).cpu()))
            frac = [_modal_fraction(v) for v in pred.T]
            per_factor += wk * np.asarray(frac)
            regions.append({"component": k, "weight": round(wk, 4), "purity": [round(f, 4) for f in frac]})
            bar.update()
        above_all = (per_factor - np.asarray(chance)) / np.maximum(1.0 - np.asarray(chance), 1e-12)
        best = int(above_all.argmax())               # the factor the unit's regions separate most above chance
        above = above_all[best]
        units.append({"unit": u, "factor": names[best], "purity": round(float(per_factor[best]), 4),
                      "above_chance": round(float(above), 4),
                      "per_factor": {n: round(float(p), 4) for n, p in zip(names, per_factor)},
                      "regions": regions})
    bar.close()
    return {"purity": round(float(np.mean([r["purity"] for r in units])), 4),
            "purity_above_chance": round(float(np.mean([r["above_chance"] for r in units])), 4),
            "units": units, "chance": {n: round(c, 4) for n, c in zip(names, chance)},
            "probe_accuracy": dict(getattr(probe, "accuracy", {})), "n_base": n_base, "steps": steps}
