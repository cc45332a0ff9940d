#!/usr/bin/env python
"""dga_fast benchmark harness: every op and pipeline of the library against its baselines.

One harness for all row families. A family builds its inputs once and returns cases; each case is a
(provider, mode) pair with a callable that is timed (median of ``--repeats`` after one warm-up) and a
correctness check run in the same process. A speed-up is printed and stored only when the checks of both
rows it compares passed in this run.

    python benchmarks/throughput.py                 # every family, default sizes (< 5 min on 2 CPU cores)
    python benchmarks/throughput.py --only refit    # one family
    python benchmarks/throughput.py --size large    # GPU-scale problems
    python benchmarks/throughput.py --json out.json # JSON elsewhere (default: benchmarks/results/<device>.json)

Families:
  refit  the full DynamicGaussianAnchoring refit (init → EM → split → filter → merge → EM) of U units ×
         N tokens × D dims (also with DGA_FAST_BACKEND=reference: what kernels and native ops add), against
         scikit-learn GaussianMixture(covariance_type="full") given the true number of components of every
         unit (summed over units), and against a per-component Python-loop
         EM with torch.distributions.MultivariateNormal (benchmarks/loop_baseline.py, the published code's
         approach; timed on --loop-units units and scaled to all U, marked "extrapolated").
  em     plain batched EM at a fixed K (--em-k, default 8) on the refit family's tokens: dga_fast's batched HDDC
         core against gmm-gpu (optional peer: pip install --no-deps gmm-gpu; its NaN labels are reported) and
         scikit-learn's GaussianMixture(covariance_type="full") per unit.
  hddc   HDDC.fit (one mixture on the batched core) against GaussianMixture(covariance_type="full") at the same K
         and exactly the same number of EM iterations, N = 100k x D = 32 (5k at --size small).
  anchor the anchor shift (DyGA's training-time forward) and its backward, modes fwd / bwd / full:
         reference, torch.compile(reference) (CUDA), Triton (CUDA).
  skip   skip_dropout_concat_norm_silu forward / backward / both, the same providers.
  plans  DyGA's spread / split / filter steps: reference against the ops of dga_fast._C ("native": C++ on
         CPU, CUDA kernels on a GPU).
  metrics the default disentanglement-metric suite (MIG, SAP, modularity, DCI, FactorVAE; DESIGN §7
         sample counts) on U units × 6 factors; one timed run (target: under 2 minutes on 2 CPU cores).
  estep  the HDDC E-step of a fitted DyGA state (also the native CPU op of dga_fast._C on CPU) (cost ~2·D·(d+1) per sample and component) against a
         full-covariance E-step (Cholesky solves, ~D² per sample and component), both batched over units;
         then the fused kernel's shape (G=20, D=32, K=32, d=8; N = 4k / 100k / 1M for small / default /
         large): reference, torch.compile(reference) (CUDA) and Triton (CUDA), with the fraction of the
         measured copy bandwidth the kernel achieves (bytes of X read + outputs written).
  train  one training step of the small model at 64x64: pixel diffusion vs latent diffusion (first stage's
         16x16x3 latents, precomputed as the latent cache gives them), same widths and batch (items_per_s =
         images/s; the speed-up is the images/s ratio), and the cost of one DyGA refit (once per epoch).
  step   images/s of one training step of the study's recipe (loss + backward + AdamW on precomputed latents):
         the tiny-latent preset at 32x32 (batch 16 ... 256) and the paper preset at 64x64 (batch 16, 32; 16, 64,
         256 and 512 at --size large), on 1 and 2 threads (CPU), eager (AdamW's loop) and as fit runs it (-fast:
         fused AdamW); and the whole fit loop of tiny-latent for 120 steps (latents encoded on first use, a
         refit, a checkpoint, logging), with fit's defaults and with fused_optimizer=False (-eager): its wall
         rate and its log's images/s;
         and the tiny-latent U-Net's forward + backward against diffusers' UNet2DConditionModel at the same
         configuration (optional peer: pip install diffusers==0.42.1; skipped with a message when absent).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import em, fused, metrics, plans, refit, step, train  # noqa: E402
from bench.harness import run  # noqa: E402

FAMILIES = {"refit": refit.family_refit, "em": em.family_em, "hddc": em.family_hddc, "estep": fused.family_estep,
            "anchor": fused.family_anchor, "skip": fused.family_skip, "plans": plans.family_plans,
            "metrics": metrics.family_metrics, "train": train.family_train, "step": step.family_step}
# (family, faster provider, baseline provider[, mode])
SPEEDUPS = [("refit", "dga_fast", "sklearn-gmm-full"), ("refit", "dga_fast", "loop-mvn"),
            ("refit", "dga_fast", "dga_fast-reference"),
            ("hddc", "dga_fast", "sklearn-gmm-full"), ("em", "dga_fast", "gmm-gpu"), ("em", "dga_fast", "sklearn-gmm-full"), ("em", "dga_fast", "dga_fast-reference"),
            ("estep", "dga_fast-reference", "full-covariance"), ("estep", "dga_fast-native", "dga_fast-reference"),
            ("estep-kernel", "triton", "reference"), ("estep-kernel", "triton", "compiled"),
            ("step-unet", "dga_fast", "diffusers", "b16"), ("step-unet", "dga_fast", "diffusers", "b64"),
            ("estep-kernel", "compiled", "reference"), ("estep-kernel", "native", "reference"),
            ("train", "latent", "pixel")]
# the training step: the fast step against the eager one per batch, and fit as a user runs it against the eager
# batch-16 step on 2 threads (images/s ratios)
SPEEDUPS += [("step", f"tiny-latent-b{_b}-fast", f"tiny-latent-b{_b}", "2t") for _b in (16, 32, 64, 128, 256)]
SPEEDUPS += [("step", "tiny-latent-fit", "tiny-latent-b16", "2t"), ("step", "tiny-latent-fit-eager", "tiny-latent-b16", "2t"),
             ("step", "tiny-latent-fit", "tiny-latent-fit-eager", "2t"), ("step", "tiny-latent-b64-fast", "tiny-latent-b16", "2t"),
             ("step", "tiny-latent-b256-fast", "tiny-latent-b16", "2t")]
SPEEDUPS += [(f"plans-{_op}", "native", "reference") for _op in ("mixture_spread", "split_plan", "filter_plan")]
for _fam in ("anchor_shift", "skip_block"):
    for _mode in ("fwd", "bwd", "full"):
        SPEEDUPS += [(_fam, "triton", "reference", _mode), (_fam, "triton", "compiled", _mode),
                     (_fam, "compiled", "reference", _mode)]


def main(argv=None) -> int:
    return run(FAMILIES, SPEEDUPS, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
