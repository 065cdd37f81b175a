#!/usr/bin/env bash
# Every test on a fresh machine: installs the test tools, a local PostgreSQL, Redis and HAProxy,
# runs the Rust unit and integration tests, then the end-to-end tests that start the real
# `gateway` binary and drive it with the official OpenAI SDK and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if [ -x scripts/postgres.sh ]; then
    GATEWAY_TEST_POSTGRES_URL=$(scripts/postgres.sh | tail -n 1)
    export GATEWAY_TEST_POSTGRES_URL
fi
if [ -x scripts/redis.sh ]; then
    GATEWAY_TEST_REDIS_URL=$(scripts/redis.sh | tail -n 1)
    export GATEWAY_TEST_REDIS_URL
fi
if [ -x scripts/haproxy.sh ]; then
    GATEWAY_TEST_HAPROXY=$(scripts/haproxy.sh | tail -n 1)
    export GATEWAY_TEST_HAPROXY
fi
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ORT_DYLIB_PATH=$(ls "$site"/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
export ORT_DYLIB_PATH
cargo build --locked --workspace --examples --bins
cargo test --locked --workspace
.venv/bin/python -m pytest -q tests/python
