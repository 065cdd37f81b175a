"""The step-time cost of constrained decoding (structured outputs): the release gateway serving
SmolLM2-135M-Instruct, `STREAMS` concurrent chat requests (1 and 16 by default) run three ways
in one process, one after the other, `BENCH_ROUNDS` (3) rounds each:

- free: no constraint, `ignore_eos` so that every stream runs its whole `max_tokens`;
- json_schema: `response_format` `json_schema` with nested objects, enums and bounded arrays
  (`minItems` keeps the output longer than `max_tokens`), so every stream is masked at every
  step of its whole `max_tokens`;
- json_object: any JSON object (the mask of an unbounded grammar; a stream may end before
  `max_tokens` when its object closes).

Each run's figures come from the engine's own counters on /metrics (`gateway_engine_steps`,
`step_seconds`, `onnx_seconds`, `decode_rows`): the mean time of a scheduler step, its time
outside ONNX Runtime (sampling, masks, detokenizing, stop strings), and the mask's cost per
sequence and step: the time outside ONNX Runtime per decode row of a step, over the free
run's. Prints a Markdown table; the median round per cell.

Usage: bench/structured.sh (builds the release binary, prepares data, runs this) or
       .venv/bin/python bench/structured.py DATA_DIR BINARY
Knobs: BENCH_STREAMS ("1,16"), BENCH_MAX_TOKENS (96), BENCH_ROUNDS (3).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import gateway_process  # noqa: E402

MODEL = "smollm2-135m-instruct"
STREAMS = [int(s) for s in os.environ.get("BENCH_STREAMS", "1,16").split(",")]
MAX_TOKENS = int(os.environ.get("BENCH_MAX_TOKENS", "96"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONFIG = """
[limits.base]
requests_per_minute = 100000000
tokens_per_minute = 100000000000

[[models]]
path = "models/smollm2-135m-instruct"
"""
SCHEMA = {
    "type": "object",
    "properties": {
        "store": {"type": "string", "maxLength": 24},
        "open": {"type": "boolean"},
        "items": {
            "type": "array",
            "minItems": 40,
            "maxItems": 60,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 16},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                    "unit": {"enum": ["kg", "g", "piece", "litre"]},
                },
                "required": ["name", "quantity", "unit"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["store", "open", "items"],
    "additionalProperties": False,
}
MODES = {
    "free": {"ignore_eos": True},
    "json_schema": {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": "list", "schema": SCHEMA}}},
    "json_object": {"response_format": {"type": "json_object"}},
}


def engine_figures(address: str) -> dict:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(rf'gateway_engine_(\w+){{model="{MODEL}"}} ([0-9.e+-]+)', text)}


def chat(address: str, key: str, extra: dict, seed: int, failures: list) -> None:
    body = {"model": MODEL, "max_tokens": MAX_TOKENS, "temperature": 0.8, "seed": seed,
            "messages": [{"role": "user", "content": "Write a shopping list as JSON."}], **extra}
    request = urllib.request.Request(
        f"http://{address}/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            json.load(response)
    except Exception as error:  # noqa: BLE001 - reported in the table
        failures.append(str(error))


def run(address: str, key: str, streams: int, extra: dict) -> dict:
    before = engine_figures(address)
    failures: list = []
    threads = [threading.Thread(target=chat, args=(address, key, extra, seed, failures))
               for seed in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = engine_figures(address)
    delta = {name: after[name] - before.get(name, 0.0) for name in after}
    steps = max(delta["steps"], 1.0)
    return {
        "step_ms": 1000 * delta["step_seconds"] / steps,
        "outside_ms": 1000 * (delta["step_seconds"] - delta["onnx_seconds"]) / steps,
        "rows": delta["decode_rows"] / steps,
        "failures": failures,
    }


def main() -> None:
    data_dir, binary = Path(sys.argv[1]), Path(sys.argv[2])
    gateway_process.BINARY = binary
    server = gateway_process.Gateway(data_dir, CONFIG, {"RUST_LOG": "warn,gateway=info"})
    try:
        key = gateway_process.create_api_key(data_dir, "bench-structured")
        run(server.address, key, 2, MODES["json_schema"])  # warm-up
        print(f"SmolLM2-135M-Instruct, max_tokens {MAX_TOKENS}, median of {ROUNDS} rounds\n")
        print("| streams | output | step (ms) | outside ONNX Runtime (ms) | rows per step "
              "| mask per sequence and step (µs) | failures |")
        print("|---|---|---|---|---|---|---|")
        for streams in STREAMS:
            cells = {mode: [run(server.address, key, streams, extra) for _ in range(ROUNDS)]
                     for mode, extra in MODES.items()}
            per_row = {mode: statistics.median(r["outside_ms"] / max(r["rows"], 1) for r in rounds)
                       for mode, rounds in cells.items()}
            for mode, rounds in cells.items():
                outside = statistics.median(r["outside_ms"] for r in rounds)
                rows = statistics.median(r["rows"] for r in rounds)
                extra = 1000 * (per_row[mode] - per_row["free"])
                mask = "–" if mode == "free" else f"{extra:.0f}"
                failures = sum(len(r["failures"]) for r in rounds)
                print(f"| {streams} | {mode} | {statistics.median(r['step_ms'] for r in rounds):.2f} "
                      f"| {outside:.2f} | {rows:.1f} | {mask} | {failures} |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
