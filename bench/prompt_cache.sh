#!/usr/bin/env bash
# Prompt-caching benchmark: time to first token of the gateway with and without its prompt
# cache and of llama.cpp's llama-server with its own prompt reuse, same GGUF, same client
# (bench/prompt_cache.py). Prints a Markdown table for docs/benchmarks.md.
#
# Builds llama-server like bench/decode.sh (once, into $BENCH_CACHE), then the release gateway,
# prepares ./data and runs bench/prompt_cache.py.
# Usage: bench/prompt_cache.sh
set -euo pipefail
cd "$(dirname "$0")/.."

server_bin=$(BENCH_ONLY_LLAMACPP_BUILD=1 bench/decode.sh | tail -1)
nice -n 10 cargo build --release --locked -p gateway-bin
data_dir=${GATEWAY_DATA_DIR:-data}
scripts/prepare-data.sh "$data_dir" target/release/gateway
exec .venv/bin/python bench/prompt_cache.py "$data_dir" target/release/gateway "$server_bin"
