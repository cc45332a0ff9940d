"""FirstStage: the latent diffusion model's VQ-regularised autoencoder (DESIGN §6a).

64×64×3 images → 16×16×3 latents with the official configuration (``ch=32``, ``ch_mult=(1, 2, 4)``, two
res blocks per level, codebook 2048 × 3): the downsampling factor is ``2 ** (len(ch_mult) - 1)``, so any
image size divisible by it works the same way (32×32 → 8×8). The layout follows the latent-diffusion VQ
autoencoders: conv, per level res blocks then a stride-2 conv, a middle block with self-attention, a
``1×1`` conv to the code dimension; the decoder mirrors it with nearest-neighbour upsampling.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_batch
from .quantize import VectorQuantizer
from .unet import norm_groups


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(norm_groups(c), c, eps=1e-6)


class _Res(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
                                  _norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.body(x)


class _Attn(nn.Module):
    """Single-head self-attention over positions."""

    def __init__(self, c: int):
        super().__init__()
        self.norm, self.qkv, self.proj = _norm(c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):  # [B, C, H, W]
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)   # [B, HW, C] each
        h = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(h.transpose(1, 2).reshape(B, C, H, W))


def _middle(c: int) -> nn.Sequential:
    return nn.Sequential(_Res(c, c), _Attn(c), _Res(c, c))


class _Encoder(nn.Sequential):
    def __init__(self, in_ch: int, ch: int, ch_mult, num_res_blocks: int, z_ch: int):
        layers, c = [nn.Conv2d(in_ch, ch, 3, padding=1)], ch
        for i, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                layers.append(_Res(c, ch * m))
                c = ch * m
            if i != len(ch_mult) - 1:
                layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        layers += [_middle(c), _norm(c), nn.SiLU(), nn.Conv2d(c, z_ch, 3, padding=1)]
        super().__init__(*layers)


class _Decoder(nn.Sequential):
    def __init__(self, out_ch: int, ch: int, ch_mult, num_res_blocks: int, z_ch: int):
        c = ch * ch_mult[-1]
        layers = [nn.Conv2d(z_ch, c, 3, padding=1), _middle(c)]
        for i, m in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                layers.append(_Res(c, ch * m))
                c = ch * m
            if i != 0:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]
        layers += [_norm(c), nn.SiLU(), nn.Conv2d(c, out_ch, 3, padding=1)]
        super().__init__(*layers)


class FirstStage(nn.Module):
    """VQ autoencoder. Images are ``[B, C, S, S]`` in ``[0, 1]``; latents ``[B, z_channels, S/f, S/f]``
    with ``f = 2 ** (len(ch_mult) - 1)``.

    ``encode(x)`` returns the *pre-quantisation* latent (what the diffusion model denoises, as in latent
    diffusion); ``decode(z)`` quantises it to the nearest codes and decodes. ``loss(x)`` is the training
    objective: L1 (or L2) reconstruction + ``commitment`` × ‖z − sg(q)‖²; the codebook itself follows the
    encoder by EMA with dead-code restarts (``VectorQuantizer``). No perceptual or adversarial term: their
    weights would have to be downloaded.
    """

    def __init__(self, image_size: int = 64, in_channels: int = 3, ch: int = 32, ch_mult=(1, 2, 4),
                 num_res_blocks: int = 2, z_channels: int = 3, num_codes: int = 2048, commitment: float = 0.25,
                 loss: str = "l1", decay: float = 0.99):
        super().__init__()
        f = 2 ** (len(ch_mult) - 1)
        if not isinstance(image_size, int) or image_size < f or image_size % f:
            raise ValueError(f"image_size must be a positive multiple of the downsampling factor {f} "
                             f"(2 ** (len(ch_mult) - 1)), got {image_size!r}")
        if loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {loss!r}")
        self.config = dict(image_size=image_size, in_channels=in_channels, ch=ch, ch_mult=list(ch_mult),
                           num_res_blocks=num_res_blocks, z_channels=z_channels, num_codes=num_codes,
                           commitment=commitment, loss=loss, decay=decay)
        self.factor = f
        self.encoder = _Encoder(in_channels, ch, ch_mult, num_res_blocks, z_channels)
        self.quantizer = VectorQuantizer(num_codes, z_channels, decay=decay)
        self.decoder = _Decoder(in_channels, ch, ch_mult, num_res_blocks, z_channels)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        s = self.config["image_size"] // self.factor
        return (self.config["z_channels"], s, s)

    def _check_images(self, x, name: str = "x") -> torch.Tensor:
        c, s = self.config["in_channels"], self.config["image_size"]
        return check_batch(name, x, (c, s, s), "the first stage's in_channels, image_size")

    def _check_latents(self, z, name: str = "z") -> torch.Tensor:
        return check_batch(name, z, self.latent_shape, "the first stage's latent shape")

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, S, S] -> [B, zc, S/f, S/f]
        return self.encoder(self._check_images(x) * 2 - 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # [B, zc, S/f, S/f] -> [B, C, S, S]
        q, _, _ = self.quantizer(self._check_latents(z))
        return (self.decoder(q) + 1) / 2

    def forward(self, x: torch.Tensor):  # -> (reconstruction [B, C, S, S], commitment loss, codes)
        z = self.encode(x)
        q, commit, codes = self.quantizer(z)
        return (self.decoder(q) + 1) / 2, commit, codes

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Training objective and its parts (``rec``, ``commit``)."""
        rec, commit, _ = self(x)
        err = (rec - x).abs().mean() if self.config["loss"] == "l1" else F.mse_loss(rec, x)
        total = err + self.config["commitment"] * commit
        return total, {"rec": float(err.detach()), "commit": float(commit.detach())}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x))`` clamped to ``[0, 1]``, in eval mode."""
        was = self.training
        self.eval()
        try:
            return self.decode(self.encode(x)).clamp(0, 1)
        finally:
            self.train(was)

    @torch.no_grad()
    def psnr(self, x: torch.Tensor, batch_size: int = 64) -> float:
        """Mean reconstruction PSNR (dB, images in ``[0, 1]``) over the batch ``x``."""
        vals = []
        for xb in x.split(batch_size):
            mse = (self.reconstruct(xb) - xb).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            vals.append(-10 * torch.log10(mse))
        return float(torch.cat(vals).mean())

    @torch.no_grad()
    def code_stats(self, x: torch.Tensor) -> dict:
        """Codebook use on images ``x``: ``codes_used`` (fraction of the codes chosen by at least one latent
        position) and ``perplexity`` (exp of the entropy of the code histogram; at most ``num_codes``)."""
        was = self.training
        self.eval()
        try:
            codes = torch.cat([self.quantizer(self.encode(xb))[2].reshape(-1) for xb in x.split(64)])
        finally:
            self.train(was)
        p = torch.bincount(codes, minlength=self.quantizer.num_codes).double() / codes.numel()
        h = -(p[p > 0] * p[p > 0].log()).sum()
        return {"codes_used": round(float((p > 0).double().mean()), 4), "perplexity": round(float(h.exp()), 1)}

    # ------------------------------------------------------------------ persistence
    def save(self, directory) -> Path:
        """``model.safetensors`` + ``config.json`` (atomic); ``FirstStage.load`` reads them back."""
        from ..checkpoint import save_model
        return save_model(self, directory)

    @classmethod
    def load(cls, path, map_location="cpu") -> "FirstStage":
        """From a saved first stage or a ``train-autoencoder`` run directory (its latest checkpoint).
        Only safetensors and JSON are read."""
        from ..checkpoint import load_model
        return load_model(cls, path, map_location)
