"""Row family ``step``: images/s of one training step of the study's recipe (loss + backward + AdamW) on
precomputed latents, as the latent cache gives them, per preset, batch size and number of threads: the eager
step (``<preset>-b<batch>``: AdamW's per-parameter loop) and the step as ``fit`` runs it by default
(``<preset>-b<batch>-fast``: ``train.make_optimizer``, the fused AdamW).

Configurations: the ``tiny-latent`` preset at 32×32 on 8×8×3 latents (the study's and the demo's recipe) and the
``paper`` preset at 64×64 on 16×16×3 latents. The first stage is randomly initialised: a step's cost does not
depend on its weights. ``--size small`` times one tiny-latent batch on one thread (the suite's smoke run)."""
from __future__ import annotations

import importlib.util
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from .harness import Case

# (preset, batch sizes) per --size; the paper preset's batches stop where a step takes seconds on 2 cores (its
# own batch, 512, is in the GPU-scale --size large)
CONFIGS = {
    "small": [("tiny-latent", (16,))],
    "default": [("tiny-latent", (16, 32, 64, 128, 256)), ("paper", (16, 32))],
    "large": [("tiny-latent", (16, 32, 64, 128, 256)), ("paper", (16, 64, 256, 512))],
}
THREADS = {"small": (1,), "default": (1, 2), "large": (1, 2)}
# the whole fit loop, as ``train`` runs it: (preset, steps) per --size (none in the suite's smoke run), with
# fit's defaults (``<preset>-fit``) and with the fast path switched off (``<preset>-fit-eager``)
FIT = {"small": [], "default": [("tiny-latent", 120)], "large": [("tiny-latent", 300)]}
# U-Net forward + backward against diffusers' UNet2DConditionModel (optional peer): tiny-latent batches per --size
PEER = {"small": (), "default": (16, 64), "large": (16, 64, 256)}


