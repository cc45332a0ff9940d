"""FactorVAE score (Kim & Mnih 2018), disentanglement_lib protocol."""
from __future__ import annotations

import numpy as np

from ..data.dlib_adapter import as_factor_dataset
from ..np_random import as_random_state
from .common import represent, sample


def _votes(representation, dataset, n_votes, batch_size, global_var, active, rng, rep_batch):
    F = len(dataset.factor_sizes)
    votes = np.zeros((F, len(global_var)), dtype=np.int64)
    for _ in range(n_votes):
        k = int(rng.randint(F))
        f = np.asarray(dataset.sample_factors(batch_size, rng), dtype=np.int64)
        f[:, k] = f[0, k]
        reps = represent(representation, dataset, f, rep_batch)
        local = np.var(reps, axis=0, ddof=1)
        j = int(np.argmin(local[active] / global_var[active]))
        votes[k, np.flatnonzero(active)[j]] += 1
    return votes


def factor_vae_score(representation, dataset, *, num_variance_estimate: int = 10_000, num_train: int = 10_000,
                     num_eval: int = 5_000, batch_size: int = 64, seed: int = 0, rep_batch: int = 256) -> dict:
    """Scale each code by its standard deviation over ``num_variance_estimate`` samples and drop codes with
    zero variance (collapsed units). A vote: pick a factor ``k``, draw ``batch_size`` images sharing that
    factor's value, and record the code with the smallest normalised variance. A majority-vote classifier
    (code → the factor it most often indicates) is built from ``num_train`` votes; the score is its accuracy on
    ``num_eval`` fresh votes. Needs a representation function and a dataset that renders images from
    factors (``sample_factors``, ``images_from_factors``, ``factor_sizes``); every vote renders
    ``batch_size`` images, so the defaults render about a million images. As disentanglement_lib: with no
    active code the score is 0."""
    if not callable(representation):
        raise TypeError("factor_vae_score needs a representation function (images -> [B, U]); it draws "
                        "batches with one factor fixed, which precomputed arrays cannot provide")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (a variance per batch), got {batch_size}")
    rng = as_random_state(seed)
    dataset = as_factor_dataset(dataset, rng)
    reps, _ = sample(representation, dataset, num_variance_estimate, rng, rep_batch)
    global_var = np.var(reps, axis=0, ddof=1)
    active = global_var > 0
    if not active.any():
        return {"factor_vae": 0.0, "train_accuracy": 0.0, "active_codes": []}
    train = _votes(representation, dataset, num_train, batch_size, global_var, active, rng, rep_batch)
    classifier = train.argmax(0)                                                   # code -> factor
    train_acc = train[classifier, np.arange(train.shape[1])].sum() / max(train.sum(), 1)
    ev = _votes(representation, dataset, num_eval, batch_size, global_var, active, rng, rep_batch)
    eval_acc = ev[classifier, np.arange(ev.shape[1])].sum() / max(ev.sum(), 1)
    return {"factor_vae": float(eval_acc), "train_accuracy": float(train_acc),
            "active_codes": np.flatnonzero(active).tolist(), "code_to_factor": classifier.tolist()}
