"""Sampling of (representation, factor) pairs shared by the metrics, and discretisation helpers."""
from __future__ import annotations

import numpy as np
import torch

from ..data.dlib_adapter import as_factor_dataset


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def represent(representation, dataset, factors: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Representations ``[n, U]`` of the dataset images with the given factors ``[n, F]``: images from
    ``dataset.images_from_factors`` in batches, through ``representation`` (images → ``[B, U]``)."""
    out = []
    with torch.no_grad():
        for s in range(0, len(factors), batch_size):
            r = _to_numpy(representation(dataset.images_from_factors(factors[s:s + batch_size])))
            if r.ndim != 2 or r.shape[0] != min(batch_size, len(factors) - s):
                raise ValueError(f"representation must return [B, U] for B images, got shape {r.shape}")
            out.append(r)
    reps = np.concatenate(out)
    if not np.isfinite(reps).all():
        raise ValueError("representation returned NaN or Inf values")
    return reps


def sample(representation, dataset, n: int, rng: np.random.RandomState,
           batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``n`` i.i.d. pairs ``(reps [n, U], factors [n, F])``. ``representation`` is a callable (images →
    ``[B, U]``, with ``dataset`` giving ``sample_factors`` and ``images_from_factors``) or a precomputed
    ``(reps, factors)`` pair, of which the first ``n`` rows are used; fewer than ``n`` rows is an error
    (pass smaller sample counts instead). ``rng`` is handed to ``dataset.sample_factors(n, rng)``: the metrics pass
    a ``dga_fast.np_random.CompatRandomState``, disentanglement_lib's ``RandomState`` that also has ``integers``,
    so a dataset written for disentanglement_lib (``random_state.randint``) or for NumPy's ``Generator``
    (``rng.integers``) works unchanged."""
    if isinstance(representation, tuple):
        reps, factors = (_to_numpy(representation[0]), np.asarray(representation[1]))
        if reps.ndim != 2 or factors.ndim != 2 or len(reps) != len(factors):
            raise ValueError(f"precomputed (reps, factors) must be [N, U] and [N, F] arrays of equal N, got "
                             f"{reps.shape} and {factors.shape}")
        if not np.isfinite(reps).all():
            raise ValueError("reps contains NaN or Inf values")
        if len(reps) < n:
            raise ValueError(f"the metric needs {n} samples but the precomputed arrays hold {len(reps)}; "
                             "pass smaller num_train/num_test")
        return reps[:n], factors[:n].astype(np.int64)
    dataset = as_factor_dataset(dataset, rng)
    if dataset is None or not hasattr(dataset, "sample_factors") or not hasattr(dataset, "images_from_factors"):
        raise TypeError("dataset must provide sample_factors(n, rng) and images_from_factors(f) when "
                        "representation is a function")
    factors = np.asarray(dataset.sample_factors(n, rng), dtype=np.int64)
    return represent(representation, dataset, factors, batch_size), factors


def split(reps: np.ndarray, factors: np.ndarray, n_train: int):
    """The first ``n_train`` rows for training, the rest for testing."""
    if len(reps) <= n_train or n_train < 2:
        raise ValueError(f"need more than {n_train} samples to hold out a test set, got {len(reps)}")
    return reps[:n_train], factors[:n_train], reps[n_train:], factors[n_train:]


DISCRETIZERS = ("histogram", "quantile")


def discretize(reps: np.ndarray, num_bins: int = 20, method: str = "histogram") -> np.ndarray:
    """Per code dimension, ``num_bins`` bins. ``"histogram"``: equal-width bins over the code's range, as
    disentanglement_lib's ``_histogram_discretize`` (invariant to affine maps of a code, not to other
    monotone ones). ``"quantile"``: equal-frequency bins from the ranks (tied values share a bin), so any
    strictly increasing transform of a code gives the same bins and the same mutual information."""
    if method not in DISCRETIZERS:
        raise ValueError(f"discretizer must be one of {DISCRETIZERS}, got {method!r}")
    if not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    out = np.zeros(reps.shape, dtype=np.int64)
    if method == "quantile":
        from scipy.stats import rankdata
        ranks = rankdata(reps, method="min", axis=0) - 1                    # [N, U] in 0..N-1
        return (ranks * num_bins) // max(len(reps), 1)
    for j in range(reps.shape[1]):
        edges = np.histogram(reps[:, j], num_bins)[1]
        out[:, j] = np.digitize(reps[:, j], edges[:-1])
    return out


def mutual_info_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``[U, F]`` mutual information (nats) between discrete codes and factors."""
    from sklearn.metrics import mutual_info_score
    return np.array([[mutual_info_score(factors[:, f], codes[:, u]) for f in range(factors.shape[1])]
                     for u in range(codes.shape[1])])


def factor_entropy(factors: np.ndarray) -> np.ndarray:
    from sklearn.metrics import mutual_info_score
    return np.array([mutual_info_score(factors[:, f], factors[:, f]) for f in range(factors.shape[1])])