def build(preset: str, batch: int, seed: int, device):
    """The preset's model with its first stage, a batch of SyntheticShapes images and their latents."""
    from dga_fast import AnchoredDiffusion
    from dga_fast.data import SyntheticShapes
    from dga_fast.nn import FirstStage
    from dga_fast.presets import PRESETS

    cfg = PRESETS[preset]["model"]
    torch.manual_seed(seed)
    fs = FirstStage(**cfg["first_stage"]).to(device).eval()
    model = AnchoredDiffusion(**{k: v for k, v in cfg.items() if k != "first_stage"}, first_stage=fs).to(device)
    ds = SyntheticShapes(cfg["image_size"], seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = ds.get_batch(torch.randint(0, len(ds), (batch,), generator=g))[0].to(device)
    with torch.no_grad():
        z = fs.encode(x)
    model.fit_latent_scale(z)
    return model, x, z


def step_flops(preset: str, seed: int, device) -> float:
    """Floating-point operations of one training step's loss + backward per image (``FlopCounterMode``: the
    matrix products and convolutions, which are nearly all of them; counted on a batch of 2, as they grow
    linearly with the batch)."""
    from torch.utils.flop_counter import FlopCounterMode
    model, x, z = build(preset, 2, seed, device)
    model.train()
    with FlopCounterMode(display=False) as fc:
        model.loss(x, generator=torch.Generator(x.device).manual_seed(seed), latents=z).backward()
    return fc.get_total_flops() / x.shape[0]


def conv_peak_cases(threads: tuple, device) -> list[Case]:
    """What this device's convolutions reach: a 3×3 convolution of 128 channels on 8×8 maps, batch 256, forward +
    backward (the U-Net's commonest shape at a batch where the per-call overhead no longer counts)."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(device)
    x = torch.randn(256, 128, 8, 8, device=device, requires_grad=True)
    flops = 3 * 2 * 256 * 128 * 128 * 9 * 64                       # forward, and backward to input and weight

    def run(t):
        def fn():
            before = torch.get_num_threads()
            torch.set_num_threads(t)
            try:
                conv(x).sum().backward()
            finally:
                torch.set_num_threads(before)
            return True
        return fn
    return [Case("step", "conv-peak", f"{t}t", run(t), lambda ok: {"ok": bool(ok)}, items=1, flop_per_item=flops,
                 note="Conv2d(128, 128, 3) on [256, 128, 8, 8], forward + backward: the convolutions' ceiling")
            for t in threads]


def step_cases(preset: str, batch: int, threads: tuple, seed: int, device, flops: float) -> list[Case]:
    """Per number of threads, the eager and the fast step, on one model and batch (``flops`` per image)."""
    from dga_fast.train import TrainConfig, make_optimizer
    model, x, z = build(preset, batch, seed, device)
    model.train()
    eager = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    fast = make_optimizer(model, TrainConfig(lr=1e-4))
    shape = "x".join(str(s) for s in z.shape[1:])
    note = f"{preset} preset, {x.shape[-1]}x{x.shape[-1]} images, {shape} latents, batch {batch}"
    return [case for t in threads for case in (
        Case("step", f"{preset}-b{batch}", f"{t}t", _step(model, eager, x, z, t, seed, device), _check(batch, t),
             items=batch, flop_per_item=flops,
             note=f"{note}, {t} thread(s): loss + backward + AdamW (per-parameter loop)"),
        Case("step", f"{preset}-b{batch}-fast", f"{t}t", _step(model, fast, x, z, t, seed, device),
             _check(batch, t), items=batch, flop_per_item=flops,
             note=f"{note}, {t} thread(s): the step fit runs by default (fused AdamW)"))]


def _step(model, opt, x, z, threads: int, seed: int, device):
    def step():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            loss = model.loss(x, generator=torch.Generator(device).manual_seed(seed), latents=z)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finally:
            torch.set_num_threads(before)
        return float(loss.detach())
    return step


def _check(batch: int, threads: int):
    def check(loss):
        return {"ok": math.isfinite(loss), "loss": round(loss, 4), "batch": batch, "threads": threads}
    return check


def train_preset(preset: str, ds, tcfg, seed: int, device, tmp: Path) -> tuple[dict, list, float]:
    """``fit`` of the preset's model on ``ds`` with ``tcfg``, as a user's ``train`` runs it, with a randomly initialised
    first stage (seeded by ``seed``) whose latents are encoded into a new cache under ``tmp`` on first use; the run
    directory is ``tmp / "run"``. Returns fit's history, the rows of its log and its wall seconds."""
    from dga_fast import AnchoredDiffusion
    from dga_fast.latent_cache import LatentCache, LatentDataset
    from dga_fast.nn import FirstStage
    from dga_fast.presets import PRESETS
    from dga_fast.train import fit

    cfg = PRESETS[preset]["model"]
    torch.manual_seed(seed)
    fs = FirstStage(**cfg["first_stage"]).to(device).eval()
    cache = LatentCache(fs, ds, tmp / "latents", {"name": "synthetic-shapes"}, progress=False)
    model = AnchoredDiffusion(**{k: v for k, v in cfg.items() if k != "first_stage"}, first_stage=fs).to(device)
    t0 = time.perf_counter()
    hist = fit(model, LatentDataset(ds, cache), tmp / "run", tcfg)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (tmp / "run" / "log.jsonl").read_text().splitlines()]
    return hist, rows, wall


def fit_case(preset: str, steps: int, seed: int, device, fast: bool = True) -> Case:
    """``fit`` for ``steps`` steps of the preset's batch size (``train_preset``): images rendered by the dataset,
    latents encoded into a new cache on first use, one DyGA refit and one checkpoint halfway, a log row every 10
    steps; ``fast=False``: with ``fused_optimizer=False``. Reports the wall rate (``items_per_s``) and the median
    of the log's ``images_per_s``."""
    from dga_fast.data import IndexSubset, SyntheticShapes
    from dga_fast.presets import PRESETS
    from dga_fast.train import TrainConfig

    cfg, train = PRESETS[preset]["model"], PRESETS[preset]["train"]
    ds = IndexSubset(SyntheticShapes(cfg["image_size"], seed=seed), torch.arange(8192))
    half = steps // 2
    tcfg = TrainConfig(**{**train, "steps": steps, "refit_warmup": half, "refit_every": half, "ckpt_every": half,
                          "log_every": 10, "progress": False, "seed": seed,
                          "fused_optimizer": fast})

    def run():
        with tempfile.TemporaryDirectory() as tmp:
            hist, rows, wall = train_preset(preset, ds, tcfg, seed, device, Path(tmp))
        ips = [r["images_per_s"] for r in rows if "images_per_s" in r]
        return {"wall_s": wall, "log_images_per_s": ips, "loss": hist["losses"][-1][1]}

    def check(r):
        return {"ok": math.isfinite(r["loss"]) and bool(r["log_images_per_s"]),
                "log_images_per_s_median": round(statistics.median(r["log_images_per_s"]), 1),
                "log_images_per_s_first": r["log_images_per_s"][0], "wall_s": round(r["wall_s"], 2)}
    B = tcfg.batch_size
    return Case("step", f"{preset}-fit" + ("" if fast else "-eager"), f"{torch.get_num_threads()}t", run, check,
                items=steps * B, repeats=1,
                warmup=False, note=f"fit: {steps} steps x batch {B}, latents encoded on first use, a refit and a "
                                   f"checkpoint at step {half}; items_per_s = all images / wall time of fit")


