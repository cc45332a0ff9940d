"""Mutual Information Gap (Chen et al. 2018), disentanglement_lib protocol."""
from __future__ import annotations

import numpy as np

from ..np_random import as_random_state
from .common import discretize, factor_entropy, mutual_info_matrix, sample


def mig(representation, dataset=None, *, num_train: int = 10_000, num_bins: int = 20, seed: int = 0,
        batch_size: int = 256, discretizer: str = "histogram") -> dict:
    """Sample ``num_train`` (representation, factor) pairs, discretise every code dimension into
    ``num_bins`` bins (``discretizer="histogram"``: equal-width, as disentanglement_lib;
    ``"quantile"``: equal-frequency, exactly invariant to increasing transforms of a code), compute the
    mutual information of every (code, factor) pair and, per factor, the gap between its two most
    informative codes divided by the factor's entropy; MIG is the mean over factors. Departures from
    disentanglement_lib: a factor with a single value (entropy 0, where disentanglement_lib divides by
    zero) is left out of the mean and listed in ``skipped_factors``; with a single code dimension the gap
    is the top mutual information itself."""
    rng = as_random_state(seed)
    reps, factors = sample(representation, dataset, num_train, rng, batch_size)
    m = mutual_info_matrix(discretize(reps, num_bins, discretizer), factors)
    h = factor_entropy(factors)
    top = np.sort(m, axis=0)[::-1]
    second = top[1] if top.shape[0] > 1 else np.zeros(top.shape[1])
    ok = h > 0
    gaps = np.where(ok, (top[0] - second) / np.where(ok, h, 1.0), np.nan)
    return {"mig": float(np.nanmean(gaps)) if ok.any() else 0.0, "per_factor": gaps.tolist(),
            "mutual_information": m.tolist(), "skipped_factors": np.flatnonzero(~ok).tolist(),
            "num_samples": len(reps)}
