"""Run directories and datasets: the dataset factory behind ``--dataset``, a run's ``config.json`` and
loading a run's latest model with its dataset. Below ``cli``, ``demo`` and ``evaluate``, which all use it."""
from __future__ import annotations

from pathlib import Path

DATASETS = ("synthetic-shapes", "synthetic-sprites", "synthetic-squares", "shapes3d", "mpi3d-toy", "cars3d", "celeba", "folder")


def make_dataset(name: str, image_size: int, data_dir=None, seed: int = 0):
    """The dataset ``--dataset name`` names, at ``image_size``; file datasets read ``data_dir``."""
    from . import data
    if name == "synthetic-shapes":
        return data.SyntheticShapes(size=image_size, seed=seed)
    if name == "synthetic-sprites":
        return data.SyntheticSprites(size=image_size, seed=seed)
    if name == "synthetic-squares":
        return data.SyntheticSquares(size=image_size, seed=seed)
    loaders = {"shapes3d": data.Shapes3D, "mpi3d-toy": data.MPI3DToy, "cars3d": data.Cars3D,
               "celeba": data.CelebA, "folder": data.ImageFolder}
    if name not in loaders:
        raise ValueError(f"--dataset must be one of {DATASETS}, got {name!r}")
    if data_dir is None:
        raise ValueError(f"--dataset {name} reads files: pass --data-dir")
    return loaders[name](data_dir, image_size)


def run_config(run_dir) -> dict:
    """``run_dir/config.json`` of a training run (it names the model and the dataset)."""
    from .checkpoint import read_json
    cfg = read_json(Path(run_dir) / "config.json")
    if "dataset" not in cfg or "model" not in cfg:
        raise ValueError(f"{run_dir}/config.json is not the config of a dga_fast run")
    return cfg


def run_dataset(cfg: dict):
    d = cfg["dataset"]
    return make_dataset(d["name"], d["image_size"], d.get("data_dir"))


def load_run(run_dir):
    """The run's latest model and its dataset."""
    from .model import AnchoredDiffusion
    cfg = run_config(run_dir)
    return AnchoredDiffusion.load(run_dir), run_dataset(cfg)
