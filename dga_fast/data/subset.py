"""A dataset restricted to some of its indices (a held-out split), keeping its batch rendering and factors."""
from __future__ import annotations

import torch


class IndexSubset(torch.utils.data.Dataset):
    """Item ``i`` is ``dataset[indices[i]]``; ``get_batch`` returns the dataset's batch form
    (``data.batches.render_batch``); other attributes (``factor_sizes``, ...) are the dataset's."""

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
        from .batches import render_batch
        return render_batch(self.dataset, self.indices[torch.as_tensor(idx, dtype=torch.int64)])

    def __getattr__(self, name):
        if name in ("dataset", "indices"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
