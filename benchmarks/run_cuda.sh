#!/usr/bin/env bash
# The GPU figures in one go (README "Measured figures", CUDA rows): SD1.4-size iterations in fp16
# and bf16, half-precision training against float32 on the demo model, and the end-to-end erase.
# Usage: bash benchmarks/run_cuda.sh OUT_FOLDER    (about 6 min on one H200, after the install)
set -u
out=${1:?usage: bash benchmarks/run_cuda.sh OUT_FOLDER}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
for dtype in fp16 bf16; do
  timeout 230 "$python" benchmarks/sd14_scale.py --devices cuda --cuda-dtype $dtype --kscu-iterations 6 --esd-iterations 3 --out "$out"
done
timeout 200 "$python" scripts/cuda_precision.py --out "$out"
timeout 90 "$python" benchmarks/end_to_end.py --out "$out"
