"""AnchoredDiffusion: EncDiff-style diffusion model whose latent units are anchored by DyGA and whose
U-Net uses Skip Dropout (DESIGN §6)."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import _rng
from ._validation import check_batch, check_float_tensor
from .anchoring import DynamicGaussianAnchoring
from .nn import DiffusionSchedule, FeatureExtractor, FirstStage, PaperFeatureExtractor, UNet
from .profiling import nvtx_range


def resolve_first_stage(first_stage, image_size: int, in_channels: int) -> FirstStage | None:
    """``first_stage`` as a frozen ``FirstStage``: an instance, a saved first stage or ``train-autoencoder``
    run directory (a path), a stored config dict (the weights follow with the model's state dict) or None
    (pixel model). Its image size and channels must be the model's."""
    if first_stage is None:
        return None
    if isinstance(first_stage, (str, Path)):
        first_stage = FirstStage.load(first_stage)
    elif isinstance(first_stage, dict):
        first_stage = FirstStage(**first_stage)
    elif not isinstance(first_stage, FirstStage):
        raise TypeError(f"first_stage must be a FirstStage, a path to one, its config dict or None, got "
                        f"{type(first_stage).__name__}")
    got = (first_stage.config["in_channels"], first_stage.config["image_size"])
    if got != (in_channels, image_size):
        raise ValueError(f"first_stage takes {got[0]}x{got[1]}x{got[1]} images but the model takes "
                         f"{in_channels}x{image_size}x{image_size} (in_channels, image_size): train a first "
                         f"stage at the model's image size")
    return first_stage


def _check_guidance(guidance, cond_dropout: float) -> None:
    if not isinstance(guidance, (int, float)) or isinstance(guidance, bool) or guidance < 0:
        raise ValueError(f"guidance must be a float >= 0, got {guidance!r}")
    if guidance != 1.0 and cond_dropout <= 0:
        raise ValueError("guidance != 1 needs a model trained with cond_dropout > 0 (no unconditional branch)")


class AnchoredDiffusion(nn.Module):
    """Images ``[B, C, H, W]`` in ``[0, 1]`` → tokens ``[B, U, Dc]`` (feature extractor) → anchored tokens
    (DyGA, training) → cross-attention condition of an ε-prediction U-Net with Skip Dropout.

    ``anchoring=None, skip_dropout=0`` is the EncDiff baseline on the same code path. ``anchoring`` may be
    ``True`` (defaults) or a dict of ``DynamicGaussianAnchoring`` keyword arguments. ``encoder_norm``:
    ``"group"`` (default), ``"batch"`` or ``"none"``, see ``FeatureExtractor``; ``encoder_arch="paper"`` is the
    published extractor instead (``PaperFeatureExtractor``: BatchNorm + ReLU, non-negative tokens; it ignores
    ``encoder_norm``). ``unit_norm="batch"`` standardises each latent unit over the batch (``FeatureExtractor``;
    not with ``encoder_arch="paper"``). ``unet_dropout``, ``scale_shift_norm`` and ``resblock_updown`` are the
    official U-Net's options (``UNet``); ``qk_norm`` LayerNorms the attention blocks' queries and keys
    (``AttentionBlock``).

    ``first_stage`` (a ``FirstStage``, a path to one or None) makes it a latent diffusion model (DESIGN §6a):
    the U-Net denoises the first stage's latents scaled to unit std, the feature extractor still sees the
    images, and ``sample`` / ``interchange`` / ``interpolate`` decode to images. The first stage is frozen and
    saved with the model.
    """

    # constructor arguments that configs written before they existed lack, with the value that rebuilds them
    legacy_config = {"encoder_norm": "none"}

    @classmethod
    def from_config(cls, config: dict) -> "AnchoredDiffusion":
        """The model a stored ``config`` describes (a checkpoint's or a run's ``config.json["model"]``)."""
        return cls(**{**cls.legacy_config, **config})

    def __init__(self, image_size: int = 64, in_channels: int = 3, num_units: int = 20, unit_dim: int = 32,
                 base_channels: int = 64, channel_mult=(1, 2, 4, 4), num_res_blocks: int = 2,
                 attention_resolutions=(1, 2, 4), num_heads: int = 8, skip_dropout: float = 0.2,
                 skip_dropout_resolutions=(1, 2), anchoring=True, timesteps: int = 1000,
                 beta_schedule: str = "linear", beta_start: float = 0.0015, beta_end: float = 0.0155,
                 loss: str = "l1", fused: bool = True, encoder_channels: int | None = None,
                 encoder_norm: str = "group", first_stage=None, encoder_arch: str = "ours",
                 unet_dropout: float = 0.0, scale_shift_norm: bool = True, resblock_updown: bool = False,
                 unit_norm: str | None = None, cond_dropout: float = 0.0, guidance: float = 1.0,
                 qk_norm: bool = False):
        super().__init__()
        fs = resolve_first_stage(first_stage, image_size, in_channels)
        # what the U-Net denoises: the images, or the first stage's latents
        d_ch, d_size = (in_channels, image_size) if fs is None else fs.latent_shape[:2]
        if loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {loss!r}")
        if encoder_arch not in ("ours", "paper"):
            raise ValueError(f"encoder_arch must be 'ours' or 'paper', got {encoder_arch!r}")
        if encoder_arch == "paper" and unit_norm is not None:
            raise ValueError("unit_norm is an option of our feature extractor; encoder_arch='paper' has none")
        ds_max = 2 ** (len(channel_mult) - 1)
        if image_size < 8 or d_size % ds_max:
            where = "image_size" if fs is None else f"the first stage's latent size {d_size}"
            raise ValueError(f"image_size {image_size} must be >= 8 and {where} divisible by "
                             f"2**(len(channel_mult)-1) = {ds_max}")
        if not isinstance(cond_dropout, (int, float)) or isinstance(cond_dropout, bool) \
                or not 0.0 <= cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be a float in [0, 1), got {cond_dropout!r}")
        _check_guidance(guidance, cond_dropout)
        if anchoring is not None and not isinstance(anchoring, (bool, dict)):
            raise TypeError(f"anchoring must be True, None or a dict of DynamicGaussianAnchoring options, "
                            f"got {type(anchoring).__name__}")
        self.config = dict(image_size=image_size, in_channels=in_channels, num_units=num_units,
                           unit_dim=unit_dim, base_channels=base_channels, channel_mult=list(channel_mult),
                           num_res_blocks=num_res_blocks, attention_resolutions=list(attention_resolutions),
                           num_heads=num_heads, skip_dropout=skip_dropout,
                           skip_dropout_resolutions=list(skip_dropout_resolutions),
                           anchoring=anchoring if anchoring is not False else None, timesteps=timesteps,
                           beta_schedule=beta_schedule, beta_start=beta_start, beta_end=beta_end, loss=loss,
                           fused=fused, encoder_channels=encoder_channels, encoder_norm=encoder_norm,
                           first_stage=None if fs is None else dict(fs.config), encoder_arch=encoder_arch,
                           unet_dropout=unet_dropout, scale_shift_norm=scale_shift_norm,
                           resblock_updown=resblock_updown, unit_norm=unit_norm,
                           cond_dropout=float(cond_dropout), guidance=float(guidance), qk_norm=bool(qk_norm))
        if encoder_arch == "paper":
            self.encoder = PaperFeatureExtractor(image_size, in_channels, num_units, unit_dim,
                                                 channels=encoder_channels or 64)
        else:
            self.encoder = FeatureExtractor(image_size, in_channels, num_units, unit_dim,
                                            channels=encoder_channels or base_channels, norm=encoder_norm,
                                            unit_norm=unit_norm)
        self.first_stage = fs
        if fs is not None:
            fs.requires_grad_(False).eval()
        if fs is not None:   # latents are diffused scaled to unit std (latent diffusion's scale factor)
            self.register_buffer("latent_scale", torch.ones(()))
            self.register_buffer("latent_scale_fitted", torch.zeros((), dtype=torch.bool))
            # DDIM clamps its x0 prediction to the range of the scaled latents it was fitted on (0: no clamp)
            self.register_buffer("latent_clip", torch.zeros(()))
        self.unet = UNet(d_size, d_ch, base_channels, tuple(channel_mult), num_res_blocks,
                         tuple(attention_resolutions), num_heads, unit_dim, skip_dropout,
                         tuple(skip_dropout_resolutions), fused, dropout=unet_dropout,
                         scale_shift_norm=scale_shift_norm, resblock_updown=resblock_updown, qk_norm=qk_norm)
        self.schedule = DiffusionSchedule(timesteps, beta_schedule, beta_start, beta_end)
        if anchoring:
            opts = anchoring if isinstance(anchoring, dict) else {}
            self.anchoring = DynamicGaussianAnchoring(num_units, unit_dim, **opts)
        else:
            self.anchoring = None
        if cond_dropout > 0:   # the condition of the unconditional branch (classifier-free guidance)
            self.null_tokens = nn.Parameter(torch.zeros(num_units, unit_dim))
        # first principal direction of each unit's tokens (fitted at refit time) for ``representation``
        self.register_buffer("pc_mean", torch.zeros(num_units, unit_dim))
        self.register_buffer("pc_dir", torch.zeros(num_units, unit_dim))
        self.register_buffer("pc_fitted", torch.zeros((), dtype=torch.bool))
        self.last_refit: dict = {}   # diagnostics of the last refit_anchors (see _refit_diagnostics)

    # ------------------------------------------------------------------ validation
    def _check_images(self, x, name: str = "x") -> torch.Tensor:
        c, s = self.config["in_channels"], self.config["image_size"]
        return check_batch(name, x, (c, s, s), "in_channels, image_size")

    @property
    def device(self) -> torch.device:
        return self.pc_mean.device

    def train(self, mode: bool = True) -> "AnchoredDiffusion":
        super().train(mode)
        if self.first_stage is not None:   # frozen: its codebook EMA must not move
            self.first_stage.eval()
        return self

    # ------------------------------------------------------------------ diffusion space
    @property
    def diffusion_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of what the U-Net denoises: the images, or the first stage's latents."""
        if self.first_stage is None:
            s = self.config["image_size"]
            return (self.config["in_channels"], s, s)
        return self.first_stage.latent_shape

    @torch.no_grad()
    def fit_latent_scale(self, latents: torch.Tensor) -> float:
        """Set the latent scale factor to ``1 / std(latents)`` (latents ``[N, *diffusion_shape]``), and the
        sampler's clamp (``latent_clip``) to the largest scaled latent: DDIM's x0 prediction is kept inside the
        range the denoiser was trained on (without it, about a third of the demo's samples decoded to noise)."""
        if self.first_stage is None:
            raise ValueError("fit_latent_scale: this model diffuses pixels (first_stage=None)")
        check_float_tensor("latents", latents, 4)
        std = float(latents.float().std())
        if not std > 0:
            raise ValueError("latents are constant: cannot scale them to unit std")
        self.latent_scale.fill_(1.0 / std)
        self.latent_clip.fill_(float(latents.float().abs().max()) / std)
        self.latent_scale_fitted.fill_(True)
        return 1.0 / std

    def _x0_clip(self) -> float | None:
        """DDIM's clamp of its x0 prediction: pixels live in [-1, 1]; latents in ±``latent_clip`` (None: a
        model whose clamp was never fitted, e.g. a checkpoint from before it existed)."""
        if self.first_stage is None:
            return 1.0
        return float(self.latent_clip) or None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if self.first_stage is not None and prefix + "latent_scale" in state_dict:
            # checkpoints from before the sampler's clamp: keep them loadable, unclamped
            state_dict.setdefault(prefix + "latent_clip", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def to_diffusion(self, x: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in ``[0, 1]`` → what the U-Net denoises: ``2x − 1``, or the first stage's
        latents (``latents`` if given, e.g. from a ``LatentCache``) times the latent scale."""
        if self.first_stage is None:
            return x * 2 - 1
        if latents is None:
            with torch.no_grad():
                latents = self.first_stage.encode(x)
        else:
            self.first_stage._check_latents(latents, "latents")
        if not bool(self.latent_scale_fitted):
            self.fit_latent_scale(latents)
        return latents.to(x.dtype) * self.latent_scale

    def from_diffusion(self, d: torch.Tensor) -> torch.Tensor:
        """The inverse of ``to_diffusion``: images in ``[0, 1]`` (latents are decoded by the first stage)."""
        if self.first_stage is None:
            return (d + 1) / 2
        return self.first_stage.decode(d / self.latent_scale).clamp(0, 1)

    # ------------------------------------------------------------------ encoder side
    def encode(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, U, Dc]
        """Tokens of the latent units (not anchored)."""
        return self.encoder(self._check_images(x) * 2 - 1)

    def latent_units(self, x: torch.Tensor) -> torch.Tensor:  # [B, U]
        """The scalar latent units the tokens are made from."""
        return self.encoder.latent_units(self._check_images(x) * 2 - 1)

    def condition(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens as the U-Net sees them: anchored by DyGA when anchoring is on (train and eval alike)."""
        return self.anchoring(tokens) if self.anchoring is not None else tokens

    @torch.no_grad()
    def representation(self, x: torch.Tensor) -> torch.Tensor:  # [B, U]
        """Per unit, the projection of its token on the unit's first principal direction (fitted at the
        last refit; before any refit, the scalar latent units). Used by the disentanglement metrics."""
        if not bool(self.pc_fitted):
            return self.latent_units(x)
        tok = self.encode(x)
        return ((tok - self.pc_mean) * self.pc_dir).sum(-1)

    # ------------------------------------------------------------------ training objective
    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None,
             latents: torch.Tensor | None = None) -> torch.Tensor:
        """DDPM ε-prediction loss (L1 or L2) of images ``x [B, C, H, W]`` in ``[0, 1]``. With a first stage
        the U-Net denoises their latents (``latents``, or encoded here) and the encoder still sees ``x``."""
        x = self._check_images(x)
        with nvtx_range("encode"):
            tokens = self.encoder(x * 2 - 1)
            x0 = self.to_diffusion(x, latents)
        with nvtx_range("anchor"):
            cond = self.condition(tokens)
        B = x0.shape[0]
        p = self.config["cond_dropout"]
        if p > 0 and self.training:   # a fraction p of the batch trains the unconditional branch
            drop = _rng.randint(1 << 24, (B,), generator, x0.device) < int(p * (1 << 24))
            cond = torch.where(drop.view(B, 1, 1), self.null_tokens.to(cond.dtype).expand_as(cond), cond)
        t = _rng.randint(self.schedule.timesteps, (B,), generator, x0.device)
        noise = _rng.randn(x0.shape, generator, x0.device, x0.dtype)
        with nvtx_range("unet"):
            eps = self.unet(self.schedule.q_sample(x0, t, noise), t, cond)
        return F.l1_loss(eps, noise) if self.config["loss"] == "l1" else F.mse_loss(eps, noise)

    # ------------------------------------------------------------------ anchors
    @torch.no_grad()
    def collect_tokens(self, data, batch_size: int = 256) -> torch.Tensor:  # [N, U, Dc]
        """Tokens of ``data``: an image tensor ``[N, C, H, W]`` or an iterable of image batches / of
        ``(images, ...)`` tuples (a DataLoader)."""
        was = self.training
        self.eval()
        try:
            if isinstance(data, torch.Tensor):
                self._check_images(data, "data")
                out = [self.encode(data[i:i + batch_size].to(self.device)) for i in range(0, len(data), batch_size)]
            else:
                out = []
                for batch in data:
                    imgs = batch[0] if isinstance(batch, (tuple, list)) else batch
                    out.append(self.encode(imgs.to(self.device)))
        finally:
            self.train(was)
        if not out:
            raise ValueError("data is empty: no images to compute tokens from")
        return torch.cat(out)

    @torch.no_grad()
    def refit_anchors(self, data) -> "AnchoredDiffusion":
        """Refit the DyGA mixtures (if anchoring is on) and the per-unit principal directions on the
        tokens of ``data`` (images or batches, see ``collect_tokens``). Under ``torch.distributed`` (more than
        one rank) ``data`` is this rank's share and both are fitted to all ranks' tokens (every rank calls it)."""
        from . import distributed as dist_
        t0 = time.perf_counter()
        tokens = self.collect_tokens(data)
        R = dist_.Reducer() if dist_.is_active() else dist_.LOCAL
        old_anchor = self._anchor_means(tokens)
        if self.anchoring is not None:
            self.anchoring.refit(tokens, distributed=R.world > 1)
        self.last_refit = self._refit_diagnostics(tokens, old_anchor, R)
        self.last_refit["refit_s"] = round(time.perf_counter() - t0, 4)
        if R.world == 1:
            mean = tokens.mean(0)                                            # [U, Dc]
            _, _, vh = torch.linalg.svd((tokens - mean).transpose(0, 1), full_matrices=False)
            direction = vh[:, 0]                                             # [U, Dc]
        else:   # this rank's tokens: the leading direction of the covariance summed over the ranks
            mean = R.sum(tokens.sum(0)) / R.sum_int(tokens.shape[0])
            xc = (tokens - mean).transpose(0, 1).double()                    # [U, n, Dc]
            direction = torch.linalg.eigh(R.sum(xc.transpose(1, 2) @ xc))[1][..., -1].to(tokens.dtype)
        # orient each direction so that it increases with the unit's scalar (a stable sign)
        self.pc_mean.copy_(mean)
        self.pc_dir.copy_(direction * torch.sign(direction.sum(-1, keepdim=True) + 1e-12))
        self.pc_fitted.fill_(True)
        return self

    def _anchor_means(self, tokens: torch.Tensor) -> torch.Tensor | None:   # [N, U, Dc] or None
        """The mean of every token's most responsible Gaussian, in token coordinates (None before a fit)."""
        dyga = self.anchoring
        if dyga is None or not dyga.fitted:
            return None
        k = dyga.assign(tokens)                                              # [N, U]
        return torch.gather(dyga.means.unsqueeze(0).expand(len(tokens), -1, -1, -1), 2,
                            k[..., None, None].expand(-1, -1, 1, tokens.shape[-1])).squeeze(2)

    def _refit_diagnostics(self, tokens: torch.Tensor, old_anchor, R) -> dict:
        """Per unit (lists): ``spread`` (RMS distance of the unit's tokens to their mean, over all ranks),
        ``components`` (Gaussians; absent without anchoring), ``anchor_changed`` (fraction of the tokens whose
        anchor mean moved by more than 10% of the unit's spread at this refit; 1.0 at the first refit),
        ``shift_rel`` (mean of ‖c' − c‖ / ‖c‖ over the tokens, c' the anchored token under the new mixture) and
        the refit's ``n_split`` / ``n_filtered`` / ``n_merged`` components."""
        n = R.sum_int(tokens.shape[0])
        mean = R.sum(tokens.sum(0)) / n
        spread = (R.sum((tokens - mean).square().sum(-1).sum(0)) / n).sqrt()          # [U]
        out = {"spread": [round(float(v), 6) for v in spread]}
        if self.anchoring is not None:
            out["components"] = self.anchoring.n_components.tolist()
            if old_anchor is None:
                changed = torch.ones_like(spread)
            else:
                moved = (self._anchor_means(tokens) - old_anchor).norm(dim=-1) > 0.1 * spread   # [N, U]
                changed = R.sum(moved.sum(0).to(spread.dtype)) / n
            out["anchor_changed"] = [round(float(v), 4) for v in changed]
            rel = (self.anchoring(tokens) - tokens).norm(dim=-1) / tokens.norm(dim=-1).clamp_min(1e-12)   # [N, U]
            out["shift_rel"] = [round(float(v), 6) for v in R.sum(rel.sum(0)) / n]
            for key in ("n_split", "n_filtered", "n_merged"):
                out[key] = [int(v) for v in self.anchoring.last_refit[key]]
        return out

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(self, tokens: torch.Tensor, steps: int = 50, eta: float = 0.0,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
               guidance: float | None = None) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in ``[0, 1]`` generated (DDIM) from tokens ``[B, U, Dc]``. ``guidance`` w
        (default: the model's ``guidance``) != 1, for a model trained with ``cond_dropout``: classifier-free
        guidance, ε_null + w (ε_tokens − ε_null)."""
        check_float_tensor("tokens", tokens, 3)
        U, Dc = self.config["num_units"], self.config["unit_dim"]
        if tokens.shape[1:] != (U, Dc):
            raise ValueError(f"tokens must have shape [B, {U}, {Dc}], got {tuple(tokens.shape)}")
        shape = (tokens.shape[0],) + self.diffusion_shape
        if noise is None:
            noise = _rng.randn(shape, generator, self.device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        was = self.training
        self.eval()
        try:
            cond = self.condition(tokens.to(self.device))
            x = self.schedule.ddim(self._denoiser(cond, guidance), noise.to(self.device), steps, eta,
                                   generator, clip=self._x0_clip())
            return self.from_diffusion(x)
        finally:
            self.train(was)

    def _denoiser(self, cond: torch.Tensor, guidance: float):
        """``eps_fn(x_t, t)`` of the sampler: the U-Net on ``cond [B, U, Dc]``, or the guided combination."""
        guidance = self.config["guidance"] if guidance is None else guidance
        _check_guidance(guidance, self.config["cond_dropout"])
        if guidance == 1.0:
            return lambda xt, t: self.unet(xt, t, cond)
        null = self.null_tokens.to(cond.dtype).expand_as(cond)

        def eps_fn(xt, t):
            e = self.unet(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([cond, null]))
            e_c, e_u = e.chunk(2)
            return e_u + guidance * (e_c - e_u)
        return eps_fn

    def _units(self, unit) -> list[int]:
        U = self.config["num_units"]
        units = list(range(U)) if unit is None else ([unit] if isinstance(unit, int) else list(unit))
        bad = [u for u in units if not isinstance(u, int) or not 0 <= u < U]
        if bad or not units:
            raise ValueError(f"unit must be an int (or ints) in [0, {U}), got {unit!r}")
        return units

    @torch.no_grad()
    def interchange(self, src: torch.Tensor, tgt: torch.Tensor, unit, steps: int = 50,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate from ``src``'s tokens with the tokens of ``unit`` (an int, a list, or None for all)
        taken from ``tgt``. Same noise for every image of a call when ``generator`` is seeded."""
        ts, tt = self.encode(src), self.encode(tgt)
        if ts.shape[0] != tt.shape[0]:
            raise ValueError(f"src and tgt must have the same batch size, got {ts.shape[0]} and {tt.shape[0]}")
        units = self._units(unit)
        mixed = ts.clone()
        mixed[:, units] = tt[:, units]
        return self.sample(mixed, steps, generator=generator)

    @torch.no_grad()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, unit, n: int = 8, steps: int = 50,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """``[n, C, H, W]``: images from ``a`` (one image) with ``unit``'s token moved linearly to ``b``'s."""
        if n < 2:
            raise ValueError(f"n must be >= 2, got {n}")
        ta, tb = self.encode(a[:1]), self.encode(b[:1])
        units = self._units(unit)
        w = torch.linspace(0, 1, n, device=self.device).view(n, 1, 1)
        tok = ta.repeat(n, 1, 1)
        tok[:, units] = (1 - w) * ta[:, units] + w * tb[:, units]
        noise = _rng.randn((1,) + self.diffusion_shape, generator, self.device).repeat(n, 1, 1, 1)
        return self.sample(tok, steps, noise=noise)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, t: int = 100,
                       tokens: torch.Tensor | None = None) -> torch.Tensor:  # [B, U, H, W]
        """Cross-attention of the U-Net's positions to every latent unit at timestep ``t``, averaged over
        heads and attention layers and resized to the image (rows sum to 1 over units). ``tokens [B, U, Dc]``:
        the condition in place of ``x``'s own tokens (e.g. the edited tokens ``x`` was generated from)."""
        x = self._check_images(x)
        if tokens is None:
            tokens = self.encoder(x * 2 - 1)
        else:
            check_float_tensor("tokens", tokens, 3)
            if tokens.shape != (x.shape[0], self.config["num_units"], self.config["unit_dim"]):
                raise ValueError(f"tokens must have shape [{x.shape[0]}, {self.config['num_units']}, "
                                 f"{self.config['unit_dim']}], got {tuple(tokens.shape)}")
        cond = self.condition(tokens.to(x.device))
        x0 = self.to_diffusion(x)
        blocks = self.unet.attention_blocks()
        was = self.training
        self.eval()
        for blk in blocks:
            blk.record = True
        try:
            tt = torch.full((x0.shape[0],), int(t), device=x0.device, dtype=torch.long)
            noise = torch.randn(x0.shape, device=x0.device, generator=torch.Generator(x0.device).manual_seed(0))
            self.unet(self.schedule.q_sample(x0, tt, noise), tt, cond)
            s = x.shape[-1]
            maps = []
            for blk in blocks:
                w = blk.last_cross_attention.mean(1)                             # [B, HW, U]
                r = int(round(w.shape[1] ** 0.5))
                w = w.transpose(1, 2).reshape(w.shape[0], -1, r, r)
                maps.append(F.interpolate(w, size=(s, s), mode="bilinear", align_corners=False))
        finally:
            for blk in blocks:
                blk.record = False
                blk.last_cross_attention = None
            self.train(was)
        return torch.stack(maps).mean(0)

    # ------------------------------------------------------------------ persistence
    def save(self, directory) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomically per file)."""
        from .checkpoint import save_model
        return save_model(self, directory)

    @classmethod
    def load(cls, path, map_location="cpu", ema: bool = False) -> "AnchoredDiffusion":
        """Load from a checkpoint directory, or from a run directory (its latest complete checkpoint).
        ``ema=True``: the moving average of the weights (a run trained with ``ema_decay``), with the
        checkpoint's DyGA mixtures. Only safetensors and JSON are read; nothing is unpickled."""
        from .checkpoint import load_model
        return load_model(cls, path, map_location, ema=ema)
