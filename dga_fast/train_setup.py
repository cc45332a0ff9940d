"""What ``train`` is asked to run: a preset, a ``--config`` file and the command-line flags, in that order, each
overriding the one before; on ``--resume`` the run's own ``config.json`` takes the preset's place, and what the
file and the flags ask must equal what the run holds (except the settings a continued run may change).

A config file (YAML or JSON) holds any of the sections ``model`` (``AnchoredDiffusion`` arguments), ``train``
(``TrainConfig`` fields) and ``dataset`` (``name``, ``data_dir``, ``first_stage``), and may name a ``preset``. A
run's ``config.json`` is such a file (its other keys are ignored). Nested mappings merge key by key.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, fields
from pathlib import Path

SECTIONS = ("model", "train", "dataset")
# written into a run's config.json beside the sections, ignored when the file is read back as a --config
RUN_KEYS = ("format", "class", "world_size", "global_batch_size", "study", "preset")
# a continued run may change these; everything else must equal the run's own value
RESUME_MUTABLE = {("train", k) for k in ("steps", "ckpt_every", "log_every", "progress", "on_collapse",
                                         "collapse_threshold", "on_diverge", "diverge_patience", "logger",
                                         "image_every")}
DEFAULT_PRESET, DEFAULT_DATASET = "tiny", "synthetic-shapes"
# flag -> (section, key) of the plain flags (the others: --first-stage, --no-anchoring, --published-dyga)
FLAG_KEYS = {"dataset": ("dataset", "name"), "data_dir": ("dataset", "data_dir"),
             "image_size": ("model", "image_size"), "skip_dropout": ("model", "skip_dropout"),
             **{k: ("train", k) for k in ("steps", "batch_size", "ckpt_every", "seed", "lr", "lr_schedule",
                                          "ema_decay", "on_collapse", "collapse_threshold", "on_diverge",
                                          "diverge_patience", "logger", "image_every")}}


def read_config_file(path) -> dict:
    """The sections of a YAML (``.yaml``/``.yml``) or JSON config file, checked: a mapping whose keys are the
    sections, ``preset`` and a run's bookkeeping keys, each section a mapping, ``train`` keys ``TrainConfig``
    fields."""
    from .train import TrainConfig
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    text = p.read_text()
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as e:
            raise ImportError("--config with a YAML file needs PyYAML (pip install pyyaml); JSON needs nothing") from e
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"--config {path}: not valid YAML ({e})") from e
    elif p.suffix.lower() == ".json":
        try:
            cfg = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--config {path}: not valid JSON ({e})") from e
    else:
        raise ValueError(f"--config {path}: the file must end in .yaml, .yml or .json")
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ValueError(f"--config {path}: the file must hold a mapping of sections {SECTIONS}")
    unknown = sorted(set(cfg) - set(SECTIONS) - set(RUN_KEYS))
    if unknown:
        raise ValueError(f"--config {path}: unknown keys {unknown}; the sections are {SECTIONS} (and 'preset')")
    for s in SECTIONS:
        if s in cfg and not isinstance(cfg[s], dict):
            raise ValueError(f"--config {path}: section {s!r} must be a mapping, got {type(cfg[s]).__name__}")
    bad = sorted(set(cfg.get("train", {})) - {f.name for f in fields(TrainConfig)})
    if bad:
        raise ValueError(f"--config {path}: unknown train settings {bad}")
    return {k: cfg[k] for k in (*SECTIONS, "preset") if k in cfg}


def merge(base: dict, over: dict) -> dict:
    """``base`` updated by ``over``, nested mappings key by key (neither is modified)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def flag_layer(args) -> dict:
    """The sections set by the flags given on the command line (``None``: not given)."""
    layer = {s: {} for s in SECTIONS}
    for flag, (section, key) in FLAG_KEYS.items():
        if getattr(args, flag, None) is not None:
            layer[section][key] = getattr(args, flag)
    if args.first_stage is not None:
        layer["dataset"]["first_stage"] = str(Path(args.first_stage).resolve())
    if args.no_anchoring:
        layer["model"]["anchoring"] = None
    return layer


def preset_layer(name: str) -> dict:
    from .presets import PRESETS
    from .train import TrainConfig
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return {"model": dict(PRESETS[name]["model"]), "train": asdict(TrainConfig(**PRESETS[name]["train"])),
            "dataset": {"name": DEFAULT_DATASET, "data_dir": None}}


def requested(args, stored: dict | None = None) -> dict:
    """The sections ``train`` is asked to run with (JSON-like: tuples become lists): ``stored`` (a run's config on
    ``--resume``) or the preset (``--preset``, else the file's ``preset``, else tiny), then ``--config``, then the
    flags; ``--published-dyga`` last. On a fresh run a first stage (flag or file) sets the image size unless
    the file or a flag does."""
    from .presets import use_published_dyga
    file_cfg = read_config_file(args.config) if getattr(args, "config", None) else {}
    cfg = {s: {} for s in SECTIONS}
    if stored is not None:
        cfg = merge(cfg, {s: stored.get(s, {}) for s in SECTIONS})
        if args.preset is not None:
            cfg = merge(cfg, {s: v for s, v in preset_layer(args.preset).items() if s != "dataset"})
    else:
        cfg = merge(cfg, preset_layer(args.preset or file_cfg.get("preset") or DEFAULT_PRESET))
    cfg = merge(cfg, {s: file_cfg.get(s, {}) for s in SECTIONS})
    flags = flag_layer(args)
    cfg = merge(cfg, flags)
    if args.published_dyga:
        use_published_dyga(cfg["model"], cfg["train"])
    if stored is None and cfg["dataset"].get("first_stage") is not None \
            and "image_size" not in flags["model"] and "image_size" not in file_cfg.get("model", {}):
        cfg["model"].pop("image_size", None)   # the first stage's own (the caller reads it from the weights)
    return json.loads(json.dumps(cfg))


def resume_conflicts(stored: dict, asked: dict) -> list[str]:
    """``section.key: asked vs stored`` for every value ``asked`` sets differently from the run (``stored``), the
    settings a continued run may change excepted."""
    stored = json.loads(json.dumps({s: stored.get(s, {}) for s in SECTIONS}))
    out = []
    for s in SECTIONS:
        for k in sorted(set(asked.get(s, {})) | set(stored[s])):
            if (s, k) in RESUME_MUTABLE:
                continue
            a, b = asked.get(s, {}).get(k), stored[s].get(k)
            if a != b:
                flag = next((f"--{f.replace('_', '-')}" for f, sk in FLAG_KEYS.items() if sk == (s, k)), None)
                out.append(f"{s}.{k}{f' ({flag})' if flag else ''} = {a!r}, the run has {b!r}")
    return out
