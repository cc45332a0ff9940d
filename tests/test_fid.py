"""FID: torchmetrics' Fréchet distance against the closed form for known Gaussians, and the pipeline end to end
with a small stand-in feature network (the standard Inception features need torch-fidelity and a torchvision for
this torch, which this CPU build cannot have: their absence and a missing weight file are clear errors)."""
import importlib

import pytest
import torch

pytest.importorskip("torchmetrics", reason="torchmetrics is in requirements.txt; fid cannot run without it")

from dga_fast.data import SyntheticShapes  # noqa: E402
from dga_fast.data.batches import get_batch  # noqa: E402
from dga_fast.metrics import fid  # noqa: E402
from dga_fast.metrics.fid import frechet_metric  # noqa: E402
from dga_fast.np_random import as_random_state  # noqa: E402

fid_mod = importlib.import_module("dga_fast.metrics.fid")   # the module (the package's name `fid` is the function)


class Identity(torch.nn.Module):
    def __init__(self, D):
        super().__init__()
        self.num_features = D

    def forward(self, x):
        return x


def exact_moments(mean, cov, n, seed):
    """``n`` points whose sample mean and (n − 1)-normalised covariance are exactly ``mean`` and ``cov``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T).reshape(z.shape[1], -1))).T   # identity covariance
    return z @ torch.linalg.cholesky(cov).T + mean


def frechet(a, b):
    m = frechet_metric(Identity(a.shape[1]))
    m.update(a, real=True)
    m.update(b, real=False)
    return float(m.compute())


@pytest.mark.parametrize("D,seed", [(1, 0), (3, 1), (7, 2)])
def test_frechet_distance_closed_forms(D, seed):
    g = torch.Generator().manual_seed(seed)
    mu1, mu2 = torch.randn(D, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)
    s1, s2 = torch.rand(D, generator=g, dtype=torch.float64) + 0.5, torch.rand(D, generator=g, dtype=torch.float64) + 0.5
    # diagonal covariances: |mu1 - mu2|^2 + sum (s1 - s2)^2
    a = exact_moments(mu1, torch.diag(s1 ** 2), 500, seed)
    b = exact_moments(mu2, torch.diag(s2 ** 2), 700, seed + 10)
    ref = float((mu1 - mu2).square().sum() + (s1 - s2).square().sum())
    assert frechet(a, b) == pytest.approx(ref, rel=1e-6, abs=1e-9)
    # a full covariance and c^2 times it (they commute): |mu1 - mu2|^2 + (1 - c)^2 tr(S)
    A = torch.randn(D, D, generator=g, dtype=torch.float64)
    S = A @ A.T + 0.5 * torch.eye(D, dtype=torch.float64)
    c = 1.7
    a = exact_moments(mu1, S, 400, seed)
    b = exact_moments(mu2, c * c * S, 400, seed + 20)
    ref = float((mu1 - mu2).square().sum() + (1 - c) ** 2 * torch.trace(S))
    assert frechet(a, b) == pytest.approx(ref, rel=1e-6, abs=1e-9)
    assert frechet(a, a) == pytest.approx(0.0, abs=1e-8 * float(torch.trace(S)))


class StandInFeatures(torch.nn.Module):
    """A fixed random conv net (images in [0, 1] -> 16 features): the stand-in for Inception in these tests."""
    num_features = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Tanh(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    def forward(self, x):
        return self.net(x.float())


class CopyModel:
    """encode/sample that regenerate the conditioning images exactly (or darkened)."""
    device = torch.device("cpu")

    def __init__(self, scale=1.0):
        self.scale = scale

    def encode(self, x):
        return x.flatten(1).unsqueeze(1)

    def sample(self, tokens, steps=50, generator=None):
        return tokens.squeeze(1).view(-1, 3, 16, 16) * self.scale


def test_fid_pipeline_with_a_stand_in_network():
    ds, n, net = SyntheticShapes(size=16), 120, StandInFeatures()
    order = torch.as_tensor(as_random_state(0).permutation(len(ds))[:n])
    same = get_batch(ds, order)                                                     # exactly the real images
    zero = fid(same, ds, n=n, feature_extractor=net)
    assert zero["fid"] == pytest.approx(0.0, abs=1e-6) and zero["features"] == "custom" and zero["n"] == n
    other = fid(CopyModel(), ds, n=n, feature_extractor=net)                       # other real images
    dark = fid(CopyModel(0.5), ds, n=n, feature_extractor=net)
    assert 0 < other["fid"] < dark["fid"] / 5
    assert fid(CopyModel(), ds, n=n, feature_extractor=net)["fid"] == other["fid"]  # seeded
    assert fid(CopyModel(), ds, n=n, seed=1, feature_extractor=net)["fid"] != other["fid"]


def test_fid_bad_input(tmp_path, monkeypatch):
    ds, net = SyntheticShapes(size=16), StandInFeatures()
    with pytest.raises(ValueError, match="n must be"):
        fid(CopyModel(), ds, n=1, feature_extractor=net)
    with pytest.raises(ValueError, match="generated images"):
        fid(torch.rand(3, 3, 16, 16), ds, n=5, feature_extractor=net)
    with pytest.raises(TypeError, match="model_or_images"):
        fid("images", ds, n=5, feature_extractor=net)
    with pytest.raises(TypeError, match="feature_extractor"):
        fid(CopyModel(), ds, n=5, feature_extractor=lambda x: x)
    with pytest.raises(FileNotFoundError, match="--fid-weights"):
        fid(CopyModel(), ds, n=5, weights=tmp_path / "missing.pth")
    import torchmetrics.image.fid as tm
    monkeypatch.setattr(tm, "_TORCH_FIDELITY_AVAILABLE", False)
    with pytest.raises(ImportError, match="torch-fidelity"):
        fid(CopyModel(), ds, n=5)

    class Offline:   # what torch-fidelity's download does without a network
        def __init__(self, **kw):
            import urllib.error
            raise urllib.error.URLError("no network")
    monkeypatch.setattr(fid_mod, "_metric_class", lambda: Offline)
    with pytest.raises(FileNotFoundError, match="weights-inception-2015-12-05-6726825d.pth.*--fid-weights"):
        fid(CopyModel(), ds, n=5)
