#!/usr/bin/env bash
# Makes sure HAProxy (the load balancer of the fleet tests) is installed and prints its path.
#
# Idempotent; run as root on a Debian machine. Installs Debian's `haproxy` with apt-get when it
# is missing and stops the system service the package starts (the tests run their own
# instances, in the foreground, on loopback ports of their own). Prints the binary's path on
# stdout, so
#   export GATEWAY_TEST_HAPROXY="$(scripts/haproxy.sh)"
# works. Everything else goes to stderr.
set -euo pipefail

log() { echo "haproxy.sh: $*" >&2; }

if ! command -v haproxy >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        log "haproxy is missing and installing it needs root"
        exit 1
    fi
    log "installing haproxy with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq haproxy >&2
    if command -v service >/dev/null 2>&1; then
        service haproxy stop >&2 2>&1 || true
    fi
fi

log "$(haproxy -v | head -n 1)"
command -v haproxy
