#!/usr/bin/env python
"""What blows up when a run diverges: a run of ``divergence_sweep.py`` continued from one of its checkpoints (a copy,
the original untouched) for ``--steps`` steps, the same batches, noise and learning rates as the run (resume is
exact), with every step's numbers per layer recorded:

- ``act``: RMS of the output of every GroupNorm, LayerNorm, attention block, the encoder and the U-Net;
- ``attn``: the largest |q·k|/√d of every attention block's self- and cross-attention (the softmax's logits);
- ``grad``: the gradient norm per parameter group (encoder, U-Net blocks), after clipping;
- ``update``: ‖Δθ‖ / ‖θ‖ of the step per parameter group (what AdamW actually moved);
- ``gn_var``: the smallest per-group variance a GroupNorm normalised (a near-constant input is divided by ~√eps);
- ``loss``.

    python benchmarks/divergence_probe.py --run RUNS/lr0.002/synthetic-sprites/baseline-seed1 \\
        --from-step 1000 --steps 80 --first-stage FS --out benchmarks/results/divergence/probe-seed1.json
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class _Done(Exception):
    pass


def _group(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "encoder":
        return "encoder"
    return ".".join(parts[:3]) if parts[0] == "unet" else parts[0]


def _attach(model, rec: dict):
    import torch
    from torch import nn

    from dga_fast.nn.unet import AttentionBlock
    hooks, stash = [], {}

    def rms(name):
        def hook(_m, _inp, out):
            t = out[0] if isinstance(out, tuple) else out
            rec["act"][name] = round(float(t.detach().float().pow(2).mean().sqrt()), 5)
        return hook

    def gn_var(name, m):
        def hook(_m, inp, _out):
            x = inp[0].detach().float()
            g = x.reshape(x.shape[0], m.num_groups, -1).var(-1, unbiased=False)
            rec["gn_var"][name] = float(g.min())
        return hook

    def keep(key):
        def hook(_m, _inp, out):
            stash[key] = out.detach()
        return hook

    def logits(name, blk):
        def hook(_m, _inp, _out):
            C, H = blk.proj.in_features, blk.heads
            q, k, _ = stash[(name, "qkv")].chunk(3, dim=-1)
            qx, kx = stash[(name, "q")], stash[(name, "kv")].chunk(2, dim=-1)[0]
            for kind, a, b in (("self", q, k), ("cross", qx, kx)):
                a = a.reshape(a.shape[0], a.shape[1], H, C // H).transpose(1, 2)
                b = b.reshape(b.shape[0], b.shape[1], H, C // H).transpose(1, 2)
                top = float((a @ b.transpose(-1, -2)).abs().max())
                rec["attn"][f"{name}.{kind}"] = round(top / math.sqrt(C // H), 4)
        return hook

    for name, m in model.named_modules():
        if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) or name in ("encoder", "unet"):
            hooks.append(m.register_forward_hook(rms(name)))
        if isinstance(m, nn.GroupNorm):
            hooks.append(m.register_forward_hook(gn_var(name, m)))
        if isinstance(m, AttentionBlock):
            for sub in ("qkv", "q", "kv"):
                hooks.append(getattr(m, sub).register_forward_hook(keep((name, sub))))
            hooks.append(m.register_forward_hook(logits(name, m)))
    return hooks


def probe(run: Path, from_step: int, steps: int, first_stage: Path, work: Path) -> list[dict]:
    import torch

    import study_job
    from dga_fast import AnchoredDiffusion
    from dga_fast.checkpoint import read_json, read_tensors
    from dga_fast.nn import FirstStage
    from dga_fast.train import TrainConfig, fit
    cfg = read_json(run / "config.json")
    shutil.rmtree(work, ignore_errors=True)
    (work / "checkpoints").mkdir(parents=True)
    shutil.copytree(run / "checkpoints" / f"step_{from_step:07d}", work / "checkpoints" / f"step_{from_step:07d}")
    shutil.copy(run / "config.json", work / "config.json")
    fs = FirstStage.load(first_stage)
    job = {"dataset": cfg["dataset"]["name"], "budget": cfg["study"]["budget"]}
    _, train_ds, _ = study_job._data(job, fs, first_stage)
    torch.manual_seed(cfg["train"]["seed"])
    model = AnchoredDiffusion(**{k: v for k, v in cfg["model"].items() if k != "first_stage"}, first_stage=fs)
    rows, losses = [], []
    start = read_tensors(work / "checkpoints" / f"step_{from_step:07d}" / "model.safetensors")
    prev = {k: v for k, v in start.items() if k in dict(model.named_parameters())}   # the weights before the step
    rec = {"act": {}, "attn": {}, "gn_var": {}}
    hooks = _attach(model, rec)
    plain_loss = model.loss

    def loss(*a, **k):   # the step's loss, as fit computes it
        out = plain_loss(*a, **k)
        losses.append(float(out.detach()))
        return out
    model.loss = loss

    def after(step, m):
        grads, upd, norms = {}, {}, {}
        for name, p in m.named_parameters():
            if not p.requires_grad:
                continue
            g = _group(name)
            if p.grad is not None:
                grads[g] = grads.get(g, 0.0) + float(p.grad.float().pow(2).sum())
            if name in prev:
                upd[g] = upd.get(g, 0.0) + float((p.detach() - prev[name]).float().pow(2).sum())
            norms[g] = norms.get(g, 0.0) + float(p.detach().float().pow(2).sum())
            prev[name] = p.detach().clone()
        rows.append({"step": step, "loss": round(losses[-1], 6),
                     "grad": {k: round(math.sqrt(v), 6) for k, v in grads.items()},
                     "update": {k: round(math.sqrt(upd[k] / max(norms[k], 1e-30)), 8) for k in upd},
                     **{k: dict(v) for k, v in rec.items()}})
        if step >= from_step + steps:
            raise _Done

    train = {**cfg["train"], "progress": False}
    try:
        fit(model, train_ds, work, TrainConfig(**train), resume=True, callback=after)
    except _Done:
        pass
    finally:
        for hk in hooks:
            hk.remove()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--from-step", type=int, required=True)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--first-stage", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("/tmp/divergence_probe"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    rows = probe(args.run, args.from_step, args.steps, args.first_stage, args.work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/divergence_probe.py " + " ".join(argv or sys.argv[1:])
    args.out.write_text(json.dumps({"command": command, "run": str(args.run), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
