#!/usr/bin/env python3
"""Where one decode step of an imported SmolLM2 graph spends its time: ONNX Runtime's own
profiler (`SessionOptions.enable_profiling`) over decode steps driven as
`bench/step_formats.py` drives them (shared past/present buffers, last position's logits
only), summed per operator type and per kind of projection.

    cargo build --release -p gateway-bin
    .venv/bin/python bench/step_profile.py [--format q4] [--batches 1,16] [--context 128]
        [--steps 50] [--keep DIR]

Prints, per batch size, a Markdown table: each operator type's share of the summed kernel
time and its microseconds per step, then the same for the projections by kind (q|k|v, o,
gate|up, down, head). The first (warm-up) step is left out.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from step_formats import Stepper, default_gguf, import_format  # noqa: E402

KINDS = {"q|k|v": "attn_qkv/", "o": "attn_output/", "gate|up": "ffn_gate_up/",
         "down": "ffn_down/", "head": "head/"}


def profile(directory: Path, batch: int, context: int, steps: int, out: Path) -> list[dict]:
    """The kernel events of `steps` decode steps (after one warm-up) of `batch` rows."""
    stepper = Stepper(directory, 2, context + 16, str(out / f"step-{batch}"))
    io = stepper.bind(batch, context)
    for _ in range(steps + 1):
        stepper.session.run_with_iobinding(io)
    trace = json.loads(Path(stepper.session.end_profiling()).read_text())
    runs = [e for e in trace if e.get("cat") == "Session" and e["name"] == "model_run"]
    first_end = runs[0]["ts"] + runs[0]["dur"]
    return [e for e in trace
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
            and e["ts"] >= first_end]


def table(events: list[dict], steps: int) -> str:
    """Per operator type and per kind of projection: share and µs per step."""
    by_op: dict[str, float] = defaultdict(float)
    by_kind: dict[str, float] = defaultdict(float)
    for e in events:
        by_op[e["args"]["op_name"]] += e["dur"]
        for kind, marker in KINDS.items():
            if marker in e["name"] and re.search(r"MatMul|Gemm", e["args"]["op_name"]):
                by_kind[kind] += e["dur"]
    total = sum(by_op.values())
    lines = [f"kernel time {total / steps / 1000:.2f} ms per step", "",
             "| operator | share | µs/step |", "|---|---|---|"]
    for op, t in sorted(by_op.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {op} | {100 * t / total:.1f} % | {t / steps:.0f} |")
    lines += ["", "| projection (its MatMul nodes) | share | µs/step |", "|---|---|---|"]
    for kind, t in by_kind.items():
        lines.append(f"| {kind} | {100 * t / total:.1f} % | {t / steps:.0f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", default="q4")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="import into (and reuse) DIR/FORMAT")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        directory = root / args.format
        import_format(args.gguf or default_gguf(), args.format, directory)
        print(f"`{args.format}` decode step, context {args.context}, 2 threads, ONNX Runtime "
              f"{ort.__version__}, {args.steps} steps profiled\n")
        for batch in (int(b) for b in args.batches.split(",")):
            events = profile(directory, batch, args.context, args.steps, Path(tmp))
            print(f"### batch {batch}\n\n{table(events, args.steps)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
