#!/usr/bin/env bash
# One short accelerator run (a few minutes): batched inference per model on TensorRT/CUDA when
# onnxruntime-gpu sees the GPU, software and NVDEC decode of the 1080p benchmark clip.
# Writes gpu.json (and the log) to $OUT when set (the device tool's folder), else var/bench.
#
#   scripts/device_bench.sh            # on the lent machine, from the repo root
#
# With no GPU, or an onnxruntime without the CUDA provider, it still runs (CPU provider) and the
# JSON says which provider each number came from. Needs: python3.11 with the project's
# dependencies (a venv at .venv if present) and ffmpeg; model files from PATROL_MIRROR/models or
# the asset cache.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-var/bench}"
mkdir -p "$out"
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
{
  echo "== machine"; date -u; nproc; (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi: CPU only")
  echo "== onnxruntime providers"; $py -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())'
} 2>&1 | tee "$out/device_bench.log"
models_dir=()
if [ -d "${PATROL_MIRROR:-../shared}/models" ]; then models_dir=(--models-dir "${PATROL_MIRROR:-../shared}/models"); fi
timeout 480 $py -m benchmarks.gpu --out "$out" --seconds "${BENCH_SECONDS:-3}" "${models_dir[@]}" 2>&1 | tee -a "$out/device_bench.log"
