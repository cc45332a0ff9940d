"""Training loop: AdamW, optional bf16 autocast and EMA, DyGA refit schedule, progress bar, NVTX ranges,
atomic checkpoints and exact resume (DESIGN §6), on one process or data-parallel under ``torchrun``.

Determinism: the batch indices, the diffusion noise/timesteps and the skip-dropout masks of step ``s``
come from generators seeded by ``(seed, s)`` (and the rank), so a run resumed from a checkpoint at step ``s``
takes the same steps as an uninterrupted one (up to floating-point reduction order). Batches come from
epochs of a seeded ``DistributedSampler`` (each sample once per epoch, shuffled per epoch).

Data parallel: when a ``torch.distributed`` group of more than one rank is initialised (``python -m dga_fast
train`` under ``torchrun`` initialises it from the environment), the model trains wrapped in
``DistributedDataParallel``, each rank draws ``batch_size`` images from its own shard (global batch =
``batch_size`` × world size), DyGA refits are distributed (``dga_fast.distributed``), and only rank 0 writes the
log, the progress bar and the checkpoints. Every rank resumes from the checkpoint rank 0 names.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data.distributed import DistributedSampler

from . import distributed as dist_
from .checkpoint import latest_checkpoint, model_config, read_json, read_tensors, write_checkpoint
from .collapse import CollapseGuard, EncoderCollapse
from .profiling import nvtx_range


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    amp: bool = False               # bf16 autocast
    ema_decay: float | None = None  # e.g. 0.999; None disables the EMA
    refit_every: int = 500          # DyGA refit every this many steps ...
    refit_warmup: int = 500         # ... from this step on
    refit_samples: int = 2048       # images whose tokens the refit uses
    ckpt_every: int = 500
    log_every: int = 10
    seed: int = 0
    progress: bool = True
    on_collapse: str = "warn"       # all units dead: "warn" or "stop" (checkpoint, raise EncoderCollapse)
    collapse_threshold: float = 0.1  # a unit is dead below this fraction of its peak token spread

    def validate(self) -> "TrainConfig":
        for name in ("steps", "batch_size", "refit_every", "refit_samples", "ckpt_every", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.refit_warmup < 0:
            raise ValueError(f"refit_warmup must be >= 0, got {self.refit_warmup}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        CollapseGuard(self.collapse_threshold, self.on_collapse)   # validates both
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        return self


def _step_seed(seed: int, step: int, stream: int = 0, rank: int = 0) -> int:
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


class _LossForward(torch.nn.Module):
    """``forward`` = ``model.loss``: what DistributedDataParallel wraps (it hooks the module's forward)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, generator):
        return self.model.loss(x, generator=generator)


def get_batch(dataset, idx: torch.Tensor) -> torch.Tensor:
    """Images of ``dataset`` at ``idx`` as one float batch (uses ``dataset.get_batch`` when present)."""
    if hasattr(dataset, "get_batch"):
        out = dataset.get_batch(idx)
    else:
        items = [dataset[int(i)] for i in idx]
        out = torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])
    return out[0] if isinstance(out, (tuple, list)) else out


def _flat_optimizer(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "scalars": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v
            else:
                meta["scalars"][f"{pid}.{k}"] = v
    return tensors, meta


def _unflat_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


class _EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v, 1 - self.decay)


