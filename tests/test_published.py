"""The published-behaviour switches of DyGA (DESIGN §6a): min-max normalisation, the normalised anchor mixed
into the raw token with one λ per batch (``shift="published"``), against a per-unit loop oracle."""
import pytest
import torch
from hypothesis import assume, given, settings, strategies as hs

from dga_fast import DynamicGaussianAnchoring
from dga_fast.data import make_unit_tokens
from dga_fast.mixture.normalise import Normaliser
from dga_fast.ops.anchor_shift.reference import published_anchor_shift, published_lambda
from helpers import brute_estep, random_state


def _naive_published(c, st, align_max):
    """One unit at a time: the batch's min-max coordinates, k* by the brute-force E-step, the normalised mean
    mixed into the raw token, one λ for the batch. Also the smallest gap between the best and the second-best
    log-responsibility (a near tie may pick either component)."""
    c = c.double()
    mus, gap = torch.empty_like(c), float("inf")
    for u in range(c.shape[1]):
        x = c[:, u]
        hi, lo = x.max(), x.min()
        n = (x - hi) / ((hi - lo) if hi > lo else 1.0)
        lp, _ = brute_estep(n.unsqueeze(0), st.index_groups(torch.tensor([u])))
        top = lp[0].topk(min(2, lp.shape[-1]), -1).values
        if top.shape[-1] == 2:
            gap = min(gap, float((top[:, 0] - top[:, 1]).min()))
        mus[:, u] = st.means[u, lp[0].argmax(-1)].double()
    lam = align_max * torch.exp(-((c - mus).abs() / (c.abs() + 1e-6)).mean())
    return c + lam * (mus - c), mus, gap


def test_minmax_normaliser_known_answer():
    x = torch.tensor([[[1.0, 3.0], [5.0, -3.0]], [[2.0, 2.0], [2.0, 2.0]]])   # [G=2, N=2, D=2]
    norm = Normaliser.fit_minmax(x)
    assert norm.shift.tolist() == [[5.0, 5.0], [2.0, 2.0]] and norm.scale.tolist() == [8.0, 1.0]
    assert norm.collapsed.tolist() == [False, True]
    y = norm(x)
    assert float(y[0].max()) == 0.0 and float(y[0].min()) == -1.0          # the range is [-1, 0]
    assert torch.equal(y[1], torch.zeros(2, 2))


@settings(max_examples=12, deadline=None)
@given(B=hs.integers(1, 9), U=hs.integers(1, 4), K=hs.integers(1, 5), D=hs.integers(1, 7),
       seed=hs.integers(0, 2 ** 16))
def test_published_shift_matches_the_loop_oracle(B, U, K, D, seed):
    g = torch.Generator().manual_seed(seed)
    st = random_state(U, K, D, max(1, D - 1), seed=seed, scale=0.3)
    c = torch.rand(B, U, D, generator=g, dtype=torch.float64) * 3 - 1
    ref, _, gap = _naive_published(c, st, 0.1)
    assume(gap > 1e-6)                               # every k* unambiguous (λ is shared by the batch)
    out = published_anchor_shift(c, st, 0.1)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9 * float(c.abs().max()))


