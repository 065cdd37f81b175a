"""Embeddings on a GPU machine: the gateway with the CUDA execution provider against the same
gateway on that machine's CPUs, same model, same HTTP client as bench/embeddings.py, plus the
agreement of the CUDA vectors with the CPU vectors.

Usage: python3 bench/gpu_embeddings.py DATA_DIR GATEWAY_BINARY (the binary built with
`--features gateway-engine/cuda`, DATA_DIR holding the GPU build of ONNX Runtime under
runtime/ and the imported model under models/).
"""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import embeddings as bench  # noqa: E402

TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "GPU check " * 60]


def vectors(address: str, key: str) -> np.ndarray:
    connection = http.client.HTTPConnection(address, timeout=60)
    body = json.dumps({"model": bench.MODEL, "input": TEXTS}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    connection.request("POST", "/v1/embeddings", body, headers)
    payload = json.loads(connection.getresponse().read())
    return np.array([item["embedding"] for item in payload["data"]])


def run(data_dir: Path, device: str, texts: dict[str, str]) -> tuple[dict, np.ndarray]:
    config = f'[[models]]\npath = "models/{bench.MODEL}"\ndevice = "{device}"\nmax_batch_tokens = 16384\n'
    server = bench.gateway_process.Gateway(data_dir, config, {"RUST_LOG": "warn,gateway=info"})
    key = bench.gateway_process.create_api_key(data_dir, f"bench-{device}")
    try:
        found = vectors(server.address, key)
        rates = {}
        for name, text in texts.items():
            bench.gateway_rate(server.address, key, text, 8)
            for clients in bench.CONCURRENCY:
                rates[(name, clients)] = bench.gateway_rate(server.address, key, text, clients)
        return rates, found
    finally:
        server.stop()


def main() -> None:
    data_dir, binary = Path(sys.argv[1]), Path(sys.argv[2])
    bench.gateway_process.BINARY = binary
    tokenizer = Tokenizer.from_file(str(data_dir / "models" / bench.MODEL / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    texts = bench.inputs(tokenizer)
    gpu, gpu_vectors = run(data_dir, "cuda", texts)
    cpu, cpu_vectors = run(data_dir, "cpu", texts)
    cosines = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(gpu_vectors, cpu_vectors)]
    print(f"min cosine CUDA vs CPU vectors: {min(cosines):.6f}")
    print("| input | clients | CUDA EP emb/s | CPU EP emb/s (same machine) | CUDA / CPU |")
    print("|---|---|---|---|---|")
    for name in texts:
        for clients in bench.CONCURRENCY:
            g, c = gpu[(name, clients)], cpu[(name, clients)]
            print(f"| {name} | {clients} | {g:.1f} | {c:.1f} | {g / c:.2f} |")


if __name__ == "__main__":
    main()
