"""Model and training presets of the CLI (``--preset``). A preset whose model has a ``first_stage`` (a
``FirstStage`` config) diffuses latents: ``train`` then needs ``--first-stage`` (trained weights of that
architecture)."""
from __future__ import annotations

# `train --published-dyga`: DyGA as the published code runs it (DESIGN §6a), for comparisons with ours: the
# coin-flip split (spread > 0.5 or a coin with p = 0.5), min-max normalisation with the normalised anchor mixed
# into the raw token and one λ per batch, the mixture refitted from scratch once per epoch on all images
PUBLISHED_DYGA = dict(anchoring=dict(split="coin", split_threshold=0.5, shift="published"),
                      train=dict(refit_schedule="epoch"))


def use_published_dyga(model_cfg: dict, train_cfg: dict) -> None:
    """``--published-dyga`` (and the study's ``published`` variant): the DyGA options of ``model_cfg`` and the
    refit schedule of ``train_cfg`` replaced in place by ``PUBLISHED_DYGA``'s, the other DyGA options kept."""
    if model_cfg.get("anchoring") is None:
        raise ValueError("--published-dyga changes DyGA; it cannot be combined with --no-anchoring")
    base = model_cfg["anchoring"] if isinstance(model_cfg["anchoring"], dict) else {}
    model_cfg["anchoring"] = {**base, **PUBLISHED_DYGA["anchoring"]}
    train_cfg.update(PUBLISHED_DYGA["train"])

PRESETS = {
    # a few minutes on a 2-core CPU at 32x32: what `make demo` trains
    "tiny": dict(
        model=dict(image_size=32, num_units=10, unit_dim=16, base_channels=32, channel_mult=(1, 2, 2),
                   num_res_blocks=1, attention_resolutions=(4,), num_heads=4, skip_dropout=0.2,
                   skip_dropout_resolutions=(1, 2),
                   anchoring=dict(init_components=8, max_components=16, em_iters=15, min_cluster_size=8)),
        train=dict(steps=500, batch_size=16, lr=2e-3, refit_warmup=150, refit_every=150,
                   refit_samples=1024, ckpt_every=100, log_every=10)),
    # `make demo`: the tiny model on the latents of the official first stage (32x32 images -> 8x8x3)
    "tiny-latent": dict(
        model=dict(image_size=32, num_units=10, unit_dim=16, base_channels=64, channel_mult=(1, 2, 2),
                   encoder_channels=32, num_res_blocks=1, attention_resolutions=(1, 2), num_heads=4,
                   skip_dropout=0.2, unit_norm="whiten", cond_dropout=0.1, guidance=2.0,
                   skip_dropout_resolutions=(1, 2),
                   anchoring=dict(init_components=8, max_components=16, em_iters=15, min_cluster_size=8),
                   first_stage=dict(image_size=32, in_channels=3, ch=32, ch_mult=(1, 2, 4), num_res_blocks=2,
                                    z_channels=3, num_codes=2048)),
        train=dict(steps=1500, batch_size=16, lr=2e-3, lr_schedule="cosine", refit_warmup=300, refit_every=300,
                   refit_samples=1024, ckpt_every=500, log_every=10)),
    # a single GPU at 64x64
    "small": dict(
        model=dict(image_size=64, num_units=20, unit_dim=32, base_channels=64, channel_mult=(1, 2, 4),
                   num_res_blocks=1, attention_resolutions=(2, 4), num_heads=4),
        train=dict(steps=50_000, batch_size=64, lr=1e-4, refit_warmup=5_000, refit_every=5_000,
                   refit_samples=10_000, ckpt_every=5_000, ema_decay=0.999)),
    # the official Shapes3D config value for value (README "The paper preset"): latent diffusion on a VQ first
    # stage (pass --first-stage), the published extractor and U-Net options, DyGA 8 -> 32 components
    "paper": dict(
        model=dict(image_size=64, num_units=20, unit_dim=32, base_channels=64, channel_mult=(1, 2, 4, 4),
                   num_res_blocks=2, attention_resolutions=(1, 2, 4), num_heads=8, skip_dropout=0.2,
                   skip_dropout_resolutions=(1, 2), loss="l1", timesteps=1000, beta_schedule="linear",
                   beta_start=0.0015, beta_end=0.0155, encoder_arch="paper", unet_dropout=0.1,
                   scale_shift_norm=True, resblock_updown=True,
                   anchoring=dict(init_components=8, max_components=32, em_iters=30),
                   first_stage=dict(image_size=64, in_channels=3, ch=32, ch_mult=(1, 2, 4), num_res_blocks=2,
                                    z_channels=3, num_codes=2048)),
        # one refit per epoch of Shapes3D (480,000 images / 512 = 938 steps) on 10% of its images
        train=dict(steps=200_000, batch_size=512, lr=1e-4, refit_warmup=938, refit_every=938,
                   refit_samples=48_000, ckpt_every=5_000, ema_decay=0.9999)),
}
