"""Command line: ``python -m dga_fast {demo,anchors-demo,train,sample,interchange,evaluate}`` (also the
``dga-fast`` script)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import distributed as dist_

DATASETS = ("synthetic-shapes", "shapes3d", "mpi3d-toy", "cars3d", "celeba", "folder")


def make_dataset(name: str, image_size: int, data_dir=None, seed: int = 0):
    from . import data
    if name == "synthetic-shapes":
        return data.SyntheticShapes(size=image_size, seed=seed)
    loaders = {"shapes3d": data.Shapes3D, "mpi3d-toy": data.MPI3DToy, "cars3d": data.Cars3D,
               "celeba": data.CelebA, "folder": data.ImageFolder}
    if name not in loaders:
        raise ValueError(f"--dataset must be one of {DATASETS}, got {name!r}")
    if data_dir is None:
        raise ValueError(f"--dataset {name} reads files: pass --data-dir")
    return loaders[name](data_dir, image_size)


def _run_config(run_dir: Path) -> dict:
    from .checkpoint import read_json
    cfg = read_json(Path(run_dir) / "config.json")
    if "dataset" not in cfg or "model" not in cfg:
        raise ValueError(f"{run_dir}/config.json is not the config of a dga_fast run")
    return cfg


def cmd_train(args) -> int:
    from dataclasses import asdict
    from .collapse import EncoderCollapse
    from .model import AnchoredDiffusion
    from .presets import PRESETS
    from .train import TrainConfig, fit

    out = Path(args.out)
    if args.resume:
        cfg = _run_config(out)
        model_cfg, train_cfg, data_cfg = cfg["model"], cfg["train"], cfg["dataset"]
        if args.steps is not None:
            train_cfg["steps"] = args.steps
    else:
        preset = PRESETS[args.preset]
        model_cfg = dict(preset["model"])
        train_cfg = asdict(TrainConfig(**preset["train"]))
        if args.image_size is not None:
            model_cfg["image_size"] = args.image_size
        if args.no_anchoring:
            model_cfg["anchoring"] = None
        if args.skip_dropout is not None:
            model_cfg["skip_dropout"] = args.skip_dropout
        for flag, key in (("steps", "steps"), ("batch_size", "batch_size"), ("ckpt_every", "ckpt_every"),
                          ("seed", "seed")):
            if getattr(args, flag) is not None:
                train_cfg[key] = getattr(args, flag)
        data_cfg = {"name": args.dataset, "data_dir": args.data_dir, "image_size": model_cfg["image_size"]}
    for key in ("on_collapse", "collapse_threshold"):   # may change on --resume
        if getattr(args, key) is not None:
            train_cfg[key] = getattr(args, key)
    train_cfg["progress"] = not args.no_progress
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available")
    # under torchrun (WORLD_SIZE > 1): join the process group (nccl on CUDA, gloo on CPU), one GPU per rank
    distributed = dist_.init_from_env(device)
    device = dist_.local_device(device)
    try:
        dataset = make_dataset(data_cfg["name"], data_cfg["image_size"], data_cfg.get("data_dir"))
        torch.manual_seed(train_cfg["seed"])
        # a stored run config may predate some arguments (legacy defaults); a preset takes today's defaults
        model = (AnchoredDiffusion.from_config(model_cfg) if args.resume else AnchoredDiffusion(**model_cfg)).to(device)
        if dist_.rank() == 0:
            out.mkdir(parents=True, exist_ok=True)
        try:
            hist = fit(model, dataset, out, TrainConfig(**train_cfg), resume=args.resume,
                       run_info={"dataset": data_cfg})
        except EncoderCollapse as e:
            print(f"training stopped (--on-collapse stop): {e}", file=sys.stderr)
            return 3
        last = hist["losses"][-1][1] if hist["losses"] else float("nan")
        if dist_.rank() == 0:
            print(f"trained to step {hist['step']} (last loss {last:.4f}); refits at {hist['refit_steps']}; "
                  f"{dist_.world_size()} rank(s), global batch {train_cfg['batch_size'] * dist_.world_size()}; "
                  f"checkpoints in {out / 'checkpoints'}")
    finally:
        if distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


def _load_run(run_dir):
    """The run's latest model and its dataset."""
    from .model import AnchoredDiffusion
    cfg = _run_config(run_dir)
    model = AnchoredDiffusion.load(run_dir)
    ds = make_dataset(cfg["dataset"]["name"], cfg["dataset"]["image_size"], cfg["dataset"].get("data_dir"))
    return model, ds


