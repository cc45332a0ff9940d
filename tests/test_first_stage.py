"""FirstStage (VQ autoencoder), its training loop, the latent cache and the latent AnchoredDiffusion
(issue 14), at tiny sizes."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dga_fast import AnchoredDiffusion, FirstStage
from dga_fast.checkpoint import latest_checkpoint
from dga_fast.data import SyntheticShapes
from dga_fast.latent_cache import LatentCache, LatentDataset, StaleLatentCache, weights_fingerprint
from dga_fast.nn import VectorQuantizer
from dga_fast.train import fit
from dga_fast.train_autoencoder import fit_autoencoder
from helpers import kill_after_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FS = dict(image_size=16, ch=8, ch_mult=(1, 2), num_res_blocks=1, num_codes=64)
AE_TRAIN = dict(batch_size=4, eval_images=8, eval_every=3, ckpt_every=3, log_every=1, progress=False,
                lr_schedule="constant")
DIFF = dict(image_size=16, num_units=3, unit_dim=4, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
            attention_resolutions=(2,), num_heads=2, anchoring=dict(init_components=2, em_iters=3,
                                                                     search_samples=None, min_cluster_size=4))


def first_stage(seed=0, **kw):
    torch.manual_seed(seed)
    return FirstStage(**{**FS, **kw})


@pytest.fixture(scope="module")
def shapes16():
    return SyntheticShapes(16)


# ------------------------------------------------------------------------------------------ quantiser
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 37), k=st.integers(2, 19), d=st.integers(1, 5), seed=st.integers(0, 99))
def test_nearest_code_matches_brute_force(n, k, d, seed):
    g = torch.Generator().manual_seed(seed)
    vq = VectorQuantizer(k, d)
    vq.codebook.copy_(torch.randn(k, d, generator=g))
    x = torch.randn(n, d, generator=g, dtype=torch.float32)
    dist = ((x[:, None, :] - vq.codebook[None]) ** 2).sum(-1)                 # [n, k] oracle
    got = vq.nearest(x)
    # ties aside, the chosen code is at the minimum distance
    torch.testing.assert_close(dist[torch.arange(n), got], dist.min(1).values, rtol=1e-5, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(b=st.integers(1, 3), d=st.integers(1, 4), h=st.integers(1, 5), seed=st.integers(0, 99))
def test_straight_through_gradient_and_commitment(b, d, h, seed):
    g = torch.Generator().manual_seed(seed)
    vq = VectorQuantizer(11, d).eval()
    z = torch.randn(b, d, h, h + 1, generator=g, requires_grad=True)
    q, commit, codes = vq(z)
    assert q.shape == z.shape and codes.shape == (b, h, h + 1)
    torch.testing.assert_close(q.detach().permute(0, 2, 3, 1).reshape(-1, d), vq.codebook[codes.reshape(-1)])
    up = torch.randn(q.shape, generator=g)
    (zg,) = torch.autograd.grad((q * up).sum(), z)
    torch.testing.assert_close(zg, up)                                        # identity gradient
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, d)
    torch.testing.assert_close(commit, ((flat - vq.codebook[codes.reshape(-1)]) ** 2).mean())


def test_ema_update_matches_a_loop_oracle():
    g = torch.Generator().manual_seed(0)
    vq = VectorQuantizer(6, 2, decay=0.9, restart_after=10**9)
    vq.codebook.copy_(torch.randn(6, 2, generator=g))
    vq.ema_sum.copy_(vq.codebook)
    vq.initialised.fill_(True)
    x = torch.randn(40, 2, generator=g)
    count, total = vq.ema_count.clone(), vq.ema_sum.clone()
    idx = vq.nearest(x)
    for kk in range(6):                                                       # oracle: one code at a time
        m = idx == kk
        count[kk] = 0.9 * count[kk] + 0.1 * m.sum()
        total[kk] = 0.9 * total[kk] + 0.1 * x[m].sum(0)
    vq._update(x, idx)
    torch.testing.assert_close(vq.ema_count, count)
    n = count.sum()
    torch.testing.assert_close(vq.codebook, total / ((count + vq.eps) / (n + 6 * vq.eps) * n)[:, None])


def test_dead_codes_are_restarted_on_batch_vectors():
    vq = VectorQuantizer(8, 2, decay=0.5, restart_after=3).train()
    x = torch.randn(2, 2, 3, 3)
    vq(x)                                       # initialises on the batch
    far = torch.full((1, 2, 3, 3), 50.0)
    for _ in range(4):                          # only one code is chosen: the others go idle and restart
        vq(far)
    assert int(vq.restarts) > 0
    assert vq.usage() > 0
    assert (vq.codebook - 50).abs().max(1).values.min() < 1.0    # some codes now sit at the data


# ------------------------------------------------------------------------------------------ first stage
@settings(max_examples=6, deadline=None)
@given(levels=st.integers(1, 3), m=st.integers(1, 5), ch=st.sampled_from([4, 6]))
def test_latent_shape_follows_the_downsampling_rule(levels, m, ch):
    f = 2 ** (levels - 1)
    s = f * m                                                    # odd and non-power-of-two sizes too
    fs = FirstStage(image_size=s, ch=ch, ch_mult=(1,) * levels, num_res_blocks=1, num_codes=16)
    z = fs.encode(torch.rand(2, 3, s, s))
    assert z.shape == (2, 3, m, m) == (2, *fs.latent_shape)
    assert fs.decode(z).shape == (2, 3, s, s)


def test_official_config_maps_64_to_16x16x3():
    fs = FirstStage()
    assert fs.latent_shape == (3, 16, 16)
    assert fs.quantizer.codebook.shape == (2048, 3)
    assert FirstStage(image_size=32).latent_shape == (3, 8, 8)


def test_save_load_is_bit_identical_and_pickles_are_refused(tmp_path, shapes16):
    fs = first_stage()
    fit_autoencoder(fs, shapes16, None, steps=2, **AE_TRAIN)        # a codebook that moved
    x = shapes16.get_batch(torch.arange(5))[0]
    fs.save(tmp_path / "fs")
    fs2 = FirstStage.load(tmp_path / "fs")
    fs.eval(), fs2.eval()
    assert torch.equal(fs.encode(x), fs2.encode(x))
    assert torch.equal(fs.decode(fs.encode(x)), fs2.decode(fs2.encode(x)))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    (tmp_path / "fs" / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="not a valid safetensors"):
        FirstStage.load(tmp_path / "fs")
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        FirstStage.load(tmp_path / "missing")


def test_bad_input():
    with pytest.raises(ValueError, match="image_size"):
        FirstStage(image_size=18, ch_mult=(1, 2, 4))
    fs = first_stage()
    with pytest.raises(ValueError, match=r"\[B>0, 3, 16, 16\]"):
        fs.encode(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        fs.encode(torch.full((1, 3, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="latent shape"):
        fs.decode(torch.rand(1, 3, 4, 4))
    with pytest.raises(TypeError):
        fs.encode(np.zeros((1, 3, 16, 16)))


def test_autoencoder_training_lowers_the_loss_logs_psnr_and_resumes_exactly(tmp_path, shapes16):
    a = first_stage()
    h = fit_autoencoder(a, shapes16, tmp_path / "a", steps=9, **AE_TRAIN)
    assert [s for s, _ in h["psnr"]] == [3, 6, 9]
    assert h["losses"][-1][1] < h["losses"][0][1]
    log = (tmp_path / "a" / "log.jsonl").read_text()
    assert '"event": "eval"' in log and '"psnr"' in log and '"codes_used"' in log and '"perplexity"' in log
    b = first_stage()
    fit_autoencoder(b, shapes16, tmp_path / "b", steps=6, **AE_TRAIN)
    b2 = first_stage(seed=5)                                   # other initial weights: all come from the checkpoint
    fit_autoencoder(b2, shapes16, tmp_path / "b", steps=9, resume=True, **AE_TRAIN)
    sa, sb = a.state_dict(), b2.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-5, msg=k)


def test_cosine_schedule_by_steps_and_by_time():
    from dga_fast.train_autoencoder import AutoencoderConfig
    c = AutoencoderConfig(steps=100, lr=1e-3).validate()
    assert c.lr_at(1, 0.0) < 1e-6                                   # warm-up from ~0
    assert c.lr_at(3, 0.0) == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 0.02)))
    assert c.lr_at(51, 0.0) == pytest.approx(0.5e-3)
    assert c.lr_at(101, 0.0) == pytest.approx(0.0, abs=1e-12)
    t = AutoencoderConfig(steps=100, lr=1e-3, max_seconds=10.0).validate()
    assert t.lr_at(2, 5.0) == pytest.approx(0.5e-3)                 # half the time budget spent
    assert t.lr_at(7, 9.0) == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 0.9)))   # behind pace: by the clock
    # before half the budget the clock has no say: a slow first step does not change the warm-up's rates
    for step, elapsed in ((1, 0.3), (2, 1.7), (40, 4.99)):
        assert t.lr_at(step, elapsed) == t.lr_at(step, 0.0)
    assert AutoencoderConfig(lr_schedule="constant").lr_at(7, 1e9) == 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        AutoencoderConfig(lr_schedule="step").validate()


def test_sigkill_during_train_autoencoder_leaves_a_resumable_run(tmp_path):
    run = tmp_path / "ae"
    cmd = [sys.executable, "-m", "dga_fast", "train-autoencoder", "--out", str(run), "--image-size", "16",
           "--steps", "2000", "--ckpt-every", "2", "--eval-every", "1000", "--batch-size", "2", "--no-progress"]
    kill_after_checkpoint(cmd, ROOT, run, 4)
    assert isinstance(FirstStage.load(run), FirstStage)
    last = int(latest_checkpoint(run).name[5:])
    p = subprocess.run(cmd[:6] + ["--steps", str(last + 2), "--resume", "--no-progress"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert latest_checkpoint(run).name == f"step_{last + 2:07d}"
    assert "held-out PSNR" in p.stdout


# ------------------------------------------------------------------------------------------ latent cache
def test_latent_cache_encodes_once_and_refuses_other_weights(tmp_path, shapes16):
    fs = first_stage().eval()
    key = {"name": "synthetic-shapes", "image_size": 16}
    cache = LatentCache(fs, shapes16, tmp_path / "c", key, batch_size=3, progress=False)
    idx = torch.tensor([7, 3, 7, 100_000])
    z = cache.get(idx)
    torch.testing.assert_close(z, fs.encode(shapes16.get_batch(idx)[0]))
    assert int(cache.filled.sum()) == 3 and cache.ensure(idx) == 0
    again = LatentCache(fs, shapes16, tmp_path / "c", key, progress=False)    # reopened: nothing re-encoded
    assert again.ensure(idx) == 0 and torch.equal(again.get(idx), z)
    other = first_stage(seed=1).eval()
    assert weights_fingerprint(other) != weights_fingerprint(fs)
    with pytest.raises(StaleLatentCache, match="first_stage_sha256: expected"):
        LatentCache(other, shapes16, tmp_path / "c", key, progress=False)
    with pytest.raises(StaleLatentCache, match="dataset"):
        LatentCache(fs, shapes16, tmp_path / "c", {**key, "name": "folder"}, progress=False)
    rebuilt = LatentCache(other, shapes16, tmp_path / "c", key, rebuild=True, progress=False)
    assert int(rebuilt.filled.sum()) == 0
    torch.testing.assert_close(rebuilt.get(idx[:1]), other.encode(shapes16.get_batch(idx[:1])[0]))
    (tmp_path / "c" / "cache.json").write_text("{ not json")
    with pytest.raises(StaleLatentCache):
        LatentCache(other, shapes16, tmp_path / "c", key, progress=False)


# ------------------------------------------------------------------------------------------ latent model
def latent_model(fs, **kw):
    torch.manual_seed(0)
    return AnchoredDiffusion(**{**DIFF, **kw}, first_stage=fs)


def test_latent_model_shapes_sampling_and_round_trip(tmp_path, shapes16):
    fs = first_stage()
    m = latent_model(fs)
    assert m.diffusion_shape == (3, 8, 8) and m.unet.inp.in_channels == 3
    x = shapes16.get_batch(torch.arange(4))[0]
    loss = m.loss(x, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and bool(m.latent_scale_fitted)
    assert not any(p.requires_grad for p in m.first_stage.parameters())
    m.train()
    assert not m.first_stage.training                        # the frozen codebook never updates
    s = m.sample(m.encode(x[:2]), steps=3, generator=torch.Generator().manual_seed(1))
    assert s.shape == (2, 3, 16, 16) and 0 <= float(s.min()) and float(s.max()) <= 1
    assert m.attention_maps(x[:2]).shape == (2, 3, 16, 16)
    assert m.interpolate(x[:1], x[1:2], 0, n=3, steps=2).shape == (3, 3, 16, 16)
    m.save(tmp_path / "m")
    m2 = AnchoredDiffusion.load(tmp_path / "m")
    assert m2.first_stage is not None and float(m2.latent_scale) == float(m.latent_scale)
    assert weights_fingerprint(m2.first_stage) == weights_fingerprint(m.first_stage)
    s2 = m2.sample(m2.encode(x[:2]), steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s, s2)


def test_sampler_clamps_x0_to_the_fitted_latent_range(tmp_path, shapes16):
    fs = first_stage().eval()
    m = latent_model(fs)
    x = shapes16.get_batch(torch.arange(5))[0]
    z = fs.encode(x)
    assert m._x0_clip() is None                              # nothing fitted: no clamp
    m.fit_latent_scale(z)
    want = float(z.abs().max() / z.std())
    assert abs(float(m.latent_clip) - want) <= 1e-5 * want
    seen = []
    ddim = m.schedule.ddim
    m.schedule.ddim = lambda *a, clip=None, **k: seen.append(clip) or ddim(*a, clip=clip, **k)
    m.sample(m.encode(x[:2]), steps=2, generator=torch.Generator().manual_seed(0))
    assert seen == [pytest.approx(want, rel=1e-5)]
    # a checkpoint written before the clamp existed loads, unclamped
    m.schedule.ddim = ddim
    m.save(tmp_path / "m")
    from safetensors.torch import load_file, save_file
    ck = latest_checkpoint(tmp_path / "m") or tmp_path / "m"
    w = ck / "model.safetensors"
    sd = load_file(w)
    assert "latent_clip" in sd
    del sd["latent_clip"]
    save_file(sd, w)
    assert AnchoredDiffusion.load(tmp_path / "m")._x0_clip() is None


def test_cached_latents_give_the_same_loss_as_encoding(tmp_path, shapes16):
    fs = first_stage().eval()
    m = latent_model(fs)
    idx = torch.arange(6)
    x = shapes16.get_batch(idx)[0]
    m.fit_latent_scale(fs.encode(x))
    cache = LatentCache(fs, shapes16, tmp_path / "c", {"name": "s"}, progress=False)
    torch.manual_seed(3)
    a = m.loss(x, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    b = m.loss(x, generator=torch.Generator().manual_seed(0), latents=cache.get(idx))
    torch.testing.assert_close(a, b)


def test_latent_training_resume_equals_uninterrupted(tmp_path, shapes16):
    fs = first_stage().eval()
    key = {"name": "synthetic-shapes", "image_size": 16}
    data = LatentDataset(shapes16, LatentCache(fs, shapes16, tmp_path / "c", key, progress=False))
    train = dict(batch_size=4, refit_every=4, refit_warmup=4, refit_samples=32, ckpt_every=3, progress=False)
    a = latent_model(fs)
    fit(a, data, tmp_path / "a", steps=8, **train)
    b = latent_model(fs)
    fit(b, data, tmp_path / "b", steps=6, **train)
    b2 = latent_model(first_stage(seed=9))
    fit(b2, data, tmp_path / "b", steps=8, resume=True, **train)
    sa, sb = a.state_dict(), b2.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-5, msg=k)


def test_latent_model_bad_first_stage(tmp_path):
    with pytest.raises(ValueError, match="first_stage takes 3x16x16 images but the model takes 3x32x32"):
        AnchoredDiffusion(**{**DIFF, "image_size": 32}, first_stage=first_stage())
    with pytest.raises(FileNotFoundError):
        AnchoredDiffusion(**DIFF, first_stage=tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{}")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError):
        AnchoredDiffusion(**DIFF, first_stage=tmp_path / "bad")
    with pytest.raises(TypeError, match="first_stage must be"):
        AnchoredDiffusion(**DIFF, first_stage=3)
    tiny = AnchoredDiffusion(**{**DIFF, "anchoring": None})               # a diffusion model is not a first stage
    tiny.save(tmp_path / "diff")
    with pytest.raises(ValueError, match="not a FirstStage"):
        FirstStage.load(tmp_path / "diff")


def test_cli_latent_training_resume_and_stale_cache(tmp_path):
    py = [sys.executable, "-m", "dga_fast"]

    def run(*args):
        return subprocess.run(py + list(args), cwd=ROOT, capture_output=True, text=True, timeout=600)
    ae, run_dir = tmp_path / "ae", tmp_path / "latent"
    p = run("train-autoencoder", "--out", str(ae), "--image-size", "16", "--steps", "2", "--batch-size", "2",
            "--no-progress")
    assert p.returncode == 0, p.stderr
    p = run("train", "--preset", "tiny-latent", "--out", str(run_dir), "--steps", "2", "--ckpt-every", "1",
            "--no-progress")
    assert p.returncode == 2 and "--first-stage" in p.stderr                # the preset needs a first stage
    p = run("train", "--preset", "tiny", "--first-stage", str(ae), "--out", str(run_dir), "--steps", "2",
            "--ckpt-every", "1", "--no-progress")
    assert p.returncode == 0, p.stderr
    m = AnchoredDiffusion.load(run_dir)
    assert m.first_stage is not None and m.config["image_size"] == 16 and m.diffusion_shape == (3, 4, 4)
    caches = list((ae / "latents").iterdir())
    assert len(caches) == 1 and (caches[0] / "cache.json").is_file()
    p = run("train", "--out", str(run_dir), "--steps", "3", "--resume", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert latest_checkpoint(run_dir).name == "step_0000003"
    meta = caches[0] / "cache.json"
    meta.write_text(meta.read_text().replace('"first_stage_sha256": "', '"first_stage_sha256": "0'))
    p = run("train", "--out", str(run_dir), "--steps", "4", "--resume", "--no-progress")
    assert p.returncode == 2 and "latent cache" in p.stderr and "expected" in p.stderr
    p = run("train", "--out", str(run_dir), "--steps", "4", "--resume", "--rebuild-latents", "--no-progress")
    assert p.returncode == 0, p.stderr
    p = run("train", "--preset", "tiny", "--first-stage", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"),
            "--no-progress")
    assert p.returncode == 2 and "nowhere" in p.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cli_device_without_cuda_is_a_clear_error(tmp_path, capsys):
    from dga_fast.cli import main
    for cmd, dev, msg in (("train-autoencoder", "cuda", "--device cuda: CUDA is not available"),
                          ("train", "cuda:1", "--device cuda:1: CUDA is not available"),
                          ("train-autoencoder", "gpu0", "not a device name")):
        assert main([cmd, "--out", str(tmp_path / cmd), "--device", dev, "--no-progress"]) != 0
        assert msg in capsys.readouterr().err


def test_subset_batches_keep_the_datasets_form(shapes16):
    from dga_fast.data import IndexSubset
    from dga_fast.data.batches import get_batch, render_batch
    idx = torch.tensor([5, 0, 3])
    sub = IndexSubset(shapes16, [7, 2, 9, 4, 11, 1])
    x, f = sub.get_batch(idx)
    x0, f0 = shapes16.get_batch(torch.tensor([1, 7, 4]))
    assert torch.equal(x, x0) and torch.equal(torch.as_tensor(f), torch.as_tensor(f0))
    plain = [(torch.full((3, 2, 2), float(i)), i) for i in range(6)]          # a dataset without get_batch
    xs, ys = IndexSubset(plain, [4, 2, 0]).get_batch(torch.tensor([2, 1]))
    assert xs[:, 0, 0, 0].tolist() == [0.0, 2.0] and ys.tolist() == [0, 2]
    assert torch.equal(get_batch(plain, torch.tensor([3])), plain[3][0][None])
    images = [torch.rand(3, 2, 2) for _ in range(3)]                          # tensor items
    assert torch.equal(render_batch(images, torch.tensor([2, 0])), torch.stack([images[2], images[0]]))
    with pytest.raises(ValueError, match="indices"):
        IndexSubset(plain, [6])
