"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams 2018), disentanglement_lib
protocol with a faster gradient-boosting backend."""
from __future__ import annotations

import numpy as np

from ..np_random import as_random_state, int_seed
from .common import sample, split


def _hist_gain_importance(clf, n_features: int) -> np.ndarray:
    """Split-gain importance of a fitted HistGradientBoostingClassifier (summed gain per feature over all
    trees, normalised to 1), the analogue of GradientBoosting's impurity importance. Reads the fitted
    trees' node table (``_predictors``; stable across scikit-learn 1.x)."""
    imp = np.zeros(n_features)
    for stage in clf._predictors:
        for tree in stage:
            nodes = tree.nodes
            inner = ~nodes["is_leaf"].astype(bool)
            np.add.at(imp, nodes["feature_idx"][inner], nodes["gain"][inner])
    s = imp.sum()
    return imp / s if s > 0 else imp


def _fit_factor(xtr, ytr, xte, yte, backend: str, seed: int):
    U = xtr.shape[1]
    if len(np.unique(ytr)) < 2:       # nothing to predict: no importance, perfect accuracy
        return np.zeros(U), 1.0, float(np.mean(yte == ytr[0]))
    if backend == "classic":
        from sklearn.ensemble import GradientBoostingClassifier
        clf = GradientBoostingClassifier(random_state=seed).fit(xtr, ytr)
        imp = clf.feature_importances_
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier
        clf = HistGradientBoostingClassifier(max_iter=100, max_depth=3, learning_rate=0.1,
                                             early_stopping=False, random_state=seed).fit(xtr, ytr)
        imp = _hist_gain_importance(clf, U)
    return np.abs(imp), float(np.mean(clf.predict(xtr) == ytr)), float(np.mean(clf.predict(xte) == yte))


def _entropy_base(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of ``p`` (normalised), in base ``base`` (as scipy.stats.entropy on p + 1e-11)."""
    p = p + 1e-11
    p = p / p.sum(-1, keepdims=True)
    return -(p * np.log(p)).sum(-1) / np.log(base) if base > 1 else np.zeros(p.shape[0])


def dci(representation, dataset=None, *, num_train: int = 10_000, num_test: int = 5_000, seed: int = 0,
        backend: str = "hist", n_jobs: int = 2, batch_size: int = 256) -> dict:
    """Per factor, a gradient-boosted classifier predicts the factor from all codes; its feature importances
    fill the ``[U, F]`` importance matrix. Disentanglement: per code ``1 − H_F(p_u)`` (entropy of the code's
    importance over factors, base F), weighted by the code's share of the total importance. Completeness:
    per factor ``1 − H_U(p_f)``, weighted by the factor's share. Informativeness: mean test accuracy
    (``informativeness_per_factor``: each factor's, in factor order).

    ``backend="classic"`` is disentanglement_lib's ``GradientBoostingClassifier()`` with impurity
    importances (slow: one tree per class per stage). ``backend="hist"`` (default) fits scikit-learn's
    ``HistGradientBoostingClassifier`` (100 iterations of depth-3 trees, no early stopping, like the classic
    defaults) and uses split-gain importances; factors are fitted in parallel (``n_jobs``). A test checks
    that both agree within 0.04 on a noisy identity and a mixed code (the split-gain scores sit 0.03 below the
    classic ones on the noisy identity, about 0 on the mixed code). A factor with one value contributes no
    importance."""
    if backend not in ("hist", "classic"):
        raise ValueError(f"backend must be 'hist' or 'classic', got {backend!r}")
    from joblib import Parallel, delayed
    rng = as_random_state(seed)
    reps, factors = sample(representation, dataset, num_train + num_test, rng, batch_size)
    xtr, ytr, xte, yte = split(reps, factors, num_train)
    F = factors.shape[1]
    fit_seed = int_seed(seed, rng)
    fits = Parallel(n_jobs=n_jobs)(delayed(_fit_factor)(xtr, ytr[:, f], xte, yte[:, f], backend, fit_seed)
                                   for f in range(F))
    imp = np.stack([f[0] for f in fits], 1)                                    # [U, F]
    U = imp.shape[0]
    total = imp.sum()
    code_w = imp.sum(1) / total if total > 0 else np.ones(U) / U
    factor_w = imp.sum(0) / total if total > 0 else np.ones(F) / F
    d_per_code = 1.0 - _entropy_base(imp, F)
    c_per_factor = 1.0 - _entropy_base(imp.T, U)
    return {"disentanglement": float((d_per_code * code_w).sum()),
            "completeness": float((c_per_factor * factor_w).sum()),
            "informativeness_train": float(np.mean([f[1] for f in fits])),
            "informativeness_test": float(np.mean([f[2] for f in fits])),
            "informativeness_per_factor": [float(f[2]) for f in fits],
            "importance_matrix": imp.tolist(), "backend": backend}
