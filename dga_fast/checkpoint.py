"""Checkpoints: safetensors + JSON only (loading never unpickles), written atomically.

A checkpoint directory holds ``model.safetensors`` (+ optional extra ``*.safetensors`` such as the
optimizer and EMA state) and JSON files. It is assembled in a temporary sibling directory, every file is
fsynced, then the directory is renamed into place and the parent fsynced: a checkpoint directory either
exists complete or not at all, even if the process is killed while writing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STEP_RE = re.compile(r"^step_(\d+)$")
FORMAT = "dga_fast/1"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _plain(tensors: dict) -> dict:
    """Contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def write_checkpoint(directory, tensors: dict[str, dict[str, torch.Tensor]], meta: dict[str, dict]) -> Path:
    """Write ``{name}.safetensors`` for every entry of ``tensors`` and ``{name}.json`` for every entry of
    ``meta`` into ``directory``, atomically (see the module docstring). An existing directory is replaced."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, group in tensors.items():
        path = tmp / f"{name}.safetensors"
        save_file(_plain(group), str(path))
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    for name, obj in meta.items():
        path = tmp / f"{name}.json"
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
    _fsync_dir(tmp)
    if directory.exists():
        old = directory.parent / f".{directory.name}.old-{os.getpid()}"
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    _fsync_dir(directory.parent)
    return directory


def read_tensors(path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file; a missing file is ``FileNotFoundError``, anything that is not a valid
    safetensors file (a pickle, a truncated file) is ``ValueError``. Never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path} is not a valid safetensors checkpoint ({e}); refusing to load it") from None


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


def checkpoint_steps(run_dir) -> list[tuple[int, Path]]:
    """``(step, directory)`` of every complete checkpoint under ``run_dir/checkpoints``, by step."""
    ck = Path(run_dir) / "checkpoints"
    if not ck.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in ck.iterdir() if p.is_dir() and (m := STEP_RE.match(p.name)))


def latest_checkpoint(run_dir, until: int | None = None) -> Path | None:
    """The complete checkpoint with the highest step under ``run_dir/checkpoints`` (at or before step ``until``
    when given; None if none)."""
    steps = [p for s, p in checkpoint_steps(run_dir) if until is None or s <= until]
    return steps[-1] if steps else None


def resolve_checkpoint(path) -> Path:
    """``path`` itself if it holds a checkpoint, else the latest checkpoint of the run directory ``path``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint or run directory: {path}")
    if (path / WEIGHTS_NAME).exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"{path} holds neither a checkpoint ({CONFIG_NAME} + {WEIGHTS_NAME}) nor "
                                f"checkpoints/step_*/ of a run")
    return latest


def model_config(model) -> dict:
    """The ``config.json`` of a checkpoint: format tag, the model's class name and constructor arguments."""
    return {"format": FORMAT, "class": type(model).__name__, "model": model.config}


def save_model(model, directory) -> Path:
    return write_checkpoint(directory, {"model": model.state_dict()}, {"config": model_config(model)})


def load_model(cls, path, map_location="cpu", ema: bool = False):
    """A model of class ``cls`` from a checkpoint (or run) directory; ``ema=True`` puts the checkpoint's
    moving average of the trainable parameters (``ema.safetensors``, written when training with
    ``ema_decay``) in place of the live ones."""
    ck = resolve_checkpoint(path)
    cfg = read_json(ck / CONFIG_NAME)
    if cfg.get("format") != FORMAT or "model" not in cfg:
        raise ValueError(f"{ck / CONFIG_NAME} is not a dga_fast checkpoint config")
    if cfg.get("class", cls.__name__) != cls.__name__:   # configs before the first stage carry no class
        raise ValueError(f"{ck} holds a {cfg['class']}, not a {cls.__name__}")
    model = cls.from_config(cfg["model"]) if hasattr(cls, "from_config") else cls(**cfg["model"])
    state = read_tensors(ck / WEIGHTS_NAME)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {ck} does not match the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    if ema:
        _load_ema(model, ck)
    return model.to(map_location)


def _load_ema(model, ck: Path) -> None:
    if not (ck / "ema.safetensors").is_file():
        raise FileNotFoundError(f"ema=True but {ck} holds no ema.safetensors (train with ema_decay to write it)")
    shadow = read_tensors(ck / "ema.safetensors")
    params = dict(model.named_parameters())
    missing = [k for k, p in params.items() if p.requires_grad and k not in shadow]
    if missing:
        raise ValueError(f"{ck / 'ema.safetensors'} lacks parameters of the model: {missing[:5]}")
    with torch.no_grad():
        for k, p in params.items():
            if k in shadow:
                p.copy_(shadow[k])


# ---------------------------------------------------------------------------------------- training state
def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """An optimizer's state dict as (tensors for safetensors, the rest for JSON)."""
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "scalars": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v
            else:
                meta["scalars"][f"{pid}.{k}"] = v
    return tensors, meta


def unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def write_training_state(out, step: int, model, opt, state: dict, extra: dict | None = None) -> Path:
    """``out/checkpoints/step_XXXXXXX/``: the model (a loadable checkpoint), the optimizer, the torch RNG, the
    ``extra`` tensor groups (e.g. ``{"ema": ...}``) and ``train_state.json`` = ``{"step", "optimizer", **state}``."""
    opt_t, opt_m = flatten_optimizer(opt)
    tensors = {"model": model.state_dict(), "optimizer": opt_t, "rng": {"torch": torch.get_rng_state()},
               **(extra or {})}
    meta = {"config": model_config(model), "train_state": {"step": step, "optimizer": opt_m, **state}}
    return write_checkpoint(Path(out) / "checkpoints" / f"step_{step:07d}", tensors, meta)


def read_training_state(ck, model, opt) -> dict:
    """Restore the model, the optimizer and the torch RNG from checkpoint ``ck``; returns its
    ``train_state.json``."""
    ck = Path(ck)
    state = read_json(ck / "train_state.json")
    sd = read_tensors(ck / WEIGHTS_NAME)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {ck} does not match the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    opt.load_state_dict(unflatten_optimizer(read_tensors(ck / "optimizer.safetensors"), state["optimizer"]))
    torch.set_rng_state(read_tensors(ck / "rng.safetensors")["torch"])
    return state


def agreed_checkpoint(out, R=None) -> Path | None:
    """The latest checkpoint of run ``out`` as rank 0 sees it, the same path on every rank of reducer ``R``."""
    rank, world = (R.rank, R.world) if R is not None else (0, 1)
    ck = latest_checkpoint(out) if rank == 0 else None
    if world > 1:
        box = [str(ck) if ck is not None else None]
        torch.distributed.broadcast_object_list(box, src=0)
        ck = Path(box[0]) if box[0] is not None else None
    return ck


def truncate_log(path, step: int) -> None:
    """Drop ``log.jsonl`` lines written after the checkpoint a run resumes from (a killed run may have logged
    more)."""
    path = Path(path)
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
