"""DyGA on tokens shaped like the published model's (issue 12): no NaN or exception on any kind of unit,
per-unit independence (a unit's mixture does not depend on the other units of the batch), and the structure
search on many-level units."""
import dataclasses
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dga_fast import DynamicGaussianAnchoring, native
from dga_fast.data import UnitSpec, hard_setting, make_published_tokens
from dga_fast.refit import RefitContext, refit_mixtures
from dga_fast.mixture.normalise import Normaliser

assert os.environ.get("DGA_FAST_CHECK_STAGES") == "1"   # conftest: every refit stage checks its own output

unit_specs = st.builds(UnitSpec, levels=st.integers(1, 48), zipf=st.sampled_from([0.0, 0.7, 1.0, 1.5, 2.0]),
                       levels2=st.sampled_from([0, 0, 0, 2, 3]))


def _units(specs, collapsed):
    return [UnitSpec(1, collapsed=True) if c else s for s, c in zip(specs, collapsed)]


@settings(max_examples=30, deadline=None)
@given(specs=st.lists(unit_specs, min_size=1, max_size=4), collapsed=st.lists(st.booleans(), min_size=4, max_size=4),
       relu=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]), n=st.integers(60, 1500),
       dim=st.sampled_from([1, 3, 8, 32]), seed=st.integers(0, 2**16))
def test_refit_never_nan_on_published_like_tokens(specs, collapsed, relu, dtype, n, dim, seed):
    units = _units(specs, collapsed)
    data = make_published_tokens(units, n=n, dim=dim, hidden=(16, 32), activation="relu" if relu else "silu",
                                 final_relu=relu, dtype=dtype, seed=seed)
    dyga = DynamicGaussianAnchoring(len(units), dim, init_components=4, max_components=24, em_iters=10,
                                    min_cluster_size=3, search_samples=512)
    dyga.refit(data.tokens)
    for name, t in dyga.state_dict().items():
        if t.is_floating_point():
            act = dyga.active
            if name.startswith("mix_") and t.dim() >= 2:   # inactive slots hold their padding values
                t = t[act]
            assert bool(torch.isfinite(t).all()), name
    for u, spec in enumerate(units):
        if spec.collapsed:
            assert int(dyga.n_components[u]) == 1
    out = dyga(data.tokens[:64])
    assert bool(torch.isfinite(out).all())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 4000), dim=st.integers(1, 33), scale=st.sampled_from([1e-3, 1.0, 1e3]),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_tokens_equal_up_to_rounding_are_collapsed(n, dim, scale, dtype, seed):
    """A unit whose tokens are one value up to a few ulp (as an MLP gives a constant input) is collapsed: the
    mean's own rounding error (up to n·eps·|x| from the first pass) must not count as spread."""
    g = torch.Generator().manual_seed(seed)
    value = scale * (0.05 + torch.rand(dim, generator=g, dtype=torch.float64))
    ulps = torch.randint(-3, 4, (n, dim), generator=g).to(torch.float64)
    x = (value * (1 + ulps * torch.finfo(dtype).eps)).to(dtype)
    assert bool(Normaliser.fit(x.unsqueeze(0)).collapsed[0])


def test_published_like_collapsed_unit_regression():
    """The falsifying example hypothesis found (2026-12-06): a collapsed unit's float64 tokens 1e-18 apart were
    fitted with 3 Gaussians because the first-pass mean was off by 1e-15."""
    units = [UnitSpec(1), UnitSpec(1, collapsed=True)]
    data = make_published_tokens(units, n=671, dim=3, hidden=(16, 32), activation="relu", final_relu=True,
                                 dtype=torch.float64, seed=1)
    dyga = DynamicGaussianAnchoring(2, 3, init_components=4, max_components=24, em_iters=10, min_cluster_size=3,
                                    search_samples=512).refit(data.tokens)
    assert dyga.n_components.tolist() == [1, 1] and bool(dyga.last_refit["collapsed"].all())


def _fit(tokens, **kw):
    return DynamicGaussianAnchoring(tokens.shape[1], tokens.shape[2], **kw).refit(tokens)


def _same_unit(a, ua, b, ub):
    """Bit for bit the same mixture and normalisation (the reference backend's reductions are ordered so that a
    unit's numbers do not depend on the batch: ``dga_fast.mixture.reduce``)."""
    for name, t in b.state_dict().items():
        if name in ("_fitted", "n_refits"):
            continue
        assert torch.equal(a.state_dict()[name][ua], t[ub]), name


