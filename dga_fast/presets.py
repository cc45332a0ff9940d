"""Model and training presets of the CLI (``--preset``)."""
from __future__ import annotations

PRESETS = {
    # a few minutes on a 2-core CPU at 32x32: what `make demo` trains
    "tiny": dict(
        model=dict(image_size=32, num_units=10, unit_dim=16, base_channels=32, channel_mult=(1, 2, 2),
                   num_res_blocks=1, attention_resolutions=(4,), num_heads=4, skip_dropout=0.2,
                   skip_dropout_resolutions=(1, 2),
                   anchoring=dict(init_components=8, max_components=16, em_iters=15, min_cluster_size=8)),
        train=dict(steps=500, batch_size=16, lr=2e-3, refit_warmup=150, refit_every=150,
                   refit_samples=1024, ckpt_every=100, log_every=10)),
    # a single GPU at 64x64
    "small": dict(
        model=dict(image_size=64, num_units=20, unit_dim=32, base_channels=64, channel_mult=(1, 2, 4),
                   num_res_blocks=1, attention_resolutions=(2, 4), num_heads=4),
        train=dict(steps=50_000, batch_size=64, lr=1e-4, refit_warmup=5_000, refit_every=5_000,
                   refit_samples=10_000, ckpt_every=5_000, ema_decay=0.999)),
    # DESIGN §6 defaults (the paper's model size)
    "paper": dict(
        model=dict(image_size=64, num_units=20, unit_dim=32, base_channels=64, channel_mult=(1, 2, 4, 4),
                   num_res_blocks=2, attention_resolutions=(1, 2, 4), num_heads=8),
        train=dict(steps=200_000, batch_size=64, lr=1e-4, refit_warmup=10_000, refit_every=10_000,
                   refit_samples=10_000, ckpt_every=10_000, ema_decay=0.9999)),
}
