"""evaluate's PaCMAP / UMAP views: the factor each unit best explains, the plot, the embeddings, and a clear message
when a projection library is absent."""
import sys

import numpy as np
import pytest
import torch

from dga_fast import DynamicGaussianAnchoring
from dga_fast.projection_plot import best_factors, embed_2d, plot_unit_projections


def units_and_factors(n=600, seed=0):
    """Unit 0 clusters by factor b (4 values), unit 1 by factor a (3 values), unit 2 is noise."""
    rng = np.random.default_rng(seed)
    f = np.stack([rng.integers(0, 3, n), rng.integers(0, 4, n)], 1)
    centres = rng.standard_normal((4, 4)) * 6
    u0 = centres[f[:, 1]] + rng.standard_normal((n, 4))
    u1 = centres[f[:, 0]] + rng.standard_normal((n, 4))
    u2 = rng.standard_normal((n, 4))
    return torch.tensor(np.stack([u0, u1, u2], 1), dtype=torch.float32), f


def test_best_factor_and_plot(tmp_path):
    tokens, f = units_and_factors()
    codes = np.stack([f[:, 1], f[:, 0], np.zeros(len(f), dtype=int)], 1)
    best, score = best_factors(codes, f)
    assert best[:2].tolist() == [1, 0] and score[:2] == pytest.approx([1.0, 1.0]) and score[2] == 0.0
    dyga = DynamicGaussianAnchoring(3, 4, init_components=4, max_components=8, seed=0).refit(tokens)
    out = plot_unit_projections(tokens, f, ["a", "b"], tmp_path / "p.png", method="pacmap", dyga=dyga)
    assert (tmp_path / "p.png").stat().st_size > 5000
    assert [u["factor"] for u in out["units"][:2]] == ["b", "a"] and out["units"][0]["nmi"] > 0.8
    assert out["units"][0]["nmi_regions"] > 0.9 and out["units"][2]["nmi"] < 0.1     # DyGA's regions keep it
    one = DynamicGaussianAnchoring(3, 4, init_components=1, max_components=1, seed=0).refit(tokens)
    single = plot_unit_projections(tokens, f, ["a", "b"], tmp_path / "s.png", dyga=one, units=[0])
    assert single["units"][0]["factor"] == "b" and single["units"][0]["nmi_regions"] == 0.0   # one region keeps nothing
    plain = plot_unit_projections(tokens, f, ["a", "b"], tmp_path / "q.png", units=[1])   # no DyGA: binned tokens
    assert [u["unit"] for u in plain["units"]] == [1] and plain["units"][0]["factor"] == "a"
    with pytest.raises(ValueError, match="same N"):
        plot_unit_projections(tokens, f[:10], ["a", "b"], tmp_path / "r.png")


@pytest.mark.parametrize("method", ["pacmap", "umap"])
def test_embeddings_keep_separated_clusters_apart(method):
    rng = np.random.default_rng(0)
    lab = np.repeat(np.arange(3), 100)
    x = rng.standard_normal((300, 8)) + 20 * np.eye(8)[lab]
    xy = embed_2d(x, method, seed=0)
    assert xy.shape == (300, 2) and np.isfinite(xy).all()
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (lab[d.argmin(1)] == lab).mean() > 0.95            # nearest neighbour in 2-D shares the cluster


def test_missing_library_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pacmap", None)
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ImportError, match="pip install pacmap"):
        embed_2d(np.zeros((10, 2)), "pacmap")
    with pytest.raises(ImportError, match="pip install umap-learn"):
        embed_2d(np.zeros((10, 2)), "umap")
    with pytest.raises(ValueError, match="one of"):
        embed_2d(np.zeros((10, 2)), "tsne")
