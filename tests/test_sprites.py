"""SyntheticSprites (issue 15's second dataset): factor indexing, and that each factor does to the image what
its name says (known answers on the rendered masks)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dga_fast.data import SPRITE_FACTOR_SIZES, SyntheticShapes, SyntheticSprites
from dga_fast.runs import make_dataset
from helpers import centroid


def _mask(ds, f):                                    # [n, 5] -> [n, S, S] foreground weight
    return ds.images_from_factors(torch.tensor(f))[:, 0]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, int(np.prod(SPRITE_FACTOR_SIZES)) - 1), min_size=1, max_size=7),
       st.sampled_from([8, 17, 32]))
def test_index_and_factors_round_trip_and_images_are_in_range(idx, size):
    ds = SyntheticSprites(size)
    f = ds.index_to_factors(idx)
    assert torch.equal(ds.factors_to_index(f), torch.tensor(idx))
    x, f2 = ds.get_batch(idx)
    assert x.shape == (len(idx), 3, size, size) and torch.equal(f, f2)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x[:, 0], x[:, 2])              # grey: the channels are one image


def test_position_moves_the_centroid_and_scale_grows_the_area():
    ds = SyntheticSprites(64)
    c = centroid(_mask(ds, [[1, 3, 0, x, 16] for x in (0, 10, 20, 31)]))
    assert bool((c[1:, 0] > c[:-1, 0] + 3).all()) and float((c[:, 1] - c[0, 1]).abs().max()) < 0.5
    c = centroid(_mask(ds, [[1, 3, 0, 16, y] for y in (0, 10, 20, 31)]))
    assert bool((c[1:, 1] > c[:-1, 1] + 3).all())     # y grows downward in the image
    area = _mask(ds, [[s, k, 0, 16, 16] for s in range(3) for k in range(6)]).sum((1, 2)).view(3, 6)
    assert bool((area[:, 1:] > area[:, :-1] * 1.1).all())


def test_shape_and_orientation_change_the_mask_as_their_symmetries_allow():
    ds = SyntheticSprites(64)
    turn = lambda s, o: _mask(ds, [[s, 5, o, 16, 16]])[0]                   # noqa: E731  o of 40 per turn
    # the pixels that differ, relative to the sprite's area (0: the same image)
    diff = lambda a, b: float((a - b).abs().sum() / torch.maximum(a.sum(), b.sum()))   # noqa: E731
    assert all(diff(turn(i, 0), turn(j, 0)) > 0.2 for i in range(3) for j in range(i))
    assert diff(turn(0, 0), turn(0, 10)) < 1e-4         # a square a quarter turn on is the same square
    assert diff(turn(0, 0), turn(0, 5)) > 0.2           # an eighth of a turn is not
    assert diff(turn(1, 0), turn(1, 20)) < 1e-4         # an ellipse half a turn on is the same ellipse
    assert diff(turn(1, 0), turn(1, 10)) > 0.5
    assert diff(turn(2, 0), turn(2, 20)) > 0.3          # a heart upside down is another image
    assert diff(turn(2, 0), turn(2, 39)) < diff(turn(2, 0), turn(2, 20)) / 3   # orientation is circular


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="size"):
        SyntheticSprites(4)
    with pytest.raises(ValueError, match="channels"):
        SyntheticSprites(16, channels=2)
    ds = SyntheticSprites(16)
    with pytest.raises(ValueError, match=r"shape \[n, 5\]"):
        ds.images_from_factors(torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        ds.images_from_factors(torch.tensor([[3, 0, 0, 0, 0]]))
    with pytest.raises(IndexError, match="SyntheticSprites"):
        ds.index_to_factors([len(ds)])
    assert SyntheticSprites(16, channels=1)[0][0].shape == (1, 16, 16)


def test_make_dataset_names_both_procedural_datasets():
    assert isinstance(make_dataset("synthetic-sprites", 16), SyntheticSprites)
    assert isinstance(make_dataset("synthetic-shapes", 16), SyntheticShapes)
    assert len(make_dataset("synthetic-sprites", 16)) == 737_280
