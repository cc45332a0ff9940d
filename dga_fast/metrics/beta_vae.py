"""β-VAE score (Higgins et al. 2017), disentanglement_lib protocol."""
from __future__ import annotations

import numpy as np

from ..data.dlib_adapter import as_factor_dataset
from ..np_random import as_random_state
from .common import represent


def _points(representation, dataset, n_points, batch_size, rng, rep_batch):
    F = len(dataset.factor_sizes)
    feats, labels = [], np.empty(n_points, dtype=np.int64)
    for p in range(n_points):
        k = int(rng.randint(F))
        f1 = np.asarray(dataset.sample_factors(batch_size, rng), dtype=np.int64)
        f2 = np.asarray(dataset.sample_factors(batch_size, rng), dtype=np.int64)
        f2[:, k] = f1[:, k]
        r = represent(representation, dataset, np.concatenate([f1, f2]), rep_batch)
        feats.append(np.abs(r[:batch_size] - r[batch_size:]).mean(0))
        labels[p] = k
    return np.stack(feats), labels


def beta_vae_score(representation, dataset, *, num_train: int = 10_000, num_eval: int = 5_000,
                   batch_size: int = 64, seed: int = 0, rep_batch: int = 256) -> dict:
    """A point: pick a factor ``k``, draw ``batch_size`` pairs of images that share factor ``k`` (all other
    factors independent), and average ``|r(x₁) − r(x₂)|`` over the pairs; its label is ``k``. A logistic
    regression (scikit-learn defaults, as disentanglement_lib) is fitted on ``num_train`` points; the score is
    its accuracy on ``num_eval`` fresh points. Needs a representation function and a dataset that renders
    images from factors."""
    from sklearn.linear_model import LogisticRegression
    if not callable(representation):
        raise TypeError("beta_vae_score needs a representation function (images -> [B, U])")
    rng = as_random_state(seed)
    dataset = as_factor_dataset(dataset, rng)
    xtr, ytr = _points(representation, dataset, num_train, batch_size, rng, rep_batch)
    xev, yev = _points(representation, dataset, num_eval, batch_size, rng, rep_batch)
    clf = LogisticRegression(max_iter=1000).fit(xtr, ytr)
    return {"beta_vae": float(np.mean(clf.predict(xev) == yev)),
            "train_accuracy": float(np.mean(clf.predict(xtr) == ytr))}
