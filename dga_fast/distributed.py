"""Data parallelism over ``torch.distributed`` (DESIGN §6): process-group setup from torchrun's environment, and
the ``Reducer`` through which the DyGA refit sums its statistics over ranks.

The distributed refit never moves raw tokens between ranks: every E-step runs on the rank's own tokens and only
per-component sufficient statistics (mass, first moment, centred second moment), log-likelihood sums, counts and
the handful of k-means++ seed rows are summed with ``all_reduce``. Every split / filter / merge / stop decision is
then computed from the same reduced numbers on every rank, so the ranks take the same path and end with the
same buffers. In one process ``LOCAL`` (world size 1) passes tensors through untouched: the single-process path
pays nothing.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

ENV_TIMEOUT = "DGA_FAST_DIST_TIMEOUT"   # seconds a collective may wait for a peer (default 300)


def is_active() -> bool:
    """Whether a process group of more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def timeout() -> datetime.timedelta:
    raw = os.environ.get(ENV_TIMEOUT, "300")
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_TIMEOUT} must be a number of seconds, got {raw!r}") from None
    if not seconds > 0:
        raise ValueError(f"{ENV_TIMEOUT} must be > 0, got {raw!r}")
    return datetime.timedelta(seconds=seconds)


def init_from_env(device: str | torch.device = "cpu") -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT`` or a rendezvous endpoint): ``nccl`` for CUDA, ``gloo`` for CPU, with a
    timeout of ``DGA_FAST_DIST_TIMEOUT`` seconds (default 300) after which a collective waiting on a dead rank
    fails instead of hanging. On CUDA every rank uses the GPU ``LOCAL_RANK``. Returns whether the run is
    distributed; a no-op when already initialised or when not launched by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", timeout=timeout())
    return True


def shutdown(clean: bool = True) -> None:
    """Leave the process group, if one is initialised. After a clean run (``clean``) every rank first waits at a
    barrier, so that no rank tears its gloo connections down while a peer still has them open (that race aborted
    a rank at exit, ``terminate called without an active exception``); after an error the barrier is skipped, as
    a dead peer would make it wait out the timeout."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean and dist.get_world_size() > 1:
        dist.barrier()
    dist.destroy_process_group()


def local_device(device: str | torch.device) -> torch.device:
    """``device`` with a CUDA index made this rank's (``LOCAL_RANK``) under torchrun."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return dev


class Reducer:
    """Sums (and maxima) over the ranks of a process group (``world`` ranks, this one ``rank``).
    ``Reducer()`` follows the default group when one of more than one rank is initialised; ``LOCAL`` is the
    one-process identity."""

    def __init__(self, group=None, enabled: bool = True):
        on = enabled and dist.is_available() and dist.is_initialized()
        self.group = group
        self.world = dist.get_world_size(group) if on else 1
        self.rank = dist.get_rank(group) if on and self.world > 1 else 0
        self._cpu = on and self.world > 1 and dist.get_backend(group) == "gloo"

    def __repr__(self) -> str:
        return f"Reducer(world={self.world}, rank={self.rank})"

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the ranks (a new tensor; ``t`` itself in one process). bool sums as int64."""
        if self.world == 1:
            return t
        out = t.to(torch.int64) if t.dtype == torch.bool else t
        out = (out.cpu() if self._cpu else out).contiguous().clone()
        dist.all_reduce(out, group=self.group)
        return out.to(t.device)

    def max(self, t: torch.Tensor) -> torch.Tensor:
        """``t``'s elementwise maximum over the ranks (``t`` itself in one process)."""
        if self.world == 1:
            return t
        out = (t.cpu() if self._cpu else t).contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=self.group)
        return out.to(t.device)

    def sum_int(self, n: int) -> int:
        if self.world == 1:
            return int(n)
        return int(self.sum(torch.tensor([int(n)], dtype=torch.int64, device=self._device())).item())

    def sizes(self, n: int) -> list[int]:
        """``n`` of every rank, in rank order."""
        if self.world == 1:
            return [int(n)]
        buf = torch.zeros(self.world, dtype=torch.int64, device=self._device())
        buf[self.rank] = int(n)
        return [int(v) for v in self.sum(buf).tolist()]

    def _device(self) -> torch.device:
        if self._cpu or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", torch.cuda.current_device())


LOCAL = Reducer(enabled=False)


class RankStopped(RuntimeError):
    """A data-parallel run stopped on this rank (a collective failed: another rank died or timed out), with
    the rank, the step and what to do next in the message."""


def global_rows(x: torch.Tensor,     # [G, n, D] this rank's rows
                idx: torch.Tensor,   # [G, M] int64 global row indices
                offset: int, reducer: Reducer) -> torch.Tensor:  # [G, M, D]
    """Rows ``idx`` of the rows of all ranks concatenated in rank order (this rank's start at ``offset``): each
    rank contributes the rows it holds, zeros elsewhere, and the sum is taken over ranks. In one process, a
    gather."""
    D = x.shape[-1]
    if reducer.world == 1:
        return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, D))
    n = x.shape[1]
    local = idx - offset
    mine = (local >= 0) & (local < n)
    rows = torch.gather(x, 1, local.clamp(0, max(n - 1, 0)).unsqueeze(-1).expand(-1, -1, D)) if n else \
        x.new_zeros(*idx.shape, D)
    return reducer.sum(torch.where(mine.unsqueeze(-1), rows, torch.zeros_like(rows)))


__all__ = ["Reducer", "LOCAL", "RankStopped", "init_from_env", "is_active", "rank", "world_size", "local_device",
           "timeout", "global_rows", "ENV_TIMEOUT"]
