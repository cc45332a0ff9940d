"""ImageFactorProbe: a small CNN that reads a dataset's factors off its images, trained on real images. What
``anchor_purity`` classifies generated images with; its held-out accuracy per factor says how far to trust
that (a factor the probe cannot read off real images cannot be read off generated ones either)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.dlib_adapter import as_factor_dataset
from ..np_random import as_random_state, int_seed


def factor_classes(sizes, max_classes: int) -> list[int]:
    """Classes per factor: its number of values, or ``max_classes`` equal bins of them when it has more."""
    return [min(int(s), int(max_classes)) for s in sizes]


def bin_factors(f: np.ndarray,  # [n, F] factor values
                sizes, max_classes: int) -> np.ndarray:  # [n, F] class indices
    sizes = np.asarray(sizes, dtype=np.int64)
    classes = np.asarray(factor_classes(sizes, max_classes), dtype=np.int64)
    return (np.asarray(f, dtype=np.int64) * classes) // sizes


class _Net(nn.Module):
    def __init__(self, channels: int, size: int, classes: list[int], width: int = 32):
        super().__init__()
        layers, c, s = [], channels, size
        while s > 4:
            layers += [nn.Conv2d(c, width, 3, stride=2, padding=1), nn.GroupNorm(4, width), nn.SiLU()]
            c, s = width, (s + 1) // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c * s * s, sum(classes))
        self.classes = classes

    def forward(self, x):  # [B, C, H, W] in [0, 1] -> list of [B, classes_f] logits
        return list(self.head(self.body(x * 2 - 1)).split(self.classes, dim=1))


class ImageFactorProbe:
    """``probe(images [N, C, H, W]) -> [N, F]`` int64 predicted classes (``bin_factors`` of the factors).

    ``ImageFactorProbe.fit(dataset, n_train, steps, seed)`` trains it on ``n_train`` images drawn with
    ``dataset.sample_factors`` / ``images_from_factors`` (Adam, batch 64) and measures ``accuracy`` per factor on
    512 other drawn images."""

    def __init__(self, net: _Net, sizes, max_classes: int, factor_names):
        self.net, self.sizes, self.max_classes = net.eval(), tuple(int(s) for s in sizes), int(max_classes)
        self.factor_names = tuple(factor_names)
        self.accuracy: dict[str, float] = {}

    @classmethod
    def fit(cls, dataset, n_train: int = 4096, steps: int = 400, seed: int = 0, max_classes: int = 10,
            progress: bool = False) -> "ImageFactorProbe":
        from tqdm.auto import tqdm
        sizes = list(dataset.factor_sizes)
        names = list(getattr(dataset, "factor_names", [f"factor{i}" for i in range(len(sizes))]))
        rng = as_random_state(seed)
        dataset = as_factor_dataset(dataset, rng)
        f = dataset.sample_factors(n_train + 512, rng)
        x = torch.as_tensor(dataset.images_from_factors(f)).float()
        y = torch.as_tensor(bin_factors(f, sizes, max_classes))
        seed = int_seed(seed, rng)
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _Net(x.shape[1], x.shape[-1], factor_classes(sizes, max_classes))
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        for _ in tqdm(range(steps), desc="image factor probe", disable=not progress, leave=False):
            idx = torch.randint(0, n_train, (64,), generator=g)
            loss = sum(nn.functional.cross_entropy(lo, y[idx, j]) for j, lo in enumerate(net(x[idx])))
            opt.zero_grad()
            loss.backward()
            opt.step()
        probe = cls(net, sizes, max_classes, names)
        pred = probe(x[n_train:])
        probe.accuracy = {n: round(float((pred[:, j] == y[n_train:, j]).float().mean()), 4)
                          for j, n in enumerate(names)}
        return probe

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, F] int64
        return torch.stack([lo.argmax(1) for lo in self.net(images.float().cpu())], dim=1)
