"""Overhead benchmark: the latency a gateway adds to a request, at constant request rates.

A fixed-latency OpenAI-compatible upstream (`crates/api/examples/fixed_upstream.rs`: answers
after `DELAY_MS`, `CHUNKS` tokens) is driven by oha, an open-loop load generator: at each rate
it sends requests on a fixed schedule, whatever the answers do, and with
`--latency-correction` counts a request's latency from the time the schedule meant to send it,
so a stalled server cannot hide its stall (no coordinated omission). Each target gets the same
chat completion request (`max_tokens` 16):

- `direct`: the upstream itself, the baseline;
- `gateway`: our gateway (`GATEWAY_BIN`) serving the upstream as a `kind = "upstream"` model,
  with a project API key (auth), per-project rate limits far above the load (requests and
  tokens per minute, concurrent requests per project) and metering (usage journal + SQLite,
  the defaults); afterwards its usage report is read back to check that the requests were
  metered;
- `litellm`: LiteLLM's proxy (`litellm[proxy]`) on the same upstream, with a master key (auth),
  the deployment's rpm/tpm with usage-based routing (LiteLLM's rate limits without a database)
  and per-token prices (its cost calculation, `x-litellm-response-cost`). Its virtual keys,
  per-key limits and spend logs need PostgreSQL through Prisma, whose engines Prisma downloads
  at start from its own server (binaries.prisma.sh), not from a package registry: offline the
  proxy refuses to start with a database ("Database migration cannot proceed"), so it runs
  without one. One worker, like every target on one core;
- `portkey`: Portkey's open-source gateway (`@portkey-ai/gateway`, Node.js), which has no auth,
  rate limits or metering of its own (those are in Portkey's hosted control plane): it only
  forwards. Its streamed answers fail here (Node 20: 500 "Something went wrong", `TypeError:
  immutable` in its `updateHeaders`, Portkey-AI/gateway issues 1389 and 1550; 1.9.8 fails too,
  and pinning @hono/node-server 1.14.2 does not help), so its stream rows are skipped.

For every rate (`RATES`) and mode (`MODES`: `plain`, `stream`) each target gets a warm-up of
`WARMUP` seconds, then `DURATION` seconds measured. Reported per run: p50 / p99 / p99.9
latency, the added latency (the target's percentile minus the direct one at the same rate and
mode, measured in the same run), errors (non-200 answers and failed connections; oha waits for
the requests open at the end), requests of the schedule oha never sent (still waiting for one
of its `CONNECTIONS` when the run ended: a target slower than the rate; their latency is in no
percentile, so such a row understates the latency), and the target's CPU (percent of one core,
its process tree, from /proc/PID/stat) and peak RSS (VmRSS of the tree, sampled every 100 ms).
The raw JSON also has the time to first byte, the achieved rate, oha's and the upstream's CPU
and oha's whole report.

CPU placement on a 2-core machine (`TARGET_CPUS`, `CLIENT_CPUS`): the target runs alone on
CPU 0; the load generator and the upstream share CPU 1. The direct baseline runs with the same
placement, so the added latency is what the gateway's hop costs, its CPU being a core of its
own; every target gets the same core (the gateway's async runtime then has one worker). oha and
the upstream take about 8 % of CPU 1 each at 1,000 requests/s. Run it on an otherwise idle
machine: a build beside it shows in the tails of every row, the direct one included.

Knobs (environment): RATES ("100 500 1000 2000"), DURATION (15), WARMUP (3), MODES ("plain"),
TARGETS ("direct gateway litellm portkey"), DELAY_MS (20), CHUNKS (4), CHUNK_DELAY_MS (0: a
stream's chunks follow its first at once), CONNECTIONS (256),
TARGET_CPUS ("0"), CLIENT_CPUS ("1"), RESULTS_DIR (target/bench-overhead), GATEWAY_RUST_LOG
(the gateway's RUST_LOG; default unset: its own default, info), and the tools:
GATEWAY_BIN, UPSTREAM_BIN, OHA_BIN, LITELLM_BIN, PORTKEY_DIR (bench/overhead.sh sets them).

Two more targets measure the gateway as a fleet: `replica` is one gateway on PostgreSQL and
Redis (keys, usage records and budgets shared as in a fleet), `fleet` three such replicas
behind HAProxy (least connections, health checks on /readyz). Both need FLEET_POSTGRES_URL
(scripts/postgres.sh prints one), FLEET_REDIS_URL (scripts/redis.sh) and HAPROXY_BIN
(scripts/haproxy.sh); every replica and HAProxy run on TARGET_CPUS, PostgreSQL and Redis
wherever the system runs them. `TARGETS="direct gateway replica fleet"` compares them.

Usage: bench/overhead.sh (installs the tools, builds, runs this), or
       python3 bench/overhead.py with the environment above.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATES = [int(rate) for rate in os.environ.get("RATES", "100 500 1000 2000").split()]
DURATION = float(os.environ.get("DURATION", "15"))
WARMUP = float(os.environ.get("WARMUP", "3"))
MODES = os.environ.get("MODES", "plain").split()
TARGETS = os.environ.get("TARGETS", "direct gateway litellm portkey").split()
DELAY_MS = int(os.environ.get("DELAY_MS", "20"))
CHUNKS = int(os.environ.get("CHUNKS", "4"))
CHUNK_DELAY_MS = int(os.environ.get("CHUNK_DELAY_MS", "0"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "256"))
TARGET_CPUS = os.environ.get("TARGET_CPUS", "0")
CLIENT_CPUS = os.environ.get("CLIENT_CPUS", "1")
RESULTS_DIR = Path(os.environ.get("RESULTS_DIR", REPO / "target" / "bench-overhead"))
GATEWAY_BIN = os.environ.get("GATEWAY_BIN", str(REPO / "target" / "release" / "gateway"))
UPSTREAM_BIN = os.environ.get(
    "UPSTREAM_BIN", str(REPO / "target" / "release" / "examples" / "fixed_upstream")
)
OHA_BIN = os.environ.get("OHA_BIN", "oha")
LITELLM_BIN = os.environ.get("LITELLM_BIN", "litellm")
PORTKEY_DIR = os.environ.get("PORTKEY_DIR", "")
FLEET_POSTGRES_URL = os.environ.get("FLEET_POSTGRES_URL", "")
FLEET_REDIS_URL = os.environ.get("FLEET_REDIS_URL", "")
HAPROXY_BIN = os.environ.get("HAPROXY_BIN", "haproxy")
FLEET_REPLICAS = 3
# The gateway's log filter; unset, its default (info: a line per request and one per usage
# record, written to a file here), as an operator runs it.
GATEWAY_RUST_LOG = os.environ.get("GATEWAY_RUST_LOG", "")

UPSTREAM_MODEL = "fixed"
MODEL = "bench-chat"
LITELLM_MASTER_KEY = "sk-bench-master-key"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PAUSE_SECONDS = 2.0


def log(message: str) -> None:
    print(f"overhead: {message}", file=sys.stderr, flush=True)


def pinned(cpus: str, command: list[str]) -> list[str]:
    """`command` under `taskset -c cpus`, where taskset exists and the machine has the CPUs."""
    if not cpus or not shutil.which("taskset"):
        return command
    wanted = {int(cpu) for part in cpus.split(",") for cpu in _cpu_range(part)}
    if not wanted <= os.sched_getaffinity(0):
        log(f"CPUs {cpus} are not available here: {command[0]} runs unpinned")
        return command
    return ["taskset", "-c", cpus, *command]


def _cpu_range(part: str) -> range:
    first, _, last = part.partition("-")
    return range(int(first), int(last or first) + 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A server this benchmark started: its log file, and stopping it (its process group)."""

    def __init__(self, name: str, command: list[str], work: Path, env: dict | None = None,
                 stdin_pipe: bool = False, cwd: Path | None = None):
        self.name = name
        self.log_path = work / f"{name}.log"
        self.log_file = self.log_path.open("w")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdin_pipe else self.log_file,
            stderr=self.log_file,
            env=env,
            cwd=cwd,
            text=True,
            start_new_session=True,
        )
        RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait()
        self.log_file.close()
        if self in RUNNING:
            RUNNING.remove(self)


