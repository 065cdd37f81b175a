#!/usr/bin/env bash
# Chat decode of the gateway before and after a change, in one run (bench/decode_ab.py):
# builds the release gateway of BASE_REV in a git worktree (or takes BENCH_BASE_BINARY),
# builds this checkout's release gateway, imports the bundled models with each into its own
# data directory, and measures both, alternating, at 1 and 16 streams.
# Usage: bench/decode_ab.sh BASE_REV
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev=$1
work=${BENCH_AB_DIR:-${TMPDIR:-/tmp}/gateway-decode-ab}
mkdir -p "$work"

scripts/setup.sh --test
base_binary=${BENCH_BASE_BINARY:-}
if [ -z "$base_binary" ]; then
    rm -rf "$work/base"
    git worktree add --force --detach "$work/base" "$base_rev" >/dev/null
    (cd "$work/base" && CARGO_TARGET_DIR="$work/base-target" cargo build --release --locked -p gateway-bin)
    base_binary=$work/base-target/release/gateway
fi
cargo build --release --locked -p gateway-bin
scripts/prepare-data.sh "$work/data-before" "$base_binary"
scripts/prepare-data.sh "$work/data-after" target/release/gateway
.venv/bin/python bench/decode_ab.py "$work/data-before" "$base_binary" \
    "$work/data-after" target/release/gateway
