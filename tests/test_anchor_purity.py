"""anchor_purity: known answers with a stand-in model whose generator is exact (purity 1) or ignores the tokens
(purity at chance), draws from an HDDC Gaussian, and the image probe on real images."""
import numpy as np
import pytest
import torch

from dga_fast import DynamicGaussianAnchoring
from dga_fast.metrics import anchor_purity
from dga_fast.metrics.anchor_purity import gaussian_draws
from dga_fast.metrics.image_probe import ImageFactorProbe, bin_factors

CENTRES = [torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]),                 # unit 0: factor a (3 values)
           torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0], [5.0, -5.0]])]    # unit 1: factor b (4 values)


class TwoFactors:
    """Images [1, 4, 4] whose first two pixels are the factors a (3 values) and b (4 values)."""
    factor_names, factor_sizes = ("a", "b"), (3, 4)

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], 1)

    def images_from_factors(self, f):
        x = torch.zeros(len(f), 1, 4, 4)
        x[:, 0, 0, 0], x[:, 0, 0, 1] = torch.as_tensor(f[:, 0]).float(), torch.as_tensor(f[:, 1]).float()
        return x


def read_pixels(images):
    return images[:, 0, 0, :2].round().long()


class StandIn:
    """Units encode the factors as 2-D tokens at ``CENTRES``; ``sample`` decodes the nearest centre of each unit
    (exact) or returns the last encoded images (``ignore=True``: the tokens change nothing)."""
    diffusion_shape, device = (1, 4, 4), torch.device("cpu")

    def __init__(self, ignore=False, seed=0):
        self.ignore, self.g = ignore, torch.Generator().manual_seed(seed)
        f = TwoFactors().sample_factors(600, np.random.default_rng(seed))
        self.anchoring = DynamicGaussianAnchoring(2, 2, init_components=4, max_components=6, seed=0)
        self.anchoring.refit(self.encode(TwoFactors().images_from_factors(f)))

    def encode(self, x):
        f = read_pixels(x)
        self.last = x
        noise = 0.15 * torch.randn(len(x), 2, 2, generator=self.g)
        return torch.stack([CENTRES[0][f[:, 0]], CENTRES[1][f[:, 1]]], 1) + noise

    def sample(self, tokens, steps, noise):
        if self.ignore:
            return self.last.clone()
        f = torch.stack([torch.cdist(tokens[:, u], CENTRES[u]).argmin(1) for u in range(2)], 1)
        return TwoFactors().images_from_factors(f.numpy())


def test_an_exact_generator_has_purity_one():
    m = StandIn()
    assert m.anchoring.n_components.tolist() == [3, 4]
    r = anchor_purity(m, TwoFactors(), probe=read_pixels, n_base=12)
    assert r["purity"] == 1.0 and r["purity_above_chance"] == 1.0
    assert [u["factor"] for u in r["units"]] == ["a", "b"]
    assert r["units"][0]["above_per_factor"]["b"] == 0.0          # unit 0's regions leave b to the images
    assert [len(u["regions"]) for u in r["units"]] == [3, 4]
    assert abs(sum(x["weight"] for x in r["units"][1]["regions"]) - 1) < 1e-3


def test_regions_passed_apart_from_the_model():
    """A model without DyGA is scored on a mixture fitted to its tokens afterwards."""
    m = StandIn()
    regions, m.anchoring = m.anchoring, None
    r = anchor_purity(m, TwoFactors(), probe=read_pixels, anchoring=regions, n_base=12)
    assert r["purity"] == 1.0


def test_a_generator_that_ignores_the_tokens_is_at_chance():
    r = anchor_purity(StandIn(ignore=True), TwoFactors(), probe=read_pixels, n_base=12, seed=3)
    assert r["purity_above_chance"] == 0.0
    for u in r["units"]:
        assert u["purity"] == u["pooled"] < 1.0


def test_a_generator_that_renders_one_value_is_not_pure_above_chance():
    """Every region yields the same factor values (a generator that renders one scene whatever the tokens):
    raw purity 1, above its pooled level 0."""
    m = StandIn()
    m.sample = lambda tokens, steps, noise: TwoFactors().images_from_factors(np.zeros((len(tokens), 2), int))
    r = anchor_purity(m, TwoFactors(), probe=read_pixels, n_base=12)
    assert r["purity"] == 1.0 and r["purity_above_chance"] == 0.0


def test_gaussian_draws_have_the_mixture_moments():
    m = StandIn()
    dyga, g = m.anchoring, torch.Generator().manual_seed(1)
    st = dyga.state
    for u, k in [(0, 0), (1, 2)]:
        x = gaussian_draws(dyga, u, k, 40_000, g).double()
        mean = st.means[u, k].double() * dyga.norm_scale[u] + dyga.norm_shift[u]
        cov = st.covariances()[u, k].double() * float(dyga.norm_scale[u]) ** 2
        scale = float(cov.diagonal().max())
        torch.testing.assert_close(x.mean(0), mean, rtol=0, atol=0.05 * scale ** 0.5)
        torch.testing.assert_close(torch.cov(x.T), cov, rtol=0, atol=0.05 * scale)


def test_bad_input():
    class NoDyga:
        anchoring = None
    with pytest.raises(ValueError, match="anchoring"):
        anchor_purity(NoDyga(), TwoFactors(), probe=read_pixels)
    unfitted = StandIn()
    unfitted.anchoring = DynamicGaussianAnchoring(2, 2)
    with pytest.raises(ValueError, match="refit_anchors"):
        anchor_purity(unfitted, TwoFactors(), probe=read_pixels)
    with pytest.raises(ValueError, match="n_base"):
        anchor_purity(StandIn(), TwoFactors(), probe=read_pixels, n_base=1)


def test_image_probe_reads_the_hues_of_synthetic_shapes():
    from dga_fast.data import SyntheticShapes
    ds = SyntheticShapes(16)
    probe = ImageFactorProbe.fit(ds, n_train=1024, steps=150, seed=0)
    assert set(probe.accuracy) == set(ds.factor_names)
    assert probe.accuracy["floor_hue"] >= 0.9 and probe.accuracy["wall_hue"] >= 0.9, probe.accuracy
    f = ds.sample_factors(8, np.random.default_rng(5))
    pred = probe(torch.as_tensor(ds.images_from_factors(f)))
    assert pred.shape == (8, len(ds.factor_sizes)) and pred.dtype == torch.int64
    assert bin_factors(np.array([[14, 3]]), (15, 4), 10).tolist() == [[9, 3]]   # 15 values -> 10 bins
