"""Modularity and explicitness (Ridgeway & Zemel 2018), disentanglement_lib protocol."""
from __future__ import annotations

import numpy as np

from ..np_random import as_random_state
from .common import discretize, mutual_info_matrix, sample, split


def modularity_explicitness(representation, dataset=None, *, num_train: int = 10_000, num_test: int = 5_000,
                            num_bins: int = 20, seed: int = 0, batch_size: int = 256,
                            discretizer: str = "histogram") -> dict:
    """Modularity: from the ``[U, F]`` mutual information of discretised codes and factors, each code's
    deviation from an ideal code that informs about one factor only,
    ``1 − Σ_f (m_uf − t_uf)² / (θ_u² (F − 1))`` with ``θ_u = max_f m_uf``, averaged over codes.
    Explicitness: per factor, a one-vs-rest logistic regression on all codes (standardised on the training
    split); the mean test ROC AUC over the factor's values, averaged over factors.
    Departures from disentanglement_lib: a code with no information about any factor (θ = 0, a division by
    zero there) is left out of the modularity mean (``uninformative_codes``); with a single factor the
    modularity is 1 by definition; factors with one value are left out of explicitness."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = as_random_state(seed)
    reps, factors = sample(representation, dataset, num_train + num_test, rng, batch_size)
    xtr, ytr, xte, yte = split(reps, factors, num_train)
    m = mutual_info_matrix(discretize(xtr, num_bins, discretizer), ytr)
    U, F = m.shape
    theta = m.max(1)
    informative = theta > 0
    template = np.zeros_like(m)
    template[np.arange(U), m.argmax(1)] = theta
    if F > 1:
        dev = ((m - template) ** 2).sum(1) / (np.where(informative, theta, 1.0) ** 2 * (F - 1))
    else:
        dev = np.zeros(U)
    per_code = np.where(informative, 1.0 - dev, np.nan)
    modularity = float(np.nanmean(per_code)) if informative.any() else 0.0
    mu, sd = xtr.mean(0), xtr.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    ztr, zte = (xtr - mu) / sd, (xte - mu) / sd
    aucs = []
    for f in range(F):
        classes = np.unique(ytr[:, f])
        if len(classes) < 2:
            continue
        clf = LogisticRegression(max_iter=1000).fit(ztr, ytr[:, f])
        proba = clf.predict_proba(zte)
        per_class = []
        for ci, c in enumerate(clf.classes_):
            y = (yte[:, f] == c).astype(int)
            if 0 < y.sum() < len(y):
                per_class.append(roc_auc_score(y, proba[:, ci]))
        if per_class:
            aucs.append(float(np.mean(per_class)))
    return {"modularity": modularity, "explicitness": float(np.mean(aucs)) if aucs else float("nan"),
            "per_code_modularity": per_code.tolist(), "uninformative_codes": np.flatnonzero(~informative).tolist(),
            "per_factor_explicitness": aucs}
