"""SyntheticSquares: factor indexing, and that each factor does to the image what its name says (known answers on
the rendered squares)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dga_fast.data import SQUARE_FACTOR_SIZES, SyntheticSquares
from dga_fast.runs import make_dataset
from helpers import centroid


def _img(ds, f):
    return ds.images_from_factors(torch.tensor(f))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, int(np.prod(SQUARE_FACTOR_SIZES)) - 1), min_size=1, max_size=7),
       st.sampled_from([8, 17, 32]))
def test_index_and_factors_round_trip_and_images_are_in_range(idx, size):
    ds = SyntheticSquares(size)
    f = ds.index_to_factors(idx)
    assert torch.equal(ds.factors_to_index(f), torch.tensor(idx))
    x, f2 = ds.get_batch(idx)
    assert x.shape == (len(idx), 3, size, size) and torch.equal(f, f2)
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and bool((x.flatten(1).amax(1) > 0.2).all())


def test_position_scale_and_colour_do_what_they_say():
    ds = SyntheticSquares(32)
    mask = lambda f: _img(ds, f).amax(1)                                     # noqa: E731  [n, S, S]
    c = centroid(mask([[x, 7, 3, 0] for x in (0, 5, 10, 15)]))
    assert bool((c[1:, 0] > c[:-1, 0] + 2).all()) and float((c[:, 1] - c[0, 1]).abs().max()) < 0.5
    c = centroid(mask([[7, y, 3, 0] for y in (0, 5, 10, 15)]))
    assert bool((c[1:, 1] > c[:-1, 1] + 2).all())      # y grows downward in the image
    area = mask([[7, 7, s, 0] for s in range(8)]).sum((1, 2))
    assert bool((area[1:] > area[:-1] * 1.05).all())
    rgb = _img(ds, [[7, 7, 7, k] for k in range(10)])[:, :, 16, 16]           # the square's centre pixel
    assert torch.allclose(rgb[0], torch.tensor([1.0, 0.0, 0.0]))             # hue 0: red
    assert len({tuple(v) for v in rgb.mul(100).round().tolist()}) == 10       # ten different colours
    corner = _img(ds, [[0, 0, 7, 3], [15, 15, 7, 3]])
    assert float(corner[:, :, :1, :].amax()) == 0 or float(corner[:, :, -1:, :].amax()) == 0   # inside the frame


def test_bad_factors_and_make_dataset():
    ds = SyntheticSquares(16)
    with pytest.raises(ValueError, match=r"shape \[n, 4\]"):
        ds.images_from_factors(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        ds.images_from_factors(torch.tensor([[16, 0, 0, 0]]))
    assert isinstance(make_dataset("synthetic-squares", 16), SyntheticSquares)
    assert len(make_dataset("synthetic-squares", 16)) == 20_480
