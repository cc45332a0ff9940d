"""The dataset's latents under one first stage, encoded once into a memory-mapped file (DESIGN §6a).

A cache directory holds ``latents.npy`` (``[N, C, h, w]`` float32, memory-mapped), ``filled.npy`` (``[N]``
uint8: which rows are encoded) and ``cache.json`` (the SHA-256 of the first stage's weights, the dataset's
description and the shape). Rows are encoded on first use (``get``) or all at once (``build``, with a progress
bar); a row is marked filled only after its latents are written and flushed, so a killed process leaves a
cache that is still right. A cache whose ``cache.json`` names other first-stage weights or another dataset is
refused with ``StaleLatentCache`` (``rebuild=True`` deletes and rebuilds it instead): it is never used.
``default_cache_dir`` puts the cache beside the first stage in a folder named by the weights' hash, so new
weights get a new cache.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from .data.batches import get_batch, render_batch

FORMAT = "dga_fast/latents/1"


class StaleLatentCache(ValueError):
    """The cache on disk was made by other first-stage weights or from another dataset."""


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def default_cache_dir(first_stage_dir, dataset_key: dict, fingerprint: str) -> Path:
    """``FIRST_STAGE_DIR/latents/<dataset name>-<size>-<hash of dataset_key>-<weights hash>``: other weights or
    another dataset (or split) get their own folder."""
    key = hashlib.sha256(json.dumps(dataset_key, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{dataset_key.get('name', 'data')}-{dataset_key.get('image_size', '')}-{key}-{fingerprint[:12]}"
    return Path(first_stage_dir) / "latents" / name


class LatentCache:
    """``get(idx) -> [len(idx), C, h, w]`` latents of ``dataset`` under ``first_stage`` (see the module
    docstring). ``dataset_key`` (JSON-able, e.g. the run config's dataset entry) identifies the dataset."""

    def __init__(self, first_stage, dataset, directory, dataset_key: dict, batch_size: int = 256,
                 rebuild: bool = False, progress: bool = True):
        self.first_stage, self.dataset, self.batch_size, self.progress = first_stage, dataset, batch_size, progress
        self.directory = Path(directory)
        self.fingerprint = weights_fingerprint(first_stage)
        shape = [len(dataset), *first_stage.latent_shape]
        self.meta = {"format": FORMAT, "first_stage_sha256": self.fingerprint, "dataset": dataset_key,
                     "shape": shape, "dtype": "float32"}
        meta_path = self.directory / "cache.json"
        if meta_path.exists():
            self._check(meta_path, rebuild)
        if not meta_path.exists():
            self._create()
        self.latents = np.load(self.directory / "latents.npy", mmap_mode="r+", allow_pickle=False)
        self.filled = np.load(self.directory / "filled.npy", mmap_mode="r+", allow_pickle=False)

    def _check(self, meta_path: Path, rebuild: bool) -> None:
        try:
            found = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            found = {}
        problems = [f"{k}: expected {self.meta[k]!r}, found {found.get(k)!r}"
                    for k in ("format", "first_stage_sha256", "dataset", "shape") if found.get(k) != self.meta[k]]
        files_ok = all((self.directory / f).is_file() for f in ("latents.npy", "filled.npy"))
        if not problems and files_ok:
            return
        if not rebuild:
            why = "; ".join(problems) if problems else "latents.npy or filled.npy is missing"
            raise StaleLatentCache(f"latent cache {self.directory} does not belong to this first stage and "
                                   f"dataset ({why}); delete it or pass rebuild=True (--rebuild-latents)")
        shutil.rmtree(self.directory)

    def _create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        n = self.meta["shape"][0]
        np.lib.format.open_memmap(self.directory / "latents.npy", "w+", np.float32, tuple(self.meta["shape"])).flush()
        np.lib.format.open_memmap(self.directory / "filled.npy", "w+", np.uint8, (n,)).flush()
        tmp = self.directory / "cache.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2))
        tmp.replace(self.directory / "cache.json")

    def __len__(self) -> int:
        return self.meta["shape"][0]

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())

    @torch.no_grad()
    def ensure(self, idx) -> int:
        """Encode the rows of ``idx`` not yet in the cache; returns how many were encoded."""
        idx = np.unique(np.asarray(torch.as_tensor(idx).reshape(-1), dtype=np.int64))
        todo = idx[self.filled[idx] == 0]
        if not len(todo):
            return 0
        fs = self.first_stage
        device = next(fs.parameters()).device
        chunks = range(0, len(todo), self.batch_size)
        if self.progress and len(chunks) > 4:
            from tqdm.auto import tqdm
            chunks = tqdm(chunks, desc="encode latents", unit="batch", dynamic_ncols=True)
        was = fs.training
        fs.eval()
        try:
            for i in chunks:
                rows = todo[i:i + self.batch_size]
                z = fs.encode(get_batch(self.dataset, torch.from_numpy(rows)).to(device))
                self.latents[rows] = z.float().cpu().numpy()
                self.latents.flush()
                self.filled[rows] = 1
                self.filled.flush()
        finally:
            fs.train(was)
        return len(todo)

    def build(self) -> "LatentCache":
        """Encode every row not yet cached (progress bar)."""
        self.ensure(np.arange(len(self)))
        return self

    def get(self, idx) -> torch.Tensor:  # [n] -> [n, C, h, w]
        idx = torch.as_tensor(idx).reshape(-1)
        self.ensure(idx)
        return torch.from_numpy(np.ascontiguousarray(self.latents[idx.numpy()]))


class LatentDataset(torch.utils.data.Dataset):
    """A dataset whose batches also carry their cached latents: ``get_batch`` gives what the wrapped dataset
    gives, ``get_latents(idx)`` the latents; every other attribute (factors, sizes) is the dataset's."""

    def __init__(self, dataset, cache: LatentCache):
        if len(cache) != len(dataset):
            raise ValueError(f"the latent cache has {len(cache)} rows, the dataset {len(dataset)} items")
        self.dataset, self.cache = dataset, cache

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]

    def get_batch(self, idx):
        return render_batch(self.dataset, idx)

    def get_latents(self, idx) -> torch.Tensor:
        return self.cache.get(idx)

    def __getattr__(self, name):
        if name in ("dataset", "cache"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
