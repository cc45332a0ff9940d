"""``training.png`` of a run: its ``log.jsonl`` over steps — loss, the encoder's and the U-Net's gradient norms,
every unit's token spread, components and mean relative anchor shift at the refits, the fraction of anchors
changed, the refits' split / filter / merge counts and refit seconds."""
from __future__ import annotations

import json
from pathlib import Path


def read_records(path) -> list[dict]:
    """Every readable line of a ``log.jsonl`` (a killed run's last, unfinished line is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_log(path) -> tuple[list[dict], list[dict]]:
    """``(step rows, refit rows)`` of a ``log.jsonl`` (``read_records``)."""
    records = read_records(path)
    return ([r for r in records if r.get("event") != "refit" and "loss" in r],
            [r for r in records if r.get("event") == "refit"])


def plot_training_log(run_dir, path=None) -> Path:
    """Draw ``run_dir/log.jsonl`` into ``path`` (default ``run_dir/training.png``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .viz import save_figure
    run_dir = Path(run_dir)
    log = run_dir / "log.jsonl"
    if not log.is_file():
        raise FileNotFoundError(f"{log} does not exist: not a training run directory")
    steps, refits = read_log(log)
    fig, axes = plt.subplots(3, 3, figsize=(13, 9.5), dpi=90)
    x = [r["step"] for r in steps]
    axes[0, 0].plot(x, [r["loss"] for r in steps], lw=0.8)
    axes[0, 0].set(title="loss", xlabel="step", yscale="log")
    for key in ("grad_norm_encoder", "grad_norm_unet"):
        rows = [r for r in steps if key in r]
        axes[0, 1].plot([r["step"] for r in rows], [max(r[key], 1e-12) for r in rows], lw=0.8,
                        label=key.replace("grad_norm_", ""))
    axes[0, 1].set(title="gradient norm (before clipping)", xlabel="step", yscale="log")
    axes[0, 1].legend(fontsize=8)
    rx = [r["step"] for r in refits]
    panels = (("spread", axes[0, 2], "token spread per unit"), ("components", axes[1, 0], "Gaussians per unit"),
              ("anchor_changed", axes[1, 1], "fraction of anchors changed"),
              ("shift_rel", axes[2, 0], "mean anchor shift ‖c' − c‖ / ‖c‖ per unit"))
    for key, ax, title in panels:
        rows = [r for r in refits if key in r]
        if rows:
            for u in range(len(rows[0][key])):
                ax.plot([r["step"] for r in rows], [r[key][u] for r in rows], lw=0.8, marker=".", ms=3)
        else:
            ax.text(0.5, 0.5, "not logged (no anchoring)", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=title, xlabel="refit step")
    for key in ("n_split", "n_filtered", "n_merged"):   # summed over the units
        rows = [r for r in refits if key in r]
        axes[2, 1].plot([r["step"] for r in rows], [sum(r[key]) for r in rows], marker=".", label=key[2:])
    axes[2, 1].set(title="components split / filtered / merged (all units)", xlabel="refit step")
    axes[2, 1].legend(fontsize=8)
    axes[1, 2].plot(rx, [r.get("refit_s", float("nan")) for r in refits], marker=".")
    axes[1, 2].set(title="refit seconds", xlabel="refit step")
    axes[2, 2].axis("off")
    fig.suptitle(str(run_dir), fontsize=9)
    return save_figure(fig, path or run_dir / "training.png")
