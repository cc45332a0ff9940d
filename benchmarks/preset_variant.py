"""Train a preset with some of its values changed: what issue 14's recipe variants ran.

    python benchmarks/preset_variant.py --preset tiny-latent --set model.encoder_norm='"batch"' \
        -- --first-stage runs/i14/first_stage --seed 2 --out runs/i14x/bn-s2 --ckpt-every 500

Each ``--set section.key=VALUE`` replaces one value of the preset (``section`` is ``model`` or ``train``;
``VALUE`` is JSON: ``'"batch"'``, ``32``, ``'[1, 2]'``). Everything after ``--`` goes to
``python -m dga_fast train`` unchanged; with ``--command demo`` (preset ``tiny-latent``) they go to
``python -m dga_fast demo``, so a variant of the demo's recipe runs on the demo's data, e.g. on the first
stage of an earlier demo with several diffusion seeds:

    python benchmarks/preset_variant.py --command demo --preset tiny-latent --set model.num_units=20 \
        -- --first-stage runs/demo/first_stage --train-seed 1 --out runs/demo-u20-s1 --eval-samples 0

The run's ``config.json`` records the values it trained with, so ``--resume`` and every evaluation tool read
the variant, not the preset. Score it with ``benchmarks/unit_health.py RUN --self-reconstruction 64``.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys


def parse_set(item: str) -> tuple[str, str, object]:
    key, sep, value = item.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot or section not in ("model", "train") or not name:
        raise ValueError(f"--set takes section.key=JSON with section model or train, got {item!r}")
    try:
        return section, name, json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"--set {key}: the value must be JSON (quote strings: '\"batch\"'), got {value!r}") from e


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    from dga_fast import cli, presets
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(presets.PRESETS), required=True)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON")
    ap.add_argument("--command", choices=("train", "demo"), default="train",
                    help="what the changed preset runs (demo: the tiny-latent preset only)")
    args = ap.parse_args(argv)
    if args.command == "demo" and args.preset != "tiny-latent":
        ap.error("--command demo trains the tiny-latent preset; pass --preset tiny-latent")
    changes = [parse_set(s) for s in args.set]
    saved = copy.deepcopy(presets.PRESETS[args.preset])
    try:
        for section, name, value in changes:
            presets.PRESETS[args.preset][section][name] = value
        return cli.main(["train", "--preset", args.preset] + rest if args.command == "train" else ["demo"] + rest)
    finally:
        presets.PRESETS[args.preset] = saved


if __name__ == "__main__":
    sys.exit(main())
