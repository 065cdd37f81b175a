"""End to end: a fleet of three gateway replicas on one PostgreSQL and one Redis behind HAProxy,
all real processes on loopback, serving a model from one fixed-latency upstream.

Checked: a key created through one replica works on every other at once and, deleted, stops
working everywhere within a second; a limit override applies everywhere within a second and the
fleet admits the sum of one budget; a usage report sums every replica; `kill -9` of one replica
under load fails only requests that had started before it and leaves exactly one usage record
per completed request; a rolling restart of all three under streaming load fails no request;
Redis stopped and started under load (limits fail open, as configured, and say so in `/readyz`
and the metrics; a replica configured to fail closed refuses with 503 and is not ready);
PostgreSQL stopped and started under load (verified keys keep working, usage records wait in the
journals and all reach the database when it returns).

Needs `GATEWAY_TEST_POSTGRES_URL` (scripts/postgres.sh, whose cluster this test stops and starts
again), `redis-server` (scripts/redis.sh installs it; this test runs its own instance) and
`GATEWAY_TEST_HAPROXY` (scripts/haproxy.sh); skipped without them, except under `CI=true`."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gateway_process import BINARY, REPO, Gateway
from test_auth_e2e import call

FIXED_UPSTREAM = REPO / "target" / "debug" / "examples" / "fixed_upstream"
MODEL = "fleet-chat"
REPLICAS = 3
POSTGRES_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL")
HAPROXY = os.environ.get("GATEWAY_TEST_HAPROXY")
REDIS_SERVER = shutil.which("redis-server")
MISSING = [
    name
    for name, present in (
        ("GATEWAY_TEST_POSTGRES_URL", POSTGRES_URL),
        ("GATEWAY_TEST_HAPROXY", HAPROXY),
        ("redis-server", REDIS_SERVER),
        ("root (to stop and start PostgreSQL)", os.geteuid() == 0),
    )
    if not present
]
if MISSING and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI=true but the fleet test lacks {MISSING}: see scripts/test.sh")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {MISSING}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout: float, what: str, step: float = 0.05):
    """Polls `condition` until it returns something true; returns it and the seconds taken."""
    started = time.monotonic()
    while True:
        value = condition()
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)


@dataclass(frozen=True)
class Endpoint:
    """Where `call` (test_auth_e2e) sends a request: a replica or HAProxy."""

    address: str


def chat(endpoint: Endpoint, key: str, request_id: str | None = None):
    headers = {"x-request-id": request_id} if request_id else None
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    return call(endpoint, "POST", "/v1/chat/completions", key, body, headers)


def streamed_chat(endpoint: Endpoint, key: str) -> bool:
    """A streamed chat read to its end; whether it ended with `[DONE]` after content."""
    connection = http.client.HTTPConnection(endpoint.address, timeout=30)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 8,
        "stream": True,
    }
    try:
        connection.request(
            "POST", "/v1/chat/completions", body=json.dumps(body),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        response = connection.getresponse()
        if response.status != 200:
            return False
        text = response.read().decode()
    finally:
        connection.close()
    return '"content"' in text and text.rstrip().endswith("data: [DONE]")


@dataclass
class Tenant:
    project_id: str
    token: str
    key: str

    @property
    def tokens_path(self) -> str:
        return f"/v1/projects/{self.project_id}/regions/eu01/tokens"


@dataclass
class Load:
    """Client threads sending requests in a loop until stopped, with what happened to each."""

    send: object
    clients: int
    results: list = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list = field(default_factory=list)

    def start(self) -> "Load":
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _client(self, index: int) -> None:
        while not self.stopping.is_set():
            request_id = f"fleet-{uuid.uuid4().hex}"
            started = time.monotonic()
            try:
                ok = self.send(request_id)
            except (OSError, http.client.HTTPException, ValueError):
                ok = False  # refused, reset, cut short or unreadable: failed
            self.results.append((request_id, started, time.monotonic(), ok))

    def stop(self) -> list:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)
        return self.results

    def failures(self) -> list:
        return [result for result in self.results if not result[3]]


class Fleet:
    """The upstream, Redis, three replicas and HAProxy in front of them."""

    def __init__(self, data_dir: Path, work: Path, database_url: str):
        self.data_dir = data_dir
        self.work = work
        self.database_url = database_url
        self.prefix = f"fleet-{uuid.uuid4().hex[:8]}:"
        self.upstream = subprocess.Popen(
            [str(FIXED_UPSTREAM), "--delay-ms", "5", "--chunks", "6", "--chunk-delay-ms", "15",
             "--model", "fixed"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.upstream.stdout is not None
        self.upstream_url = json.loads(self.upstream.stdout.readline())["base_url"]
        self.redis_port = free_port()
        self.redis: subprocess.Popen | None = None
        self.start_redis()
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.replicas: list[Gateway | None] = [None] * REPLICAS
        for index in range(REPLICAS):
            self.start_replica(index)
        self.front_port = free_port()
        self.haproxy = self.start_haproxy()
        self.front = Endpoint(f"127.0.0.1:{self.front_port}")
        wait_until(lambda: self.all_up(), 20, "HAProxy sees every replica up")

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/"

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            [str(REDIS_SERVER), "--bind", "127.0.0.1", "--port", str(self.redis_port),
             "--save", "", "--appendonly", "no", "--dir", str(self.work)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self._redis_answers(), 10, "Redis answers")

    def _redis_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait(10)

    def config(self, index: int, when_redis_unavailable: str = "open") -> str:
        return f"""