def test_published_shift_uses_one_lambda_and_depends_on_the_batch():
    """The ratio (c' − c)/(μ − c) is one number for the whole batch, and a token's shift changes when another
    token joins its batch (the per-batch normalisation the published code has)."""
    st = random_state(2, 3, 4, 2, seed=3, scale=0.3)
    c = torch.rand(6, 2, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    out = published_anchor_shift(c, st, 0.1)
    _, mus, _ = _naive_published(c, st, 0.1)
    ratio = (out - c) / (mus - c)
    assert float(ratio.max() - ratio.min()) < 1e-12 and 0 < float(ratio[0, 0, 0]) <= 0.1
    wider = torch.cat([c, c[:1] * 10])
    assert not torch.allclose(published_anchor_shift(wider, st, 0.1)[:6], out)


def test_published_lambda_is_the_shifts_lambda_and_collapses_on_small_tokens():
    """``published_lambda`` returns the λ and μ the shift uses; a few tokens near 0 (of either sign) drive the
    mean of |c − μ| / |c| up and λ toward 0, as measured on the study's trained models."""
    st = random_state(2, 3, 4, 2, seed=3, scale=0.3)
    c = torch.rand(6, 2, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    lam, mu = published_lambda(c, st, 0.1)
    ref, mus, _ = _naive_published(c, st, 0.1)
    torch.testing.assert_close(mu, mus)
    torch.testing.assert_close(c + lam * (mu - c), ref)
    near_zero = c.clone()
    near_zero[:, :, 0] = 1e-4 * torch.tensor([1.0, -1.0]).repeat(3)[:, None]   # a quarter of the dims near 0
    lam0, mu0 = published_lambda(near_zero, st, 0.1)
    ratio = ((near_zero - mu0).abs() / (near_zero.abs() + 1e-6)).mean()
    assert float(lam0) == pytest.approx(0.1 * float(torch.exp(-ratio)), rel=1e-12) and float(lam0) < 1e-10


def test_published_shift_gradcheck():
    st = random_state(2, 3, 3, 2, seed=1, scale=0.3)
    c = (torch.rand(4, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.5)
    assert torch.autograd.gradcheck(lambda x: published_anchor_shift(x, st, 0.1), (c.requires_grad_(),),
                                    eps=1e-7, atol=1e-6)


def test_dyga_with_the_published_shift_end_to_end():
    data = make_unit_tokens(3, 600, 6, seed=0)
    tok = data.tokens.relu()                                     # ReLU-shaped, as the published extractor's
    dyga = DynamicGaussianAnchoring(3, 6, init_components=3, shift="published", seed=0).refit(tok)
    assert torch.equal(dyga.norm_shift, tok.amax((0, 2)).unsqueeze(1).expand(3, 6))
    assert "shift='published'" in repr(dyga)
    x = tok[:32].clone().requires_grad_()
    out = dyga(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, published_anchor_shift(x, dyga.state, dyga.align_max))
    (g,) = torch.autograd.grad(out, x, torch.randn_like(out))
    assert torch.isfinite(g).all()
    assert dyga.assign(tok[:32]).shape == (32, 3)
    ours = DynamicGaussianAnchoring(3, 6, init_components=3, seed=0).refit(tok)
    assert not torch.allclose(ours(tok[:32]), out)


def test_unknown_shift_is_refused():
    with pytest.raises(ValueError, match="shift must be one of"):
        DynamicGaussianAnchoring(2, 4, shift="paper")


def test_epoch_refit_schedule_is_once_per_epoch_on_all_images():
    from dga_fast.refit_schedule import RefitSchedule
    from dga_fast.train import TrainConfig
    cfg = TrainConfig(batch_size=16, refit_schedule="epoch").validate()
    s = RefitSchedule.from_config(cfg, 1000, world=2)
    assert (s.every, s.warmup, s.samples) == (32, 32, 1000)          # ceil(1000 / 32)
    assert [t for t in range(1, 100) if s.due(t)] == [32, 64, 96]
    assert RefitSchedule.from_config(cfg, 250_000).samples == 25_000  # a tenth above 100k
    steps = RefitSchedule.from_config(TrainConfig(refit_every=7, refit_warmup=3, refit_samples=5), 1000)
    assert (steps.every, steps.warmup, steps.samples) == (7, 3, 5)
    with pytest.raises(ValueError, match="refit_schedule"):
        TrainConfig(refit_schedule="weekly").validate()


def test_published_dyga_switch_of_the_cli():
    from dga_fast.presets import use_published_dyga
    from dga_fast.presets import PRESETS
    model_cfg = dict(PRESETS["tiny"]["model"])
    train_cfg = dict(PRESETS["tiny"]["train"])
    use_published_dyga(model_cfg, train_cfg)
    a = model_cfg["anchoring"]
    assert (a["split"], a["split_threshold"], a["shift"], a["init_components"]) == ("coin", 0.5, "published", 8)
    assert train_cfg["refit_schedule"] == "epoch"
    assert PRESETS["tiny"]["model"]["anchoring"].get("shift") is None    # the preset itself is unchanged
    with pytest.raises(ValueError, match="--no-anchoring"):
        use_published_dyga({"anchoring": None}, {})


def test_a_model_with_the_published_dyga_trains(tmp_path):
    """Refit then a training step with the published switches on, end to end through fit()."""
    torch.manual_seed(0)   # the model's initial weights: not whatever the tests before left in the global RNG
    from dga_fast import AnchoredDiffusion
    from dga_fast.presets import PUBLISHED_DYGA
    from dga_fast.train import fit
    model = AnchoredDiffusion(image_size=8, num_units=3, unit_dim=4, base_channels=8, channel_mult=(1, 2),
                              num_res_blocks=1, attention_resolutions=(2,), num_heads=2,
                              anchoring=dict(init_components=2, max_components=4, em_iters=3,
                                             min_cluster_size=2, **PUBLISHED_DYGA["anchoring"]))
    data = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    h = fit(model, data, tmp_path, steps=12, batch_size=8, refit_schedule="epoch", progress=False, log_every=1)
    assert h["refit_steps"] == [5, 10]                                # ceil(40 / 8) = 5
    assert all(torch.isfinite(torch.tensor(l)) for _, l in h["losses"])
    assert model.anchoring.shift_rule.name == "published"
    # benchmarks/published_lambda.py: its shift is the published shift of the model's tokens (computed in float64:
    # at this λ, c' − c in float32 is mostly rounding), at most align_max's pull
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from published_lambda import measure
    from dga_fast.train import get_batch
    r = measure(model.eval(), data, 8, 2)
    assert 0 < r["lambda"] <= 0.1 and len(r["per_batch"]) == 2
    g = torch.Generator().manual_seed(0)
    for row in r["per_batch"]:        # the same seeded batches
        with torch.no_grad():
            c = model.encode(get_batch(data, torch.randint(len(data), (8,), generator=g))).double()
            rel = (published_anchor_shift(c, model.anchoring.state, 0.1) - c).norm(dim=-1) / c.norm(dim=-1)
        assert row["shift_rel"] == pytest.approx(float(rel.mean()), rel=1e-4, abs=1e-9)
