"""Which samples each training step takes, seeded by ``(seed, step)`` so that a resumed run takes the same
batches as an uninterrupted one; shared by every training loop."""
from __future__ import annotations

import torch
from torch.utils.data.distributed import DistributedSampler


def step_seed(seed: int, step: int, stream: int = 0, rank: int = 0) -> int:
    return (seed * 1_000_003 + step * 7_919 + stream * 104_729 + rank * 15_485_863) % (2**63 - 1)


class BatchStream:
    """The sample indices of every step: this rank's shard of a seeded ``DistributedSampler`` epoch after epoch
    (shuffled per epoch with ``seed``; padded by repeating samples when ``n`` is not a multiple of the world
    size, as the sampler does), ``batch_size`` per step. Step ``s`` (1-based) takes positions ``[(s − 1)·B,
    s·B)`` of that stream, so any step's batch follows from ``(seed, s)`` alone (exact resume)."""

    def __init__(self, n: int, batch_size: int, seed: int, world: int = 1, rank: int = 0):
        self.sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                          drop_last=False)
        self.batch_size = batch_size
        self._epoch, self._order = -1, None

    @property
    def epoch_length(self) -> int:
        """Samples of this rank per epoch."""
        return len(self.sampler)

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, torch.tensor(list(iter(self.sampler)), dtype=torch.int64)
        return self._order

    def indices(self, step: int) -> torch.Tensor:
        L, out = self.epoch_length, []
        pos, end = (step - 1) * self.batch_size, step * self.batch_size
        while pos < end:
            epoch, off = divmod(pos, L)
            take = min(end - pos, L - off)
            out.append(self._epoch_order(epoch)[off:off + take])
            pos += take
        return torch.cat(out)


def render_batch(dataset, idx: torch.Tensor):
    """``dataset``'s batch at ``idx`` in the dataset's own form: its ``get_batch(idx)`` when it has one, else
    its items stacked (``(images, labels, ...)`` for tuple items, a tensor for tensor items). What a wrapping
    dataset (a subset, the latent cache) returns from its ``get_batch``."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(idx)
    items = [dataset[int(i)] for i in idx]
    if isinstance(items[0], (tuple, list)):
        return tuple(torch.stack([torch.as_tensor(f) for f in field]) for field in zip(*items))
    return torch.stack(items)


def get_batch(dataset, idx: torch.Tensor) -> torch.Tensor:
    """Images of ``dataset`` at ``idx`` as one float batch (uses ``dataset.get_batch`` when present; otherwise
    stacks the items' images only: the training loop's hot path does not stack labels it drops)."""
    if hasattr(dataset, "get_batch"):
        out = dataset.get_batch(idx)
        return out[0] if isinstance(out, (tuple, list)) else out
    items = [dataset[int(i)] for i in idx]
    return torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])
