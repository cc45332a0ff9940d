"""NumPy random sources that work with datasets written for disentanglement_lib and for NumPy's ``Generator``.

disentanglement_lib's metrics hand ``sample_factors(num, random_state)`` a ``numpy.random.RandomState`` and its
datasets call ``random_state.randint``; code written for NumPy's newer API calls ``rng.integers``. The metrics
here pass a ``CompatRandomState``: a ``RandomState`` (so ``randint``, ``choice``, ``uniform`` … behave, and
seed for seed draw, as disentanglement_lib's) that also answers ``integers``. The datasets of ``dga_fast.data``
accept either kind through ``draw_integers``.
"""
from __future__ import annotations

import numbers

import numpy as np


class CompatRandomState(np.random.RandomState):
    """A ``numpy.random.RandomState`` that also has ``Generator.integers``."""

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint: bool = False):
        if high is None:
            low, high = 0, low
        return self.randint(low, np.asarray(high) + (1 if endpoint else 0), size=size, dtype=dtype)


def as_random_state(seed, name: str = "seed") -> CompatRandomState:
    """``seed``: an int (``RandomState(seed)``, as disentanglement_lib seeds), ``None`` (fresh entropy), or a
    ``RandomState`` / ``Generator`` whose bit stream is then shared (drawing here advances it)."""
    if isinstance(seed, CompatRandomState):
        return seed
    if isinstance(seed, np.random.RandomState):
        return CompatRandomState(seed._bit_generator)
    if isinstance(seed, np.random.Generator):
        return CompatRandomState(seed.bit_generator)
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        if seed is not None and not 0 <= int(seed) < 2**32:
            raise ValueError(f"{name} must be in [0, 2**32), got {seed}")
        return CompatRandomState(seed)
    raise TypeError(f"{name} must be an int, None, numpy.random.RandomState or numpy.random.Generator, "
                    f"got {type(seed).__name__}")


def numpy_rng(rng) -> "np.random.Generator | np.random.RandomState":
    """A ``Generator`` or ``RandomState`` as given; an int or ``None`` becomes ``numpy.random.default_rng(rng)``."""
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, numpy.random.RandomState, an int or None, "
                    f"got {type(rng).__name__}")


def draw_integers(rng, high, size) -> np.ndarray:
    """Uniform integers in ``[0, high)`` from a ``Generator`` or a ``RandomState`` (see ``numpy_rng``)."""
    if isinstance(rng, np.random.RandomState):
        return rng.randint(0, high, size=size)
    return rng.integers(0, high, size)


def uniform_factors(rng, factor_sizes, n: int) -> np.ndarray:  # [n, F]
    """``n`` factor vectors, each factor uniform over ``range(size)``, drawn factor by factor."""
    rng = numpy_rng(rng)
    return np.stack([draw_integers(rng, s, n) for s in factor_sizes], axis=1)


def int_seed(seed, rng: np.random.RandomState) -> int:
    """``seed`` itself when it is an int; else one draw from ``rng`` (the seed of a consumer, a torch generator or
    a scikit-learn estimator, that needs an int)."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return int(seed)
    return int(rng.randint(0, 2**31 - 1))
