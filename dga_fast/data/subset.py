"""A dataset restricted to some of its indices (a held-out split), keeping its batch rendering and factors."""
from __future__ import annotations

import torch


class IndexSubset(torch.utils.data.Dataset):
    """Item ``i`` is ``dataset[indices[i]]``; ``get_batch`` renders through the dataset's own ``get_batch`` when
    it has one; other attributes (``factor_sizes``, ...) are the dataset's."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if len(self.indices) == 0:
            raise ValueError("indices is empty")
        if int(self.indices.min()) < 0 or int(self.indices.max()) >= len(dataset):
            raise ValueError(f"indices must lie in [0, {len(dataset)})")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[int(self.indices[i])]

    def get_batch(self, idx):
        from .batches import get_batch
        rows = self.indices[torch.as_tensor(idx, dtype=torch.int64)]
        return self.dataset.get_batch(rows) if hasattr(self.dataset, "get_batch") else get_batch(self.dataset, rows)

    def __getattr__(self, name):
        if name in ("dataset", "indices"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
