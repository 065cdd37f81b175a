#!/usr/bin/env bash
# Starts a throw-away Redis server for the gateway's rate limiter tests and prints its URL.
#
# Idempotent; run as root on a Debian machine. Installs `redis-server` with apt-get when it is
# missing, and starts (unless it already answers) an instance listening only on
# 127.0.0.1:56379, daemonized, without persistence, with its pid and log under
# /var/lib/gateway-redis. Prints the URL on stdout, so
#   export GATEWAY_TEST_REDIS_URL="$(scripts/redis.sh)"
# works. Everything else goes to stderr.
set -euo pipefail

PORT="${GATEWAY_REDIS_PORT:-56379}"
DIR=/var/lib/gateway-redis

log() { echo "redis.sh: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root"
    exit 1
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    log "installing redis-server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq redis-server >&2
fi

ping() { redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null | grep -qx PONG; }

if ! ping; then
    log "starting redis-server on 127.0.0.1:$PORT"
    mkdir -p "$DIR"
    redis-server --bind 127.0.0.1 --port "$PORT" --protected-mode yes \
        --daemonize yes --dir "$DIR" --pidfile "$DIR/redis-$PORT.pid" \
        --logfile "$DIR/redis-$PORT.log" --save '' --appendonly no >&2
    for _ in $(seq 1 50); do
        if ping; then
            break
        fi
        sleep 0.2
    done
    if ! ping; then
        log "redis-server did not answer; see $DIR/redis-$PORT.log"
        exit 1
    fi
fi

echo "redis://127.0.0.1:$PORT/"
