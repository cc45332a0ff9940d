"""Command line: ``python -m dga_fast {demo,anchors-demo,train,train-autoencoder,sample,interchange,evaluate}``
``dga-fast`` script)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import distributed as dist_
from .loggers import LOGGERS
from .lr_schedule import SCHEDULES
from .runs import DATASETS, load_run, make_dataset, run_config


def _device(name: str | None) -> str:
    """``--device``: cuda when available unless named; a CUDA device without CUDA is a clear error."""
    device = name or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        kind = torch.device(device).type
    except RuntimeError as e:
        raise ValueError(f"--device {device!r}: not a device name (cpu, cuda, cuda:N)") from e
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available")
    return device


def cmd_demo(args) -> int:
    from .demo import run_training_demo
    s = run_training_demo(args.out, args.steps, args.seed, progress=not args.no_progress,
                          eval_samples=args.eval_samples, ae_steps=args.ae_steps, ae_minutes=args.ae_minutes,
                          first_stage=args.first_stage, train_seed=args.train_seed)
    fs = s["first_stage"]
    trained = fs.get("reused") or f"{fs['steps']} steps"
    print(f"first stage: {trained} in {fs['seconds']} s, held-out PSNR {fs['held_out_psnr_db']:.2f} dB, "
          f"codes used {fs['codes_used']:.1%} (perplexity {fs['perplexity']}), "
          f"latents {'x'.join(map(str, fs['latent_shape']))}")
    print(f"latent diffusion (tiny-latent): {s['steps']} steps in {s['train_seconds']} s, loss "
          f"{s['loss_first']} -> {s['loss_last']}; DyGA refits at steps {s['refit_steps']}")
    print(f"Gaussians per unit: {s['n_components']}")
    sr = s["self_reconstruction"]
    print(f"self-reconstruction ratio (held-out, {sr['images']} images; 1 = the units carry nothing): "
          f"{sr['ratio']:.3f} (MSE to source {sr['mse_to_source']}, to another image {sr['mse_to_other']})")
    print(f"interchange effect per unit (MSE): {s['interchange_effect_per_unit']}")
    if s.get("evaluation"):
        ev = s["evaluation"]
        print(f"disentanglement ({ev['samples']} samples per metric, {ev['seconds']} s):")
        for k, v in ev["scores"].items():
            print(f"  {k:<22} {v:.4f}")
    print(f"wrote {args.out}/: {', '.join(s['files'])} and the checkpoint {s['checkpoint']}")
    return 0


def _train_sections(args, out: Path) -> tuple[dict, dict, dict]:
    """(model, train, dataset) of the run ``train`` is asked for (``train_setup``): a fresh run's first stage
    loaded; on ``--resume`` every value asked must equal the run's own, except those a continued run may change."""
    from . import train_setup
    stored = None
    if args.resume:
        if not (out / "config.json").is_file():
            raise FileNotFoundError(f"--resume: {out}/config.json not found (is {out} a train run directory?)")
        stored = run_config(out)
    cfg = train_setup.requested(args, stored)
    model_cfg, train_cfg, data_cfg = cfg["model"], cfg["train"], cfg["dataset"]
    if stored is not None:
        bad = train_setup.resume_conflicts(stored, cfg)
        if bad:
            raise ValueError(f"--resume continues the run in {out} with its own configuration; the command asks "
                             f"otherwise for: {'; '.join(bad)} (only {', '.join(sorted(k for _, k in train_setup.RESUME_MUTABLE))} "
                             "may change)")
        return model_cfg, train_cfg, data_cfg
    if model_cfg.get("first_stage") is not None and data_cfg.get("first_stage") is None:
        raise ValueError(f"the {args.preset or 'configured'} model diffuses latents: train its first stage first "
                         f"(python -m dga_fast train-autoencoder --out RUN_AE ...) and pass --first-stage RUN_AE")
    if data_cfg.get("first_stage") is not None:
        from .nn import FirstStage
        data_cfg["first_stage"] = str(Path(data_cfg["first_stage"]).resolve())   # a config file's may be relative
        model_cfg["first_stage"] = FirstStage.load(data_cfg["first_stage"])
        model_cfg.setdefault("image_size", model_cfg["first_stage"].config["image_size"])
    data_cfg["image_size"] = model_cfg["image_size"]
    return model_cfg, train_cfg, data_cfg


