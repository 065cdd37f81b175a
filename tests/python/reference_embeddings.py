"""Reference sentence embeddings of a BERT-family safetensors checkpoint, in pure NumPy.

Independent of the gateway's ONNX graph: it reads the checkpoint with the `safetensors` NumPy
API, tokenizes with the `tokenizers` package from `tokenizer.json` (truncated to the
sentence-transformers `max_seq_length`), runs the BERT encoder in float64, then pools (mean or
CLS, from `1_Pooling/config.json`) and L2-normalises when `modules.json` lists a Normalize
module.

Library use:  ``embed(model_src_dir, texts) -> np.ndarray`` of shape ``[len(texts), hidden]``.
CLI:          ``python reference_embeddings.py MODEL_DIR "text one" "text two" ...`` prints the
              embeddings' first values and the pairwise cosine similarities.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

try:  # exact erf when SciPy is present, else Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7)
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover - depends on the environment

    def _erf(x: np.ndarray) -> np.ndarray:
        sign = np.sign(x)
        x = np.abs(x)
        t = 1.0 / (1.0 + 0.3275911 * x)
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        return sign * (1.0 - poly * np.exp(-x * x))


@dataclass
class Model:
    """A loaded checkpoint: config, float64 weights (prefix stripped) and pipeline settings."""

    config: dict
    weights: dict[str, np.ndarray]
    tokenizer: Tokenizer
    max_seq_length: int
    pooling: str  # "mean" or "cls"
    normalize: bool


def _read_json(path: Path) -> dict | list | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load(model_dir: str | Path) -> Model:
    """Loads config, weights, tokenizer and sentence-transformers settings from `model_dir`."""
    d = Path(model_dir)
    config = _read_json(d / "config.json")
    raw = load_file(str(d / "model.safetensors"))
    weights = {}
    for name, value in raw.items():
        for prefix in ("bert.", "roberta.", "model."):
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        weights[name] = value.astype(np.float64)

    st = _read_json(d / "sentence_bert_config.json") or {}
    max_len = min(st.get("max_seq_length", config["max_position_embeddings"]), config["max_position_embeddings"])
    modules = _read_json(d / "modules.json") or []
    pooling_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), "1_Pooling")
    pooling_cfg = _read_json(d / pooling_dir / "config.json") or {}
    pooling = "cls" if pooling_cfg.get("pooling_mode_cls_token") else "mean"
    normalize = any(m["type"].endswith("Normalize") for m in modules)

    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return Model(config, weights, tok, max_len, pooling, normalize)


def tokenize(model: Model, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(input_ids, attention_mask, token_type_ids)` as int64 `[batch, longest]`, right-padded."""
    encs = model.tokenizer.encode_batch(texts)
    longest = max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, e in enumerate(encs):
        n = len(e.ids)
        ids[i, :n] = e.ids
        mask[i, :n] = e.attention_mask
        types[i, :n] = e.type_ids
    return ids, mask, types


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _linear(x: np.ndarray, weights: dict, name: str) -> np.ndarray:
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def forward(model: Model, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
    """The encoder's last hidden state, float64 `[batch, sequence, hidden]`."""
    c, w = model.config, model.weights
    eps = c.get("layer_norm_eps", 1e-12)
    heads = c["num_attention_heads"]
    batch, seq = ids.shape
    hidden = c["hidden_size"]
    head_dim = hidden // heads
    offset = c.get("pad_token_id", 1) + 1 if c["model_type"] in ("roberta", "xlm-roberta", "camembert") else 0

    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.token_type_embeddings.weight"][types]
        + w["embeddings.position_embeddings.weight"][offset : offset + seq][None]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9)

    def split(t: np.ndarray) -> np.ndarray:
        return t.reshape(batch, seq, heads, head_dim).transpose(0, 2, 1, 3)

    for i in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = split(_linear(x, w, f"{p}.attention.self.query"))
        k = split(_linear(x, w, f"{p}.attention.self.key"))
        v = split(_linear(x, w, f"{p}.attention.self.value"))
        probs = _softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + bias)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
        attn = _linear(ctx, w, f"{p}.attention.output.dense")
        attn = _layer_norm(attn + x, w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"], eps)
        y = _linear(attn, w, f"{p}.intermediate.dense")
        y = 0.5 * y * (1.0 + _erf(y / math.sqrt(2.0)))
        y = _linear(y, w, f"{p}.output.dense")
        x = _layer_norm(y + attn, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], eps)
    return x


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """Sentence vectors from token vectors: masked mean or CLS, then optional L2 norm."""
    if pooling == "cls":
        out = hidden[:, 0]
    else:
        m = mask[..., None].astype(hidden.dtype)
        out = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    if normalize:
        out = out / np.clip(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12, None)
    return out


def embed(model_src_dir: str | Path | Model, texts: list[str]) -> np.ndarray:
    """Sentence embeddings of `texts`, `[len(texts), hidden]` float64, each text on its own
    (no padding), exactly as sentence-transformers' pipeline computes them."""
    model = model_src_dir if isinstance(model_src_dir, Model) else load(model_src_dir)
    rows = []
    for text in texts:
        ids, mask, types = tokenize(model, [text])
        rows.append(pool(forward(model, ids, mask, types), mask, model.pooling, model.normalize)[0])
    return np.stack(rows)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    vecs = embed(argv[0], argv[1:])
    for text, v in zip(argv[1:], vecs):
        print(f"{text[:40]!r:44} {np.array2string(v[:4], precision=5)} ...")
    norms = np.linalg.norm(vecs, axis=1)
    print("cosine:\n", np.array2string(vecs @ vecs.T / np.outer(norms, norms), precision=4))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
