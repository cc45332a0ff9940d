#!/usr/bin/env bash
# Everything only a GPU can show, in one script: benchmarks/gpu_check.sh OUT_DIR
#
# On a machine with a CUDA device (use the machine's python3 and torch: PYTHON=python3 by default) it runs, each
# step under its own time limit and all of them within DEADLINE seconds (default 470, to finish inside 8 minutes):
#   1. build:    the package with its CUDA extension (pip install --no-deps --no-build-isolation -e .)
#   2. tests:    the CUDA tests and the Triton kernels' tests on the device (junit XML)
#   3. kernels:  throughput.py --only estep --only anchor --only skip --size large (the E-step against the copy
#                bandwidth, the anchor shift and the skip block forward + backward against eager and compiled)
#   4. step:     throughput.py --only step --size large (training images/s: tiny-latent, paper at 64 and 512)
#   5. paper:    a first stage at 64x64, then 300 steps of the paper preset with one DyGA refit (log.jsonl)
#   6. study:    the study's gpu budget for seed 0, baseline and the method, as far as the time left allows
#                (resumable: run the script again to go on)
# Every step writes under OUT_DIR; OUT_DIR/summary.json has each step's exit status and seconds. A step that
# fails does not stop the others. Without a CUDA device it prints this plan and exits 0.
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_check.sh OUT_DIR}
PY=${PYTHON:-python3}
DEADLINE=${DEADLINE:-470}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

PLAN=(
  "build 150 $PY -m pip install --quiet --no-deps --no-build-isolation --use-pep517 -e ."
  "tests 90 $PY -m pytest -q -rs tests/test_cuda.py tests/test_kernel_estep.py tests/test_kernel_anchor.py tests/test_kernel_skip_block.py --junitxml=$OUT/tests.xml"
  "kernels 90 $PY benchmarks/throughput.py --only estep --only anchor --only skip --size large --json $OUT/kernels.json"
  "step 120 $PY benchmarks/throughput.py --only step --size large --json $OUT/step.json"
  "paper 120 bash benchmarks/gpu_paper_run.sh $PY $OUT/paper"
  "study 120 $PY benchmarks/ablation.py --budget gpu --seeds 0 --variants baseline,dyga+skip_dropout --first-stage $OUT/paper/first_stage_32 --runs-dir $OUT/study-runs --out $OUT/study --device cuda"
)

if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device here (or no torch for $PY); on a GPU machine it runs, within ${DEADLINE} s:"
  for s in "${PLAN[@]}"; do
    read -r name limit cmd <<<"$s"
    echo "  $name (at most $limit s): $cmd"
  done
  exit 0
fi

start=$(date +%s)
rows=()
for s in "${PLAN[@]}"; do
  read -r name limit cmd <<<"$s"
  left=$((DEADLINE - ($(date +%s) - start)))
  if [ "$left" -le 10 ]; then
    echo "gpu_check: $name skipped, the ${DEADLINE} s are spent"
    rows+=("{\"step\": \"$name\", \"rc\": null, \"seconds\": 0, \"note\": \"skipped: no time left\"}")
    continue
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "gpu_check: $name (at most $limit s)"
  t0=$(date +%s)
  timeout "$limit" $cmd >"$OUT/$name.log" 2>&1
  rc=$?
  secs=$(($(date +%s) - t0))
  echo "gpu_check: $name rc=$rc in ${secs} s (log: $OUT/$name.log)"
  rows+=("{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $secs, \"limit\": $limit}")
done
{
  echo "{\"device\": \"$($PY -c 'import torch; print(torch.cuda.get_device_name(0))')\","
  echo " \"torch\": \"$($PY -c 'import torch; print(torch.__version__)')\","
  echo " \"commit\": \"$(git rev-parse HEAD 2>/dev/null || echo unknown)\","
  echo " \"steps\": [$(IFS=,; echo "${rows[*]}")]}"
} >"$OUT/summary.json"
echo "gpu_check: wrote $OUT/summary.json"