def cmd_train(args) -> int:
    from .collapse import EncoderCollapse
    from .divergence import TrainingDiverged
    from .model import AnchoredDiffusion
    from .train import TrainConfig, fit

    out = Path(args.out)
    model_cfg, train_cfg, data_cfg = _train_sections(args, out)
    train_cfg["progress"] = not args.no_progress
    device = _device(args.device)
    # under torchrun (WORLD_SIZE > 1): join the process group (nccl on CUDA, gloo on CPU), one GPU per rank
    distributed = dist_.init_from_env(device)
    device = dist_.local_device(device)
    clean = False
    try:
        dataset = make_dataset(data_cfg["name"], data_cfg["image_size"], data_cfg.get("data_dir"))
        torch.manual_seed(train_cfg["seed"])
        # a stored run config may predate some arguments (legacy defaults); a preset takes today's defaults;
        # a latent run resumes with its checkpoint's first stage (the latent cache is keyed by its weights)
        if args.resume:
            model = AnchoredDiffusion.load(out) if model_cfg.get("first_stage") else \
                AnchoredDiffusion.from_config(model_cfg)
        else:
            model = AnchoredDiffusion(**model_cfg)
        model = model.to(device)
        if model.first_stage is not None:
            dataset = _latent_dataset(model.first_stage, dataset, data_cfg, out, args.rebuild_latents,
                                      not args.no_progress)
        if dist_.rank() == 0:
            out.mkdir(parents=True, exist_ok=True)
        try:
            hist = fit(model, dataset, out, TrainConfig(**train_cfg), resume=args.resume,
                       run_info={"dataset": data_cfg})
        except EncoderCollapse as e:
            print(f"training stopped (--on-collapse stop): {e}", file=sys.stderr)
            return 3
        except TrainingDiverged as e:
            print(f"training stopped (--on-diverge {train_cfg.get('on_diverge', 'warn')}): {e}", file=sys.stderr)
            return 4
        last = hist["losses"][-1][1] if hist["losses"] else float("nan")
        if dist_.rank() == 0:
            print(f"trained to step {hist['step']} (last loss {last:.4f}); refits at {hist['refit_steps']}; "
                  f"{dist_.world_size()} rank(s), global batch {train_cfg['batch_size'] * dist_.world_size()}; "
                  f"checkpoints in {out / 'checkpoints'}")
        clean = True
    finally:
        if distributed:
            dist_.shutdown(clean)
    return 0


def _latent_dataset(first_stage, dataset, data_cfg: dict, out: Path, rebuild: bool, progress: bool):
    """``dataset`` with its latents cached beside the first stage (or in the run when that folder is gone).
    Under torchrun rank 0 encodes the whole dataset first."""
    from .latent_cache import LatentCache, LatentDataset, default_cache_dir, weights_fingerprint
    key = {k: data_cfg.get(k) for k in ("name", "data_dir", "image_size")}
    home = Path(data_cfg.get("first_stage") or out)
    home = home if home.is_dir() else out
    where = default_cache_dir(home, key, weights_fingerprint(first_stage))
    if dist_.world_size() > 1:
        if dist_.rank() == 0:
            LatentCache(first_stage, dataset, where, key, rebuild=rebuild, progress=progress).build()
        torch.distributed.barrier()
        rebuild = False
    return LatentDataset(dataset, LatentCache(first_stage, dataset, where, key, rebuild=rebuild,
                                              progress=progress))


def cmd_train_autoencoder(args) -> int:
    from dataclasses import asdict
    from .nn import FirstStage
    from .train_autoencoder import AutoencoderConfig, fit_autoencoder

    out = Path(args.out)
    if args.resume:
        cfg = run_config(out)
        if cfg.get("class") != "FirstStage":
            raise ValueError(f"{out} is not a train-autoencoder run (its config.json describes a "
                             f"{cfg.get('class', 'AnchoredDiffusion')})")
        model_cfg, train_cfg, data_cfg = cfg["model"], cfg["train"], cfg["dataset"]
    else:
        model_cfg = {"image_size": args.image_size}
        train_cfg = asdict(AutoencoderConfig())
        data_cfg = {"name": args.dataset, "data_dir": args.data_dir, "image_size": args.image_size}
    for flag in ("steps", "batch_size", "lr", "seed", "ckpt_every", "eval_every", "lr_schedule"):
        if getattr(args, flag) is not None:
            train_cfg[flag] = getattr(args, flag)
    train_cfg["max_seconds"] = args.max_minutes * 60 if args.max_minutes else None
    train_cfg["progress"] = not args.no_progress
    device = _device(args.device)
    dataset = make_dataset(data_cfg["name"], data_cfg["image_size"], data_cfg.get("data_dir"))
    torch.manual_seed(train_cfg["seed"])
    model = FirstStage(**model_cfg).to(device)
    hist = fit_autoencoder(model, dataset, out, AutoencoderConfig(**train_cfg), resume=args.resume,
                           run_info={"dataset": data_cfg})
    psnr = hist["psnr"][-1][1] if hist["psnr"] else float("nan")
    print(f"trained the first stage to step {hist['step']}: held-out PSNR {psnr:.2f} dB; checkpoints in "
          f"{out / 'checkpoints'} (use it: train --first-stage {out})")
    return 0