def diffusers_unet(model_cfg: dict, latent_shape):
    """diffusers' ``UNet2DConditionModel`` as close to our U-Net as its options allow: the same channels, blocks per
    level (ResBlocks, the decoder's one more), attention levels (self- then cross-attention to the tokens) and
    heads, cross-attention dimension = ``unit_dim``, stride-2 conv down and nearest up + conv. It differs in
    what its options do not reach: each attention level is a transformer block (projections in and out, a GEGLU
    feed-forward), and there is no Skip Dropout."""
    from diffusers import UNet2DConditionModel
    mult, attn = model_cfg["channel_mult"], set(model_cfg["attention_resolutions"])
    levels = range(len(mult))
    down = tuple("CrossAttnDownBlock2D" if 2 ** i in attn else "DownBlock2D" for i in levels)
    up = tuple("CrossAttnUpBlock2D" if 2 ** i in attn else "UpBlock2D" for i in reversed(levels))
    return UNet2DConditionModel(
        sample_size=latent_shape[-1], in_channels=latent_shape[0], out_channels=latent_shape[0],
        block_out_channels=tuple(model_cfg["base_channels"] * m for m in mult),
        layers_per_block=model_cfg["num_res_blocks"], down_block_types=down, up_block_types=up,
        cross_attention_dim=model_cfg["unit_dim"], attention_head_dim=model_cfg["num_heads"], norm_num_groups=32)


def peer_cases(batch: int, seed: int, device) -> list[Case]:
    """Forward + backward of the tiny-latent U-Net on its latents and tokens: ours and diffusers'."""
    from dga_fast.presets import PRESETS
    cfg = PRESETS["tiny-latent"]["model"]
    model, x, z = build("tiny-latent", batch, seed, device)
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    cond = torch.randn(batch, cfg["num_units"], cfg["unit_dim"], generator=g).to(device)
    zt = (z * model.latent_scale).detach()
    peer = diffusers_unet(cfg, z.shape[1:]).to(device).train()
    ours = model.unet.train()
    nparams = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731

    def run(net, call):
        def fn():
            net.zero_grad(set_to_none=True)
            out = call()
            out.square().mean().backward()
            return float(out.detach().abs().mean())
        return fn

    def check(net):
        return lambda v: {"ok": math.isfinite(v), "params": nparams(net), "batch": batch}
    shape = "x".join(map(str, z.shape[1:]))
    note = f"tiny-latent U-Net on {shape} latents and {cfg['num_units']} tokens, batch {batch}"
    return [Case("step-unet", "dga_fast", f"b{batch}", run(ours, lambda: ours(zt, t, cond)), check(ours),
                 items=batch, note=note + ": forward + backward"),
            Case("step-unet", "diffusers", f"b{batch}", run(peer, lambda: peer(zt, t, cond).sample),
                 check(peer), items=batch,
                 note=note + ": diffusers UNet2DConditionModel, same channels, blocks, attention levels, heads")]


def family_step(args, device) -> list[Case]:
    threads = THREADS[args.size] if device.type == "cpu" else (torch.get_num_threads(),)
    cases = conv_peak_cases(threads, device)
    for preset, batches in CONFIGS[args.size]:
        flops = step_flops(preset, args.seed, device)
        cases += [case for b in batches for case in step_cases(preset, b, threads, args.seed, device, flops)]
    cases += [fit_case(preset, steps, args.seed, device, fast) for preset, steps in FIT[args.size]
              for fast in (False, True)]
    if PEER[args.size]:
        if importlib.util.find_spec("diffusers") is None:
            print("  diffusers rows skipped: pip install diffusers==0.42.1 (an optional benchmark peer)")
            return cases
        cases += [c for b in PEER[args.size] for c in peer_cases(b, args.seed, device)]
    return cases
