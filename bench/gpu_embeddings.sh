#!/usr/bin/env bash
# Runs bench/gpu_embeddings.py on a machine with an NVIDIA GPU. Expects, in PARTS_DIR, the
# pieces of the GPU build of ONNX Runtime (from the PyPI onnxruntime-gpu 1.31.1 wheel:
# libonnxruntime.so.zst, libonnxruntime_providers_shared.so, cuda.zst.part* = the zstd of
# libonnxruntime_providers_cuda.so split in parts), gateway.zst (the release binary built with
# --features gateway-engine/cuda) and MODEL_SRC (the MiniLM checkpoint to import).
# ZSTD_DIR names a folder holding a zstd binary, for a machine that has none.
# Usage: bench/gpu_embeddings.sh PARTS_DIR MODEL_SRC
set -euo pipefail
if ! command -v zstd >/dev/null && [ -x "${ZSTD_DIR:-}/zstd" ]; then export PATH="$ZSTD_DIR:$PATH"; fi
cd "$(dirname "$0")/.."
parts=$1
model_src=$2
data=/tmp/gateway-gpu-data
mkdir -p "$data/runtime" "$data/models"
cat "$parts"/cuda.zst.part* | zstd -d -q -f -o "$data/runtime/libonnxruntime_providers_cuda.so"
zstd -d -q -f "$parts/libonnxruntime.so.zst" -o "$data/runtime/libonnxruntime.so"
cp "$parts/libonnxruntime_providers_shared.so" "$data/runtime/"
zstd -d -q -f "$parts/gateway.zst" -o /tmp/gateway-cuda
chmod +x /tmp/gateway-cuda
cuda_libs=$(ls -d /usr/local/cuda-13*/targets/x86_64-linux/lib /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | paste -sd:)
export LD_LIBRARY_PATH="$data/runtime:$cuda_libs:${LD_LIBRARY_PATH:-}"
rm -rf "$data/models/all-minilm-l6-v2"
/tmp/gateway-cuda models import "$model_src" --out "$data/models/all-minilm-l6-v2" \
    --id all-minilm-l6-v2 --license Apache-2.0 >/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 bench/gpu_embeddings.py "$data" /tmp/gateway-cuda
