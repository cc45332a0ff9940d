#!/usr/bin/env bash
# The paper preset for a few hundred steps with one DyGA refit, from nothing: benchmarks/gpu_paper_run.sh PYTHON OUT
# First stages at 64x64 (for the paper preset) and 32x32 (for the study's tiny-latent recipe), AE_STEPS steps
# each, then STEPS steps of the paper preset at batch BATCH with a refit at step STEPS/2 (the preset refits once
# per Shapes3D epoch, 938 steps, which a short run never reaches). gpu_check.sh runs it on a GPU; with small
# numbers it runs anywhere (AE_STEPS=2 STEPS=2 BATCH=2).
set -euo pipefail
PY=$1
OUT=$2
AE_STEPS=${AE_STEPS:-200}
STEPS=${STEPS:-300}
BATCH=${BATCH:-64}
mkdir -p "$OUT"
for size in 64 32; do
  $PY -m dga_fast train-autoencoder --out "$OUT/first_stage_$size" --image-size "$size" --steps "$AE_STEPS" \
    --no-progress
done
half=$(( STEPS / 2 > 0 ? STEPS / 2 : 1 ))
printf 'train:\n  refit_warmup: %s\n  refit_every: %s\n  refit_samples: 4096\n  ckpt_every: %s\n' \
  "$half" "$half" "$STEPS" >"$OUT/refit.yaml"
$PY -m dga_fast train --preset paper --first-stage "$OUT/first_stage_64" --config "$OUT/refit.yaml" \
  --steps "$STEPS" --batch-size "$BATCH" --out "$OUT/run" --no-progress
