"""FID (Heusel et al. 2017), as the paper's CelebA table reports it, computed by torchmetrics'
``FrechetInceptionDistance``: the standard Inception-v3 features (torch-fidelity's ``inception-v3-compat``, 2048-d
pool features, the TF-FID network) or any feature network passed in; the Fréchet distance between the Gaussians
fitted to the two feature sets, ``|μ_r − μ_g|² + tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2})``.

Generated images: either given (``[n, C, H, W]`` in [0, 1]), or sampled by a model (``model.sample`` from the
tokens ``model.encode`` gives of ``n`` dataset images, seeded). Real images: ``n`` other dataset images.

The standard features need ``torchmetrics``, ``torch-fidelity`` and a ``torchvision`` that matches the installed
torch, and the Inception weights (``INCEPTION_FILE``, fetched from ``INCEPTION_URL`` on first use). Offline, download
the file elsewhere and pass ``weights=PATH`` (``evaluate --fid-weights PATH``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..np_random import as_random_state

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


def _metric_class():
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as e:
        raise ImportError("fid needs torchmetrics (pip install torchmetrics)") from e
    return FrechetInceptionDistance


def frechet_metric(feature_extractor: torch.nn.Module | None = None, weights=None):
    """torchmetrics' ``FrechetInceptionDistance`` over ``feature_extractor`` (images ``[B, C, H, W]`` in [0, 1] →
    ``[B, F]``; give it a ``num_features`` attribute, else torchmetrics runs it once on a 3×299×299 image to learn
    F), or over the standard Inception features when ``None`` (``weights``: the Inception weight file; ``None``:
    torch-fidelity's download)."""
    FID = _metric_class()
    if feature_extractor is not None:
        if not isinstance(feature_extractor, torch.nn.Module):
            raise TypeError(f"feature_extractor must be a torch.nn.Module, got {type(feature_extractor).__name__}")
        return FID(feature=feature_extractor, normalize=True, reset_real_features=False)
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"--fid-weights {weights}: no such file (the Inception weights {INCEPTION_FILE}, "
                                f"from {INCEPTION_URL})")
    try:
        return FID(feature=2048, normalize=True, reset_real_features=False,
                   feature_extractor_weights_path=None if weights is None else str(weights))
    except ModuleNotFoundError as e:
        raise ImportError("fid with the standard Inception features needs torch-fidelity and a torchvision built "
                          "for the installed torch (pip install torch-fidelity torchvision); or pass "
                          "feature_extractor= (a torch.nn.Module, images -> features)") from e
    except (OSError, RuntimeError) as e:   # the download failed (no network) or the file is not the weights
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise FileNotFoundError(f"the Inception weights {INCEPTION_FILE} could not be loaded ({e}); download "
                                f"{INCEPTION_URL} where a network exists and pass --fid-weights PATH (fid(weights="
                                f"PATH)), or place the file in {hub}") from e


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]


def fid(model_or_images, dataset, *, n: int = 10_000, seed: int = 0, feature_extractor: torch.nn.Module | None = None,
        weights=None, steps: int = 50, batch_size: int = 64, progress: bool = False) -> dict:
    """FID between ``n`` real images of ``dataset`` and ``n`` generated ones (see the module docstring).
    ``model_or_images``: images ``[n, C, H, W]`` in [0, 1], or a model with ``encode`` and ``sample`` (``steps``
    DDIM steps). Returns ``fid``, ``n``, ``features`` and ``seconds``."""
    from tqdm.auto import tqdm

    from ..data.batches import get_batch
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    given = isinstance(model_or_images, (torch.Tensor, np.ndarray))
    if not given and not (hasattr(model_or_images, "encode") and hasattr(model_or_images, "sample")):
        raise TypeError("model_or_images must be images [n, C, H, W] or a model with encode() and sample()")
    fake = torch.as_tensor(model_or_images).float() if given else None
    if fake is not None and (fake.dim() != 4 or len(fake) < n):
        raise ValueError(f"the generated images must be [>= n, C, H, W] with n = {n}, got {tuple(fake.shape)}")
    if len(dataset) < (n if given else 2 * n):
        raise ValueError(f"dataset holds {len(dataset)} images; fid needs {n if given else 2 * n} (n real, and n to "
                         "condition the generated ones on)")
    t0 = time.perf_counter()
    metric = frechet_metric(feature_extractor, weights)
    rng = as_random_state(seed)
    order = torch.as_tensor(rng.permutation(len(dataset))[: 2 * n if not given else n])
    g = torch.Generator().manual_seed(int(rng.randint(0, 2**31 - 1)))
    batches = range(0, n, batch_size)
    for s in tqdm(batches, desc="fid", disable=not progress, leave=False):
        real = get_batch(dataset, order[s:s + batch_size]).float()
        metric.update(_rgb(real).clamp(0, 1), real=True)
        if given:
            gen = fake[s:s + batch_size]
        else:
            with torch.no_grad():
                cond = get_batch(dataset, order[n + s:n + s + batch_size]).float()
                device = getattr(model_or_images, "device", torch.device("cpu"))
                gen = model_or_images.sample(model_or_images.encode(cond.to(device)), steps=steps, generator=g).cpu()
        metric.update(_rgb(gen.float()).clamp(0, 1), real=False)
    value = float(metric.compute())
    return {"fid": value, "n": int(n), "seconds": round(time.perf_counter() - t0, 2),
            "features": "custom" if feature_extractor is not None else "inception-v3-compat pool 2048"}