# Measured 2026-12-03 on an AVX-512 CPU (torch.backends.cpu.get_cpu_capability() == "AVX512"): with the
# reference E-step a unit fitted alone and in the batch differed by about 1 ulp (seed 0, k 3: means relative
# 4e-8), and EM or a split decision could carry that far (seed 315, k 3: a mean differed by 6.0); the reference's
# batched GEMMs group their sums by the batch's shapes there. The native E-step (issue 16) computes every row
# alone: on the same CPU 39 of 39 cases (seeds incl. 0 and 315, k 1/3/5) are bit for bit the same. So the test is
# strict wherever the native op is built, and an expected failure only on AVX-512 without it.
_AVX512 = torch.backends.cpu.get_cpu_capability() == "AVX512"


@pytest.mark.xfail(_AVX512 and not native.available(),
                   reason="per-unit independence is not bit-exact on AVX-512 CPUs with the reference E-step",
                   strict=False)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), k=st.integers(1, 5))
def test_units_fitted_alone_or_in_a_batch_get_the_same_mixture(seed, k):
    units = hard_setting(12, max_levels=20)
    data = make_published_tokens(units, n=1500, dim=16, hidden=(32, 64), seed=seed)
    kw = dict(init_components=4, max_components=24, em_iters=15, min_cluster_size=5, search_samples=600)
    full = _fit(data.tokens, **kw)
    prefix = _fit(data.tokens[:, :k].contiguous(), **kw)      # units 0..k-1 have the same ids
    for u in range(k):
        _same_unit(full, u, prefix, u)


def test_pipeline_on_any_subset_of_units_matches_the_batch():
    """The refit pipeline with explicit unit ids: any subset (not only a prefix) gives the batch's mixtures."""
    units = [UnitSpec(5), UnitSpec(9, 1.0), UnitSpec(3), UnitSpec(14, 1.5), UnitSpec(7)]
    data = make_published_tokens(units, n=1200, dim=16, hidden=(32, 64), seed=3)
    dyga = DynamicGaussianAnchoring(5, 16, init_components=4, max_components=24, em_iters=15,
                                    min_cluster_size=5, search_samples=500)
    x = data.tokens.transpose(0, 1).contiguous()
    x = Normaliser.fit(x)(x)
    cfg = dyga._refit_config()
    full, _ = refit_mixtures(RefitContext(x, torch.arange(5), cfg))
    sub = torch.tensor([3, 1])
    part, _ = refit_mixtures(RefitContext(x[sub].contiguous(), sub, cfg))
    for i, u in enumerate(sub.tolist()):
        for name, t in part.tensors().items():
            assert torch.equal(getattr(full, name)[u], t[i]), name


def test_collapsed_units_get_one_gaussian_and_anchor_to_their_value():
    units = [UnitSpec(1, collapsed=True), UnitSpec(6), UnitSpec(1, collapsed=True)]
    data = make_published_tokens(units, n=800, dim=8, hidden=(16, 32), seed=1)
    dyga = _fit(data.tokens, init_components=4, max_components=16, min_cluster_size=5)
    assert dyga.n_components.tolist()[0] == 1 and dyga.n_components.tolist()[2] == 1
    assert bool(dyga.last_refit["collapsed"][0]) and not bool(dyga.last_refit["collapsed"][1])
    torch.testing.assert_close(dyga.means[0, 0], data.tokens[0, 0])
    out = dyga(data.tokens[:10])
    torch.testing.assert_close(out[:, 0], data.tokens[:10, 0])


def test_relu_scatter_matrices_do_not_break_eigh():
    """The float32 LAPACK solver fails to converge on scatter matrices with denormal-level entries (dead ReLU
    coordinates); robust_eigh zeroes entries at rounding level and falls back to float64."""
    from dga_fast.mixture.mstep import robust_eigh
    W = torch.zeros(6, 6)
    W[1, 1], W[3, 3], W[1, 3], W[3, 1] = 1e-3, 2e-3, 5e-4, 5e-4
    W[0, 0], W[0, 1], W[1, 0] = 1e-38, 8e-18, 8e-18
    ev, vec = robust_eigh(W.unsqueeze(0))
    assert bool(torch.isfinite(ev).all()) and bool(torch.isfinite(vec).all())
    ref = torch.linalg.eigvalsh(W.double())
    torch.testing.assert_close(ev[0].double(), ref, atol=1e-9, rtol=1e-5)


