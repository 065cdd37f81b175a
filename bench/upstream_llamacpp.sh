#!/usr/bin/env bash
# A real inference server as an upstream: llama.cpp's llama-server (built as bench/decode.sh
# builds it) serving SmolLM2-135M-Instruct's GGUF, the release gateway in front of it as a
# `kind = "upstream"` model, and the official `openai` SDK through the gateway
# (bench/upstream_llamacpp.py): answers and usage against the same requests sent to
# llama-server directly, the bill, and the latency the gateway adds. Not run in CI.
# Usage: bench/upstream_llamacpp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=${TMPDIR:-/tmp}/gateway-upstream-llamacpp
llama_server=$(BENCH_ONLY_LLAMACPP_BUILD=1 bench/decode.sh)
cargo build --release --locked -p gateway-bin
rm -rf "$work" && mkdir -p "$work"
.venv/bin/python bench/upstream_llamacpp.py "$work" target/release/gateway "$llama_server"