RUNNING: list[Process] = []
# The load generator while it runs.
CLIENTS: list[int] = []


def stop_all() -> None:
    for pid in list(CLIENTS):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        CLIENTS.remove(pid)
    for process in list(reversed(RUNNING)):
        process.stop()


def post(url: str, body: dict, headers: dict, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until(check, seconds: float, process: Process) -> None:
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.process.returncode}:\n"
                               + process.log_tail())
        try:
            if check():
                return
        except OSError as error:
            last = error
        time.sleep(0.2)
    raise RuntimeError(f"{process.name} not ready after {seconds:.0f} s ({last}):\n"
                       + process.log_tail())


def chat_body(model: str, stream: bool) -> dict:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello to the benchmark in a few words."},
        ],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return body


class Target:
    """Where requests go: the URL of chat completions, the headers, the model, the process."""

    def __init__(self, name: str, base_url: str, model: str, headers: dict,
                 process: Process | None, notes: str, others: list[Process] | None = None):
        self.name = name
        self.url = base_url + "/chat/completions"
        self.model = model
        self.headers = headers
        self.process = process
        self.notes = notes
        # Further processes whose CPU and memory count as the target's (a fleet's replicas).
        self.others = others or []

    def pids(self) -> list[int]:
        """Every process of the target, children included."""
        roots = ([self.process] if self.process else []) + self.others
        return [pid for root in roots for pid in process_tree(root.pid)]

    def smoke(self, mode: str) -> None:
        """One request of `mode` must answer 200 with the upstream's content."""
        stream = mode == "stream"
        status, body = post(self.url, chat_body(self.model, stream), self.headers, 30)
        if status != 200 or b"word0" not in body:
            raise RuntimeError(f"{self.name}: a {mode} request answered {status}: {body[:300]!r}")


