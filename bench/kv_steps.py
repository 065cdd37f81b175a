"""Decode step time against context length: the KV cache updated in place versus a cache that
is copied every step.

Runs one decode step of an imported decoder (`model.onnx`, docs/model-format.md) with ONNX
Runtime from Python, 2 intra-op threads, at a batch of B sequences (default 16) that each have
C tokens of context, for C in 128, 1024 and 4096:

- in place: what the gateway's engine does. Each cache tensor is one preallocated buffer
  [B, kv_heads, capacity, head_dim] bound by I/O binding both as `past_key_values.*` and as
  `present.*`, so GroupQueryAttention writes only the new position;
- copied: the past passed as an input of exactly C positions and `present.*` allocated by ONNX
  Runtime, which then copies the whole past into the new present every step (the least any
  scheme that hands the cache over by value pays; the engine before the in-place cache also
  gathered each sequence's cache into the batch first).

Usage: .venv/bin/python bench/kv_steps.py MODEL_DIR [BATCH]
Knobs: BENCH_STEPS (20 timed steps per cell, median of 3 rounds), BENCH_CONTEXTS
("128,1024,4096").
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

STEPS = int(os.environ.get("BENCH_STEPS", "20"))
CONTEXTS = [int(c) for c in os.environ.get("BENCH_CONTEXTS", "128,1024,4096").split(",")]


def session(model: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def cache_names(sess: ort.InferenceSession) -> list[tuple[str, str]]:
    pasts = [i.name for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
    return [(p, p.replace("past_key_values.", "present.")) for p in pasts]


def feeds(sess: ort.InferenceSession, batch: int, context: int) -> dict:
    names = {i.name for i in sess.get_inputs()}
    out = {
        "input_ids": np.full((batch, 1), 42, np.int64),
        "attention_mask": np.ones((batch, context + 1), np.int64),
    }
    if "logits_positions" in names:
        out["logits_positions"] = np.zeros((batch, 1), np.int64)
    return out


def cache_shape(sess: ort.InferenceSession) -> tuple[int, int]:
    shape = sess.get_inputs()[[i.name for i in sess.get_inputs()].index(cache_names(sess)[0][0])].shape
    return int(shape[1]), int(shape[3])


def in_place_step(sess, batch: int, context: int, capacity: int):
    heads, head_dim = cache_shape(sess)
    binding = sess.io_binding()
    buffers = []
    for past, present in cache_names(sess):
        buffer = np.zeros((batch, heads, capacity, head_dim), np.float32)
        buffers.append(buffer)
        shape = list(buffer.shape)
        binding.bind_input(past, "cpu", 0, np.float32, shape, buffer.ctypes.data)
        binding.bind_output(present, "cpu", 0, np.float32, shape, buffer.ctypes.data)
    inputs = feeds(sess, batch, context)  # kept alive with the buffers: bound, not copied
    for name, value in inputs.items():
        binding.bind_cpu_input(name, value)
    binding.bind_output("logits")

    def step():
        sess.run_with_iobinding(binding)

    return step, (buffers, inputs)


def copied_step(sess, batch: int, context: int):
    heads, head_dim = cache_shape(sess)
    inputs = feeds(sess, batch, context)
    for past, _ in cache_names(sess):
        inputs[past] = np.zeros((batch, heads, context, head_dim), np.float32)

    def step():
        sess.run(None, inputs)

    return step


def timed(step) -> float:
    """Median over 3 rounds of the mean step time (ms) of STEPS steps, after 3 warm-up steps."""
    for _ in range(3):
        step()
    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(STEPS):
            step()
        rounds.append((time.perf_counter() - started) / STEPS * 1000)
    return statistics.median(rounds)


def main() -> None:
    model_dir = Path(sys.argv[1])
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    model = model_dir / "model.onnx"
    capacity = max(CONTEXTS) + 1
    print(f"{model}, batch {batch}, 2 threads, capacity {capacity} positions per row; "
          f"{STEPS} steps x 3 rounds per cell, median")
    print()
    print("| context | in place: step (ms) | copied: step (ms) | copied / in place |")
    print("|---|---|---|---|")
    sess = session(model)
    for context in CONTEXTS:
        in_place, buffers = in_place_step(sess, batch, context, capacity)
        a = timed(in_place)
        del in_place, buffers
        b = timed(copied_step(sess, batch, context))
        print(f"| {context} | {a:.1f} | {b:.1f} | {b / a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
