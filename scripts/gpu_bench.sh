#!/usr/bin/env bash
# The speed benchmark on a GPU, in one go: the training step against the reference loop, a
# torch.compile'd step (mode reduce-overhead: CUDA graphs), Tune's overhead, and 4 trials sharing
# the GPU (gpu: 0.25 each) against one trial with all of it. Writes benchmarks/gpu-<date>.txt
# (or into the folder given) with the date and the machine. About 5 minutes on one GPU.
#
#   bash scripts/gpu_bench.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
out=${1:-benchmarks}
mkdir -p "$out"
python -m benchmarks.bench --device cuda --compile --sharing 4 --rounds 5 --steps 100 \
  --out "$out/gpu-$(date +%Y-%m-%d).txt"
