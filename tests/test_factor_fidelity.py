"""Factor fidelity (``metrics.factor_fidelity``) and DCI's per-factor informativeness: the identity keeps every
factor, a shuffled batch loses every factor to the level of chance agreement, and bad reconstructions are refused."""
import numpy as np
import pytest
import torch

from dga_fast.data import SyntheticShapes
from dga_fast.metrics import dci, factor_fidelity
from dga_fast.metrics.image_probe import ImageFactorProbe


@pytest.fixture(scope="module")
def shapes_probe():
    ds = SyntheticShapes(16)
    return ds, ImageFactorProbe.fit(ds, n_train=1024, steps=150, seed=0)


def test_identity_keeps_every_factor_and_a_shuffle_loses_them(shapes_probe):
    ds, probe = shapes_probe
    same = factor_fidelity(lambda x: x, ds, probe, n=192, seed=1)
    names = list(ds.factor_names)
    assert list(same["fidelity"]) == names
    assert all(v == 1.0 for v in same["fidelity"].values())
    assert same["accuracy_reconstructed"] == same["accuracy_real"]
    assert max(same["accuracy_real"].values()) > 0.5          # the probe reads something (the hues at least)
    shuffled = factor_fidelity(lambda x: x.roll(1, 0), ds, probe, n=192, seed=1)
    for name in names:   # another image's factors agree with these about as often as chance
        real, rec, chance = (shuffled[k][name] for k in ("accuracy_real", "accuracy_reconstructed", "chance"))
        assert rec <= max(3 * chance, 0.45) and (real < 0.3 or rec < real)
    assert shuffled["chance"]["shape"] == 0.25


@pytest.mark.parametrize("bad, match", [(dict(n=0), "n must"), (dict(batch_size=0), "batch_size")])
def test_bad_counts_are_refused(shapes_probe, bad, match):
    ds, probe = shapes_probe
    with pytest.raises(ValueError, match=match):
        factor_fidelity(lambda x: x, ds, probe, **{"n": 8, **bad})


@pytest.mark.parametrize("recon, match", [(lambda x: x[:, :, :8], "shape"), (lambda x: x * float("nan"), "non-finite")])
def test_bad_reconstructions_are_refused(shapes_probe, recon, match):
    ds, probe = shapes_probe
    with pytest.raises(ValueError, match=match):
        factor_fidelity(recon, ds, probe, n=8)


def test_dci_reports_each_factors_informativeness():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 4, size=(600, 3))
    reps = np.stack([f[:, 0] + 0.1 * rng.normal(size=600), rng.normal(size=600)], 1)   # carries factor 0 only
    out = dci((reps, f), num_train=400, num_test=200, seed=0, n_jobs=1)
    per = out["informativeness_per_factor"]
    assert len(per) == 3 and per[0] > 0.9 and max(per[1:]) < 0.5
    assert out["informativeness_test"] == pytest.approx(np.mean(per))
