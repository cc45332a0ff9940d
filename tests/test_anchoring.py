"""DynamicGaussianAnchoring: recovery, determinism, state_dict, anchor shift and its gradient, bad input."""
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from dga_fast import DynamicGaussianAnchoring
from dga_fast.data import make_unit_tokens


@pytest.fixture(scope="module")
def bench_tokens():
    return make_unit_tokens(20, 10_000, 32, seed=0)   # the benchmark's tokens: 3..15 levels per unit


@pytest.fixture(scope="module")
def fitted(bench_tokens):
    return DynamicGaussianAnchoring(20, 32).refit(bench_tokens.tokens)


def test_recovers_levels_on_benchmark_tokens(bench_tokens, fitted):
    d = bench_tokens
    assert sorted(set(d.levels.tolist())) [0] == 3 and max(d.levels.tolist()) == 15
    a = fitted.assign(d.tokens)
    ari = [adjusted_rand_score(d.labels[:, u], a[:, u]) for u in range(20)]
    assert sum(ari) / 20 >= 0.9, ari
    n = fitted.n_components
    assert int(n.max()) <= fitted.max_components
    assert int((n == d.levels).sum()) >= 18, (n.tolist(), d.levels.tolist())
    assert int(fitted.last_refit["n_split"].sum()) > 0 and int(fitted.last_refit["n_merged"].sum()) > 0


def test_merge_false_is_split_and_filter_only(bench_tokens):
    d = bench_tokens
    tok = d.tokens[:4000, :6]
    m = DynamicGaussianAnchoring(6, 32, merge=False).refit(tok)
    assert int(m.last_refit["n_merged"].sum()) == 0
    with_merge = DynamicGaussianAnchoring(6, 32).refit(tok)
    assert bool((m.n_components >= with_merge.n_components).all())
    assert bool((m.n_components <= m.max_components).all())


def test_never_exceeds_max_components():
    d = make_unit_tokens(3, 3000, 8, levels=[15, 15, 15], seed=1)
    m = DynamicGaussianAnchoring(3, 8, init_components=2, max_components=5, split_threshold=0.0).refit(d.tokens)
    assert int(m.n_components.max()) <= 5
    assert m.active[:, 5:].sum() == 0


def test_deterministic_under_seed_and_state_dict_round_trip(bench_tokens):
    tok = bench_tokens.tokens[:3000, :5]
    a = DynamicGaussianAnchoring(5, 32, seed=3).refit(tok)
    b = DynamicGaussianAnchoring(5, 32, seed=3).refit(tok)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    c = DynamicGaussianAnchoring(5, 32, seed=3)
    assert not c.fitted
    c.load_state_dict(a.state_dict())
    assert c.fitted
    x = tok[:64]
    assert torch.equal(a(x), c(x))
    assert torch.equal(a.assign(x), c.assign(x))
    assert torch.equal(a.responsibilities(x), c.responsibilities(x))


def test_identity_before_refit():
    m = DynamicGaussianAnchoring(3, 4)
    x = torch.randn(5, 3, 4)
    assert m(x) is x
    with pytest.raises(RuntimeError, match="refit"):
        m.assign(x)


def _manual_shift(m, c):
    k = m.assign(c)                                                             # [B, U]
    mu = m.means[torch.arange(m.num_units), k]                                  # [B, U, D]
    lam = m.align_max * torch.exp(-(c - mu).abs().sum(-1, keepdim=True) / (c.abs().sum(-1, keepdim=True) + 1e-6))
    return c + lam * (mu - c), mu


def test_forward_formula_statistics_and_gradient(bench_tokens, fitted):
    c = bench_tokens.tokens[:256].clone().requires_grad_(True)
    out = fitted(c)
    ref, mu = _manual_shift(fitted, c)
    torch.testing.assert_close(out, ref)
    # the normalisation statistics of the refit are the ones used now
    x = bench_tokens.tokens.transpose(0, 1)
    torch.testing.assert_close(fitted.norm_shift, x.mean(1))
    # every token moves toward its Gaussian's mean, by at most align_max
    d0 = (c - mu).norm(dim=-1)
    d1 = (out - mu).norm(dim=-1)
    assert bool((d1 <= d0 + 1e-6).all())
    assert bool((d1 >= (1 - fitted.align_max) * d0 - 1e-5).all())
    # gradient with a random upstream gradient, including the path through λ
    gup = torch.randn_like(out)
    (g_out,) = torch.autograd.grad(out, c, gup)
    c2 = c.detach().clone().requires_grad_(True)
    ref2, _ = _manual_shift(fitted, c2)
    (g_ref,) = torch.autograd.grad(ref2, c2, gup)
    torch.testing.assert_close(g_out, g_ref)
    assert not torch.allclose(g_out, gup * (1 - fitted.align_max)), "λ must contribute to the gradient"


def test_gradcheck_float64():
    d = make_unit_tokens(2, 600, 4, levels=[3, 4], seed=2)
    m = DynamicGaussianAnchoring(2, 4, init_components=4).refit(d.tokens.double())
    c = (d.tokens[:6].double() + 0.01).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: m(t), (c,))
    fixed = DynamicGaussianAnchoring(2, 4, init_components=4, align=0.3).refit(d.tokens.double())
    assert torch.autograd.gradcheck(lambda t: fixed(t), (c,))


def test_responsibilities_rows_sum_to_one_and_zero_on_inactive(fitted, bench_tokens):
    r = fitted.responsibilities(bench_tokens.tokens[:100])
    assert r.shape == (100, 20, fitted.max_components)
    torch.testing.assert_close(r.sum(-1), torch.ones(100, 20))
    assert bool((r[:, ~fitted.active] == 0).all())
    assert fitted.means.shape == (20, 32, 32) and fitted.state.G == 20


def test_bad_input():
    m = DynamicGaussianAnchoring(2, 4)
    good = torch.randn(100, 2, 4)
    with pytest.raises(ValueError, match="NaN or Inf"):
        m.refit(good.index_fill(0, torch.tensor([3]), float("nan")))
    with pytest.raises(ValueError, match="NaN or Inf"):
        m.refit(good.index_fill(0, torch.tensor([3]), float("inf")))
    with pytest.raises(ValueError, match="fewer than init_components"):
        m.refit(good[:5])
    # constant tokens are a collapsed unit (a dead encoder unit), not an error: one Gaussian each
    m.refit(torch.ones(100, 2, 4))
    assert m.n_components.tolist() == [1, 1] and bool(m.last_refit["collapsed"].all())
    with pytest.raises(ValueError, match=r"\[N, 2, 4\]"):
        m.refit(torch.randn(100, 2, 5))
    with pytest.raises(ValueError, match="3 dimensions"):
        m.refit(torch.randn(100, 8))
    with pytest.raises(TypeError, match="floating-point"):
        m.refit(torch.ones(100, 2, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        m.refit(good.numpy())
    m.refit(good)
    with pytest.raises(ValueError, match=r"\[N, 2, 4\]"):
        m(torch.randn(3, 2, 3))
    with pytest.raises(ValueError, match="max_components"):
        DynamicGaussianAnchoring(2, 4, init_components=8, max_components=4)
    with pytest.raises(ValueError, match="align"):
        DynamicGaussianAnchoring(2, 4, align=1.5)
    with pytest.raises(ValueError, match="model"):
        DynamicGaussianAnchoring(2, 4, model="full")