# ---------------------------------------------------------------------------------------------
# The servers.


def start_upstream(work: Path) -> tuple[Process, str]:
    command = [UPSTREAM_BIN, "--listen", "127.0.0.1:0", "--delay-ms", str(DELAY_MS),
               "--chunks", str(CHUNKS), "--chunk-delay-ms", str(CHUNK_DELAY_MS),
               "--threads", "1", "--model", UPSTREAM_MODEL]
    process = Process("upstream", pinned(CLIENT_CPUS, command), work, stdin_pipe=True)
    assert process.process.stdout is not None
    line = process.process.stdout.readline()
    if not line:
        raise RuntimeError("the upstream did not start:\n" + process.log_tail())
    return process, json.loads(line)["base_url"]


def gateway_config(port: int, data_dir: Path, upstream_url: str, journal: str = "") -> str:
    journal_line = f'[metering]\njournal_dir = "{journal}"\n' if journal else ""
    return f"""{journal_line}
[server]
listen = "127.0.0.1:{port}"
data_dir = "{data_dir}"
# A limit like every other, far above the load (at 2,000 requests/s and 21 ms about 42 are in
# flight; oha holds at most CONNECTIONS).
max_concurrent_requests_per_project = 4096

[limits.base]
requests_per_minute = 100000000
tokens_per_minute = 100000000000

[[models]]
kind = "upstream"
id = "{MODEL}"
plan = "base"
[models.upstream]
type = "chat"
context_length = 8192
[[models.upstream.servers]]
url = "{upstream_url}"
model = "{UPSTREAM_MODEL}"
"""


def gateway_admin(data_dir: Path, *args: str, database_url: str = "") -> dict:
    env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir))
    for name in ("GATEWAY_DATABASE_URL", "GATEWAY_CONFIG"):
        env.pop(name, None)
    if database_url:
        env["GATEWAY_DATABASE_URL"] = database_url
    result = subprocess.run([GATEWAY_BIN, "admin", *args], capture_output=True, text=True,
                            env=env, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"gateway admin {' '.join(args)} failed:\n{result.stderr}")
    return json.loads(result.stdout)


