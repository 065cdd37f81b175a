"""Chat decode of two gateway builds in one run: before and after a change.

Measures each build the way `bench/decode.py` measures our gateway (same server settings,
same streaming client, greedy, `max_tokens` 128, distinct essay prompts) at 1 and 16
concurrent streams, alternating the builds round by round (A B, then B A, …) so that a
machine that gets busier or quieter during the run weighs on both alike. Prints a Markdown
table: decode tokens/s of one stream (median over its requests), aggregate generated tokens/s
(median over rounds), inter-token latency p50 / p99, the scheduler's milliseconds per step
inside ONNX Runtime and outside it (our code: scheduling, sampling, detokenizing, sending;
from `gateway_engine_*` of /metrics), and after / before. ONNX Runtime's time per step varies
from run to run on a shared machine; the time outside it and the number of steps show whether
a change to our code made a step dearer.

Knobs: BENCH_ROUNDS (3), BENCH_AB_REQUESTS ("1:4,16:2": requests per stream at each
concurrency), and those of bench/decode.py (BENCH_THREADS, BENCH_MAX_TOKENS).

Usage: bench/decode_ab.sh BASE_REV (builds BASE_REV, prepares both data directories, runs
       this) or .venv/bin/python bench/decode_ab.py BASE_DATA BASE_BINARY NEW_DATA NEW_BINARY
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode  # noqa: E402
from decode import gateway_process  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
LEVELS = {
    int(level): int(count)
    for level, count in (
        item.split(":") for item in os.environ.get("BENCH_AB_REQUESTS", "1:4,16:2").split(",")
    )
}


def measure_build(data_dir: Path, binary: Path) -> dict:
    """One round of one build: a fresh server, a warm-up request, then every level."""
    gateway_process.BINARY = binary
    server = decode.OurGateway(data_dir)
    try:
        return decode.measure(server, None, LEVELS)
    finally:
        server.stop()


def summary(rounds: list[dict]) -> dict:
    """The figures of a build over its rounds."""
    out = {}
    for streams in LEVELS:
        gaps = [gap for r in rounds for gap in r[streams]["gaps"]]
        steps = [r[streams]["steps"] for r in rounds]
        count = sum(s["steps"] for s in steps)
        onnx = sum(s["onnx_seconds"] for s in steps)
        out[streams] = {
            "steps": count / len(rounds),
            "onnx_ms": 1000 * onnx / count,
            "other_ms": 1000 * (sum(s["step_seconds"] for s in steps) - onnx) / count,
            "rate": statistics.median(r[streams]["rate"] for r in rounds),
            "rates": [r[streams]["rate"] for r in rounds],
            "decode": statistics.median(d for r in rounds for d in r[streams]["decode"]),
            "p50": decode.percentile(gaps, 50),
            "p99": decode.percentile(gaps, 99),
        }
    return out


def main() -> None:
    base_data, base_binary, new_data, new_binary = (Path(arg) for arg in sys.argv[1:5])
    builds = {"before": (base_data, base_binary), "after": (new_data, new_binary)}
    rounds: dict[str, list[dict]] = {"before": [], "after": []}
    for index in range(ROUNDS):
        order = ["before", "after"] if index % 2 == 0 else ["after", "before"]
        for name in order:
            print(f"round {index + 1}: {name}", file=sys.stderr, flush=True)
            rounds[name].append(measure_build(*builds[name]))
    before, after = summary(rounds["before"]), summary(rounds["after"])

    def row(label: str, a: float, b: float) -> str:
        return f"| {label} | {a:.2f} | {b:.2f} | {b / a:.3f} |"

    print()
    print(
        f"SmolLM2-135M-Instruct Q4_1, {decode.THREADS} threads, greedy, max_tokens "
        f"{decode.MAX_TOKENS}, streamed; {ROUNDS} rounds alternating the builds; requests per "
        "stream: " + ", ".join(f"{n} at {s} streams" for s, n in sorted(LEVELS.items()))
    )
    print()
    print("| measure | before | after | after / before |")
    print("|---|---|---|---|")
    for streams in sorted(LEVELS):
        if streams == 1:
            print(row("decode tok/s, 1 stream", before[1]["decode"], after[1]["decode"]))
        print(row(f"aggregate generated tok/s, {streams} streams",
                  before[streams]["rate"], after[streams]["rate"]))
        for q in ("p50", "p99"):
            print(row(f"inter-token latency {q}, {streams} streams (ms)",
                      1000 * before[streams][q], 1000 * after[streams][q]))
        for key, label in (("steps", "scheduler steps per round"),
                           ("onnx_ms", "ms per step inside ONNX Runtime"),
                           ("other_ms", "ms per step outside ONNX Runtime")):
            print(row(f"{label}, {streams} streams", before[streams][key], after[streams][key]))
    for streams in sorted(LEVELS):
        spread = ", ".join(
            f"{name} " + " / ".join(f"{rate:.1f}" for rate in summary_[streams]["rates"])
            for name, summary_ in (("before", before), ("after", after))
        )
        print(f"\nper-round aggregate tok/s at {streams} streams: {spread}")


if __name__ == "__main__":
    main()