def cmd_sample(args) -> int:
    from .train import get_batch
    from .viz import save_grid
    model, ds = _load_run(args.run_dir)
    g = torch.Generator().manual_seed(args.seed)
    x = get_batch(ds, torch.randint(0, len(ds), (args.n,), generator=g))
    imgs = model.sample(model.encode(x), steps=args.steps, generator=g)
    save_grid(torch.cat([x, imgs]), args.n, args.out)
    print(f"wrote {args.out} (top row: inputs, bottom row: samples from their latent units)")
    return 0


def cmd_interchange(args) -> int:
    from .viz import save_grid
    model, ds = _load_run(args.run_dir)
    rows = interchange_grid(model, ds, args.n, args.steps, args.seed)
    save_grid(rows, args.n, args.out)
    print(f"wrote {args.out} (rows: source, target, then source with unit u swapped from target, u = 0..)")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_run
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    out = evaluate_run(args.run_dir, names, args.samples, args.seed, progress=not args.no_progress)
    for k, v in out["scores"].items():
        print(f"{k:<22} {v:.4f}")
    print(f"wrote {Path(args.run_dir) / 'metrics.json'} and {', '.join(out['plots'])}")
    return 0


def interchange_grid(model, ds, n: int, steps: int, seed: int):
    """Rows: ``n`` sources, ``n`` targets, then the sources with unit ``u`` swapped in from the targets."""
    from .train import get_batch
    g = torch.Generator().manual_seed(seed)
    src = get_batch(ds, torch.randint(0, len(ds), (n,), generator=g))
    tgt = get_batch(ds, torch.randint(0, len(ds), (n,), generator=g))
    rows = [src, tgt]
    for u in range(model.config["num_units"]):
        rows.append(model.interchange(src, tgt, u, steps=steps, generator=torch.Generator().manual_seed(seed)))
    return torch.cat(rows)