def start_gateway(work: Path, upstream_url: str) -> tuple[Target, dict]:
    data_dir = work / "gateway-data"
    data_dir.mkdir(exist_ok=True)
    project = gateway_admin(data_dir, "project", "create", "--name", "bench")
    key = gateway_admin(data_dir, "key", "create", "--project", project["id"], "--name", "bench")
    port = free_port()
    config = work / "gateway.toml"
    config.write_text(gateway_config(port, data_dir, upstream_url))
    env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir))
    for name in ("GATEWAY_DATABASE_URL", "GATEWAY_CONFIG", "GATEWAY_LISTEN", "ORT_DYLIB_PATH",
                 "RUST_LOG"):
        env.pop(name, None)
    if GATEWAY_RUST_LOG:
        env["RUST_LOG"] = GATEWAY_RUST_LOG
    process = Process("gateway", pinned(TARGET_CPUS, [GATEWAY_BIN, "serve", "--config",
                                                      str(config)]), work, env)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
            return response.status == 200

    wait_until(ready, 60, process)
    target = Target("gateway", base + "/v1", MODEL,
                    {"authorization": f"Bearer {key['content']}"}, process,
                    "API key auth, rate limits (requests, tokens, concurrency per project), "
                    "metering (journal + SQLite)")
    return target, {"data_dir": data_dir, "project": project["id"]}


def fleet_database() -> str:
    """A schema of its own on FLEET_POSTGRES_URL, as a database URL."""
    if not (FLEET_POSTGRES_URL and FLEET_REDIS_URL and shutil.which(HAPROXY_BIN)):
        raise RuntimeError("needs FLEET_POSTGRES_URL, FLEET_REDIS_URL and HAPROXY_BIN")
    schema = f"bench_{int(time.time())}_{os.getpid()}"
    subprocess.run(["psql", FLEET_POSTGRES_URL, "-qc", f"CREATE SCHEMA {schema}"], check=True,
                   capture_output=True, timeout=30)
    separator = "&" if "?" in FLEET_POSTGRES_URL else "?"
    return f"{FLEET_POSTGRES_URL}{separator}options=-c%20search_path%3D{schema}"


def start_replicas(work: Path, upstream_url: str, name: str, count: int,
                   database_url: str) -> tuple[list[Process], list[int], str]:
    """`count` gateways on one PostgreSQL schema and Redis; their processes, ports and key."""
    data_dir = work / f"{name}-data"
    data_dir.mkdir(exist_ok=True)
    project = gateway_admin(data_dir, "project", "create", "--name", "bench",
                            database_url=database_url)
    key = gateway_admin(data_dir, "key", "create", "--project", project["id"], "--name", "bench",
                        database_url=database_url)
    env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir), GATEWAY_DATABASE_URL=database_url,
               GATEWAY_REDIS_URL=FLEET_REDIS_URL)
    for variable in ("GATEWAY_CONFIG", "GATEWAY_LISTEN", "ORT_DYLIB_PATH", "RUST_LOG"):
        env.pop(variable, None)
    if GATEWAY_RUST_LOG:
        env["RUST_LOG"] = GATEWAY_RUST_LOG
    processes, ports = [], []
    for index in range(count):
        port = free_port()
        config = work / f"{name}-{index}.toml"
        journal = str(data_dir / f"journal-{index}")
        config.write_text(gateway_config(port, data_dir, upstream_url, journal))
        command = [GATEWAY_BIN, "serve", "--config", str(config)]
        processes.append(Process(f"{name}-{index}", pinned(TARGET_CPUS, command), work, env))
        ports.append(port)
    for process, port in zip(processes, ports):
        def ready(port: int = port) -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                return answer.status == 200

        wait_until(ready, 60, process)
    return processes, ports, key["content"]


def start_replica(work: Path, upstream_url: str) -> Target:
    processes, ports, key = start_replicas(work, upstream_url, "replica", 1, fleet_database())
    return Target("replica", f"http://127.0.0.1:{ports[0]}/v1", MODEL,
                  {"authorization": f"Bearer {key}"}, processes[0],
                  "one gateway as a fleet replica: keys and usage records in PostgreSQL, "
                  "budgets in Redis")


def haproxy_config(port: int, replica_ports: list[int]) -> str:
    servers = "\n".join(f"    server r{index} 127.0.0.1:{replica}"
                        for index, replica in enumerate(replica_ports))
    return f"""
global
    maxconn 4096

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch 1
    retry-on conn-failure
    http-reuse safe

frontend fleet
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 1s fall 2 rise 2
{servers}
"""


