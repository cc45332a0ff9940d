"""AnchoredDiffusion, its building blocks, training, checkpoints and resume (tiny sizes)."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dga_fast import AnchoredDiffusion, ops
from dga_fast.checkpoint import latest_checkpoint
from dga_fast.data import SyntheticShapes
from dga_fast.nn import DecoderInput, FeatureExtractor
from dga_fast.train import fit
from helpers import TRAIN, kill_after_checkpoint, tiny

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def shapes16():
    return SyntheticShapes(16)


# ---------------------------------------------------------------------------------------------- blocks
def test_skip_block_reference_matches_unfused_module_and_gradcheck():
    torch.manual_seed(0)
    blk = DecoderInput(6, 4, groups=5, p=0.3, fused=True).double()
    h, skip = torch.randn(3, 6, 5, 5, dtype=torch.float64), torch.randn(3, 4, 5, 5, dtype=torch.float64)
    mask = (torch.rand(3, 4) > 0.3).double()
    x_cat, y = ops.skip_dropout_concat_norm_silu(h, skip, mask, 0.3, blk.norm.weight, blk.norm.bias, 5)
    ref_cat = torch.cat([h, skip * mask[:, :, None, None] / 0.7], 1)
    torch.testing.assert_close(x_cat, ref_cat)
    torch.testing.assert_close(y, torch.nn.functional.silu(blk.norm(ref_cat)))
    hh, ss = h.clone().requires_grad_(), skip.clone().requires_grad_()
    w, b = blk.norm.weight.detach().clone().requires_grad_(), blk.norm.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, c, ww, bb: ops.skip_dropout_concat_norm_silu(a, c, mask, 0.3, ww, bb, 5), (hh, ss, w, b))
    blk.eval()   # eval: all-ones mask, no scaling
    x_cat, _ = blk(h, skip)
    torch.testing.assert_close(x_cat, torch.cat([h, skip], 1))


def test_feature_extractor_grouped_mlp_matches_loop():
    fe = FeatureExtractor(16, 3, 5, 7, channels=8)
    s = torch.randn(4, 5)
    tok = fe.tokens_from_units(s)
    for u in range(5):
        h = torch.nn.functional.silu(s[:, u:u + 1] @ fe.mlp.w1[u] + fe.mlp.b1[u])
        torch.testing.assert_close(tok[:, u], h @ fe.mlp.w2[u] + fe.mlp.b2[u])


def test_synthetic_shapes(shapes16):
    assert len(shapes16) == 480_000 and shapes16.factor_sizes == (10, 10, 10, 8, 4, 15)
    idx = torch.tensor([0, 1, 12345, 479_999])
    torch.testing.assert_close(shapes16.factors_to_index(shapes16.index_to_factors(idx)), idx)
    img, f = shapes16[12345]
    assert img.shape == (3, 16, 16) and 0 <= float(img.min()) and float(img.max()) <= 1
    torch.testing.assert_close(shapes16.images_from_factors(f[None])[0], img)
    a = shapes16.images_from_factors([[0, 0, 0, 0, 0, 0]])
    b = shapes16.images_from_factors([[0, 0, 5, 0, 0, 0]])
    assert float((a - b).abs().max()) > 0.2, "object hue must change the image"
    with pytest.raises(ValueError, match="out of range"):
        shapes16.images_from_factors([[10, 0, 0, 0, 0, 0]])


# ---------------------------------------------------------------------------------------------- model
def test_save_load_round_trip_identical_encode_and_sample(tmp_path, shapes16):
    m = tiny()
    x = shapes16.get_batch(torch.arange(0, 480_000, 40_000))[0]
    m.refit_anchors(x)
    m.save(tmp_path / "ck")
    m2 = AnchoredDiffusion.load(tmp_path / "ck")
    assert torch.equal(m.encode(x), m2.encode(x))
    s1 = m.sample(m.encode(x[:2]), steps=4, generator=torch.Generator().manual_seed(3))
    s2 = m2.sample(m2.encode(x[:2]), steps=4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)
    assert torch.equal(m.anchoring.means, m2.anchoring.means) and m2.anchoring.fitted


def test_loading_a_pickle_is_refused_and_does_not_run(tmp_path):
    tiny().save(tmp_path / "ck")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    import pickle
    (tmp_path / "ck" / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="not a valid safetensors"):
        AnchoredDiffusion.load(tmp_path / "ck")
    assert not marker.exists()
    torch.save({"x": Evil()}, tmp_path / "ck" / "model.safetensors")
    with pytest.raises(ValueError, match="not a valid safetensors"):
        AnchoredDiffusion.load(tmp_path / "ck")
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        AnchoredDiffusion.load(tmp_path / "nowhere")


def test_training_lowers_loss_and_refits_on_schedule(tmp_path, shapes16):
    m = tiny()
    h = fit(m, shapes16, tmp_path / "run", steps=40, **{**TRAIN, "refit_every": 15, "refit_warmup": 10})
    assert h["refit_steps"] == [10, 25, 40]
    losses = [v for _, v in h["losses"]]
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.85 * first, (first, last)
    assert m.anchoring.fitted and int(m.anchoring.n_refits) == 3
    # tokens after the refit are shifted as DyGA's forward prescribes
    x = shapes16.get_batch(torch.arange(8))[0]
    tok = m.encode(x)
    cond = m.condition(tok)
    k = m.anchoring.assign(tok)
    mu = m.anchoring.means[torch.arange(4), k]
    lam = 0.1 * torch.exp(-(tok - mu).abs().sum(-1, keepdim=True) / (tok.abs().sum(-1, keepdim=True) + 1e-6))
    torch.testing.assert_close(cond, tok + lam * (mu - tok))


@pytest.mark.parametrize("extra", [{}, {"lr_schedule": "cosine", "ema_decay": 0.8}], ids=["constant", "cosine-ema"])
def test_resume_gives_the_same_weights(tmp_path, shapes16, extra):
    a = tiny()
    fit(a, shapes16, tmp_path / "a", steps=12, **TRAIN, **extra)
    b = tiny()
    with pytest.raises(_Stop):     # after step 7: resumes from the checkpoint of step 5
        fit(b, shapes16, tmp_path / "b", steps=12, **TRAIN, **extra, callback=_stop_after(7))
    b2 = tiny()
    fit(b2, shapes16, tmp_path / "b", steps=12, resume=True, **TRAIN, **extra)
    pairs = [(a, b2)]
    if extra.get("ema_decay"):
        pairs.append((AnchoredDiffusion.load(tmp_path / "a", ema=True), AnchoredDiffusion.load(tmp_path / "b", ema=True)))
    for m1, m2 in pairs:
        sa, sb = m1.state_dict(), m2.state_dict()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-5, msg=k)


class _Stop(Exception):
    pass


def _stop_after(n):
    """A callback that interrupts training after step ``n``: the interrupted run keeps the config (``steps``,
    hence the lr schedule) of the uninterrupted one."""
    def cb(step, model):
        if step == n:
            raise _Stop
    return cb


def test_sigkill_leaves_a_loadable_checkpoint(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dga_fast", "train", "--out", str(run), "--steps", "400", "--ckpt-every", "2",
           "--image-size", "16", "--no-progress"]
    kill_after_checkpoint(cmd, ROOT, run, 6)
    m = AnchoredDiffusion.load(run)
    assert isinstance(m, AnchoredDiffusion)
    # every checkpoint directory is complete (a half-written one only ever exists under a temporary name)
    for ck in (run / "checkpoints").glob("step_*"):
        names = {p.name for p in ck.iterdir()}
        assert {"model.safetensors", "optimizer.safetensors", "config.json", "train_state.json"} <= names
    # and training resumes from the last one
    proc = subprocess.run(cmd[:6] + ["--steps", str(int(latest_checkpoint(run).name[5:]) + 2), "--resume",
                           "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_bad_input(tmp_path, shapes16):
    m = tiny()
    with pytest.raises(ValueError, match=r"\[B>0, 3, 16, 16\]"):
        m.encode(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B>0, 3, 16, 16\]"):
        m.loss(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="NaN or Inf"):
        m.loss(torch.full((2, 3, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="empty"):
        fit(m, [], steps=2, progress=False)
    with pytest.raises(ValueError, match=r"\[B>0, 3, 16, 16\]"):
        fit(m, SyntheticShapes(32), steps=2, progress=False)
    with pytest.raises(ValueError, match="image_size"):
        AnchoredDiffusion(image_size=20, channel_mult=(1, 2, 4, 4))
    with pytest.raises(ValueError, match="unit"):
        m.interchange(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), unit=9)
    proc = subprocess.run([sys.executable, "-m", "dga_fast", "train", "--out", str(tmp_path / "r"), "--resume",
                           "--image-size", "16"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "--resume" in proc.stderr


def test_interchange_of_all_units_reproduces_the_target(shapes16):
    """A tiny model trained for 600 steps: generating from the source with every unit's token taken from
    the target lands closer to the target than to the source (pixel MSE, same noise). An untrained
    model does not (ratio ~1), so this can fail. (At 300 steps the ratio was 0.93 on this CPU, with the earlier
    refit as with the current one: too short to show the conditioning with a 10% margin; at 600 it is 0.74.)"""
    torch.manual_seed(0)
    m = AnchoredDiffusion(image_size=16, num_units=6, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_heads=2,
                          anchoring=dict(init_components=4, min_cluster_size=8))
    fit(m, shapes16, None, steps=600, batch_size=16, lr=2e-3, refit_warmup=150, refit_every=150,
        refit_samples=512, progress=False)
    g = torch.Generator().manual_seed(1)
    src = shapes16.get_batch(torch.randint(0, len(shapes16), (8,), generator=g))[0]
    tgt = shapes16.get_batch(torch.randint(0, len(shapes16), (8,), generator=g))[0]
    out = m.interchange(src, tgt, None, steps=10, generator=torch.Generator().manual_seed(0))
    mse_tgt, mse_src = float(((out - tgt) ** 2).mean()), float(((out - src) ** 2).mean())
    assert mse_tgt < 0.9 * mse_src, (mse_tgt, mse_src)


def test_amp_ema_and_encdiff_baseline(tmp_path, shapes16):
    m = tiny()
    fit(m, shapes16, tmp_path / "r", steps=4, amp=True, ema_decay=0.9, **{**TRAIN, "ckpt_every": 2})
    ck = latest_checkpoint(tmp_path / "r")
    assert (ck / "ema.safetensors").exists()
    m2 = tiny()
    fit(m2, shapes16, tmp_path / "r", steps=6, amp=True, ema_decay=0.9, resume=True, **{**TRAIN, "ckpt_every": 2})
    base = tiny(anchoring=None, skip_dropout=0.0)
    assert base.anchoring is None
    h = fit(base, shapes16, None, steps=3, **TRAIN)
    assert len(h["losses"]) == 3 and h["refit_steps"] == []
    x = shapes16.get_batch(torch.arange(2))[0]
    torch.testing.assert_close(base.condition(base.encode(x)), base.encode(x))


def test_ddim_eta(shapes16):
    m = tiny()
    tok = m.encode(shapes16.get_batch(torch.arange(2))[0])
    a = m.sample(tok, steps=3, eta=0.0, generator=torch.Generator().manual_seed(0))
    b = m.sample(tok, steps=3, eta=0.0, generator=torch.Generator().manual_seed(0))
    c = m.sample(tok, steps=3, eta=1.0, generator=torch.Generator().manual_seed(0))
    d = m.sample(tok, steps=3, eta=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(c, d) and not torch.equal(a, c)
    assert a.shape == (2, 3, 16, 16) and 0 <= float(a.min()) and float(a.max()) <= 1


def test_cli_resume_equals_uninterrupted(tmp_path):
    from dga_fast.checkpoint import read_tensors
    base = [sys.executable, "-m", "dga_fast", "train", "--no-progress"]

    def run(out, steps, *extra):
        p = subprocess.run(base + ["--out", str(out), "--steps", str(steps), *extra], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
    new = ("--image-size", "16", "--ckpt-every", "10")
    run(tmp_path / "a", 40, *new)
    run(tmp_path / "b", 20, *new)
    run(tmp_path / "b", 40, "--resume")
    wa = read_tensors(latest_checkpoint(tmp_path / "a") / "model.safetensors")
    wb = read_tensors(latest_checkpoint(tmp_path / "b") / "model.safetensors")
    assert latest_checkpoint(tmp_path / "b").name == "step_0000040"
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-5, msg=k)


def test_attention_maps_interpolate_representation(shapes16, tmp_path):
    m = tiny()
    x = shapes16.get_batch(torch.arange(0, 480_000, 60_000))[0]
    maps = m.attention_maps(x)
    assert maps.shape == (8, 4, 16, 16)
    torch.testing.assert_close(maps.sum(1), torch.ones(8, 16, 16), atol=1e-4, rtol=0)
    seq = m.interpolate(x[:1], x[1:2], unit=[0, 2], n=3, steps=3, generator=torch.Generator().manual_seed(0))
    assert seq.shape == (3, 3, 16, 16)
    r0 = m.representation(x)
    torch.testing.assert_close(r0, m.latent_units(x))          # before any refit: the scalar units
    m.refit_anchors(x.repeat(4, 1, 1, 1) + 0.01 * torch.rand(32, 3, 16, 16))
    r1 = m.representation(x)
    tok = m.encode(x)
    torch.testing.assert_close(r1, ((tok - m.pc_mean) * m.pc_dir).sum(-1))
    torch.testing.assert_close(m.pc_dir.norm(dim=-1), torch.ones(4))
    # a corrupt config is a clear error, not a crash
    m.save(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        AnchoredDiffusion.load(tmp_path / "ck")


def test_ema_weights_follow_their_oracle_and_the_lr_its_schedule(tmp_path, shapes16):
    """ema.safetensors = the lerp recursion over the parameters after each step (buffers are the live model's);
    the logged lr of every step is ``lr_at`` of its progress."""
    import json
    from dga_fast.lr_schedule import lr_at
    m, decay, steps = tiny(), 0.7, 10
    shadow = {k: p.detach().clone() for k, p in m.named_parameters()}

    def track(step, model):
        for k, p in model.named_parameters():
            shadow[k].lerp_(p.detach(), 1 - decay)
    fit(m, shapes16, tmp_path / "r", steps=steps, ema_decay=decay, lr_schedule="cosine", lr_warmup=0.2,
        callback=track, **{**TRAIN, "log_every": 1})
    e = AnchoredDiffusion.load(tmp_path / "r", ema=True)
    live = AnchoredDiffusion.load(tmp_path / "r")
    params = dict(e.named_parameters())
    for k, v in shadow.items():
        torch.testing.assert_close(params[k], v, rtol=1e-5, atol=1e-6, msg=k)
    for k, b in e.named_buffers():
        torch.testing.assert_close(b, dict(live.named_buffers())[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(params[k], p) for k, p in live.named_parameters())
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (tmp_path / "r" / "log.jsonl").read_text().splitlines())
           if "loss" in r}
    assert sorted(lrs) == list(range(1, steps + 1))
    for s, lr in lrs.items():
        assert lr == pytest.approx(lr_at("cosine", TRAIN["lr"], (s - 1) / steps, 0.2), rel=1e-12)
    assert lrs[1] < 1e-6 and lrs[3] == pytest.approx(TRAIN["lr"] * 0.5 * (1 + math.cos(math.pi * 0.2)))
    # a run without EMA, bad schedules: clear errors
    fit(tiny(), shapes16, tmp_path / "n", steps=2, **TRAIN)
    with pytest.raises(FileNotFoundError, match="ema.safetensors"):
        AnchoredDiffusion.load(tmp_path / "n", ema=True)
    with pytest.raises(ValueError, match="lr_schedule"):
        fit(tiny(), shapes16, None, steps=2, lr_schedule="step", **TRAIN)
    with pytest.raises(ValueError, match="lr_warmup"):
        fit(tiny(), shapes16, None, steps=2, lr_warmup=1.5, **TRAIN)


def test_classifier_free_guidance_combines_the_two_branches():
    """cond_dropout trains a null condition on a fraction of the batch; sample(guidance=w) uses
    ε_null + w (ε_tokens − ε_null): w = 1 is the plain sampler, w = 0 the unconditional one; a model without
    the null branch refuses w != 1; bad values are clear errors."""
    torch.manual_seed(0)
    kw = dict(image_size=16, num_units=3, unit_dim=4, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
              attention_resolutions=(2,), num_heads=2, anchoring=None)
    m = AnchoredDiffusion(**kw, cond_dropout=0.5)
    with torch.no_grad():                       # the U-Net's zero-initialised outputs would hide the condition
        m.null_tokens.normal_()
        for p in m.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(6, 3, 16, 16)
    loss = m.loss(x, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert m.null_tokens.grad is not None and float(m.null_tokens.grad.abs().sum()) > 0
    m.eval()
    tok = m.encode(x[:2])
    noise = torch.randn((2,) + m.diffusion_shape, generator=torch.Generator().manual_seed(1))
    plain = m.sample(tok, steps=3, noise=noise)
    assert torch.allclose(m.sample(tok, steps=3, noise=noise, guidance=1.0), plain)
    uncond = m.sample(m.null_tokens.expand(2, -1, -1).clone(), steps=3, noise=noise)
    torch.testing.assert_close(m.sample(tok, steps=3, noise=noise, guidance=0.0), uncond, rtol=1e-4, atol=1e-5)
    # w = 2 extrapolates the first ε past the conditional one
    seen = {}
    orig = m.schedule.ddim
    m.schedule.ddim = lambda eps_fn, x_T, *a, **k: seen.setdefault("eps", eps_fn(x_T, torch.full((2,), 999)))
    m.sample(tok, steps=3, noise=noise, guidance=2.0)
    m.schedule.ddim = orig
    t = torch.full((2,), 999)
    with torch.no_grad():
        e_c, e_u = m.unet(noise, t, m.condition(tok)), m.unet(noise, t, m.null_tokens.expand(2, -1, -1))
    torch.testing.assert_close(seen["eps"], e_u + 2 * (e_c - e_u), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="guidance"):
        m.sample(tok, steps=2, guidance=-1.0)
    m.config["guidance"] = 2.0                        # the model's default scale, as AnchoredDiffusion(guidance=2)
    torch.testing.assert_close(m.sample(tok, steps=3, noise=noise), m.sample(tok, steps=3, noise=noise, guidance=2.0))
    with pytest.raises(ValueError, match="cond_dropout"):
        AnchoredDiffusion(**kw, guidance=2.0)
    with pytest.raises(ValueError, match="cond_dropout"):
        AnchoredDiffusion(**kw).sample(tok, steps=2, guidance=2.0)
    for bad in (1.0, -0.1, "0.1"):
        with pytest.raises(ValueError, match="cond_dropout"):
            AnchoredDiffusion(**kw, cond_dropout=bad)