def fit(model, dataset, out_dir=None, config: TrainConfig | None = None, resume: bool = False,
        run_info: dict | None = None, callback=None, **overrides) -> dict:
    """Train ``model`` (an ``AnchoredDiffusion``) on ``dataset`` (indexable, ``len() > 0``, items are
    images ``[C, H, W]`` in ``[0, 1]`` or ``(image, ...)`` tuples). With ``out_dir``, writes
    ``config.json``, ``log.jsonl`` and ``checkpoints/step_XXXXXXX/``; ``resume=True`` continues from the
    latest checkpoint there. ``run_info`` entries (e.g. the dataset) are added to ``config.json``.
    ``callback(step, model)``, if given, runs on every rank after every step.
    Under ``torch.distributed`` (more than one rank; see the module docstring) every rank calls ``fit`` with the
    same arguments; ``batch_size`` is per rank and the logged loss is the mean over ranks.
    Returns ``{"losses": [(step, loss), ...], "refit_steps": [...], "step": last step}``."""
    cfg = TrainConfig(**{**(asdict(config) if config else {}), **overrides}).validate()
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty")
    R = dist_.Reducer() if dist_.is_active() else dist_.LOCAL
    main = R.rank == 0
    device = model.device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = _EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    out = Path(out_dir) if out_dir is not None else None
    start = 0
    history = {"losses": [], "refit_steps": [], "spread_peak": None}
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        run_cfg = {"model": model.config, "train": asdict(cfg), **(run_info or {}),
                   "world_size": R.world, "global_batch_size": cfg.batch_size * R.world}
        (out / "config.json").write_text(json.dumps(run_cfg, indent=2))
    if resume:
        if out is None:
            raise ValueError("resume=True needs out_dir (the run directory to resume)")
        ck = _agreed_checkpoint(out, R)
        if ck is None:
            raise FileNotFoundError(f"resume=True but {out}/checkpoints holds no checkpoint")
        start = _load_training_state(ck, model, opt, ema, history)
        if main:
            _truncate_log(out / "log.jsonl", start)
    # check one batch before the loop: a clear error for wrong image size / channels / values
    probe = get_batch(dataset, torch.arange(min(2, n)))
    model._check_images(probe.to(device), "dataset images")
    guard = CollapseGuard(cfg.collapse_threshold, cfg.on_collapse, history["spread_peak"])
    stream = BatchStream(n, cfg.batch_size, cfg.seed, R.world, R.rank)
    net = _LossForward(model)
    if R.world > 1:
        net = _wrap_ddp(net, device)
    log = open(out / "log.jsonl", "a") if out is not None and main else None
    bar = None
    if cfg.progress and main:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True)
    model.train()
    t_last, imgs = time.perf_counter(), 0
    step = start
    try:
        for step in range(start + 1, cfg.steps + 1):
            x = get_batch(dataset, stream.indices(step)).to(device)
            torch.manual_seed(_step_seed(cfg.seed, step, 1, R.rank))      # skip-dropout masks of this step
            gdev = torch.Generator(device).manual_seed(_step_seed(cfg.seed, step, 2, R.rank))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                loss = net(x, gdev)
            mean_loss = R.sum(loss.detach().float()) / R.world
            if not torch.isfinite(mean_loss):
                raise FloatingPointError(f"non-finite loss {float(mean_loss)} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            logging = step % cfg.log_every == 0 or step == cfg.steps
            grads = _grad_norms(model) if logging else {}      # before clipping
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(model)
            lv = float(mean_loss)
            history["losses"].append((step, lv))
            imgs += cfg.batch_size * R.world
            if step >= cfg.refit_warmup and (step - cfg.refit_warmup) % cfg.refit_every == 0:
                with nvtx_range("refit"):
                    _refit(model, dataset, cfg, step, R)
                history["refit_steps"].append(step)
                if log is not None:
                    log.write(json.dumps({"step": step, "event": "refit", **model.last_refit}) + "\n")
                low, all_dead = guard.update(step, model.last_refit["spread"])
                history["spread_peak"] = guard.peak
                if low and log is not None:
                    log.write(json.dumps({"step": step, "event": "collapse", "units": low, "all": all_dead}) + "\n")
                    log.flush()
                if all_dead and cfg.on_collapse == "stop":
                    ck = save_training_state(out, step, model, opt, ema, cfg, history) \
                        if out is not None and main else None
                    raise EncoderCollapse(guard.message(step) + (f" Checkpoint: {ck}." if ck else ""), step, ck)
            if logging:
                now = time.perf_counter()
                ips = imgs / max(now - t_last, 1e-9)
                t_last, imgs = now, 0
                if log is not None:
                    log.write(json.dumps({"step": step, "loss": lv, "images_per_s": round(ips, 2), **grads}) + "\n")
                    log.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{lv:.4f}", img_s=f"{ips:.1f}")
            if bar is not None:
                bar.update()
            if out is not None and main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
                save_training_state(out, step, model, opt, ema, cfg, history)
            if callback is not None:
                callback(step, model)
    except EncoderCollapse:
        raise
    except RuntimeError as e:   # in a group: a failed collective (gloo / NCCL errors are RuntimeErrors)
        if R.world > 1:
            raise dist_.RankStopped(
                f"rank {R.rank}/{R.world}: training stopped at step {step} (if a collective failed: another "
                f"rank died, or did not answer within {dist_.ENV_TIMEOUT}={dist_.timeout().total_seconds():g} s): "
                f"{e}. Relaunch all ranks with --resume to continue from the last checkpoint") from e
        raise
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    history["step"] = cfg.steps
    return history


def _grad_norms(model) -> dict:
    """L2 norms of the gradients of the encoder (feature extractor and token MLPs) and of the U-Net."""
    out = {}
    for name in ("encoder", "unet"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])) \
            if grads else torch.zeros(())
        out[f"grad_norm_{name}"] = round(float(norm), 6)
    return out


