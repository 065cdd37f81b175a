#!/usr/bin/env bash
# The step-time cost of constrained decoding (bench/structured.py) on the release gateway.
# Usage: bench/structured.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_STRUCTURED_DIR:-${TMPDIR:-/tmp}/gateway-structured}
mkdir -p "$work"
scripts/setup.sh --test
cargo build --release --locked -p gateway-bin
rm -rf "$work/data"
scripts/prepare-data.sh "$work/data" target/release/gateway
.venv/bin/python bench/structured.py "$work/data" target/release/gateway
