#!/usr/bin/env bash
# The GPU checks of issue 20 as one script (sized to fit in 8 minutes on one H100/H200):
#   1. the gpu-marked tests (CUDA products against CPU float64, NCCL all-reduce);
#   2. the full-size rehearsal (ResNet-18, D = 11,689,512) on one CUDA worker (an NCCL group of
#      one), its stage times, memory and plan (benchmarks/fullsize.py);
#   3. SEIGH post-processing at D = 11,689,512 on the compute device (benchmarks/seigh_postprocess.py).
# Usage: bash benchmarks/gpu_check.sh [--device cuda|cpu]
#   --device cpu: a dry run of the same three steps at toy sizes on the CPU (what a machine
#   without a GPU, and the test suite, check). PYTHON and OUT_DIR override the interpreter and
#   the scratch directory (default: a new temp dir).
set -euo pipefail
DEVICE=cuda
if [[ ${1:-} == --device ]]; then DEVICE=${2:?--device needs cuda or cpu}; fi
PY=${PYTHON:-python}
OUT=${OUT_DIR:-$(mktemp -d -t gpu-check-XXXXXX)}
cd "$(dirname "$0")/.."
echo "== 1. gpu-marked tests ($DEVICE)"
if [[ $DEVICE == cuda ]]; then
  "$PY" -m pytest -q -m gpu tests/test_gpu.py
else
  echo "skipped: without CUDA the suite itself collects and skips them"
fi
if [[ $DEVICE == cuda ]]; then
  echo "== 2. full-size rehearsal on one CUDA worker"
  "$PY" benchmarks/fullsize.py --dir "$OUT/fullsize" --device cuda --workers 1 --samples 256 \
    --batch-size 64
  echo "== 3. SEIGH post-processing at D = 11,689,512"
  "$PY" benchmarks/seigh_postprocess.py --dir "$OUT/postprocess" --dim 11689512 --outer 100 \
    --paths new --repeats 1
else
  # in process: the script's steps and reports, without the seconds a Ray start costs the suite
  echo "== 2. rehearsal, dry run: the digits MLP in process"
  "$PY" benchmarks/fullsize.py --dir "$OUT/fullsize" --device cpu --workers 0 --model tanh_mlp \
    --channels 1 --classes 10 --resolution 16 --samples 64 --batch-size 32 --k 3 --outer 8 \
    --inner 16 --block 4
  echo "== 3. SEIGH post-processing, dry run at D = 5,000"
  "$PY" benchmarks/seigh_postprocess.py --dir "$OUT/postprocess" --dim 5000 --outer 10 --block 5 \
    --paths new --repeats 1
fi
echo "== gpu_check done ($DEVICE); scratch in $OUT"
