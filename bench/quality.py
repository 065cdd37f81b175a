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
        [--keep DIR] [--json OUT] [--q4-budget]

llama.cpp is built without `GGML_NATIVE`: that compiles its AMX kernels in, and on a CPU whose
kernel does not enable AMX for user space the first evaluation dies with an illegal instruction.

The texts are six long files every Debian machine of this kind holds, none of them chat data:
three license texts from base-files and three modules of Python's standard library (the
sources of bench/accuracy.py), one window of `--window` tokens from each, fed whole (teacher
forcing): 6 × 1,024 = 6,144 positions by default. Perplexity is exp of the mean negative
log-likelihood of each next token (the window's first token has no prediction). KL is
KL(f32 ‖ format) per position, in nats; top-1 is the share of positions whose likeliest token
equals the `f32` graph's.

`--q4-budget` (needs `.venv/bin/pip install onnx`) also measures copies of the `q4` graph whose
`MatMulNBits` compute on f32 activations (`accuracy_level` 1) for some kinds of matrices
and on int8 ones (4, the `q4` graph's own) for the rest: `q4` keeps the source's blocks
exactly, so each variant's divergence from `f32` is what rounding the activations of the
kinds left on int8 costs. With `--keep DIR` the copies stay in DIR/q4-budget/ for
`bench/step_formats.py --dir` to time.
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


# `--q4-budget`: the `MatMulNBits` node names of each kind of matrix, and the variants (the
# kinds computed on f32 activations; every other kind on int8 ones).
KINDS = {"q|k|v": "attn_qkv/", "o": "attn_output/", "gate|up": "ffn_gate_up/",
         "down": "ffn_down/", "head": "head/"}
BUDGET = [(), ("q|k|v",), ("o",), ("gate|up",), ("down",), ("head",), ("q|k|v", "gate|up"),
          ("q|k|v", "down"), ("q|k|v", "o", "gate|up", "down"), tuple(KINDS)]


def q4_variant(q4: Path, out: Path, kinds: tuple[str, ...]) -> Path:
    """A copy of the `q4` import in `q4`, written to `out`, whose `MatMulNBits` of `kinds`
    compute on f32 activations and the others on int8 ones."""
    import onnx

    model = onnx.load(str(q4 / "model.onnx"))
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        level = 1 if any(KINDS[k] in node.name for k in kinds) else 4
        for attribute in node.attribute:
            if attribute.name == "accuracy_level":
                attribute.i = level
    out.mkdir(parents=True, exist_ok=True)
    for f in q4.iterdir():
        if f.name != "model.onnx":
            (out / f.name).write_bytes(f.read_bytes())
    onnx.save(model, str(out / "model.onnx"))
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
    ap.add_argument("--q4-budget", action="store_true",
                    help="also measure q4 with f32 activations for other kinds of matrices")
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
        dirs = {fmt: root / fmt for fmt in formats}
        if args.q4_budget:
            import_format(gguf, "q4", root / "q4")
            for kinds in BUDGET:
                slug = "-".join(kinds).replace("|", "") or "none"
                name = f"q4, f32 activations: {' '.join(kinds) or 'none'}"
                dirs[name] = q4_variant(root / "q4", root / "q4-budget" / slug, kinds)
        decoders = {name: Decoder(d) for name, d in dirs.items()}
        llm = Llama(model_path=str(gguf), n_ctx=args.window + 16, n_threads=THREADS,
                    logits_all=True, verbose=False)
        tallies = {name: Tally() for name in [*decoders, "llama.cpp"]}
        for ids in texts:
            exact = decoders["f32"].prefill(ids)
            for name, decoder in decoders.items():
                tallies[name].add(ids, exact if name == "f32" else decoder.prefill(ids), exact)
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
