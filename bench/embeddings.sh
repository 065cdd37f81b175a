#!/usr/bin/env bash
# Builds the release gateway, prepares ./data and runs the embeddings benchmark
# (bench/embeddings.py); prints a Markdown table for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# The PyTorch reference (pulls torch, several GB); the benchmark runs without it if it fails.
.venv/bin/python -m pip install --quiet sentence-transformers==6.2.0 || true
cargo build --release --locked -p gateway-bin
data_dir=${GATEWAY_DATA_DIR:-data}
scripts/prepare-data.sh "$data_dir" target/release/gateway
exec .venv/bin/python bench/embeddings.py "$data_dir" target/release/gateway