[server]
drain_delay_secs = 1
shutdown_grace_secs = 20

[database]
write_check_interval_secs = 1
write_check_timeout_secs = 1
outage_grace_secs = 120

[metering]
journal_dir = "{self.work / f'journal-{index}'}"

[limits]
redis_prefix = "{self.prefix}"
redis_unavailable = "{when_redis_unavailable}"

[limits.base]
requests_per_minute = 100000
tokens_per_minute = 1000000000

[[models]]
kind = "upstream"
id = "{MODEL}"
[models.upstream]
type = "chat"
context_length = 4096
[[models.upstream.servers]]
url = "{self.upstream_url}"
model = "fixed"
"""

    def env(self) -> dict:
        return {"GATEWAY_DATABASE_URL": self.database_url, "GATEWAY_REDIS_URL": self.redis_url}

    def start_replica(self, index: int) -> Gateway:
        replica = Gateway(
            self.data_dir, self.config(index), self.env(),
            listen=f"127.0.0.1:{self.ports[index]}", config_name=f"fleet-{index}.toml",
        )
        self.replicas[index] = replica
        return replica

    def address(self, index: int) -> Endpoint:
        return Endpoint(f"127.0.0.1:{self.ports[index]}")

    def start_haproxy(self) -> subprocess.Popen:
        servers = "\n".join(
            f"    server r{index} 127.0.0.1:{port}" for index, port in enumerate(self.ports)
        )
        config = self.work / "haproxy.cfg"
        config.write_text(f"""
global
    maxconn 1024
    stats socket {self.work / 'haproxy.sock'} level admin

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout queue 10s
    retries 3
    option redispatch 1
    retry-on conn-failure
    http-reuse never

frontend fleet
    bind 127.0.0.1:{self.front_port}
    default_backend replicas

