#!/usr/bin/env bash
# Overhead benchmark (bench/overhead.py): the latency our gateway adds in front of a
# fixed-latency OpenAI-compatible upstream (crates/api/examples/fixed_upstream.rs), at constant
# request rates driven open-loop by oha with latency correction, against the same request sent
# to the upstream directly, with auth, rate limits and metering on; the same run measures
# LiteLLM's proxy and Portkey's gateway in front of the same upstream. Prints a Markdown table
# for docs/benchmarks.md and writes the raw figures under target/bench-overhead/.
#
# 1. installs the tools, once, into $BENCH_CACHE/overhead (default
#    ~/.cache/gateway-bench/overhead), outside the work tree: oha (cargo install, 10-20 minutes
#    on 2 cores: it builds aws-lc; oha 1.16 does not build without a TLS feature), LiteLLM's
#    proxy (pip, in its own venv, about 1 minute), Portkey's gateway (npm, seconds; skipped
#    without node and npm);
# 2. builds the release gateway and the fixed upstream (unless GATEWAY_BIN / UPSTREAM_BIN name
#    prebuilt ones);
# 3. runs bench/overhead.py.
#
# Knobs (environment): RATES ("100 500 1000 2000"), DURATION (15 s per run), WARMUP (3 s),
# MODES ("plain"; "plain stream" adds streamed requests), TARGETS ("direct gateway litellm
# portkey"; "replica" and "fleet" measure one replica and three behind HAProxy, on
# FLEET_POSTGRES_URL and FLEET_REDIS_URL with HAPROXY_BIN), DELAY_MS (20), CONNECTIONS (256),
# TARGET_CPUS (0), CLIENT_CPUS (1), GATEWAY_BIN, UPSTREAM_BIN, OHA_BIN, BENCH_CACHE; see
# bench/overhead.py.
# Usage: bench/overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${BENCH_CACHE:-$HOME/.cache/gateway-bench}/overhead
mkdir -p "$cache"
oha_version=1.16.0
litellm_version=1.108.7
portkey_version=1.15.2

if [ -z "${OHA_BIN:-}" ]; then
    OHA_BIN=$cache/tools/bin/oha
    if [ ! -x "$OHA_BIN" ]; then
        echo "installing oha $oha_version into $cache/tools ..." >&2
        nice -n 10 cargo install oha --version "$oha_version" --locked --root "$cache/tools" >&2
    fi
fi

litellm_venv=$cache/venv-litellm
if [ ! -x "$litellm_venv/bin/litellm" ]; then
    echo "installing litellm[proxy]==$litellm_version into $litellm_venv ..." >&2
    python3 -m venv "$litellm_venv"
    "$litellm_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "litellm[proxy]==$litellm_version"
fi

portkey_dir=$cache/portkey
if command -v npm >/dev/null && command -v node >/dev/null; then
    if [ ! -f "$portkey_dir/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
        echo "installing @portkey-ai/gateway@$portkey_version into $portkey_dir ..." >&2
        mkdir -p "$portkey_dir"
        (cd "$portkey_dir" && npm install --no-audit --no-fund --loglevel=error \
            "@portkey-ai/gateway@$portkey_version" >&2)
    fi
else
    echo "node/npm not found: Portkey's gateway is skipped" >&2
fi

if [ -z "${GATEWAY_BIN:-}" ]; then
    nice -n 10 cargo build --release --locked -p gateway-bin
    GATEWAY_BIN=target/release/gateway
fi
if [ -z "${UPSTREAM_BIN:-}" ]; then
    nice -n 10 cargo build --release --locked -p gateway-api --example fixed_upstream
    UPSTREAM_BIN=target/release/examples/fixed_upstream
fi

export OHA_BIN GATEWAY_BIN UPSTREAM_BIN
export LITELLM_BIN=$litellm_venv/bin/litellm PORTKEY_DIR=$portkey_dir
exec python3 bench/overhead.py
