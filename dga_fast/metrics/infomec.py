"""InfoMEC (Hsu et al. 2023, "Disentanglement via Latent Quantization"): InfoM (modularity), InfoE
(explicitness) and InfoC (compactness), the protocol of the authors' evaluation code, which the published code of
this method reports beside FactorVAE / DCI / MIG / SAP / modularity.

- ``NMI [F, U]``: ``I(factor_f; code_u) / H(factor_f)``. Continuous codes are standardised and the mutual
  information estimated with scikit-learn's k-nearest-neighbour estimator (``mutual_info_classif``, 10 neighbours);
  discrete codes (``discrete_codes=True``) use the plug-in estimate (``mutual_info_score``).
- Active codes: range above 1/20 of the largest code range (discrete: more than one value); the others are
  pruned before InfoM and InfoC.
- ``InfoM``: per active code ``max_f NMI / Σ_f NMI``, averaged, rescaled so that chance (``1/F``) is 0 and
  one factor per code is 1.
- ``InfoC``: per factor ``max_u NMI / Σ_u NMI`` over the active codes, averaged, rescaled so that ``1/U_active``
  is 0 and one code per factor is 1.
- ``InfoE``: per factor, the normalised predictive information of an unregularised multinomial logistic regression
  (balanced class weights, L-BFGS, 100 iterations) from all codes (standardised; discrete: one-hot):
  ``(CE_null − CE) / CE_null`` with ``CE_null`` the same regression on constant input; averaged.

Edge cases the reference leaves undefined (a NaN there): a factor with one value carries no information and is
skipped (``skipped_factors``); a code with no information about any factor counts as chance (0) in InfoM; with one
factor InfoM is 1 and with one active code InfoC is 1 (nothing to spread over).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..np_random import as_random_state, int_seed
from .common import factor_entropy, sample

ACTIVE_RANGE = 1 / 20


def _standardise(a: np.ndarray) -> np.ndarray:
    sd = a.std(0)
    return (a - a.mean(0)) / np.where(sd > 0, sd, 1.0)


def nmi_matrix(reps: np.ndarray, factors: np.ndarray, discrete_codes: bool, seed: int) -> np.ndarray:  # [F, U]
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.metrics import mutual_info_score
    H = factor_entropy(factors)
    out = np.zeros((factors.shape[1], reps.shape[1]))
    z = reps if discrete_codes else _standardise(reps)
    for f in range(factors.shape[1]):
        if H[f] <= 0:
            continue
        if discrete_codes:
            mi = np.array([mutual_info_score(factors[:, f], z[:, u]) for u in range(z.shape[1])])
        else:
            mi = mutual_info_classif(z, factors[:, f], discrete_features=False, n_neighbors=10, random_state=seed)
        out[f] = np.maximum(mi, 0.0) / H[f]
    return out


def _concentration(nmi: np.ndarray, n: int) -> float:
    """Mean over rows of ``max / sum`` rescaled from ``[1/n, 1]`` to ``[0, 1]``; an all-zero row counts as 1/n."""
    if n <= 1:
        return 1.0
    total = nmi.sum(1)
    share = np.where(total > 0, nmi.max(1) / np.where(total > 0, total, 1.0), 1.0 / n)
    return float((share.mean() - 1.0 / n) / (1.0 - 1.0 / n))


def _cross_entropy(X: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.exceptions import ConvergenceWarning
    model = LogisticRegression(C=np.inf, class_weight="balanced", solver="lbfgs", max_iter=100, tol=1e-4)
    with warnings.catch_warnings():   # 100 iterations is the protocol; an unconverged fit is part of it
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return float(log_loss(y, model.predict_proba(X), labels=model.classes_))


def info_e(reps: np.ndarray, factors: np.ndarray, discrete_codes: bool, use: list[int]) -> list[float]:
    if discrete_codes:
        from sklearn.preprocessing import OneHotEncoder
        X = OneHotEncoder(sparse_output=False).fit_transform(reps)
    else:
        X = _standardise(reps)
    out = []
    for f in use:
        y = np.unique(factors[:, f], return_inverse=True)[1]
        null = _cross_entropy(np.zeros((len(y), 1)), y)
        out.append((null - _cross_entropy(X, y)) / null)
    return out


def infomec(representation, dataset=None, *, num_samples: int = 10_000, seed: int = 0,
            discrete_codes: bool = False, batch_size: int = 256) -> dict:
    """InfoM, InfoE and InfoC of ``num_samples`` (code, factor) pairs (see the module docstring). Returns
    ``infom``, ``infoe``, ``infoc``, ``nmi`` (``[F, U]``), ``active_codes``, ``infoe_per_factor`` and
    ``skipped_factors``."""
    rng = as_random_state(seed)
    reps, factors = sample(representation, dataset, num_samples, rng, batch_size)
    seed = int_seed(seed, rng)
    use = [f for f in range(factors.shape[1]) if len(np.unique(factors[:, f])) > 1]
    skipped = [f for f in range(factors.shape[1]) if f not in use]
    if not use:
        raise ValueError("every factor has a single value in the sample: InfoMEC has nothing to measure")
    nmi = nmi_matrix(reps, factors, discrete_codes, seed)
    ranges = reps.max(0) - reps.min(0)
    active = ranges > 0 if discrete_codes else ranges > ranges.max() * ACTIVE_RANGE
    pruned = nmi[use][:, active]                                                  # [F_used, U_active]
    infom = _concentration(pruned.T, len(use)) if active.any() else 0.0
    infoc = _concentration(pruned, int(active.sum())) if active.any() else 0.0
    per_factor = info_e(reps, factors, discrete_codes, use)
    return {"infom": infom, "infoe": float(np.mean(per_factor)), "infoc": infoc, "nmi": nmi.tolist(),
            "active_codes": np.flatnonzero(active).tolist(), "infoe_per_factor": per_factor,
            "skipped_factors": skipped}
