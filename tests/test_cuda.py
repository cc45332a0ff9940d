"""The same results on a CUDA device as on the CPU (skipped, and reported as skipped, without a GPU)."""
import os
import shutil

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_dyga_refit_on_cuda_matches_cpu():
    from dga_fast import DynamicGaussianAnchoring
    from dga_fast.data import make_unit_tokens
    data = make_unit_tokens(6, 3000, 16, seed=1)
    cpu = DynamicGaussianAnchoring(6, 16, seed=0).refit(data.tokens)
    gpu = DynamicGaussianAnchoring(6, 16, seed=0).cuda().refit(data.tokens.cuda())
    assert torch.equal(cpu.n_components, gpu.n_components.cpu())
    agree = (cpu.assign(data.tokens) == gpu.assign(data.tokens.cuda()).cpu()).float().mean()
    assert agree > 0.999
    out = gpu(data.tokens[:64].cuda())
    assert out.is_cuda and torch.isfinite(out).all()


def test_hddc_on_cuda():
    from dga_fast import HDDC
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(400, 8, generator=g) * 0.1 + 3 * i for i in range(3)])
    ref = HDDC(n_components=3, random_state=0).fit(x)
    got = HDDC(n_components=3, random_state=0).fit(x.cuda())
    assert torch.allclose(ref.score_samples(x), got.score_samples(x.cuda()).cpu(), rtol=1e-3, atol=1e-3)


def test_model_trains_and_samples_on_cuda(tmp_path):
    from dga_fast import AnchoredDiffusion
    from dga_fast.data import SyntheticShapes
    from dga_fast.train import fit
    torch.manual_seed(0)
    model = AnchoredDiffusion(image_size=16, num_units=4, unit_dim=8, base_channels=16, channel_mult=(1, 2),
                              num_res_blocks=1, attention_resolutions=(2,), num_heads=2).cuda()
    ds = SyntheticShapes(16)
    hist = fit(model, ds, tmp_path, steps=6, batch_size=8, refit_warmup=3, refit_every=3, refit_samples=128,
               progress=False, amp=True)
    assert hist["refit_steps"] == [3, 6] and model.anchoring.fitted
    x = torch.stack([ds[i][0] if isinstance(ds[i], tuple) else ds[i] for i in range(2)]).cuda()
    imgs = model.sample(model.encode(x), steps=3, generator=torch.Generator().manual_seed(0))
    assert imgs.is_cuda and torch.isfinite(imgs).all()
    again = model.sample(model.encode(x), steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(imgs, again)
    loaded = AnchoredDiffusion.load(tmp_path, map_location="cuda")
    assert loaded.device.type == "cuda"


def test_native_extension_has_cuda_kernels_and_serves_cuda_tensors(set_backend):
    """Where nvcc is present the build must have compiled csrc/cuda (unless DGA_FAST_NO_CUDA=1 asked it not to),
    and dga_fast.ops must route CUDA tensors to those kernels."""
    from dga_fast import native, ops
    if not native.available():
        pytest.skip("dga_fast._C not built (DGA_FAST_NO_EXT=1)")
    if os.environ.get("DGA_FAST_NO_CUDA") == "1" or shutil.which("nvcc") is None:
        pytest.skip("CPU-only build requested, or no nvcc")
    assert native.has_cuda()
    set_backend("native")
    x, means = torch.randn(3, 500, 4, device="cuda"), torch.randn(3, 5, 4, device="cuda")
    labels = torch.randint(0, 5, (3, 500), device="cuda")
    counts, spread = ops.mixture_spread(x, labels, means)
    assert counts.is_cuda and int(counts.sum()) == 1500
    c_cpu, s_cpu = torch.ops.dga_fast.mixture_spread(x.cpu(), labels.cpu(), means.cpu())
    assert torch.equal(counts.cpu(), c_cpu)
    torch.testing.assert_close(spread.cpu(), s_cpu, rtol=1e-6, atol=1e-6)
