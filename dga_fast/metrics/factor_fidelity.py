"""Factor fidelity: which factors survive a round trip through a model. Images are drawn with known factors,
passed through ``reconstruct`` (the diffusion model's ``sample(encode(x))``, or a first stage's
``decode(encode(x))``), and a probe trained on real images (``ImageFactorProbe``) reads every factor off the
reconstructions and off the originals. Per factor:

- ``accuracy_reconstructed``: the probe's accuracy on the reconstructions against the originals' true factors;
- ``accuracy_real``: its accuracy on the originals themselves (what the probe can read at all);
- ``fidelity``: their ratio (1: the round trip keeps everything the probe sees; chance / accuracy_real: nothing);
- ``chance``: one over the factor's number of classes.

A factor at fidelity ≈ 1 is carried from image to image by the model; one near its chance level is lost on the
way (by the first stage, or by the units the U-Net is conditioned on)."""
from __future__ import annotations

import numpy as np
import torch

from ..data.dlib_adapter import as_factor_dataset
from ..np_random import as_random_state
from .image_probe import ImageFactorProbe, bin_factors, factor_classes


def factor_fidelity(reconstruct, dataset, probe: ImageFactorProbe | None = None, *, n: int = 512, seed: int = 0,
                    batch_size: int = 64, probe_steps: int = 400) -> dict:
    """``reconstruct(images [B, C, H, W] in [0, 1]) -> images`` (same shape) on ``n`` images drawn from
    ``dataset`` (``sample_factors`` / ``images_from_factors`` / ``factor_sizes``); ``probe``: an
    ``ImageFactorProbe`` (default: one trained here with ``probe_steps`` steps and ``seed``). Returns the per-factor
    dicts of the module docstring (factor name → value), ``n`` and the probe's ``max_classes``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    probe = probe if probe is not None else ImageFactorProbe.fit(dataset, steps=probe_steps, seed=seed)
    rng = as_random_state(seed + 7919)       # other draws than the probe's training and held-out images
    ds = as_factor_dataset(dataset, rng)
    f = ds.sample_factors(n, rng)
    x = torch.as_tensor(ds.images_from_factors(f)).float()
    y = bin_factors(f, probe.sizes, probe.max_classes)                                     # [n, F]
    with torch.no_grad():
        rec = torch.cat([reconstruct(x[i:i + batch_size]).detach().float().cpu() for i in range(0, n, batch_size)])
    if rec.shape != x.shape:
        raise ValueError(f"reconstruct must return images of the input's shape {tuple(x.shape[1:])}, got "
                         f"{tuple(rec.shape[1:])}")
    if not bool(torch.isfinite(rec).all()):
        raise ValueError("reconstruct returned non-finite values")
    acc_real = (np.asarray(probe(x)) == y).mean(0)
    acc_rec = (np.asarray(probe(rec.clamp(0, 1))) == y).mean(0)
    names = probe.factor_names
    classes = factor_classes(probe.sizes, probe.max_classes)
    per = lambda v: {name: round(float(v[j]), 4) for j, name in enumerate(names)}   # noqa: E731
    return {"fidelity": per(acc_rec / np.maximum(acc_real, 1e-12)), "accuracy_reconstructed": per(acc_rec),
            "accuracy_real": per(acc_real), "chance": per([1.0 / c for c in classes]), "n": n,
            "max_classes": probe.max_classes}


def model_reconstruction(model, steps: int = 25, seed: int = 0):
    """``images -> model.sample(model.encode(images))``: DDIM with ``steps`` steps from noise seeded per call
    (the same draws whatever the batch split, one generator advanced in order)."""
    gen = torch.Generator().manual_seed(seed)

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn((len(x),) + tuple(model.diffusion_shape), generator=gen).to(model.device)
        return model.sample(model.encode(x.to(model.device)), steps=steps, noise=noise)
    return reconstruct


def first_stage_reconstruction(first_stage):
    """``images -> first_stage.decode(first_stage.encode(images))``: what the latent space keeps."""
    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        return first_stage.reconstruct(x.to(next(first_stage.parameters()).device))
    return reconstruct
