"""Training loop of the first stage (``python -m dga_fast train-autoencoder``): Adam on the reconstruction +
commitment loss, the EMA codebook with dead-code restarts, held-out PSNR, and the run-directory conventions
of ``train``: ``config.json``, ``log.jsonl``, atomic ``checkpoints/step_XXXXXXX/`` and exact ``--resume``
(the batches and the codebook restarts of step ``s`` come from generators seeded by ``(seed, s)``).

Held-out images: ``eval_images`` indices of a permutation seeded by ``seed`` are never trained on; PSNR is
measured on them every ``eval_every`` steps and at the end. ``max_seconds`` ends training early (after a
checkpoint), for a time-boxed run such as ``make demo``'s.

``lr_schedule="cosine"`` (the default) warms the learning rate up over the first 2% of training and decays it
to 0 along a half cosine. Training's progress is ``step / steps``, or, with ``max_seconds`` and once half of it
is spent, the larger of that and the fraction of the time budget spent (so the decay completes when the time runs
out on a slow machine; such a run is not bit-exact on ``--resume``, whose clock restarts). A machine that keeps
pace never uses the clock, so its runs are the same every time. ``"constant"`` keeps ``lr``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ._validation import check_choice, check_positive_int
from .checkpoint import agreed_checkpoint, read_training_state, truncate_log, write_training_state
from .data.batches import BatchStream, get_batch, step_seed
from .lr_schedule import SCHEDULES, lr_at


@dataclass
class AutoencoderConfig:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    grad_clip: float | None = 1.0
    eval_every: int = 250
    eval_images: int = 256
    ckpt_every: int = 250
    log_every: int = 10
    seed: int = 0
    max_seconds: float | None = None   # stop (with a checkpoint) once training took this long
    lr_schedule: str = "cosine"        # or "constant"
    progress: bool = True

    def validate(self) -> "AutoencoderConfig":
        for name in ("steps", "batch_size", "eval_every", "eval_images", "ckpt_every", "log_every"):
            check_positive_int(name, getattr(self, name))
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0 or None, got {self.max_seconds}")
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        return self

    def lr_at(self, step: int, elapsed: float) -> float:
        """The learning rate of step ``step`` (1-based) after ``elapsed`` seconds of this process's training."""
        frac = (step - 1) / self.steps
        # the time budget joins once half of it is spent. Before, it counted from the first step, so the slow
        # start-up steps set the warm-up's learning rates by the clock and no two runs trained the same first
        # stage (make demo's results varied from run to run); a machine on pace never uses it now
        if self.max_seconds is not None and elapsed >= 0.5 * self.max_seconds:
            frac = max(frac, elapsed / self.max_seconds)
        return lr_at(self.lr_schedule, self.lr, frac)


def split_indices(n: int, held_out: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices) of a dataset of ``n`` items, by a permutation seeded by ``seed``."""
    if n <= held_out:
        raise ValueError(f"the dataset has {n} images, fewer than eval_images + 1 = {held_out + 1}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[held_out:], perm[:held_out]


def evaluate_autoencoder(model, dataset, held: torch.Tensor) -> dict:
    """Held-out PSNR (dB), code usage and codebook restarts of a first stage on ``dataset[held]``."""
    x = get_batch(dataset, held).to(next(model.parameters()).device)
    return {"psnr": round(model.psnr(x), 3), **model.code_stats(x), "restarts": int(model.quantizer.restarts)}


def fit_autoencoder(model, dataset, out_dir=None, config: AutoencoderConfig | None = None,
                    resume: bool = False, run_info: dict | None = None, **overrides) -> dict:
    """Train ``model`` (a ``FirstStage``) on ``dataset`` (items: images ``[C, H, W]`` in ``[0, 1]`` or
    ``(image, ...)``). With ``out_dir`` writes the run directory (module docstring); ``resume=True`` continues
    its latest checkpoint. Returns ``{"step", "losses": [(step, loss)], "psnr": [(step, dB)]}``."""
    cfg = AutoencoderConfig(**{**(asdict(config) if config else {}), **overrides}).validate()
    train_idx, held = split_indices(len(dataset), cfg.eval_images, cfg.seed)
    device = next(model.parameters()).device
    model._check_images(get_batch(dataset, held[:2]).to(device), "dataset images")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    out = Path(out_dir) if out_dir is not None else None
    hist, start = {"losses": [], "psnr": []}, 0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        run_cfg = {"class": type(model).__name__, "model": model.config, "train": asdict(cfg), **(run_info or {})}
        (out / "config.json").write_text(json.dumps(run_cfg, indent=2))
    if resume:
        ck = agreed_checkpoint(out) if out is not None else None
        if ck is None:
            raise FileNotFoundError(f"resume=True but {out}/checkpoints holds no checkpoint")
        state = read_training_state(ck, model, opt)
        start = int(state["step"])
        hist = {k: [tuple(x) for x in state.get(k, [])] for k in ("losses", "psnr")}
        truncate_log(out / "log.jsonl", start)
    stream = BatchStream(len(train_idx), cfg.batch_size, cfg.seed)
    log = open(out / "log.jsonl", "a") if out is not None else None
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=start, desc="train-autoencoder", dynamic_ncols=True)

    def write(rec: dict):
        if log is not None:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    def checkpoint(step: int):
        if out is not None:
            write_training_state(out, step, model, opt, {"train": asdict(cfg), **hist})

    t0 = t_last = time.perf_counter()
    step, imgs = start, 0
    model.train()
    try:
        for step in range(start + 1, cfg.steps + 1):
            x = get_batch(dataset, train_idx[stream.indices(step)]).to(device)
            torch.manual_seed(step_seed(cfg.seed, step, 1))        # the codebook's restarts of this step
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(step, time.perf_counter() - t0)
            loss, parts = model.loss(x)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss.detach())} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            lv = float(loss.detach())
            hist["losses"].append((step, lv))
            imgs += x.shape[0]
            last = step == cfg.steps or (cfg.max_seconds is not None and time.perf_counter() - t0 >= cfg.max_seconds)
            if step % cfg.log_every == 0 or last:
                now = time.perf_counter()
                ips, t_last, imgs = imgs / max(now - t_last, 1e-9), now, 0
                write({"step": step, "loss": lv, **parts, "images_per_s": round(ips, 2)})
                if bar is not None:
                    bar.set_postfix(loss=f"{lv:.4f}")
            if step % cfg.eval_every == 0 or last:
                ev = evaluate_autoencoder(model, dataset, held)
                hist["psnr"].append((step, ev["psnr"]))
                write({"step": step, "event": "eval", **ev})
            if bar is not None:
                bar.update()
            if step % cfg.ckpt_every == 0 or last:
                checkpoint(step)
            if last:
                break
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    model.eval()
    return {**hist, "step": step}