backend replicas
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 200ms fastinter 100ms downinter 200ms fall 1 rise 2
{servers}
""")
        return subprocess.Popen(
            [str(HAPROXY), "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

    def server_states(self) -> dict:
        """HAProxy's view of each replica: `UP`, `DOWN`, … (none while it starts)."""
        if self.haproxy.poll() is not None:
            raise AssertionError(f"HAProxy exited: {self.haproxy.stderr.read()}")
        try:
            with socket.socket(socket.AF_UNIX) as conn:
                conn.connect(str(self.work / "haproxy.sock"))
                conn.sendall(b"show stat\n")
                text = b""
                while chunk := conn.recv(65536):
                    text += chunk
        except OSError:
            return {}
        states = {}
        for line in text.decode().splitlines():
            columns = line.split(",")
            if len(columns) > 17 and columns[0] == "replicas" and columns[1].startswith("r"):
                states[columns[1]] = columns[17]
        return states

    def all_up(self) -> bool:
        states = self.server_states()
        return len(states) == REPLICAS and all(state == "UP" for state in states.values())

    def admin(self, *args: str) -> dict:
        env = dict(os.environ, GATEWAY_DATA_DIR=str(self.data_dir),
                   GATEWAY_DATABASE_URL=self.database_url)
        env.pop("GATEWAY_CONFIG", None)
        result = subprocess.run(
            [str(BINARY), "admin", *args], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def tenant(self, name: str) -> Tenant:
        project = self.admin("project", "create", "--name", name)
        subject = f"{name}-{uuid.uuid4().hex[:8]}"
        self.admin("principal", "add", "--project", project["id"], "--subject", subject,
                   "--email", f"{subject}@example.com", "--role", "owner")
        token = self.admin("management-token", "create", "--subject", subject)["content"]
        key = self.admin("key", "create", "--project", project["id"], "--name", name)["content"]
        return Tenant(project["id"], token, key)

    def records(self, project_id: str) -> dict:
        """Usage records per request id of a project, read with psql."""
        query = (
            "SELECT request_id, COUNT(*) FROM usage_records "
            f"WHERE project_id = '{project_id}' GROUP BY request_id"
        )
        result = subprocess.run(
            ["psql", self.database_url, "-tAF", ",", "-c", query],
            capture_output=True, text=True, timeout=30, check=True,
        )
        counts = {}
        for line in result.stdout.splitlines():
            request_id, count = line.rsplit(",", 1)
            counts[request_id] = int(count)
        return counts

    def readiness(self, index: int) -> tuple[int, dict]:
        status, _, body = call(self.address(index), "GET", "/readyz")
        return status, body

    def stop(self) -> None:
        self.haproxy.terminate()
        self.haproxy.wait(10)
        for replica in self.replicas:
            if replica is not None:
                replica.stop()
        if self.redis is not None and self.redis.poll() is None:
            self.stop_redis()
        self.upstream.terminate()
        self.upstream.wait(10)


@pytest.fixture(scope="module")
def database_url():
    """A schema of its own on the test PostgreSQL."""
    schema = f"fleet_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", POSTGRES_URL, "-c", f"CREATE SCHEMA {schema}"],
                   check=True, capture_output=True)
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-c%20search_path%3D{schema}"


@pytest.fixture(scope="module")
def fleet(data_dir, tmp_path_factory, database_url):
    fleet = Fleet(data_dir, tmp_path_factory.mktemp("fleet"), database_url)
    yield fleet
    fleet.stop()


def test_keys_appear_and_disappear_on_every_replica(fleet):
    tenant = fleet.tenant("fleet-keys")
    status, _, body = call(fleet.address(0), "POST", tenant.tokens_path, tenant.token,
                              {"name": "made-on-replica-0"})
    assert status == 202, body
    key, key_id = body["token"]["content"], body["token"]["id"]
    for index in (1, 2):
        status, _, body = chat(fleet.address(index), key)
        assert status == 200, f"replica {index} at once: {body}"
    for index in range(REPLICAS):
        assert call(fleet.address(index), "GET", "/v1/models", key)[2]["data"][0]["id"] == MODEL
    status, _, _ = call(fleet.address(1), "DELETE", f"{tenant.tokens_path}/{key_id}",
                           tenant.token)
    assert status in (200, 202, 204)
    deleted = time.monotonic()
    for index in (0, 2):
        wait_until(lambda i=index: chat(fleet.address(i), key)[0] == 401,
                   1.0 - (time.monotonic() - deleted), f"replica {index} refuses the deleted key")
    assert time.monotonic() - deleted < 1.0


def test_overrides_and_budgets_hold_for_the_sum_of_the_replicas(fleet):
    tenant = fleet.tenant("fleet-limits")
    for index in range(REPLICAS):
        assert chat(fleet.address(index), tenant.key)[0] == 200
    fleet.admin("project", "limits", "--project", tenant.project_id, "--rpm", "30",
                "--tpm", "1000000")
    time.sleep(1.0)
    for index in range(REPLICAS):
        status, headers, _ = chat(fleet.address(index), tenant.key)
        assert status == 200 and headers["x-ratelimit-limit-requests"] == "30", index
    # The budget holds 30 a minute plus a 10 % burst: 33, of which the three requests above
    # took 3; it refills by one every 2 s.
    started = time.monotonic()
    answers = [chat(fleet.address(n % REPLICAS), tenant.key)[0] for n in range(60)]
    refilled = int((time.monotonic() - started) / 2) + 1
    admitted = answers.count(200)
    assert set(answers) <= {200, 429}
    assert 29 <= admitted <= 30 + refilled, f"{admitted} of 60 admitted over three replicas"
    assert answers[-1] == 429


