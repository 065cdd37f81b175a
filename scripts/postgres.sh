#!/usr/bin/env bash
# Starts a throw-away PostgreSQL server for the gateway's store tests and prints its URL.
#
# Idempotent; run as root on a Debian machine. Installs `postgresql` with apt-get when it is
# missing, creates a cluster `gwtest` listening only on 127.0.0.1:55432 (data under
# /var/lib/postgresql/<version>/gwtest), starts it, and creates the role and database
# `gateway_test` (role `gateway`, password `gateway`). Prints the URL on stdout, so
#   export GATEWAY_TEST_POSTGRES_URL="$(scripts/postgres.sh)"
# works. Everything else goes to stderr.
set -euo pipefail

PORT="${GATEWAY_PG_PORT:-55432}"
CLUSTER=gwtest
ROLE=gateway
PASSWORD=gateway
DB=gateway_test

log() { echo "postgres.sh: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root"
    exit 1
fi

if ! command -v pg_createcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"

if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION $CLUSTER"; then
    log "creating cluster $VERSION/$CLUSTER on 127.0.0.1:$PORT"
    pg_createcluster "$VERSION" "$CLUSTER" --port "$PORT" \
        -- --auth-local=peer --auth-host=scram-sha-256 >&2
    conf="/etc/postgresql/$VERSION/$CLUSTER/conf.d/gateway-test.conf"
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PORT"
        echo "max_connections = 300"
        echo "fsync = off"
        echo "synchronous_commit = off"
    } >"$conf"
fi

status="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}')"
if [ "$status" != "online" ]; then
    log "starting cluster $VERSION/$CLUSTER"
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

for _ in $(seq 1 50); do
    if su postgres -c "psql -p $PORT -h /var/run/postgresql -tAc 'select 1'" >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done

psql_admin() { su postgres -c "psql -p $PORT -h /var/run/postgresql -v ON_ERROR_STOP=1 -tAc \"$1\""; }

if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
    log "creating role $ROLE"
    psql_admin "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD' CREATEDB" >&2
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
    log "creating database $DB"
    psql_admin "CREATE DATABASE $DB OWNER $ROLE" >&2
fi

echo "postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
