"""The self-reconstruction ratio of one checkpoint under several samplers, over several noise draws: does a
bad ratio come from the sampler (some draws decode to noise) or from the units (every draw is wrong)?

    python benchmarks/sampler_check.py runs/demo [--images 64] [--draws 3] [--steps 50] [--out check.json]

Rows: DDIM (``eta`` 0) and ancestral sampling (``eta`` 1), each with the x0 clamp the model fitted
(``latent_clip``) and without it; ``--guidance 1,2,3`` repeats each with classifier-free guidance
(``AnchoredDiffusion(cond_dropout=...)``). A checkpoint from before the clamp existed gets it fitted on 1,024 seeded
training images. The images are the first stage's held-out split (``unit_health._held_out``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

SAMPLERS = {"ddim": dict(eta=0.0, clip=False), "ddim+clip": dict(eta=0.0, clip=True),
            "ancestral": dict(eta=1.0, clip=False), "ancestral+clip": dict(eta=1.0, clip=True)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--guidance", default=None, help="comma-separated guidance scales (models trained with "
                    "cond_dropout; default: the model's own)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from dga_fast import AnchoredDiffusion
    from dga_fast.data import SyntheticShapes
    from dga_fast.evaluate import self_reconstruction
    from unit_health import _held_out

    model = AnchoredDiffusion.load(args.run).eval()
    if model.first_stage is None:
        raise ValueError(f"{args.run} diffuses pixels: the latent clamp does not apply")
    data = SyntheticShapes(model.config["image_size"])
    if float(model.latent_clip) == 0:
        with torch.no_grad():
            z = model.first_stage.encode(data.get_batch(torch.arange(1024))[0]) * model.latent_scale
        model.latent_clip.fill_(float(z.abs().max()))
    clip = float(model.latent_clip)
    x = data.get_batch(_held_out(args.run, len(data), 0)[:args.images])[0]
    rows = {}
    scales = [None] if args.guidance is None else [float(w) for w in args.guidance.split(",")]
    for name, w in [(n, w) for n in args.samplers.split(",") for w in scales]:
        opt = SAMPLERS[name]
        model.latent_clip.fill_(clip if opt["clip"] else 0.0)
        name = name if w is None or w == 1.0 else f"{name} w={w:g}"
        rows[name] = [self_reconstruction(model, x, args.steps, seed, opt["eta"], w) for seed in range(args.draws)]
        r = [d["ratio"] for d in rows[name]]
        c = [d["closer_to_other"] for d in rows[name]]
        print(f"{name:>15}: ratio {min(r):.3f}-{max(r):.3f} (mean {sum(r) / len(r):.3f}), "
              f"closer to another image {sum(c) / len(c):.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"run": str(args.run), "latent_clip": clip, "steps": args.steps,
                                        "images": args.images, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
