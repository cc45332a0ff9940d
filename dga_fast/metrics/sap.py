"""Separated Attribute Predictability (Kumar et al. 2018), disentanglement_lib protocol (discrete)."""
from __future__ import annotations

import numpy as np

from ..np_random import as_random_state
from .common import sample, split


def sap(representation, dataset=None, *, num_train: int = 10_000, num_test: int = 5_000, seed: int = 0,
        batch_size: int = 256) -> dict:
    """For every (code, factor) pair, a linear SVM (``LinearSVC(C=0.01, class_weight="balanced")``) on that
    single code dimension predicts the factor; its test accuracy fills a ``[U, F]`` matrix; SAP is the mean
    over factors of the gap between the two best codes. A factor with one value (nothing to predict) scores
    accuracy 1 for every code and so contributes a gap of 0; a constant code scores chance."""
    from sklearn.svm import LinearSVC
    rng = as_random_state(seed)
    reps, factors = sample(representation, dataset, num_train + num_test, rng, batch_size)
    xtr, ytr, xte, yte = split(reps, factors, num_train)
    U, F = reps.shape[1], factors.shape[1]
    score = np.zeros((U, F))
    for u in range(U):
        for f in range(F):
            if len(np.unique(ytr[:, f])) < 2 or np.ptp(xtr[:, u]) == 0:
                score[u, f] = float(np.mean(yte[:, f] == np.bincount(ytr[:, f]).argmax()))
                continue
            clf = LinearSVC(C=0.01, class_weight="balanced").fit(xtr[:, u:u + 1], ytr[:, f])
            score[u, f] = float(np.mean(clf.predict(xte[:, u:u + 1]) == yte[:, f]))
    top = np.sort(score, axis=0)[::-1]
    gaps = top[0] - (top[1] if U > 1 else 0.0)
    return {"sap": float(np.mean(gaps)), "per_factor": gaps.tolist(), "score_matrix": score.tolist()}
