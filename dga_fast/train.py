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
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import distributed as dist_
from ._validation import check_choice
from .checkpoint import (agreed_checkpoint, checkpoint_steps, latest_checkpoint, read_tensors, read_training_state,
                         truncate_log, write_training_state)
from .collapse import CollapseGuard, EncoderCollapse
from .data.batches import BatchStream, get_batch, step_seed
from .divergence import DivergenceGuard, TrainingDiverged
from .loggers import LOGGERS, make_logger
from .lr_schedule import SCHEDULES, lr_at
from .refit_schedule import REFIT_SCHEDULES, RefitSchedule


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    lr_schedule: str = "constant"   # or "cosine": warm-up over lr_warmup of the steps, half cosine to 0
    lr_warmup: float = 0.02
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    amp: bool = False               # bf16 autocast
    ema_decay: float | None = None  # e.g. 0.999; None disables the EMA
    refit_every: int = 500          # DyGA refit every this many steps ...
    refit_warmup: int = 500         # ... from this step on
    refit_samples: int = 2048       # images whose tokens the refit uses
    # "steps": the three values above; "epoch": the published schedule (refit_schedule.RefitSchedule.from_config)
    refit_schedule: str = "steps"
    ckpt_every: int = 500
    log_every: int = 10
    seed: int = 0
    progress: bool = True
    on_collapse: str = "warn"       # all units dead: "warn" or "stop" (checkpoint, raise EncoderCollapse)
    collapse_threshold: float = 0.1  # a unit is dead below this fraction of its peak token spread
    # the loss back near its first steps' level for diverge_patience steps (dga_fast.divergence): "warn", "stop"
    # (checkpoint, raise TrainingDiverged) or "rollback" (the last checkpoint before the jump, half the lr)
    on_diverge: str = "warn"
    diverge_patience: int = 50
    logger: str = "jsonl"           # or "tensorboard": also TensorBoard event files (dga_fast.loggers)
    image_every: int | None = None  # tensorboard image grids every this many steps (None: ckpt_every)
    # AdamW's fused implementation (one kernel over all parameters; the same update as the per-parameter loop up
    # to rounding, tests/test_train_fast.py); False: the loop. Where torch has no fused AdamW for the device,
    # the loop is used
    fused_optimizer: bool = True

    def validate(self) -> "TrainConfig":
        for name in ("steps", "batch_size", "refit_every", "refit_samples", "ckpt_every", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.refit_warmup < 0:
            raise ValueError(f"refit_warmup must be >= 0, got {self.refit_warmup}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check_choice("refit_schedule", self.refit_schedule, REFIT_SCHEDULES)
        if not 0 <= self.lr_warmup < 1:
            raise ValueError(f"lr_warmup must be in [0, 1), got {self.lr_warmup}")
        CollapseGuard(self.collapse_threshold, self.on_collapse)   # validates both
        self.divergence_guard()                                    # validates on_diverge, diverge_patience
        check_choice("logger", self.logger, LOGGERS)
        if self.image_every is not None and (isinstance(self.image_every, bool) or not isinstance(self.image_every, int)
                                             or self.image_every < 1):
            raise ValueError(f"image_every must be an int >= 1 or None, got {self.image_every!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        return self

    def divergence_guard(self) -> DivergenceGuard:
        return DivergenceGuard(self.on_diverge, self.diverge_patience)


class _LossForward(torch.nn.Module):
    """``forward`` = ``model.loss``: what DistributedDataParallel wraps (it hooks the module's forward)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, generator, latents=None):
        return self.model.loss(x, generator=generator, latents=latents)


class _EMA:
    """An exponential moving average of the trainable parameters (keyed as in ``state_dict``). Buffers (DyGA's
    mixtures, the latent scale, a frozen first stage) are not averaged: a model loaded with ``ema=True``
    takes them from the live model of the same checkpoint."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters()
                       if p.requires_grad and p.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        for k, p in model.named_parameters():
            if k in self.shadow:
                self.shadow[k].lerp_(p.detach(), 1 - self.decay)


def fit(model, dataset, out_dir=None, config: TrainConfig | None = None, resume: bool = False,
        run_info: dict | None = None, callback=None, refit: RefitSchedule | None = None,
        **overrides) -> dict:
    """Train ``model`` (an ``AnchoredDiffusion``) on ``dataset`` (indexable, ``len() > 0``, items are
    images ``[C, H, W]`` in ``[0, 1]`` or ``(image, ...)`` tuples). With ``out_dir``, writes
    ``config.json``, ``log.jsonl`` and ``checkpoints/step_XXXXXXX/``; ``resume=True`` continues from the
    latest checkpoint there. ``run_info`` entries (e.g. the dataset) are added to ``config.json``.
    ``callback(step, model)``, if given, runs on every rank after every step. ``refit`` replaces the DyGA refit
    schedule the config describes (``RefitSchedule.from_config``) by another strategy object.
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
    opt = make_optimizer(model, cfg)
    ema = _EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    out = Path(out_dir) if out_dir is not None else None
    start = 0
    history = {"losses": []}
    schedule = RefitSchedule.from_config(cfg, n, R.world) if refit is None else refit
    guard = cfg.divergence_guard()
    if cfg.on_diverge == "rollback" and out is None:
        raise ValueError("on_diverge='rollback' needs out_dir: it returns to a checkpoint of the run")
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        run_cfg = {"model": model.config, "train": asdict(cfg), **(run_info or {}),
                   "world_size": R.world, "global_batch_size": cfg.batch_size * R.world}
        (out / "config.json").write_text(json.dumps(run_cfg, indent=2))
    if resume:
        if out is None:
            raise ValueError("resume=True needs out_dir (the run directory to resume)")
        ck = agreed_checkpoint(out, R)
        if ck is None:
            raise FileNotFoundError(f"resume=True but {out}/checkpoints holds no checkpoint")
        start = _load_training_state(ck, model, opt, ema, schedule, history, guard)
        if main:
            truncate_log(out / "log.jsonl", start)
    # check one batch before the loop: a clear error for wrong image size / channels / values
    probe = get_batch(dataset, torch.arange(min(2, n)))
    model._check_images(probe.to(device), "dataset images")
    latent_data = hasattr(dataset, "get_latents") and getattr(model, "first_stage", None) is not None
    if getattr(model, "first_stage", None) is not None and not bool(model.latent_scale_fitted):
        _fit_latent_scale(model, dataset, latent_data, cfg.seed, device)
    stream = BatchStream(n, cfg.batch_size, cfg.seed, R.world, R.rank)
    net = _LossForward(model)
    if R.world > 1:
        net = _wrap_ddp(net, device)
    log = make_logger(cfg.logger, out, run_cfg, cfg.image_every or cfg.ckpt_every, resume) \
        if out is not None and main else None
    bar = None
    if cfg.progress and main:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True)
    model.train()
    t_last, imgs = time.perf_counter(), 0
    step = start
    try:
        while step < cfg.steps:
            step += 1
            idx = stream.indices(step)
            x = get_batch(dataset, idx).to(device)
            z = dataset.get_latents(idx).to(device) if latent_data else None
            torch.manual_seed(step_seed(cfg.seed, step, 1, R.rank))      # skip-dropout masks of this step
            gdev = torch.Generator(device).manual_seed(step_seed(cfg.seed, step, 2, R.rank))
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg.lr_schedule, cfg.lr, (step - 1) / cfg.steps, cfg.lr_warmup) * guard.lr_scale
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                loss = net(x, gdev, z)
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
            events = schedule.after_step(step, model, dataset, R)
            if log is not None and events:
                log.events(events)
            if schedule.stop:
                ck = save_training_state(out, step, model, opt, ema, cfg, schedule, history, guard) \
                    if out is not None and main else None
                raise EncoderCollapse(schedule.guard.message(step) + (f" Checkpoint: {ck}." if ck else ""), step, ck)
            verdict = guard.update(step, lv)
            if verdict is not None:
                back = _on_divergence(verdict, out, main, model, opt, ema, cfg, schedule, history, guard, log)
                if back is not None:   # rolled back: continue after that checkpoint's step
                    step, t_last, imgs = back, time.perf_counter(), 0
                    if bar is not None:
                        bar.reset(total=cfg.steps)
                        bar.update(step)
                    continue
            if logging:
                now = time.perf_counter()
                ips = imgs / max(now - t_last, 1e-9)
                t_last, imgs = now, 0
                if log is not None:
                    log.scalars({"step": step, "loss": lv, "lr": opt.param_groups[0]["lr"],
                                 "images_per_s": round(ips, 2), **grads})
                if bar is not None:
                    bar.set_postfix(loss=f"{lv:.4f}", img_s=f"{ips:.1f}")
            if bar is not None:
                bar.update()
            if out is not None and main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
                save_training_state(out, step, model, opt, ema, cfg, schedule, history, guard)
            if log is not None:
                log.images(step, model, dataset)
            if callback is not None:
                callback(step, model)
    except (EncoderCollapse, TrainingDiverged):
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
    return {**history, **schedule.state_dict(), "step": cfg.steps}


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the model's parameters; fused (``cfg.fused_optimizer``) where torch has it for their device.
    A resumed run continues with the implementation its checkpoint's optimizer state names (the same update)."""
    fused = cfg.fused_optimizer and _fused_adamw_supported(model)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def _fused_adamw_supported(model: torch.nn.Module) -> bool:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    return all(p.device.type in _get_fused_kernels_supported_devices() and p.is_floating_point()
               for p in model.parameters())


def _fit_latent_scale(model, dataset, latent_data: bool, seed: int, device) -> None:
    """The latent scale factor from up to 1024 seeded images (the same on every rank)."""
    g = torch.Generator().manual_seed(step_seed(seed, 0, 4))
    idx = torch.randperm(len(dataset), generator=g)[:1024]
    if latent_data:
        z = dataset.get_latents(idx)
    else:
        with torch.no_grad():
            z = torch.cat([model.first_stage.encode(get_batch(dataset, idx[i:i + 256]).to(device))
                           for i in range(0, len(idx), 256)])
    model.fit_latent_scale(z.to(device))


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


def save_training_state(out: Path, step: int, model, opt, ema, cfg: TrainConfig, schedule: RefitSchedule,
                        history: dict, guard: DivergenceGuard | None = None) -> Path:
    extra = {"ema": ema.shadow} if ema is not None else {}
    state = {"train": asdict(cfg), "losses": history["losses"], **schedule.state_dict()}
    if guard is not None:
        state["divergence"] = guard.state_dict()
    return write_training_state(out, step, model, opt, state, extra)


def _load_training_state(ck: Path, model, opt, ema, schedule: RefitSchedule, history: dict,
                         guard: DivergenceGuard | None = None) -> int:
    state = read_training_state(ck, model, opt)
    if ema is not None and (ck / "ema.safetensors").exists():
        saved = read_tensors(ck / "ema.safetensors")     # older runs also averaged buffers: keep parameters
        ema.shadow = {k: saved[k] if k in saved else v for k, v in ema.shadow.items()}
    elif ema is not None:                                # a checkpoint of a run without EMA: start it here
        ema.shadow = _EMA(model, ema.decay).shadow
    schedule.load_state_dict(state)
    if guard is not None:
        guard.load_state_dict(state.get("divergence", {}))
    history["losses"] = [tuple(x) for x in state.get("losses", [])]
    return int(state["step"])


def _on_divergence(event: dict, out, main: bool, model, opt, ema, cfg: TrainConfig, schedule: RefitSchedule,
                   history: dict, guard: DivergenceGuard, log) -> int | None:
    """A guard event: logged; a divergence is warned about, then (``on_diverge``) left alone (None), stopped
    (checkpoint, ``TrainingDiverged``) or rolled back: the run returns to its last checkpoint at or before
    ``jump_after`` (``dga_fast.divergence``) with the learning rate halved, the later checkpoints move to
    ``out/diverged/``, the log is cut there and a ``rollback`` line written. Returns the step rolled back to, or
    None."""
    if log is not None:
        log.events([event])
    if event["event"] != "diverged":
        return None
    if main:
        guard.warn(event)
    if cfg.on_diverge == "warn":
        return None
    target = latest_checkpoint(out, until=event["jump_after"]) if cfg.on_diverge == "rollback" else None
    if target is None or guard.rollbacks >= guard.max_rollbacks:
        why = ""
        if cfg.on_diverge == "rollback":
            why = (f" No rollback: no checkpoint at or before step {event['jump_after']}." if target is None else
                   f" No rollback: rolled back {guard.rollbacks} times already.")
        ck = save_training_state(out, event["step"], model, opt, ema, cfg, schedule, history, guard) \
            if out is not None and main else None
        raise TrainingDiverged(guard.message(event) + why + (f" Checkpoint: {ck}." if ck else ""), event["step"], ck)
    scale, rollbacks = guard.lr_scale * 0.5, guard.rollbacks + 1
    step = _load_training_state(target, model, opt, ema, schedule, history, guard)
    guard.lr_scale, guard.rollbacks = scale, rollbacks
    if main:
        _set_aside_checkpoints(out, step)
        truncate_log(out / "log.jsonl", step)
        if log is not None:
            log.events([{"event": "rollback", "step": step, "diverged_at": event["step"],
                         "high_since": event["high_since"], "jump_after": event["jump_after"], "lr_scale": scale,
                         "rollbacks": rollbacks}])
    return step


def _set_aside_checkpoints(out: Path, step: int) -> None:
    """Checkpoints after ``step`` (the diverged stretch) move to ``out/diverged/``: ``--resume`` never takes
    them, and they are kept to look at."""
    aside = out / "diverged"
    for s, p in checkpoint_steps(out):
        if s > step:
            aside.mkdir(exist_ok=True)
            dest = aside / p.name
            if dest.exists():
                shutil.rmtree(dest)
            p.rename(dest)


__all__ = ["TrainConfig", "TrainingDiverged", "fit", "make_optimizer", "get_batch", "save_training_state",
           "BatchStream"]
