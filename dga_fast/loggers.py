"""Where training writes what it measures: ``log.jsonl`` always (what ``evaluate`` and ``training.png`` read), and
with ``logger="tensorboard"`` also TensorBoard event files in ``RUN/tensorboard`` (what Lightning-based research
code logs to): the step scalars (loss, lr, images/s, gradient norms), each refit's seconds and Gaussians per unit,
image grids (samples from the tokens of fixed dataset images, and a unit interchange) every ``image_every``
steps, and the run's hyperparameters. ``tensorboard --logdir RUN`` shows them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

LOGGERS = ("jsonl", "tensorboard")


class JsonlLogger:
    """One JSON object per line: step rows (``step``, ``loss``, ``lr``, ``images_per_s``, gradient norms) and
    events (``refit``, ``collapse``)."""

    def __init__(self, out: Path):
        self.file = open(Path(out) / "log.jsonl", "a")

    def scalars(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def events(self, records: list[dict]) -> None:
        self.file.writelines(json.dumps(e) + "\n" for e in records)
        self.file.flush()

    def images(self, step: int, model, dataset) -> None:
        """Nothing: the JSONL log holds numbers only."""

    def close(self) -> None:
        self.file.close()


class TensorBoardLogger(JsonlLogger):
    """``JsonlLogger`` plus TensorBoard event files in ``out/tensorboard`` (``torch.utils.tensorboard``; needs the
    ``tensorboard`` package). ``hparams``: the run's configuration, flattened (``model.lr`` …), written once
    when the run starts (not again on resume). Image grids come from ``image_every``-th steps: ``n_images``
    dataset images (fixed) and samples from their tokens (``sample_steps`` DDIM steps, seeded), then one
    interchange grid."""

    def __init__(self, out: Path, hparams: dict, image_every: int, resumed: bool = False,
                 n_images: int = 4, sample_steps: int = 20):
        super().__init__(out)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:   # torch raises ImportError naming tensorboard when the package is absent
            self.close()
            raise ImportError("logger='tensorboard' needs the tensorboard package (pip install tensorboard); "
                              "the default logger 'jsonl' needs nothing") from e
        self.writer = SummaryWriter(str(Path(out) / "tensorboard"))
        self.image_every, self.n_images, self.sample_steps = int(image_every), int(n_images), int(sample_steps)
        if not resumed:
            self._hparams(flatten(hparams))

    def _hparams(self, flat: dict) -> None:
        from torch.utils.tensorboard.summary import hparams
        exp, ssi, sei = hparams(flat, {"train/loss": float("nan")})
        for s in (exp, ssi, sei):
            self.writer.file_writer.add_summary(s)

    def scalars(self, record: dict) -> None:
        super().scalars(record)
        step = int(record["step"])
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(f"train/{k}", v, step)

    def events(self, records: list[dict]) -> None:
        super().events(records)
        for e in records:
            step = int(e["step"])
            if e.get("event") == "refit":
                comps = e.get("components", [])
                if "refit_s" in e:
                    self.writer.add_scalar("refit/seconds", e["refit_s"], step)
                if comps:
                    self.writer.add_scalar("refit/components_mean", sum(comps) / len(comps), step)
                    for u, c in enumerate(comps):
                        self.writer.add_scalar(f"refit/components/unit_{u:02d}", c, step)
                for u, s in enumerate(e.get("spread", [])):
                    self.writer.add_scalar(f"refit/spread/unit_{u:02d}", s, step)
            elif e.get("event") == "collapse":
                self.writer.add_scalar("collapse/dead_units", len(e.get("units", [])), step)
        self.writer.flush()

    @torch.no_grad()
    def images(self, step: int, model, dataset) -> None:
        if step % self.image_every != 0:
            return
        from .data.batches import get_batch
        from .viz import image_grid, interchange_grid
        was_training = model.training
        model.eval()
        try:
            n = min(self.n_images, len(dataset))
            x = get_batch(dataset, torch.arange(n)).to(model.device)
            g = torch.Generator().manual_seed(0)
            samples = model.sample(model.encode(x), steps=self.sample_steps, generator=g)
            self.writer.add_image("images/inputs_and_samples", image_grid(torch.cat([x, samples]).cpu(), n),
                                  step, dataformats="HWC")
            rows = interchange_grid(model, dataset, n, self.sample_steps, seed=0)
            self.writer.add_image("images/interchange", image_grid(rows.cpu(), n), step, dataformats="HWC")
        finally:
            model.train(was_training)
        self.writer.flush()

    def close(self) -> None:
        if hasattr(self, "writer"):
            self.writer.close()
        super().close()


def flatten(cfg: dict, prefix: str = "") -> dict:
    """``{"model": {"lr": 1}}`` → ``{"model.lr": 1}``; values TensorBoard's hparams cannot hold (lists, None)
    become strings."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = json.dumps(v, default=str)
    return out


def make_logger(kind: str, out: Path, hparams: dict, image_every: int, resumed: bool):
    if kind == "jsonl":
        return JsonlLogger(out)
    if kind == "tensorboard":
        return TensorBoardLogger(out, hparams, image_every, resumed)
    raise ValueError(f"logger must be one of {LOGGERS}, got {kind!r}")