def _wrap_ddp(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel: every rank starts from rank 0's weights and buffers. The buffers (DyGA's
    mixtures, the principal directions) change only at refits, which leave them identical on every rank, so
    they are not re-broadcast at each forward where this torch can say so."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel
    kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        kw["forward_sync_buffers"] = False   # still synced once at construction
    return DistributedDataParallel(net, **kw)


def _agreed_checkpoint(out: Path, R) -> Path | None:
    """The latest checkpoint as rank 0 sees it, the same path on every rank."""
    ck = latest_checkpoint(out) if R.rank == 0 else None
    if R.world > 1:
        box = [str(ck) if ck is not None else None]
        torch.distributed.broadcast_object_list(box, src=0)
        ck = Path(box[0]) if box[0] is not None else None
    return ck


def _refit(model, dataset, cfg: TrainConfig, step: int, R=dist_.LOCAL):
    """Refit DyGA on ``refit_samples`` seeded images; with several ranks each encodes every world-th of them
    and the refit is distributed."""
    g = torch.Generator().manual_seed(_step_seed(cfg.seed, step, 3))
    n = len(dataset)
    idx = torch.randperm(n, generator=g)[:cfg.refit_samples] if n > cfg.refit_samples else torch.arange(n)
    idx = idx[R.rank::R.world]
    batches = (get_batch(dataset, idx[i:i + 256]) for i in range(0, len(idx), 256))
    dyga = model.anchoring
    shown = dyga.progress if dyga is not None else None
    if dyga is not None:
        dyga.progress = cfg.progress and R.rank == 0   # the refit's stages show as their own progress bar
    try:
        model.refit_anchors(batches)
    finally:
        if dyga is not None:
            dyga.progress = shown


def save_training_state(out: Path, step: int, model, opt, ema, cfg: TrainConfig, history: dict) -> Path:
    opt_t, opt_m = _flat_optimizer(opt)
    tensors = {"model": model.state_dict(), "optimizer": opt_t,
               "rng": {"torch": torch.get_rng_state()}}
    if ema is not None:
        tensors["ema"] = ema.shadow
    meta = {"config": model_config(model),
            "train_state": {"step": step, "train": asdict(cfg), "optimizer": opt_m,
                            "refit_steps": history["refit_steps"], "losses": history["losses"],
                            "spread_peak": history.get("spread_peak")}}
    return write_checkpoint(out / "checkpoints" / f"step_{step:07d}", tensors, meta)


def _load_training_state(ck: Path, model, opt, ema, history: dict) -> int:
    state = read_json(ck / "train_state.json")
    sd = read_tensors(ck / "model.safetensors")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {ck} does not match the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    opt.load_state_dict(_unflat_optimizer(read_tensors(ck / "optimizer.safetensors"), state["optimizer"]))
    if ema is not None and (ck / "ema.safetensors").exists():
        ema.shadow = read_tensors(ck / "ema.safetensors")
    torch.set_rng_state(read_tensors(ck / "rng.safetensors")["torch"])
    history["refit_steps"] = list(state.get("refit_steps", []))
    history["losses"] = [tuple(x) for x in state.get("losses", [])]
    history["spread_peak"] = state.get("spread_peak")
    return int(state["step"])


def _truncate_log(path: Path, step: int):
    """Drop log lines written after the checkpoint we resume from (a killed run may have logged more)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    path.write_text("".join(k + "\n" for k in keep))


__all__ = ["TrainConfig", "fit", "get_batch", "save_training_state", "BatchStream"]