def cmd_sample(args) -> int:
    from .data.batches import get_batch
    from .viz import save_grid
    model, ds = load_run(args.run_dir)
    g = torch.Generator().manual_seed(args.seed)
    x = get_batch(ds, torch.randint(0, len(ds), (args.n,), generator=g))
    imgs = model.sample(model.encode(x), steps=args.steps, generator=g)
    save_grid(torch.cat([x, imgs]), args.n, args.out)
    print(f"wrote {args.out} (top row: inputs, bottom row: samples from their latent units)")
    return 0


def cmd_interchange(args) -> int:
    from .viz import interchange_grid, save_grid
    model, ds = load_run(args.run_dir)
    rows = interchange_grid(model, ds, args.n, args.steps, args.seed)
    save_grid(rows, args.n, args.out)
    print(f"wrote {args.out} (rows: source, target, then source with unit u swapped from target, u = 0..)")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_run
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    plots = [m.strip() for m in args.plots.split(",") if m.strip()]
    out = evaluate_run(args.run_dir, names, args.samples, args.seed, progress=not args.no_progress,
                       fid_weights=args.fid_weights, projections=plots, force=args.force)
    for k, v in out["scores"].items():
        print(f"{k:<22} {v:.4f}")
    print(f"wrote {Path(args.run_dir) / 'metrics.json'} and {', '.join(out['plots'])}")
    return 0