def main(argv=None) -> int:
    from .presets import PRESETS
    p = argparse.ArgumentParser(prog="dga-fast", description="Dynamic Gaussian Anchoring toolkit")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="train the tiny preset on SyntheticShapes(32) and write the demo files")
    d.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    d.add_argument("--steps", type=int, default=None,
                   help=f"training steps (default: the tiny preset's {PRESETS['tiny']['train']['steps']})")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--eval-samples", type=int, default=1000,
                   help="samples per metric of the closing evaluation (0 skips it; default 1000)")
    d.add_argument("--no-progress", action="store_true")
    a = sub.add_parser("anchors-demo", help="fit DyGA on synthetic latent-unit tokens and plot a few units")
    a.add_argument("--out", default="runs/anchors-demo", help="output folder (default: runs/anchors-demo)")
    a.add_argument("--units", type=int, default=20)
    a.add_argument("--tokens", type=int, default=10_000)
    a.add_argument("--dim", type=int, default=32)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--no-progress", action="store_true")
    t = sub.add_parser("train", help="train an AnchoredDiffusion model")
    t.add_argument("--dataset", choices=DATASETS, default="synthetic-shapes")
    t.add_argument("--data-dir", default=None)
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--image-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--ckpt-every", type=int)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-anchoring", action="store_true", help="EncDiff baseline: no DyGA")
    t.add_argument("--skip-dropout", type=float, help="skip dropout rate (0 disables)")
    t.add_argument("--on-collapse", choices=("warn", "stop"), default=None,
                   help="when every latent unit's token spread falls below --collapse-threshold of its peak: "
                        "warn (default) or stop (checkpoint, exit with status 3)")
    t.add_argument("--collapse-threshold", type=float, default=None,
                   help="a unit counts as dead below this fraction of its peak token spread (default 0.1)")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available); under torchrun every "
                                    "rank takes the GPU of its LOCAL_RANK")
    for name, helptext in (("sample", "sample images from encoded dataset images"),
                           ("interchange", "swap latent units between images")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("run_dir")
        s.add_argument("--out", required=True, help="PNG file")
        s.add_argument("--n", type=int, default=6)
        s.add_argument("--steps", type=int, default=50)
        s.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate", help="disentanglement metrics of a run: metrics.json and plots")
    e.add_argument("run_dir")
    e.add_argument("--metrics", default="mig,dci,sap,modularity,factor_vae,beta_vae",
                   help="comma-separated subset of mig,dci,sap,modularity,factor_vae,beta_vae,tad "
                        "(tad needs binary attributes, as CelebA's)")
    e.add_argument("--samples", type=int, default=None,
                   help="train sample count of every metric (default: DESIGN's 10k; smaller is faster)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "train" and args.resume and any(
            getattr(args, k) is not None for k in ("image_size", "skip_dropout", "batch_size")):
        p.error("--resume continues a run with its own configuration: --image-size, --skip-dropout and "
                "--batch-size cannot change it")
    if args.cmd == "anchors-demo":
        for name in ("units", "tokens", "dim"):
            if getattr(args, name) < 1:
                p.error(f"--{name} must be >= 1")
        from .demo import run_anchor_demo
        s = run_anchor_demo(args.out, args.units, args.tokens, args.dim, args.seed,
                            progress=not args.no_progress)
        print(f"DyGA refit of {s['units']} units x {s['tokens']} tokens x {s['dim']} dims "
              f"in {s['refit_seconds']:.2f} s")
        print(f"true levels   : {s['true_levels']}")
        print(f"Gaussians     : {s['n_components']}  ({s['units_with_exact_count']}/{s['units']} exact)")
        print(f"mean ARI      : {s['mean_adjusted_rand_index']:.4f}")
        print(f"wrote {args.out}/summary.json and {', '.join(s['plots'])}")
        return 0
    if args.cmd == "demo":
        if args.steps is not None and args.steps < 1:
            p.error("--steps must be >= 1")
        if args.eval_samples != 0 and args.eval_samples < 20:
            p.error("--eval-samples must be 0 (skip) or >= 20")
        args.eval_samples = args.eval_samples or None
        from .demo import run_training_demo
        s = run_training_demo(args.out, args.steps, args.seed, progress=not args.no_progress,
                              eval_samples=args.eval_samples)
        print(f"trained the tiny preset for {s['steps']} steps in {s['train_seconds']} s: loss "
              f"{s['loss_first']} -> {s['loss_last']}; DyGA refits at steps {s['refit_steps']}")
        print(f"Gaussians per unit: {s['n_components']}")
        print(f"swapping all units: MSE to target {s['interchange_all_units_mse_to_target']}, "
              f"to source {s['interchange_all_units_mse_to_source']}")
        if s.get("evaluation"):
            ev = s["evaluation"]
            print(f"disentanglement ({ev['samples']} samples per metric, {ev['seconds']} s):")
            for k, v in ev["scores"].items():
                print(f"  {k:<22} {v:.4f}")
        print(f"wrote {args.out}/: {', '.join(s['files'])} and the checkpoint {s['checkpoint']}")
        return 0
    try:
        return {"train": cmd_train, "sample": cmd_sample, "interchange": cmd_interchange,
                "evaluate": cmd_evaluate}[args.cmd](args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"dga-fast {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except dist_.RankStopped as e:   # a distributed run that lost a rank
        print(f"dga-fast {args.cmd}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
