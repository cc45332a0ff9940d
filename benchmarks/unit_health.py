"""Per-checkpoint health of a run's latent units: every unit's token spread (RMS distance of its tokens to their
mean) and the std of its scalar latent unit on the same images, and each unit's spread relative to its peak over
the checkpoints (issue 13: a unit whose spread falls to a few % of its peak is dead).

    python benchmarks/unit_health.py runs/i13/dyga-s0 [--images 1000] [--out health.json] \
        [--metrics factor_vae,dci --samples 2000]

``--metrics`` adds those disentanglement scores of every checkpoint (``dga_fast.evaluate.metric_calls``, train
sample count ``--samples``). ``--self-reconstruction N`` adds the self-reconstruction ratio on N images
(``dga_fast.evaluate.self_reconstruction``, ``--sample-steps`` DDIM steps): for a latent run they are the first
stage's held-out images (its ``train-autoencoder`` split), for a pixel run seeded images (``--seed`` + 1).
``--ema`` scores the checkpoints' moving-average weights (a run trained with ``--ema-decay``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--metrics", default="", help="comma-separated, e.g. factor_vae,dci (default: none)")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--self-reconstruction", type=int, default=0, help="images for the ratio (default: off)")
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--ema", action="store_true", help="evaluate the checkpoints' moving-average weights")
    args = ap.parse_args(argv)
    from dga_fast import AnchoredDiffusion
    from dga_fast.data import SyntheticShapes
    cks = sorted((args.run / "checkpoints").glob("step_*"))
    if not cks:
        raise FileNotFoundError(f"{args.run}/checkpoints holds no step_* checkpoint")
    rows = []
    for ck in cks:
        model = AnchoredDiffusion.load(ck, ema=args.ema).eval()
        data = SyntheticShapes(model.config["image_size"])
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))[:args.images]
        x = data.get_batch(idx)[0]
        with torch.no_grad():
            tok = model.collect_tokens(x)                                          # [N, U, Dc]
            units = torch.cat([model.latent_units(x[i:i + 256]) for i in range(0, len(x), 256)])
        spread = (tok - tok.mean(0)).square().sum(-1).mean(0).sqrt()
        row = {"step": int(ck.name.split("_")[1]), "spread": spread.tolist(), "unit_std": units.std(0).tolist()}
        if args.metrics:
            from dga_fast.evaluate import metric_calls
            calls = metric_calls(model.representation, data, args.samples, args.seed)
            res = {m: calls[m]() for m in args.metrics.split(",")}
            row["factor_vae"] = res.get("factor_vae", {}).get("factor_vae")
            row["dci_disentanglement"] = res.get("dci", {}).get("disentanglement")
        if args.self_reconstruction:
            from dga_fast.evaluate import self_reconstruction
            held = _held_out(args.run, len(data), args.seed)[:args.self_reconstruction]
            row["self_reconstruction"] = self_reconstruction(model, data.get_batch(held)[0], args.sample_steps,
                                                             args.seed)
        rows.append(row)
    peak = torch.tensor([r["spread"] for r in rows]).amax(0)
    for r in rows:
        r["spread_rel_peak"] = (torch.tensor(r["spread"]) / peak.clamp_min(1e-12)).tolist()
    print(f"{'step':>6}  min spread/peak  FactorVAE  DCI-D  self-rec  units below 10% of peak")
    for r in rows:
        rel = r["spread_rel_peak"]
        fv, dd = r.get("factor_vae"), r.get("dci_disentanglement")
        sr = r.get("self_reconstruction", {}).get("ratio")
        print(f"{r['step']:>6}  {min(rel):15.3f}  {'' if fv is None else f'{fv:.3f}':>9}  "
              f"{'' if dd is None else f'{dd:.3f}':>5}  {'' if sr is None else f'{sr:.3f}':>8}  "
              f"{[u for u, v in enumerate(rel) if v < 0.1]}")
    if args.out:
        args.out.write_text(json.dumps({"run": str(args.run), "ema": args.ema, "images": args.images, "metric_samples": args.samples if args.metrics else None, "rows": rows}, indent=1))
    return rows


def _held_out(run: Path, n: int, seed: int) -> torch.Tensor:
    """The first stage's held-out split when the run diffuses latents of a ``train-autoencoder`` run, else a
    seeded permutation."""
    from dga_fast.checkpoint import read_json
    fs_dir = read_json(run / "config.json").get("dataset", {}).get("first_stage")
    if fs_dir and (Path(fs_dir) / "config.json").is_file():
        from dga_fast.train_autoencoder import split_indices
        ae = read_json(Path(fs_dir) / "config.json")["train"]
        return split_indices(n, ae["eval_images"], ae["seed"])[1]
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))


if __name__ == "__main__":
    main()