def test_a_usage_report_sums_every_replica(fleet):
    tenant = fleet.tenant("fleet-usage")
    told = {"requests": 0, "input": 0, "output": 0}
    for index in range(REPLICAS):
        for _ in range(3):
            status, _, body = chat(fleet.address(index), tenant.key)
            assert status == 200, body
            told["requests"] += 1
            told["input"] += body["usage"]["prompt_tokens"]
            told["output"] += body["usage"]["completion_tokens"]

    def complete_report():
        status, _, body = call(fleet.address(2), "GET",
                                  f"/v1/projects/{tenant.project_id}/usage", tenant.token)
        assert status == 200, body
        total = body["total"][0] if body["total"] else {}
        return total if total.get("requests") == told["requests"] else None

    total, _ = wait_until(complete_report, 10, "every replica's records in the report", 0.2)
    assert (total["inputTokens"], total["outputTokens"]) == (told["input"], told["output"])


def test_kill_9_fails_only_what_the_replica_was_serving(fleet):
    tenant = fleet.tenant("fleet-kill")

    def send(request_id: str) -> bool:
        status, _, body = chat(fleet.front, tenant.key, request_id)
        return status == 200 and body["usage"]["total_tokens"] > 0

    load = Load(send, clients=8).start()
    time.sleep(2)
    fleet.replicas[2].process.kill()
    try:
        fleet.replicas[2].process.wait(10)
        # Gone: its sockets are closed, so a connection to it is refused (and retried by
        # HAProxy). While it was dying, the kernel could still accept one it never answers.
        gone_at = time.monotonic()
        time.sleep(2)
        results = load.stop()
    finally:
        fleet.start_replica(2)
        wait_until(fleet.all_up, 20, "the restarted replica is up")
    failures = load.failures()
    assert len(results) > 100, len(results)
    late = [r for r in failures if r[1] >= gone_at]
    assert not late, f"{len(late)} requests that started after the replica was gone failed"
    assert len(failures) <= 8, f"{len(failures)} failed, more than were in flight"
    completed = [r[0] for r in results if r[3]]

    def all_recorded():
        counts = fleet.records(tenant.project_id)
        return counts if all(request_id in counts for request_id in completed) else None

    counts, _ = wait_until(all_recorded, 20, "a record of every completed request", 0.5)
    doubled = {request_id: n for request_id, n in counts.items() if n != 1}
    assert not doubled, f"requests with more than one record: {doubled}"
    assert set(counts) <= {r[0] for r in results}


def test_a_rolling_restart_under_streaming_load_fails_no_request(fleet):
    tenant = fleet.tenant("fleet-rolling")
    load = Load(lambda _: streamed_chat(fleet.front, tenant.key), clients=6).start()
    time.sleep(1)
    for index in range(REPLICAS):
        old = fleet.replicas[index]
        old.terminate()
        assert old.process.wait(30) == 0, old.log
        assert "not ready, still serving" in old.log
        fleet.start_replica(index)
        wait_until(fleet.all_up, 20, f"replica {index} is back in HAProxy")
    time.sleep(1)
    results = load.stop()
    assert len(results) > 50, len(results)
    assert not load.failures(), f"{len(load.failures())} of {len(results)} streams failed"


