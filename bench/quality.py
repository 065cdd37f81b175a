#!/usr/bin/env python3
"""Quality of each weight format the way the field measures it: perplexity over long held-out
texts, and the mean and 99th-percentile KL divergence of each format's next-token distribution
from the `f32` graph of the same weights, next to llama.cpp on the same GGUF; and whether each
format passes the import gate (perplexity within 1 % of the `f32` graph's, mean KL no larger
than llama.cpp's own divergence from `f32`, measured in the same run).

    cargo build --release -p gateway-bin
    CMAKE_ARGS="-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON \
        -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=ON" \
        .venv/bin/pip install --no-binary llama-cpp-python llama-cpp-python==0.3.36  # ~10 min
    .venv/bin/python bench/quality.py [--formats q4,int8,f16] [--window 1024] [--gguf PATH]
        [--keep DIR] [--json OUT]

llama.cpp is built without `GGML_NATIVE`: that compiles its AMX kernels in, and on a CPU whose
kernel does not enable AMX for user space the first evaluation dies with an illegal instruction.
The texts and figures are `tests/python/quality_measure.py`'s (the suite's gate test measures
our formats the same way, against the llama.cpp bound recorded there).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "python"))
from llamacpp_agreement import llama_logits  # noqa: E402
from quality_measure import THREADS, WINDOW, measure, passes_gate, windows  # noqa: E402
from step_formats import default_gguf, import_format  # noqa: E402
from test_llama_import import Decoder  # noqa: E402


def table(results: dict, passes: dict) -> str:
    """The results as a Markdown table, with each format's gate verdict."""
    lines = ["| engine | perplexity | vs f32 | KL mean | KL p99 | top-1 vs f32 | gate |",
             "|---|---|---|---|---|---|---|"]
    base = results["f32"]["perplexity"]
    for name, r in results.items():
        verdict = {True: "passes", False: "fails"}.get(passes.get(name), "—")
        lines.append(
            f"| {name} | {r['perplexity']:.4f} | {100 * (r['perplexity'] / base - 1):+.2f} % | "
            f"{r['kl_mean']:.5f} | {r['kl_p99']:.4f} | {100 * r['top1_vs_f32']:.2f} % | "
            f"{verdict} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default="q4,int8,f16")
    ap.add_argument("--window", type=int, default=WINDOW)
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
        results = measure(decoders, texts, {"llama.cpp": lambda ids: llama_logits(llm, ids)})
    bound = results["llama.cpp"]["kl_mean"]
    passes = {name: passes_gate(r, results["f32"], bound)
              for name, r in results.items() if name not in ("f32", "llama.cpp")}
    print(f"{len(texts)} windows of {args.window} tokens, {gguf.name}\n")
    print(table(results, passes))
    if args.json:
        args.json.write_text(json.dumps({"window": args.window, "gguf": gguf.name,
                                         "results": results, "gate": passes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
