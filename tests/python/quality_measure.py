"""Quality of a weight format the way the field measures it: perplexity over long held-out
texts, and the KL divergence of each position's next-token distribution from the `f32` graph
of the same weights. Shared by the import gate's test (`test_llama_import.py`) and
`bench/quality.py`, which also measures llama.cpp on the same GGUF.

The texts are six long files every Debian machine with Python holds, none of them chat data:
three license texts from base-files and three modules of Python's standard library, one
window from the start of each, fed whole (teacher forcing). Perplexity is exp of the mean
negative log-likelihood of each next token (a window's first token has no prediction); KL is
KL(f32 ‖ format) per position, in nats; top-1 is the share of positions whose likeliest token
equals the `f32` graph's.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np

LICENSES = Path("/usr/share/common-licenses")
STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = [LICENSES / "Apache-2.0", LICENSES / "GPL-3", LICENSES / "Artistic",
           STDLIB / "json" / "decoder.py", STDLIB / "textwrap.py", STDLIB / "argparse.py"]

WINDOW = 1024  # tokens per text: 6 × 1,024 = 6,144 positions
PERPLEXITY_MARGIN = 0.01  # a format's perplexity may exceed the f32 graph's by at most 1 %
# llama.cpp's own mean KL(f32 ‖ llama.cpp) on SmolLM2's Q4_1 GGUF over these windows
# (llama-cpp-python 0.3.36, `bench/quality.py`: 0.00327): the gate's bound on a format's mean KL.
LLAMA_CPP_KL_MEAN = 0.0032
CHUNK = 128  # positions per log-softmax, to bound the float64 working set
THREADS = 2  # intra-op threads, as `test_llama_import.Decoder` runs ONNX Runtime


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Log-probabilities of logits `z` along the last axis, in float64."""
    z = z.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


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
        """Perplexity, mean and 99th-percentile KL, top-1 agreement and the position count."""
        nll, kl = np.concatenate(self.nll), np.concatenate(self.kl)
        return {
            "perplexity": float(np.exp(nll.mean())),
            "kl_mean": float(kl.mean()),
            "kl_p99": float(np.percentile(kl, 99)),
            "top1_vs_f32": self.agree / self.positions,
            "positions": self.positions,
        }


def windows(tokenizer, width: int = WINDOW) -> list[list[int]]:
    """The first `width` token ids of every file of `SOURCES`."""
    out = []
    for source in SOURCES:
        ids = tokenizer.encode(source.read_text()).ids
        if len(ids) < width:
            raise ValueError(f"{source} has fewer than {width} tokens")
        out.append(ids[:width])
    return out


def passes_gate(result: dict, f32: dict, kl_bound: float = LLAMA_CPP_KL_MEAN) -> bool:
    """Whether a format's `result` passes the import gate: perplexity within
    `PERPLEXITY_MARGIN` of the `f32` graph's and mean KL from it no larger than `kl_bound`."""
    ceiling = f32["perplexity"] * (1 + PERPLEXITY_MARGIN)
    return result["perplexity"] <= ceiling and result["kl_mean"] <= kl_bound


def measure(decoders: dict, texts: list[list[int]], others: dict | None = None) -> dict:
    """The summary of every decoder of `decoders` (name → object with `prefill(ids)`; one
    named "f32" is the reference) and of every function of `others` (name → ids → logits)."""
    engines = {name: d.prefill for name, d in decoders.items() if name != "f32"}
    engines.update(others or {})
    tallies = {name: Tally() for name in ["f32", *engines]}
    for ids in texts:
        exact = decoders["f32"].prefill(ids)
        tallies["f32"].add(ids, exact, exact)
        for name, logits in engines.items():
            tallies[name].add(ids, logits(ids), exact)
    return {name: tally.summary() for name, tally in tallies.items()}