def test_redis_stopped_and_started_under_load(fleet, tmp_path):
    tenant = fleet.tenant("fleet-redis")
    load = Load(lambda rid: chat(fleet.front, tenant.key, rid)[0] == 200, clients=4).start()
    time.sleep(1)
    fleet.stop_redis()
    for index in range(REPLICAS):
        status, body = wait_until(
            lambda i=index: (lambda r: r if r[1]["rate_limiter"] == "failing_open" else None)(
                fleet.readiness(i)),
            5, f"replica {index} reports failing open",
        )[0]
        assert status == 200, body
    metrics = call(fleet.address(0), "GET", "/metrics")[2]
    assert 'gateway_rate_limiter_state{state="failing_open"} 1' in metrics

    closed_process = start_unready(fleet, tmp_path, fleet.config(9, "closed"))
    try:
        status, body = wait_until(
            lambda: (lambda r: r if r[1]["rate_limiter"] == "failing_closed" else None)(
                readiness_of(closed_process)),
            5, "the closed replica reports failing closed",
        )[0]
        assert status == 503, body
        status, headers, body = chat(closed_process["address"], tenant.key)
        assert status == 503 and headers["retry-after"] == "1", body
        assert "Rate limits cannot be checked" in body["error"]["message"]
    finally:
        closed_process["process"].terminate()
        closed_process["process"].wait(20)

    time.sleep(1)
    fleet.start_redis()
    for index in range(REPLICAS):
        wait_until(lambda i=index: fleet.readiness(i)[1]["rate_limiter"] == "available", 10,
                   f"replica {index} shares limits again")
    time.sleep(1)
    results = load.stop()
    assert len(results) > 50
    assert not load.failures(), f"{len(load.failures())} of {len(results)} failed"


def start_unready(fleet: Fleet, work: Path, config_text: str) -> dict:
    """A replica that is expected not to become ready: the process and its address."""
    config = work / "closed.toml"
    config.write_text(config_text)
    port = free_port()
    env = dict(os.environ, GATEWAY_DATA_DIR=str(fleet.data_dir), **fleet.env())
    env.pop("ORT_DYLIB_PATH", None)
    process = subprocess.Popen(
        [str(BINARY), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    entry = {"process": process, "address": Endpoint(f"127.0.0.1:{port}")}
    wait_until(lambda: readiness_of(entry), 30, "the closed replica answers")
    return entry


def readiness_of(entry: dict):
    try:
        status, _, body = call(entry["address"], "GET", "/readyz")
    except OSError:
        return None
    return status, body


def postgres_cluster(action: str) -> None:
    """Stops or starts the test PostgreSQL cluster (scripts/postgres.sh's `gwtest`)."""
    version = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: [int(p) for p in v.split(".")])[-1]
    arguments = ["pg_ctlcluster", version, "gwtest", action]
    if action == "stop":
        arguments += ["-m", "fast"]
    subprocess.run(arguments, check=True, capture_output=True, timeout=60)


def test_postgres_stopped_and_started_under_load(fleet):
    tenant = fleet.tenant("fleet-postgres")
    unseen = fleet.admin("key", "create", "--project", tenant.project_id, "--name", "unseen")
    for index in range(REPLICAS):
        assert chat(fleet.address(index), tenant.key)[0] == 200

    def send(request_id: str) -> bool:
        status, _, body = chat(fleet.front, tenant.key, request_id)
        return status == 200 and body["usage"]["total_tokens"] > 0

    load = Load(send, clients=4).start()
    time.sleep(1)
    postgres_cluster("stop")
    try:
        for index in range(REPLICAS):
            status, body = wait_until(
                lambda i=index: (lambda r: r if r[1]["database_writable"] is False else None)(
                    fleet.readiness(i)),
                10, f"replica {index} sees the database go away",
            )[0]
            assert status == 200, f"ready within the outage grace: {body}"
        time.sleep(2)
        pending = [fleet.readiness(i)[1]["usage_records_pending"] for i in range(REPLICAS)]
        assert sum(pending) > 0, pending
        status, headers, body = chat(fleet.address(0), unseen["content"])
        assert status == 503 and headers["retry-after"] == "1", body
        assert "API keys cannot be checked" in body["error"]["message"]
    finally:
        postgres_cluster("start")
    time.sleep(1)
    results = load.stop()
    for index in range(REPLICAS):
        wait_until(lambda i=index: fleet.readiness(i)[1]["usage_records_pending"] == 0, 60,
                   f"replica {index} wrote its journal to the database", 0.5)
    failures = load.failures()
    assert len(results) > 50, len(results)
    assert not failures, f"{len(failures)} of {len(results)} failed while PostgreSQL was away"
    completed = {r[0] for r in results}

    def all_recorded():
        counts = fleet.records(tenant.project_id)
        return counts if completed <= set(counts) else None

    counts, _ = wait_until(all_recorded, 20, "a record of every completed request", 0.5)
    doubled = {request_id: n for request_id, n in counts.items() if n != 1}
    assert not doubled, f"requests with more than one record: {doubled}"
