"""TAD, the Total AUROC Difference (Yeats et al. 2022), for datasets with binary attributes (CelebA)."""
from __future__ import annotations

import numpy as np

from ..np_random import as_random_state
from .common import sample


def _auroc_matrix(reps: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """``[U, A]`` AUROC of every code used on its own as a score for every attribute, folded to
    ``max(auc, 1 − auc)`` so that the sign of a code does not matter. Rank formula (Mann–Whitney U) with
    average ranks for ties; an attribute with one value gets 0.5 everywhere."""
    from scipy.stats import rankdata
    ranks = rankdata(reps, axis=0)                                        # [N, U], ties averaged
    out = np.full((reps.shape[1], attrs.shape[1]), 0.5)
    for a in range(attrs.shape[1]):
        pos = attrs[:, a] == 1
        n1, n0 = int(pos.sum()), int((~pos).sum())
        if n1 == 0 or n0 == 0:
            continue
        auc = (ranks[pos].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)
        out[:, a] = np.maximum(auc, 1.0 - auc)
    return out


def tad(representation, dataset=None, *, num_samples: int = 10_000, seed: int = 0,
        max_attribute_correlation: float = 0.2, capture_threshold: float = 0.75, batch_size: int = 256) -> dict:
    """Total AUROC Difference. Sample ``num_samples`` (representation, attributes) pairs; attributes must
    be binary (0/1), as CelebA's 40. Steps:

    1. Attributes that are (nearly) a function of another one are left out: for every pair with absolute
       Pearson correlation above ``max_attribute_correlation``, the less balanced of the two (positive rate
       further from 1/2) is dropped, so that two correlated attributes cannot both
       claim a code. Attributes with a single value are dropped too.
    2. ``auroc[u, a]``: each code alone as a score for each remaining attribute, folded to ``≥ 0.5``.
    3. Each code is kept only for the attribute it predicts best (its other entries are set to 0.5): a code
       can capture one attribute at most.
    4. Per attribute, the difference between its best and its second-best code; TAD is the sum over
       attributes. An attribute counts as *captured* when its best code reaches ``capture_threshold``.

    A perfectly disentangled code for ``A`` independent attributes scores close to ``0.5·A``; an entangled
    or random one close to 0. Departures from the published evaluation: the attribute filter is the
    pairwise-correlation rule above (the paper removes strongly correlated CelebA attributes by hand); AUROC
    is computed exactly with average ranks."""
    if not 0.0 < max_attribute_correlation <= 1.0:
        raise ValueError(f"max_attribute_correlation must be in (0, 1], got {max_attribute_correlation}")
    rng = as_random_state(seed)
    reps, attrs = sample(representation, dataset, num_samples, rng, batch_size)
    if not np.isin(attrs, (0, 1)).all():
        raise ValueError("tad needs binary (0/1) attributes, as CelebA's; got factor values "
                         f"{np.unique(attrs)[:10].tolist()}")
    A = attrs.shape[1]
    rate = attrs.mean(0)
    keep = (rate > 0) & (rate < 1)
    if keep.sum() > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(np.corrcoef(attrs.T.astype(np.float64)))
        order = np.argsort(np.abs(rate - 0.5), kind="stable")             # most balanced first
        for i, a in enumerate(order):
            if keep[a]:
                for b in order[i + 1:]:
                    if keep[b] and abs(corr[a, b]) > max_attribute_correlation:
                        keep[b] = False
    auroc = _auroc_matrix(reps, attrs)                                    # [U, A]
    used = auroc[:, keep]
    if used.size == 0:
        return {"tad": 0.0, "num_captured": 0, "attributes_used": [], "per_attribute": [],
                "auroc": auroc.tolist()}
    best_attr = used.argmax(1)                                            # per code
    masked = np.full_like(used, 0.5)
    masked[np.arange(used.shape[0]), best_attr] = used[np.arange(used.shape[0]), best_attr]
    top = np.sort(masked, axis=0)[::-1]
    second = top[1] if top.shape[0] > 1 else np.full(top.shape[1], 0.5)
    diff = top[0] - second
    return {"tad": float(diff.sum()), "num_captured": int((top[0] >= capture_threshold).sum()),
            "attributes_used": np.flatnonzero(keep).tolist(), "per_attribute": diff.tolist(),
            "auroc": auroc.tolist(), "num_attributes": A}