def start_fleet(work: Path, upstream_url: str) -> Target:
    replicas, ports, key = start_replicas(work, upstream_url, "fleet", FLEET_REPLICAS,
                                          fleet_database())
    port = free_port()
    config = work / "haproxy.cfg"
    config.write_text(haproxy_config(port, ports))
    balancer = Process("haproxy", pinned(TARGET_CPUS, [HAPROXY_BIN, "-db", "-f", str(config)]),
                       work)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
            return response.status == 200

    wait_until(ready, 30, balancer)
    time.sleep(2.5)  # every replica seen up (rise 2 at inter 1s)
    return Target("fleet", base + "/v1", MODEL, {"authorization": f"Bearer {key}"}, balancer,
                  f"{FLEET_REPLICAS} replicas as `replica` behind HAProxy (least connections, "
                  "health checks on /readyz, kept-alive server connections)", replicas)


def litellm_config(upstream_url: str) -> str:
    return f"""
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{UPSTREAM_MODEL}
      api_base: {upstream_url}
      api_key: sk-unused
      rpm: 100000000
      tpm: 100000000000
      # The gateway's Base prices (EUR 0.45 / 0.65 per million tokens): LiteLLM computes each
      # request's cost (x-litellm-response-cost); it keeps spend logs only in a database.
      input_cost_per_token: 0.00000045
      output_cost_per_token: 0.00000065

router_settings:
  # Counts every deployment's requests and tokens per minute and refuses one over its rpm/tpm:
  # LiteLLM's rate limiting without a database (per-key limits need virtual keys, which need
  # PostgreSQL and Prisma).
  routing_strategy: usage-based-routing-v2
  enable_pre_call_checks: true

litellm_settings:
  drop_params: true
  set_verbose: false
  json_logs: false

general_settings:
  master_key: {LITELLM_MASTER_KEY}
  disable_spend_logs: false
"""


