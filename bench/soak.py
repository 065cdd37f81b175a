"""Memory soak: the resident memory of gateway builds over a long mixed load.

For each build (`LABEL=DATA_DIR=BINARY` arguments, run one after the other), starts the gateway
on its default engine settings (SmolLM2 with 16 sequences, contexts up to 2,048 tokens, a KV
cache of 16,384 tokens; MiniLM) with rate limits out of the way, then:

1. idle for `SOAK_WARMUP_SECONDS` (20): the "before" figure;
2. `SOAK_CLIENTS` (8) clients for `SOAK_SECONDS` (600), each drawing at random: a streamed chat
   with a prompt of 10 to 1,500 words and `max_tokens` 16 to 512 (some streams dropped halfway),
   a completion of 4 prompts × n 2, an embeddings batch of 32 texts, a tokenize call;
3. idle for `SOAK_IDLE_SECONDS` (60): the "after" and "idle" figures.

The resident set (`VmRSS` of /proc) is sampled every 2 s. Prints a Markdown table per build:
RSS before, at each tenth of the load, its peak, right after and at the end of the idle time,
with the requests served and failed (a failure is anything but a 200 answer).

Usage: bench/soak.sh [BASE_REV] (builds, prepares data, runs this) or
       .venv/bin/python bench/soak.py LABEL=DATA_DIR=BINARY [LABEL=DATA_DIR=BINARY …]
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import gateway_process  # noqa: E402

WARMUP = float(os.environ.get("SOAK_WARMUP_SECONDS", "20"))
DURATION = float(os.environ.get("SOAK_SECONDS", "600"))
IDLE = float(os.environ.get("SOAK_IDLE_SECONDS", "60"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "8"))
SAMPLE_SECONDS = 2.0
CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"
CONFIG = """
[limits.base]
requests_per_minute = 100000000
tokens_per_minute = 100000000000

[[models]]
path = "models/all-minilm-l6-v2"

[[models]]
path = "models/smollm2-135m-instruct"
"""
WORDS = (
    "river mountain city garden winter summer market school engine music library ocean forest "
    "window bridge lantern harbor village letter station painter farmer doctor teacher kitchen "
    "island desert valley castle museum travel history science story"
).split()


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


class Load:
    """The clients of one build and what they counted."""

    def __init__(self, address: str, key: str):
        self.address = address
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        self.served = 0
        self.failed: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop_at = 0.0

    def count(self, outcome: str | None) -> None:
        with self.lock:
            if outcome is None:
                self.served += 1
            else:
                self.failed[outcome] = self.failed.get(outcome, 0) + 1

    def post(self, connection: http.client.HTTPConnection, path: str, body: dict, rng) -> str | None:
        connection.request("POST", path, json.dumps(body).encode(), self.headers)
        response = connection.getresponse()
        if response.status != 200:
            response.read()
            return f"{path} {response.status}"
        if body.get("stream") and rng.random() < 0.1:
            response.readline()
            connection.close()
            return None
        response.read()
        return None

    def one_request(self, connection, rng: random.Random) -> str | None:
        kind = rng.random()
        if kind < 0.55:
            prompt = text(rng, rng.choice([10, 50, 200, 600, 1500]))
            body = {
                "model": CHAT_MODEL, "stream": True, "temperature": 0.7,
                "max_tokens": rng.choice([16, 64, 128, 512]),
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": f"{prompt}\nSummarize this."},
                ],
            }
            return self.post(connection, "/v1/chat/completions", body, rng)
        if kind < 0.7:
            body = {
                "model": CHAT_MODEL, "n": 2, "max_tokens": 32,
                "prompt": [text(rng, rng.randint(5, 300)) for _ in range(4)],
            }
            return self.post(connection, "/v1/completions", body, rng)
        if kind < 0.9:
            body = {
                "model": EMBEDDING_MODEL,
                "input": [text(rng, rng.randint(3, 200)) for _ in range(32)],
            }
            return self.post(connection, "/v1/embeddings", body, rng)
        body = {"model": CHAT_MODEL, "prompt": text(rng, rng.randint(10, 2000))}
        return self.post(connection, "/v1/tokenize", body, rng)

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        connection = http.client.HTTPConnection(self.address, timeout=300)
        while time.monotonic() < self.stop_at:
            try:
                outcome = self.one_request(connection, rng)
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
            if connection.sock is None:
                connection = http.client.HTTPConnection(self.address, timeout=300)
            self.count(outcome)
        connection.close()


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def sample(pid: int, seconds: float, into: list[tuple[float, float]], start: float) -> None:
    """Appends (time since `start`, RSS MB) every SAMPLE_SECONDS for `seconds`."""
    end = time.monotonic() + seconds
    while True:
        into.append((time.monotonic() - start, rss_mb(pid)))
        if time.monotonic() >= end:
            return
        time.sleep(min(SAMPLE_SECONDS, max(0.0, end - time.monotonic())))


def soak(data_dir: Path, binary: Path) -> dict:
    gateway_process.BINARY = binary
    server = gateway_process.Gateway(data_dir, CONFIG, {"RUST_LOG": "warn,gateway=info"})
    try:
        key = gateway_process.create_api_key(data_dir, "soak")
        pid = server.process.pid
        start = time.monotonic()
        before: list[tuple[float, float]] = []
        sample(pid, WARMUP, before, start)
        load = Load(server.address, key)
        load.stop_at = time.monotonic() + DURATION
        clients = [threading.Thread(target=load.client, args=(seed,)) for seed in range(CLIENTS)]
        for thread in clients:
            thread.start()
        during: list[tuple[float, float]] = []
        sample(pid, DURATION, during, start)
        for thread in clients:
            thread.join()
        after: list[tuple[float, float]] = []
        sample(pid, IDLE, after, start)
        return {"before": before, "during": during, "after": after,
                "served": load.served, "failed": load.failed}
    finally:
        server.stop()


def tenths(during: list[tuple[float, float]]) -> list[float]:
    """RSS at the end of each tenth of the load."""
    first, last = during[0][0], during[-1][0]
    marks = [first + (last - first) * k / 10 for k in range(1, 11)]
    return [next(rss for t, rss in during if t >= mark - 1e-9) for mark in marks]


def table(label: str, figures: dict) -> str:
    during = figures["during"]
    rows = [
        ("before (idle, started)", figures["before"][-1][1]),
        *((f"load {10 * (k + 1)} %", rss) for k, rss in enumerate(tenths(during))),
        ("load peak", max(rss for _, rss in during)),
        ("after load", figures["after"][0][1]),
        (f"idle {IDLE:.0f} s later", figures["after"][-1][1]),
    ]
    failed = ", ".join(f"{k}: {v}" for k, v in sorted(figures["failed"].items())) or "none"
    lines = [
        f"**{label}**: {figures['served']} requests served in {DURATION:.0f} s "
        f"by {CLIENTS} clients; failed: {failed}",
        "",
        "| point | RSS (MiB) |",
        "|---|---:|",
        *(f"| {name} | {rss:.0f} |" for name, rss in rows),
    ]
    return "\n".join(lines)


def main() -> None:
    builds = [arg.split("=", 2) for arg in sys.argv[1:]]
    results = {}
    for label, data_dir, binary in builds:
        print(f"soak: {label} ({binary})", file=sys.stderr, flush=True)
        results[label] = soak(Path(data_dir), Path(binary))
        print(table(label, results[label]), flush=True)
        print(flush=True)
    Path(os.environ.get("SOAK_JSON", "target/soak.json")).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