def cmd_explore(args) -> int:
    try:
        from .explore.app import serve
    except ImportError as e:
        raise ImportError("explore needs starlette and uvicorn (pip install starlette uvicorn)") from e
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    serve(args.run_dir, host=args.host, port=args.port, steps=args.steps, seed=args.seed, device=_device(args.device))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .evaluate import DEFAULT_METRICS, METRICS
    from .presets import PRESETS
    p = argparse.ArgumentParser(prog="dga-fast", description="Dynamic Gaussian Anchoring toolkit")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="train the latent system (first stage, then tiny-latent) on SyntheticShapes(32)")
    d.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    d.add_argument("--steps", type=int, default=None,
                   help=f"diffusion training steps (default: the tiny-latent preset's "
                        f"{PRESETS['tiny-latent']['train']['steps']})")
    d.add_argument("--ae-steps", type=int, default=480,
                   help="first-stage training steps (default 480: about 3 minutes on a 2-core CPU)")
    d.add_argument("--ae-minutes", type=float, default=6.0,
                   help="cap on the first stage's training time; a slower machine stops early (default 6)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--first-stage", default=None, metavar="DIR",
                   help="reuse a trained first stage (e.g. an earlier demo's OUT/first_stage) instead of training one")
    d.add_argument("--train-seed", type=int, default=None,
                   help="seed of the diffusion stage alone (default: --seed, which also picks the split)")
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
    t.add_argument("--dataset", choices=DATASETS, default=None, help="default: synthetic-shapes")
    t.add_argument("--data-dir", default=None)
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--preset", choices=sorted(PRESETS), default=None, help="default: tiny")
    t.add_argument("--config", metavar="FILE", default=None,
                   help="a YAML or JSON file with sections model, train, dataset (and optionally preset), e.g. a "
                        "run's config.json; it overrides the preset and the flags override it")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--image-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--ckpt-every", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--lr-schedule", choices=SCHEDULES, default=None, help="default: the preset's")
    t.add_argument("--ema-decay", type=float, default=None,
                   help="keep a moving average of the weights (ema.safetensors in each checkpoint)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint; the other flags (and --config) may "
                        "repeat the run's values, and change only --steps, --ckpt-every, --on-collapse, "
                        "--collapse-threshold, --on-diverge, --diverge-patience, --logger and --image-every")
    t.add_argument("--logger", choices=LOGGERS, default=None,
                   help="jsonl (default: log.jsonl) or tensorboard (also event files in OUT/tensorboard: scalars, "
                        "image grids, hyperparameters; needs the tensorboard package)")
    t.add_argument("--image-every", type=int, default=None,
                   help="with --logger tensorboard: image grids every this many steps (default: --ckpt-every)")
    t.add_argument("--no-anchoring", action="store_true", help="EncDiff baseline: no DyGA")
    t.add_argument("--published-dyga", action="store_true",
                   help="DyGA as the published code runs it, for comparisons (README 'Published behaviour')")
    t.add_argument("--skip-dropout", type=float, help="skip dropout rate (0 disables)")
    t.add_argument("--on-collapse", choices=("warn", "stop"), default=None,
                   help="when every latent unit's token spread falls below --collapse-threshold of its peak: "
                        "warn (default) or stop (checkpoint, exit with status 3)")
    t.add_argument("--collapse-threshold", type=float, default=None,
                   help="a unit counts as dead below this fraction of its peak token spread (default 0.1)")
    t.add_argument("--on-diverge", choices=("warn", "stop", "rollback"), default=None,
                   help="when the loss climbs back toward its first steps' level and stays there (README 'The "
                        "divergence guard'): warn (default), stop (checkpoint, exit with status 4) or rollback "
                        "(continue from the last checkpoint before the jump with half the learning rate)")
    t.add_argument("--diverge-patience", type=int, default=None,
                   help="steps the loss must stay up before the run counts as diverged (default 50)")
    t.add_argument("--first-stage", default=None,
                   help="a train-autoencoder run (or saved FirstStage): diffuse its latents (latent diffusion)")
    t.add_argument("--rebuild-latents", action="store_true",
                   help="delete and rebuild a latent cache that belongs to other weights or data")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available); under torchrun every "
                                    "rank takes the GPU of its LOCAL_RANK")
    ae = sub.add_parser("train-autoencoder", help="train the first stage (VQ autoencoder) of latent diffusion")
    ae.add_argument("--dataset", choices=DATASETS, default="synthetic-shapes")
    ae.add_argument("--data-dir", default=None)
    ae.add_argument("--out", required=True, help="run directory")
    ae.add_argument("--image-size", type=int, default=64)
    ae.add_argument("--steps", type=int)
    ae.add_argument("--batch-size", type=int)
    ae.add_argument("--lr", type=float)
    ae.add_argument("--seed", type=int)
    ae.add_argument("--ckpt-every", type=int)
    ae.add_argument("--eval-every", type=int)
    ae.add_argument("--max-minutes", type=float, default=None,
                    help="stop (with a checkpoint) after this long; the cosine schedule then decays by time")
    ae.add_argument("--lr-schedule", choices=SCHEDULES, default=None, help="default: cosine")
    ae.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    ae.add_argument("--no-progress", action="store_true")
    ae.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
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
    e.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated subset of {','.join(METRICS)} (default: {','.join(DEFAULT_METRICS)}; "
                        "tad needs binary attributes, as CelebA's)")
    e.add_argument("--samples", type=int, default=None,
                   help="train sample count of every metric (default: DESIGN's 10k; smaller is faster)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--plots", default="",
                   help="extra plots, comma-separated: pacmap and/or umap (each unit's tokens in that 2-D embedding, "
                        "coloured by the factor the unit best explains; needs the pacmap / umap-learn package)")
    e.add_argument("--fid-weights", metavar="PATH", default=None,
                   help="the Inception weights for --metrics fid (default: downloaded on first use; offline, place "
                        "the file and name it here)")
    e.add_argument("--force", action="store_true",
                   help="score a run whose log says its training diverged (refused otherwise)")
    e.add_argument("--no-progress", action="store_true")
    x = sub.add_parser("explore", help="a local web page to see and steer a run's latent units")
    x.add_argument("run_dir")
    x.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    x.add_argument("--port", type=int, default=7860)
    x.add_argument("--steps", type=int, default=25, help="DDIM steps per generated image (default 25)")
    x.add_argument("--seed", type=int, default=0, help="the one noise draw every image is generated with")
    x.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
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
        if not args.ae_minutes > 0:
            p.error("--ae-minutes must be > 0")
        if args.ae_steps < 1:
            p.error("--ae-steps must be >= 1")
        if args.eval_samples != 0 and args.eval_samples < 20:
            p.error("--eval-samples must be 0 (skip) or >= 20")
        args.eval_samples = args.eval_samples or None
    try:
        return {"demo": cmd_demo, "train": cmd_train, "train-autoencoder": cmd_train_autoencoder, "sample": cmd_sample, "interchange": cmd_interchange,
                "evaluate": cmd_evaluate, "explore": cmd_explore}[args.cmd](args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"dga-fast {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except dist_.RankStopped as e:   # a distributed run that lost a rank
        print(f"dga-fast {args.cmd}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