def start_litellm(work: Path, upstream_url: str) -> Target:
    config = work / "litellm.yaml"
    config.write_text(litellm_config(upstream_url))
    port = free_port()
    env = dict(os.environ, LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True",
               LITELLM_TELEMETRY="False", DISABLE_SCHEMA_UPDATE="True")
    env.pop("DATABASE_URL", None)
    command = [LITELLM_BIN, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", "1"]
    process = Process("litellm", pinned(TARGET_CPUS, command), work, env, cwd=work)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(base + "/health/liveliness", timeout=2) as response:
            return response.status == 200

    wait_until(ready, 180, process)
    return Target("litellm", base + "/v1", MODEL,
                  {"authorization": f"Bearer {LITELLM_MASTER_KEY}"}, process,
                  "master key auth, deployment rpm/tpm (usage-based routing v2), per-token "
                  "cost calculation; no virtual keys or spend logs (no database)")


def start_portkey(work: Path, upstream_url: str) -> Target:
    script = Path(PORTKEY_DIR) / "node_modules" / "@portkey-ai" / "gateway" / "build" / \
        "start-server.js"
    if not script.exists():
        raise RuntimeError(f"Portkey's gateway is not installed ({script} is missing)")
    port = free_port()
    env = dict(os.environ, NODE_ENV="production")
    command = ["node", str(script), f"--port={port}", "--headless"]
    process = Process("portkey", pinned(TARGET_CPUS, command), work, env, cwd=work)
    base = f"http://127.0.0.1:{port}"
    headers = {
        "authorization": "Bearer sk-unused",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": upstream_url,
    }

    def ready() -> bool:
        status, _ = post(base + "/v1/chat/completions", chat_body(UPSTREAM_MODEL, False),
                         headers, 5)
        return status == 200

    wait_until(ready, 60, process)
    return Target("portkey", base + "/v1", UPSTREAM_MODEL, headers, process,
                  "forwarding only: the open-source gateway has no auth, rate limits or "
                  "metering of its own")


# ---------------------------------------------------------------------------------------------
# Measuring.


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (by /proc/PID/stat's parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of `pids` (those that still exist)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_mib(pids: list[int]) -> float:
    total_kib = 0
    for pid in pids:
        try:
            total_kib += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
        except OSError:
            continue
    return total_kib / 1024


class Sampler:
    """Peak RSS of a process tree, sampled every 100 ms while it runs."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.peak = rss_mib(pids)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, rss_mib(self.pids))

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return max(self.peak, rss_mib(self.pids))


def oha(target: Target, rate: int, seconds: float, stream: bool) -> tuple[dict, float]:
    """Runs oha at `rate` for `seconds`; returns its JSON summary and its own CPU seconds."""
    command = [
        OHA_BIN, "--no-tui", "--output-format", "json",
        "-q", str(rate), "-z", f"{seconds}s", "-c", str(CONNECTIONS),
        "--latency-correction", "--wait-ongoing-requests-after-deadline",
        "-m", "POST", "-H", "content-type: application/json",
        "-d", json.dumps(chat_body(target.model, stream)),
    ]
    for name, value in target.headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(target.url)
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(pinned(CLIENT_CPUS, command), stdout=output, stderr=errors)
        CLIENTS.append(child.pid)
        # wait4 rather than wait: oha's own CPU time comes with its exit status.
        _, status, usage = os.wait4(child.pid, 0)
        CLIENTS.remove(child.pid)
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        errors.seek(0)
        text, stderr = output.read(), errors.read()
    if child.returncode != 0:
        raise RuntimeError(f"oha exited with {child.returncode}: {stderr.decode()[-2000:]}")
    return json.loads(text), usage.ru_utime + usage.ru_stime


def summarize(report: dict, rate: int, seconds: float) -> dict:
    """The figures of one oha report: latency percentiles (ms), requests, errors, and the
    requests of the schedule that oha never sent: those still waiting for a free connection
    when the run ended (a target slower than the rate; their latency is in no percentile)."""
    percentiles = report.get("latencyPercentiles", {})
    codes = {str(code): count for code, count in report.get("statusCodeDistribution", {}).items()}
    errors = report.get("errorDistribution", {})
    ok = codes.get("200", 0)
    failed = sum(count for code, count in codes.items() if code != "200") + sum(errors.values())

    def ms(name: str, table: dict = percentiles) -> float | None:
        value = table.get(name)
        return None if value is None else value * 1000

    first_byte = report.get("firstBytePercentiles", {})
    return {
        "p50_ms": ms("p50"), "p99_ms": ms("p99"), "p99.9_ms": ms("p99.9"),
        "first_byte_p50_ms": ms("p50", first_byte), "first_byte_p99_ms": ms("p99", first_byte),
        "ok": ok, "errors": failed, "not_sent": not_sent(round(rate * seconds), ok + failed),
        "status_codes": codes, "error_kinds": errors,
        "achieved_rps": ok / report.get("summary", {}).get("total", seconds),
    }


def not_sent(scheduled: int, sent: int) -> int:
    """Requests of the schedule oha did not send; a shortfall within oha's rounding at the end
    of a run (one request, or 0.1 %) counts as none."""
    missing = max(0, scheduled - sent)
    return 0 if missing <= max(1, scheduled // 1000) else missing


def measure(target: Target, upstream: Process, rate: int, mode: str) -> dict:
    stream = mode == "stream"
    if WARMUP > 0:
        oha(target, rate, WARMUP, stream)
    tree = target.pids()
    upstream_tree = [upstream.pid]
    cpu_before = cpu_seconds(tree)
    upstream_before = cpu_seconds(upstream_tree)
    sampler = Sampler(tree) if tree else None
    started = time.monotonic()
    report, client_cpu = oha(target, rate, DURATION, stream)
    wall = time.monotonic() - started
    figures = summarize(report, rate, DURATION)
    figures.update({
        "target": target.name, "rate": rate, "mode": mode, "wall_s": wall,
        "cpu_percent": (cpu_seconds(tree) - cpu_before) / wall * 100 if tree else None,
        "rss_peak_mib": sampler.stop() if sampler else None,
        "upstream_cpu_percent": (cpu_seconds(upstream_tree) - upstream_before) / wall * 100,
        "client_cpu_percent": client_cpu / wall * 100,
        "oha": report,
    })
    time.sleep(PAUSE_SECONDS)
    return figures


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(runs: list[dict]) -> str:
    direct = {(run["rate"], run["mode"]): run for run in runs if run["target"] == "direct"}
    lines = [
        "| rate | mode | target | p50 ms | p99 ms | p99.9 ms | added p50 | added p99 | "
        "added p99.9 | ok | errors | not sent | CPU % | RSS MiB |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {name: index for index, name in enumerate(TARGETS)}
    for run in sorted(runs, key=lambda r: (r["mode"], r["rate"], order.get(r["target"], 99))):
        base = direct.get((run["rate"], run["mode"]))
        added = []
        for key in ("p50_ms", "p99_ms", "p99.9_ms"):
            if run["target"] == "direct" or base is None or run[key] is None or base[key] is None:
                added.append("–")
            else:
                added.append(f"{run[key] - base[key]:+.2f}")
        lines.append(
            f"| {run['rate']} | {run['mode']} | {run['target']} | {fmt(run['p50_ms'])} | "
            f"{fmt(run['p99_ms'])} | {fmt(run['p99.9_ms'])} | {' | '.join(added)} | "
            f"{run['ok']} | {run['errors']} | {run['not_sent']} | {fmt(run['cpu_percent'], 0)} | "
            f"{fmt(run['rss_peak_mib'], 0)} |"
        )
    return "\n".join(lines)


def ratios(runs: list[dict]) -> list[str]:
    """LiteLLM's (and Portkey's) added p99 over the gateway's, per rate and mode."""
    by = {(run["target"], run["rate"], run["mode"]): run for run in runs}
    lines = []
    for (name, rate, mode), run in sorted(by.items()):
        if name not in ("litellm", "portkey"):
            continue
        ours, base = by.get(("gateway", rate, mode)), by.get(("direct", rate, mode))
        if not ours or not base or None in (run["p99_ms"], ours["p99_ms"], base["p99_ms"]):
            continue
        theirs_added = run["p99_ms"] - base["p99_ms"]
        ours_added = max(ours["p99_ms"] - base["p99_ms"], 0.001)
        lines.append(f"- {rate} rps {mode}: {name} adds {theirs_added:.2f} ms at p99, the gateway "
                     f"{ours_added:.2f} ms: {theirs_added / ours_added:.0f}x")
    return lines


def metered(info: dict) -> dict | None:
    """The gateway's usage report of the benchmark's project (proof that metering ran)."""
    time.sleep(1)  # the journal moves records into the database within a quarter second
    try:
        return gateway_admin(info["data_dir"], "usage", "--project", info["project"])
    except (RuntimeError, json.JSONDecodeError, subprocess.TimeoutExpired) as error:
        return {"error": str(error)}


def metering_line(usage: dict, runs: list[dict]) -> str:
    """What the gateway's usage report counted, beside the answers its measured runs got."""
    answered = sum(run["ok"] for run in runs if run["target"] == "gateway")
    totals = usage.get("total") or []
    if not totals:
        return f"no usage recorded ({json.dumps(usage)[:300]})"
    total = totals[0]
    return (f"{total.get('requests')} requests metered ({answered} answered 200 in the measured "
            f"runs, the rest in warm-ups and checks), {total.get('inputTokens')} input + "
            f"{total.get('outputTokens')} output tokens, {total.get('cost')} "
            f"{total.get('currency')}")


def main() -> int:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gateway-overhead-"))
    log(f"work directory {work}; rates {RATES}, {DURATION:.0f} s each (+{WARMUP:.0f} s warm-up), "
        f"modes {MODES}, targets {TARGETS}, upstream delay {DELAY_MS} ms, {CHUNKS} chunks")
    runs: list[dict] = []
    skipped: dict[str, str] = {}
    notes: dict[str, str] = {}
    usage = None
    interrupted = None
    upstream, upstream_url = start_upstream(work)
    try:
        starters = {
            "direct": lambda: Target("direct", upstream_url, UPSTREAM_MODEL,
                                     {"authorization": "Bearer sk-unused"}, None,
                                     "the upstream itself"),
            "gateway": lambda: start_gateway(work, upstream_url),
            "litellm": lambda: start_litellm(work, upstream_url),
            "portkey": lambda: start_portkey(work, upstream_url),
            "replica": lambda: start_replica(work, upstream_url),
            "fleet": lambda: start_fleet(work, upstream_url),
        }
        for name in TARGETS:
            log(f"starting {name}")
            gateway_info = None
            try:
                started = starters[name]()
                if isinstance(started, tuple):
                    target, gateway_info = started
                else:
                    target = started
            except (RuntimeError, OSError, KeyError, json.JSONDecodeError) as error:
                log(f"{name} skipped: {error}")
                skipped[name] = str(error)[:4000]
                stop_all_but(upstream)
                continue
            notes[name] = target.notes
            for mode in MODES:
                try:
                    target.smoke(mode)
                except (RuntimeError, OSError) as error:
                    log(f"{name} {mode} skipped: {error}")
                    skipped[f"{name} {mode}"] = str(error)
                    continue
                for rate in RATES:
                    log(f"{name}: {rate} requests/s, {mode}")
                    try:
                        run = measure(target, upstream, rate, mode)
                    except (RuntimeError, json.JSONDecodeError) as error:
                        log(f"{name} at {rate}/s failed: {error}")
                        skipped[f"{name} {mode} {rate}"] = str(error)[:2000]
                        continue
                    runs.append(run)
                    log(f"  p50 {fmt(run['p50_ms'])} p99 {fmt(run['p99_ms'])} p99.9 "
                        f"{fmt(run['p99.9_ms'])} ms, {run['ok']} ok, {run['errors']} errors, "
                        f"{run['not_sent']} not sent, "
                        f"CPU {fmt(run['cpu_percent'], 0)} %, client CPU "
                        f"{fmt(run['client_cpu_percent'], 0)} %, upstream CPU "
                        f"{fmt(run['upstream_cpu_percent'], 0)} %")
                    if target.process and target.process.process.poll() is not None:
                        log(f"{name} exited:\n{target.process.log_tail()}")
                        break
            if gateway_info is not None:
                usage = metered(gateway_info)
            stop_all_but(upstream)
    except SystemExit as stop:  # SIGTERM or SIGINT (`_terminate`): report what was measured
        log("interrupted: stopping the servers and reporting what was measured")
        interrupted = stop.code
    finally:
        stop_all()

    print(f"Overhead at constant rates: upstream answering after {DELAY_MS} ms, oha with "
          f"latency correction, {DURATION:.0f} s per run, {CONNECTIONS} connections; targets on "
          f"CPU {TARGET_CPUS}, oha and the upstream on CPU {CLIENT_CPUS}. Latencies in ms; "
          f"'added' is the target's percentile minus the direct one; 'not sent': requests of "
          f"the schedule still waiting for a connection at the end (a target slower than the "
          f"rate), in no percentile; CPU in % of one core, RSS the peak.\n")
    print(table(runs))
    print()
    for line in ratios(runs):
        print(line)
    for name, note in notes.items():
        print(f"- {name}: {note}")
    for name, reason in skipped.items():
        print(f"- {name}: skipped: {reason.splitlines()[0] if reason else ''}")
    if usage is not None:
        print(f"- gateway metering: {metering_line(usage, runs)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"overhead-{stamp}.json"
    path.write_text(json.dumps({
        "settings": {"rates": RATES, "duration_s": DURATION, "warmup_s": WARMUP, "modes": MODES,
                     "delay_ms": DELAY_MS, "chunks": CHUNKS, "chunk_delay_ms": CHUNK_DELAY_MS,
                     "connections": CONNECTIONS, "target_cpus": TARGET_CPUS,
                     "client_cpus": CLIENT_CPUS},
        "runs": runs, "skipped": skipped, "notes": notes, "gateway_usage": usage,
    }, indent=1))
    print(f"\nraw results: {path}")
    print(f"logs: {work}")
    return 0 if interrupted is None else interrupted


def stop_all_but(keep: Process) -> None:
    for process in list(reversed(RUNNING)):
        if process is not keep:
            process.stop()


def _terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        sys.exit(main())
    finally:
        stop_all()
