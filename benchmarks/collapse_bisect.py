"""Bisect an encoder collapse (issue 13): continue a run from one of its checkpoints under variants of the
recipe and watch its latent units live or die.

Every variant starts from the same checkpoint (weights, optimizer state, RNG, DyGA mixtures) and trains
``--steps`` more steps of the same batch stream. Every ``--every`` steps a fixed probe batch is encoded and the
std of every scalar latent unit and the fraction of positive pre-activations of the encoder head's hidden layer
(SiLU's live side) are recorded. A variant stops early once every unit's std is below ``--dead``: its encoder
gives one token for every image.

    python benchmarks/collapse_bisect.py runs/i13/dyga-s0/checkpoints/step_0000500 --steps 500 \\
        --variants default,no_skip_dropout,no_anchor_shift,no_lambda_grad,lr_5e-4 --out bisect.json

Variants (apply to the continued run only): ``default``; ``no_skip_dropout``; ``no_anchor_shift`` (tokens go
to the U-Net unshifted and no refit runs); ``no_refit`` (the mixtures of the checkpoint stay); ``refit_every_N``;
``no_lambda_grad`` (the adaptive λ of the shift carries no gradient); ``lr_X`` (e.g. ``lr_5e-4``);
``reseed_N`` (control: seed + N, another batch and noise stream from the same state).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch


class _Dead(Exception):
    pass


@contextlib.contextmanager
def _no_lambda_grad():
    from dga_fast.ops.anchor_shift import reference as ref
    orig = ref._anchor_shift

    def shift(c, state, shift_, scale, align, align_max):
        if align != "adaptive":
            return orig(c, state, shift_, scale, align, align_max)
        with torch.no_grad():   # μ of every token: the shift with λ = 1; λ from the reference's formula at c
            cf = c.detach().float()
            mu = orig(c.detach(), state, shift_, scale, 1.0, align_max).float()
            lam = align_max * torch.exp(-(cf - mu).abs().sum(-1, keepdim=True)
                                        / (cf.abs().sum(-1, keepdim=True) + ref.EPS))
        return (c.float() + lam * (mu - c.float())).to(c.dtype)

    ref._anchor_shift = shift
    try:
        yield
    finally:
        ref._anchor_shift = orig


def _probe(model, x):
    with torch.no_grad():
        hid = model.encoder.head_hidden(x * 2 - 1)
        s = model.encoder.head[-1](torch.nn.functional.silu(hid))
    return s.std(0), float((hid > 0).float().mean())


def run_variant(ck: Path, name: str, steps: int, every: int, dead: float, probe_images: int):
    from dga_fast import AnchoredDiffusion
    from dga_fast.checkpoint import read_json
    from dga_fast.data import SyntheticShapes
    from dga_fast.train import TrainConfig, fit
    state = read_json(ck / "train_state.json")
    meta_cfg = read_json(ck / "config.json") if (ck / "config.json").exists() else None
    model = AnchoredDiffusion.load(ck)
    cfg = dict(state["train"], progress=False)
    start = int(state["step"])
    cfg["steps"] = start + steps
    lr = None
    ctx = contextlib.nullcontext()
    if name == "no_skip_dropout":
        for m in model.modules():
            if hasattr(m, "p") and type(m).__name__ in ("SkipDropout", "DecoderInput"):
                m.p = 0.0
    elif name == "no_anchor_shift":
        model.condition = lambda t: t
        cfg["refit_warmup"] = 10 ** 9
    elif name == "no_refit":
        cfg["refit_warmup"] = 10 ** 9
    elif name.startswith("refit_every_"):
        cfg["refit_every"] = int(name.split("_")[-1])
        cfg["refit_warmup"] = start + cfg["refit_every"]
    elif name == "no_lambda_grad":
        ctx = _no_lambda_grad()
    elif name.startswith("reseed_"):   # control: the same state, another batch / noise stream
        cfg["seed"] = cfg["seed"] + int(name.split("_")[-1])
    elif name.startswith("lr_"):
        lr = float(name[3:])
    elif name != "default":
        raise ValueError(f"unknown variant {name!r}")
    data = SyntheticShapes(model.config["image_size"])
    probe = data.get_batch(torch.arange(0, len(data), max(1, len(data) // probe_images))[:probe_images])[0]
    rows = []

    def callback(step, m):
        if lr is not None:
            for g in opt_holder["opt"].param_groups:   # load_state_dict replaced the groups: set them here
                g["lr"] = lr
        if (step - start) % every == 0:
            std, pos = _probe(m, probe)
            rows.append({"step": step, "unit_std": [round(float(v), 5) for v in std], "hidden_pos": round(pos, 4)})
            if float(std.max()) < dead:
                raise _Dead

    opt_holder = {}
    orig_adamw = torch.optim.AdamW

    class _AdamW(orig_adamw):   # catch the optimizer fit builds, to change its lr after the state is loaded
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            opt_holder["opt"] = self

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        shutil.copytree(ck, run / "checkpoints" / ck.name)
        torch.optim.AdamW = _AdamW
        t0, died = time.perf_counter(), False
        try:
            with ctx:
                fit(model, data, run, TrainConfig(**cfg), resume=True, callback=callback)
        except _Dead:
            died = True
        finally:
            torch.optim.AdamW = orig_adamw
    dead_at = rows[-1]["step"] if died else None
    return {"variant": name, "from_step": start, "steps": steps, "died_at": dead_at,
            "seconds": round(time.perf_counter() - t0, 1), "rows": rows, "run_config": meta_cfg}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--dead", type=float, default=1e-3, help="a unit is dead below this std of its scalar")
    ap.add_argument("--probe-images", type=int, default=128)
    ap.add_argument("--variants", default="default")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if not (args.checkpoint / "train_state.json").exists():
        raise FileNotFoundError(f"{args.checkpoint} is not a training checkpoint (no train_state.json)")
    results = []
    if args.out and args.out.exists():
        results = json.loads(args.out.read_text())["variants"]
    done = {r["variant"] for r in results}
    for name in args.variants.split(","):
        if name in done:
            continue
        r = run_variant(args.checkpoint, name, args.steps, args.every, args.dead, args.probe_images)
        last = r["rows"][-1]
        print(f"{name:>18}: died at {r['died_at']}  last: min/max unit std {min(last['unit_std']):.4f}/"
              f"{max(last['unit_std']):.4f}, hidden positive {last['hidden_pos']:.3f}  ({r['seconds']} s)",
              flush=True)
        results.append(r)
        if args.out:
            args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "variants": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
