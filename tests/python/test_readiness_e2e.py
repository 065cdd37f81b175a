"""End to end: `/readyz` fails (503) while the database takes no writes — here another process
holds SQLite's write lock — and passes again once it does, while `/healthz` stays 200."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request

from gateway_process import Gateway


def probe(server: Gateway, path: str) -> tuple[int, dict]:
    """GETs `path`; returns the status and the JSON body, also of an error answer."""
    try:
        with urllib.request.urlopen(server.base_url + path, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for_readiness(server: Gateway, status: int, seconds: float) -> dict:
    """Polls `/readyz` until it answers `status`; returns that body."""
    deadline = time.monotonic() + seconds
    while True:
        got, body = probe(server, "/readyz")
        if got == status:
            return body
        assert time.monotonic() < deadline, f"/readyz still {got}: {body}\n{server.log}"
        time.sleep(0.2)


def test_a_database_that_takes_no_writes_is_not_ready(data_dir, tmp_path):
    database = tmp_path / "gateway.db"
    config = f"""
[database]
write_check_interval_secs = 1
write_check_timeout_secs = 1
outage_grace_secs = 0

[metering]
journal_dir = "{tmp_path / 'journal'}"

[[models]]
path = "models/all-minilm-l6-v2"
"""
    server = Gateway(data_dir, config, {"GATEWAY_DATABASE_URL": f"sqlite://{database}?mode=rwc"})
    try:
        assert probe(server, "/readyz")[1]["database_writable"] is True
        lock = sqlite3.connect(database, timeout=10, isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            body = wait_for_readiness(server, 503, 10)
            assert body["database_writable"] is False, body
            assert body["models_ready"] is True and body["draining"] is False, body
            assert probe(server, "/healthz")[0] == 200, "the process itself is alive"
        finally:
            lock.rollback()
            lock.close()
        body = wait_for_readiness(server, 200, 15)
        assert body["database_writable"] is True, body
        assert "the database takes no writes" in server.log
        assert "the database takes writes again" in server.log
    finally:
        server.stop()
