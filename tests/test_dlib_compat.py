"""Datasets written for disentanglement_lib work with the metrics unchanged: ``sample_factors`` receives a
``numpy.random.RandomState`` (that also answers ``integers``), and disentanglement_lib's observation interface is
adapted; datasets written for NumPy's ``Generator`` keep working."""
import numpy as np
import pytest
import torch

from dga_fast.data import FactorsAsImages, SyntheticShapes
from dga_fast.data.dlib_adapter import DisentanglementLibData, as_factor_dataset
from dga_fast.metrics import beta_vae_score, dci, factor_vae_score, mig, modularity_explicitness, sap
from dga_fast.np_random import CompatRandomState, as_random_state


class DlibStyleData:
    """A dataset in disentanglement_lib's ``GroundTruthData`` interface: its ``sample_factors`` calls
    ``random_state.randint`` (a ``numpy.random.Generator`` has no such method), observations ``[n, H, W, C]``."""

    factors_num_values = [4, 5, 6]
    num_factors = 3
    observation_factor_shape = [1, 3, 1]

    def __init__(self):
        self.calls = []

    def sample_factors(self, num, random_state):
        self.calls.append(type(random_state))
        factors = np.zeros((num, self.num_factors), dtype=np.int64)
        for i, size in enumerate(self.factors_num_values):
            factors[:, i] = random_state.randint(size, size=num)
        return factors

    def sample_observations_from_factors(self, factors, random_state):
        return factors.astype(np.float32).reshape(len(factors), 1, self.num_factors, 1)


class GeneratorStyleData(FactorsAsImages):
    """A dataset written for NumPy's newer API (``rng.integers``)."""

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], 1)


def identity_rep(x):   # [n, 1, 1, F] (adapted) or [n, F] -> [n, F], with a little noise
    x = torch.as_tensor(x).reshape(len(x), -1).double()
    return x.numpy() + 0.05 * np.random.default_rng(len(x)).standard_normal(x.shape)


SMALL = dict(num_train=1500, num_test=500)


@pytest.mark.parametrize("ds_cls", [DlibStyleData, GeneratorStyleData])
def test_metrics_accept_both_dataset_styles(ds_cls):
    ds = ds_cls()
    assert mig(identity_rep, ds, num_train=2000)["mig"] > 0.5
    assert sap(identity_rep, ds, **SMALL)["sap"] > 0.3
    assert dci(identity_rep, ds, **SMALL)["disentanglement"] > 0.9
    assert modularity_explicitness(identity_rep, ds, **SMALL)["modularity"] > 0.9
    assert beta_vae_score(identity_rep, ds, num_train=200, num_eval=100, batch_size=16)["beta_vae"] > 0.9
    assert factor_vae_score(identity_rep, ds, num_variance_estimate=1000, num_train=200, num_eval=100,
                            batch_size=16)["factor_vae"] > 0.9
    if ds_cls is DlibStyleData:
        assert ds.calls and all(issubclass(c, np.random.RandomState) for c in ds.calls)


def test_seed_may_be_a_random_state_with_disentanglement_libs_stream():
    ds = DlibStyleData()
    by_int = mig(identity_rep, ds, num_train=1000, seed=3)
    assert mig(identity_rep, ds, num_train=1000, seed=np.random.RandomState(3)) == by_int
    assert mig(identity_rep, ds, num_train=1000, seed=4) != by_int
    # the metric draws exactly what disentanglement_lib's RandomState(seed) would hand the dataset first
    seen = []
    wrapped = DlibStyleData()
    wrapped.sample_factors = lambda n, rs: seen.append(DlibStyleData.sample_factors(wrapped, n, rs)) or seen[-1]
    mig(identity_rep, wrapped, num_train=1000, seed=3)
    assert np.array_equal(seen[0], DlibStyleData().sample_factors(1000, np.random.RandomState(3)))
    with pytest.raises(TypeError, match="seed must be"):
        mig(identity_rep, ds, num_train=1000, seed="3")
    with pytest.raises(ValueError, match="seed must be in"):
        mig(identity_rep, ds, num_train=1000, seed=-1)


def test_compat_random_state_integers_matches_randint():
    a, b = CompatRandomState(7), np.random.RandomState(7)
    assert np.array_equal(a.integers(5, size=10), b.randint(0, 5, size=10))
    assert np.array_equal(a.integers(2, 9, size=10), b.randint(2, 9, size=10))
    assert np.array_equal(a.integers(2, 9, size=10, endpoint=True), b.randint(2, 10, size=10))
    g = np.random.default_rng(0)
    shared = as_random_state(g)               # shares the Generator's bit stream: drawing advances it
    before = g.bit_generator.state["state"]["state"]
    shared.randint(10)
    assert g.bit_generator.state["state"]["state"] != before


@pytest.mark.parametrize("ds", [FactorsAsImages((3, 7)), SyntheticShapes(size=8)])
def test_own_datasets_accept_random_state_generator_and_seed(ds):
    sizes = ds.factor_sizes
    rs = ds.sample_factors(50, np.random.RandomState(2))
    ref = np.random.RandomState(2)
    assert np.array_equal(rs, np.stack([ref.randint(0, s, 50) for s in sizes], 1))
    gen = ds.sample_factors(50, np.random.default_rng(2))
    ref = np.random.default_rng(2)
    assert np.array_equal(gen, np.stack([ref.integers(0, s, 50) for s in sizes], 1))
    assert np.array_equal(ds.sample_factors(50, 2), gen)
    assert (rs < np.array(sizes)).all() and (rs >= 0).all()
    with pytest.raises(TypeError, match="rng must be"):
        ds.sample_factors(5, "2")


def test_adapter_shapes_and_passthrough():
    ds = DlibStyleData()
    ad = as_factor_dataset(ds)
    assert isinstance(ad, DisentanglementLibData) and ad.factor_sizes == (4, 5, 6)
    assert ad.factor_names == ("factor0", "factor1", "factor2")
    f = ad.sample_factors(6)
    img = ad.images_from_factors(f)
    assert img.shape == (6, 1, 1, 3) and img.dtype == torch.float32          # [n, H, W, C] -> [n, C, H, W]
    assert torch.equal(img[:, 0, 0].long(), torch.as_tensor(f))
    own = FactorsAsImages()
    assert as_factor_dataset(own) is own
