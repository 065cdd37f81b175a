#!/usr/bin/env bash
# Memory soak (bench/soak.py): the resident memory of the release gateway over a long mixed
# load (10 minutes by default) and the idle time after it. With BASE_REV, the release gateway
# of that revision (built in a git worktree, or BENCH_BASE_BINARY) is soaked first, in the
# same run, for comparison.
# Usage: bench/soak.sh [BASE_REV]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_SOAK_DIR:-${TMPDIR:-/tmp}/gateway-soak}
mkdir -p "$work"

scripts/setup.sh --test
builds=()
if [ $# -gt 0 ]; then
    base_binary=${BENCH_BASE_BINARY:-}
    if [ -z "$base_binary" ]; then
        rm -rf "$work/base"
        git worktree add --force --detach "$work/base" "$1" >/dev/null
        (cd "$work/base" && CARGO_TARGET_DIR="$work/base-target" cargo build --release --locked -p gateway-bin)
        base_binary=$work/base-target/release/gateway
    fi
    rm -rf "$work/data-before"
    scripts/prepare-data.sh "$work/data-before" "$base_binary"
    builds+=("before ($1)=$work/data-before=$base_binary")
fi
cargo build --release --locked -p gateway-bin
rm -rf "$work/data-after"
scripts/prepare-data.sh "$work/data-after" target/release/gateway
builds+=("after=$work/data-after=target/release/gateway")
.venv/bin/python bench/soak.py "${builds[@]}"