def test_many_level_unit_is_split_to_its_values():
    """A 30-value unit (Zipf frequencies) reaches its values from 8 initial components, and a 2-value unit is
    not split further (split and merge do not undo each other)."""
    from sklearn.metrics import adjusted_rand_score
    units = [UnitSpec(30, 1.0), UnitSpec(2)]
    data = make_published_tokens(units, n=8000, dim=32, seed=0)
    dyga = _fit(data.tokens, max_components=48)
    pred = dyga.assign(data.tokens)
    assert adjusted_rand_score(data.labels[:, 0], pred[:, 0]) >= 0.95
    assert int(dyga.n_components[1]) == 2
    assert int(dyga.last_refit["split_rounds"][0]) >= 3


def test_spread_rule_and_merge_false_still_available():
    units = [UnitSpec(6), UnitSpec(4)]
    data = make_published_tokens(units, n=1500, dim=16, hidden=(32, 64), seed=2)
    dyga = _fit(data.tokens, split="spread", split_threshold=0.05, merge=False, init_components=4)
    assert int(dyga.last_refit["n_merged"].sum()) == 0
    with pytest.raises(ValueError, match="split"):
        DynamicGaussianAnchoring(2, 16, split="random")


def _tight_clusters(seed, G=6, K=5, per=40, D=4):
    """``x [G, K*per, D]``: K well-separated tight clusters per unit, their labels, and a one-M-step state."""
    from dga_fast.mixture import init_state
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(G, K, D, generator=g, dtype=torch.float64) * 5
    labels = torch.arange(K).repeat_interleave(per).expand(G, -1).contiguous()
    x = torch.gather(centres, 1, labels.unsqueeze(-1).expand(-1, -1, D))
    x = x + 0.01 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x, labels, K


@pytest.mark.parametrize("p", [0.0, 0.5, 0.8])
def test_coin_flip_split_makes_about_p_of_the_tight_components_candidates(p):
    """The published split rule (``split="coin"``): components under the spread threshold become candidates
    on a coin with probability p (counted over many seeds), components over it always do, and p = 0 is the
    spread rule."""
    from dga_fast.mixture import init_state
    from dga_fast.refit import SplitByCoinFlip, SplitBySpread
    dyga = DynamicGaussianAnchoring(6, 4, init_components=5, split="coin", split_threshold=0.5)
    heads = total = n_over = 0
    for seed in range(40):
        x, labels, K = _tight_clusters(seed)
        cfg = dataclasses.replace(dyga._refit_config(), seed=seed)
        ctx = RefitContext(x, torch.arange(x.shape[0]), cfg)
        state = init_state(x, labels, K, cfg.mstep, ctx.floor)
        spread = SplitBySpread(0.5).scores(ctx, x, labels, state)
        assert bool((spread.score < 0.5).all())                # every component is tight
        sc = SplitByCoinFlip(0.5, p).scores(ctx, x, labels, state)
        heads += int((sc.score > sc.threshold).sum())
        total += sc.score.numel()
        assert torch.equal(sc.counts, spread.counts)
        # components spanning several clusters: those over the threshold are candidates whatever the coin
        wide = labels.clamp_max(1)
        st = init_state(x, wide, K, cfg.mstep, ctx.floor)
        over = SplitBySpread(0.5).scores(ctx, x, wide, st).score > 0.5
        n_over += int(over.sum())
        assert bool((SplitByCoinFlip(0.5, p).scores(ctx, x, wide, st).score > 0.5)[over].all())
    assert n_over >= 20
    frac = heads / total                                        # binomial, n = 1200: sd <= 0.015
    assert abs(frac - p) <= 0.06, frac


def test_coin_flip_split_splits_where_the_spread_rule_does_not():
    """End to end, on units made of 4 tight clusters (seeded with 4 components): the spread rule at 0.5 never
    splits, the coin rule does (a unit leaves the rounds when none of its 4 coins is heads: all 6 units in the
    first round with p = 2^-24), with the same result for the same seed."""
    x, _, _ = _tight_clusters(0, G=6, K=4, per=100, D=8)
    tokens = x.transpose(0, 1).float().contiguous()
    kw = dict(init_components=4, max_components=12, em_iters=5, min_cluster_size=5, merge=False,
              split_threshold=0.5, search_samples=None)
    spread = DynamicGaussianAnchoring(6, 8, split="spread", **kw).refit(tokens)
    coin = DynamicGaussianAnchoring(6, 8, split="coin", **kw).refit(tokens)
    assert int(spread.last_refit["n_split"].sum()) == 0 and spread.n_components.tolist() == [4] * 6
    assert int(coin.last_refit["n_split"].sum()) > 0
    again = DynamicGaussianAnchoring(6, 8, split="coin", **kw).refit(tokens)
    assert torch.equal(again.n_components, coin.n_components)   # seeded: the same coins
