#!/usr/bin/env python3
"""Quality of each weight format the way the field measures it: perplexity over long held-out
texts, and the mean and 99th-percentile KL divergence of each format's next-token distribution
from the `f32` graph of the same weights, next to llama.cpp on the same GGUF; and whether each
format passes the import gate (perplexity within 1 % of the `f32` graph's, mean KL no larger
than llama.cpp's own divergence from `f32`).

    cargo build --release -p gateway-bin
    .venv/bin/pip install onnx        # bench/accuracy.py, whose text sources this shares
    CMAKE_ARGS="-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON \
        -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=ON" \
        .venv/bin/pip install --no-binary llama-cpp-python llama-cpp-python==0.3.36  # ~10 min
    .venv/bin/python bench/quality.py [--formats q4,int8] [--window 1024] [--gguf PATH]
        [--keep DIR] [--json OUT]

llama.cpp is built without `GGML_NATIVE`: that compiles its AMX kernels in, and on a CPU whose
kernel does not enable AMX for user space the first evaluation dies with an illegal instruction.

The texts are six long files every Debian machine of this kind holds, none of them chat data:
three license texts from base-files and three modules of Python's standard library (the
sources of bench/accuracy.py), one window of `--window` tokens from each, fed whole (teacher
forcing): 6 × 1,024 = 6,144 positions by default. Perplexity is exp of the mean negative
log-likelihood of each next token (the window's first token has no prediction). KL is
KL(f32 ‖ format) per position, in nats; top-1 is the share of positions whose likeliest token
equals the `f32` graph's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "python"))
from accuracy import SOURCES, THREADS  # noqa: E402
from llamacpp_agreement import llama_logits  # noqa: E402
from step_formats import default_gguf, import_format  # noqa: E402
from test_llama_import import Decoder, log_softmax  # noqa: E402

PERPLEXITY_MARGIN = 0.01  # a format's perplexity may exceed the f32 graph's by at most 1 %
CHUNK = 128  # positions per log-softmax, to bound the float64 working set


class Tally:
    """One engine's figures over every window: negative log-likelihoods of the next tokens,
    KL from the f32 graph and top-1 agreement with it, per position."""

    def __init__(self) -> None:
        self.nll: list[np.ndarray] = []
        self.kl: list[np.ndarray] = []
        self.agree = 0
        self.positions = 0

    def add(self, ids: list[int], logits: np.ndarray, exact: np.ndarray) -> None:
        """Adds one window: `logits` of this engine and `exact` of the f32 graph, (len, vocab)."""
        targets = np.asarray(ids[1:])
        for start in range(0, len(ids), CHUNK):
            end = min(start + CHUNK, len(ids))
            mine, theirs = log_softmax(logits[start:end]), log_softmax(exact[start:end])
            self.kl.append((np.exp(theirs) * (theirs - mine)).sum(-1))
            self.agree += int((mine.argmax(-1) == theirs.argmax(-1)).sum())
            predicted = np.arange(start, min(end, len(ids) - 1))
            self.nll.append(-mine[predicted - start, targets[predicted]])
        self.positions += len(ids)

    def summary(self) -> dict:
        nll, kl = np.concatenate(self.nll), np.concatenate(self.kl)
        return {
            "perplexity": float(np.exp(nll.mean())),
            "kl_mean": float(kl.mean()),
            "kl_p99": float(np.percentile(kl, 99)),
            "top1_vs_f32": self.agree / self.positions,
            "positions": self.positions,
        }


def windows(tokenizer, width: int) -> list[list[int]]:
    """The first `width` token ids of every file of `SOURCES`."""
    out = []
    for source in SOURCES:
        ids = tokenizer.encode(source.read_text()).ids
        if len(ids) < width:
            sys.exit(f"{source} has fewer than {width} tokens")
        out.append(ids[:width])
    return out


def gate(results: dict) -> dict:
    """For each format: whether it passes the import gate, against the f32 graph's perplexity
    and llama.cpp's mean KL from f32."""
    ceiling = results["f32"]["perplexity"] * (1 + PERPLEXITY_MARGIN)
    bound = results["llama.cpp"]["kl_mean"]
    return {name: r["perplexity"] <= ceiling and r["kl_mean"] <= bound
            for name, r in results.items() if name not in ("f32", "llama.cpp")}


def table(results: dict, passes: dict) -> str:
    lines = ["| engine | perplexity | vs f32 | KL mean | KL p99 | top-1 vs f32 | gate |",
             "|---|---|---|---|---|---|---|"]
    base = results["f32"]["perplexity"]
    for name, r in results.items():
        verdict = {True: "passes", False: "fails"}.get(passes.get(name), "—")
        lines.append(
            f"| {name} | {r['perplexity']:.3f} | {100 * (r['perplexity'] / base - 1):+.2f} % | "
            f"{r['kl_mean']:.4f} | {r['kl_p99']:.4f} | {100 * r['top1_vs_f32']:.2f} % | "
            f"{verdict} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default="q4,int8")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="import into (and reuse) DIR/FORMAT")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    from llama_cpp import Llama
    from tokenizers import Tokenizer

    gguf = args.gguf or default_gguf()
    formats = ["f32", *[f for f in args.formats.split(",") if f != "f32"]]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for fmt in formats:
            import_format(gguf, fmt, root / fmt)
        texts = windows(Tokenizer.from_file(str(root / "f32" / "tokenizer.json")), args.window)
        decoders = {fmt: Decoder(root / fmt) for fmt in formats}
        llm = Llama(model_path=str(gguf), n_ctx=args.window + 16, n_threads=THREADS,
                    logits_all=True, verbose=False)
        tallies = {name: Tally() for name in [*formats, "llama.cpp"]}
        for ids in texts:
            exact = decoders["f32"].prefill(ids)
            tallies["f32"].add(ids, exact, exact)
            for fmt in formats[1:]:
                tallies[fmt].add(ids, decoders[fmt].prefill(ids), exact)
            tallies["llama.cpp"].add(ids, llama_logits(llm, ids), exact)
    results = {name: tally.summary() for name, tally in tallies.items()}
    passes = gate(results)
    print(f"{len(texts)} windows of {args.window} tokens, {gguf.name}\n")
    print(table(results, passes))
    if args.json:
        args.json.write_text(json.dumps({"window": args.window, "gguf": gguf.name,
                                         "results": results, "gate": passes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
