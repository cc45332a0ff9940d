"""InfoMEC: closed forms on discrete codes over a full factor grid (exact independence), and the expected
orderings on continuous codes."""
import itertools

import numpy as np
import pytest

from dga_fast.data import FactorsAsImages
from dga_fast.metrics import infomec
from dga_fast.metrics.infomec import _concentration

SIZES = (4, 5, 6)
GRID = np.array(list(itertools.product(*[range(s) for s in SIZES])) * 10)        # every combination, 10 times
DS = FactorsAsImages(SIZES)


def test_discrete_closed_forms():
    exact = infomec((GRID, GRID), num_samples=len(GRID), discrete_codes=True)
    assert np.allclose(exact["nmi"], np.eye(3), atol=1e-12)
    assert exact["infom"] == pytest.approx(1.0) and exact["infoc"] == pytest.approx(1.0)
    assert exact["infoe"] > 0.99
    # one code holding factors 0 and 1 together, one holding factor 2: that code's share is 1/2 of 2 -> InfoM
    # ((1/2 - 1/3) / (2/3) + 1) / 2 = 0.625, and each factor still lives in one code -> InfoC 1
    joint = np.stack([GRID[:, 0] * 5 + GRID[:, 1], GRID[:, 2]], 1)
    out = infomec((joint, GRID), num_samples=len(GRID), discrete_codes=True)
    assert out["infom"] == pytest.approx(0.625) and out["infoc"] == pytest.approx(1.0)
    # factor 0 copied into two codes: its share is 1/2 over 4 active codes -> InfoC ((1/2+1+1)/3 - 1/4) / (3/4)
    dup = np.concatenate([GRID, GRID[:, :1]], 1)
    out = infomec((dup, GRID), num_samples=len(GRID), discrete_codes=True)
    assert out["infoc"] == pytest.approx(((0.5 + 1 + 1) / 3 - 0.25) / 0.75) and out["infom"] == pytest.approx(1.0)
    # a constant code is pruned and changes nothing; a single-valued factor is skipped
    const = np.concatenate([GRID, np.zeros((len(GRID), 1))], 1)
    out = infomec((const, GRID), num_samples=len(GRID), discrete_codes=True)
    assert out["active_codes"] == [0, 1, 2] and out["infom"] == pytest.approx(1.0)
    f1 = np.concatenate([GRID, np.zeros((len(GRID), 1), dtype=int)], 1)
    assert infomec((GRID, f1), num_samples=len(GRID), discrete_codes=True)["skipped_factors"] == [3]


def noisy(scale=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return lambda x: x.numpy() + scale * rng.standard_normal(x.shape)


def test_continuous_orderings():
    kw = dict(num_samples=3000)
    good = infomec(noisy(), DS, **kw)
    assert good["infom"] > 0.9 and good["infoc"] > 0.9 and good["infoe"] > 0.9
    rng = np.random.default_rng(1)
    rand = infomec(lambda x: rng.standard_normal((len(x), 3)), DS, **kw)
    assert rand["infoe"] < 0.05 and max(map(max, rand["nmi"])) < 0.05
    def mixed(x):
        x = x.numpy()
        return np.stack([x[:, 0] + x[:, 2], x[:, 1], x[:, 0] - x[:, 2]], 1)
    assert infomec(mixed, DS, **kw)["infom"] < good["infom"] - 0.2
    # a code scaled far below the others is inactive (range under 1/20 of the largest) and pruned
    small = infomec(lambda x: np.concatenate([x.numpy(), 1e-3 * x.numpy()[:, :1]], 1), DS, **kw)
    assert small["active_codes"] == [0, 1, 2]
    assert infomec(noisy(), DS, **kw) == good                                # fixed seed -> identical
    with pytest.raises(ValueError, match="single value"):
        infomec((GRID[:5, :1] * 0.0, np.zeros((5, 1), dtype=int)), num_samples=5)


def test_concentration_edges():
    assert _concentration(np.array([[0.3, 0.0], [0.0, 0.0]]), 2) == pytest.approx(0.5)   # an empty row is chance
    assert _concentration(np.array([[0.2, 0.7]]), 1) == 1.0
