"""A NumPy reference forward pass of a LLaMA-family decoder (Hugging Face conventions:
rotate-half rotary embedding, RMSNorm, SiLU-gated MLP, grouped-query attention), independent
of the importer: weights come from a Hugging Face safetensors checkpoint, or from a GGUF file
dequantized by the `gguf` package with llama.cpp's Q/K row permutation undone.

`forward(weights, cfg, ids)` returns the logits of every position of one sequence
(float64 arithmetic on float32 weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Config:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_theta: float
    eps: float
    vocab: int


def load_hf(directory: Path) -> tuple[dict[str, np.ndarray], Config]:
    """Weights (Hugging Face names) and config of a checkpoint directory."""
    from safetensors.numpy import load_file

    c = json.loads((directory / "config.json").read_text())
    heads = c["num_attention_heads"]
    cfg = Config(
        hidden=c["hidden_size"], layers=c["num_hidden_layers"], heads=heads,
        kv_heads=c.get("num_key_value_heads", heads),
        head_dim=c.get("head_dim", c["hidden_size"] // heads),
        rope_theta=c.get("rope_theta", 10000.0), eps=c.get("rms_norm_eps", 1e-6),
        vocab=c["vocab_size"],
    )
    return load_file(str(directory / "model.safetensors")), cfg


GGUF_TO_HF = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undoes llama.cpp's Q/K row permutation (interleaved pairs back to rotate-half)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_gguf(path: Path) -> tuple[dict[str, np.ndarray], Config]:
    """Weights (Hugging Face names, dequantized to f32) and config of a llama GGUF file."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    r = GGUFReader(str(path))
    field = lambda k: r.fields[k].contents()  # noqa: E731
    arch = field("general.architecture")
    heads = int(field(f"{arch}.attention.head_count"))
    kv = int(field(f"{arch}.attention.head_count_kv"))
    hidden = int(field(f"{arch}.embedding_length"))
    weights: dict[str, np.ndarray] = {}
    for t in r.tensors:
        shape = [int(d) for d in reversed(t.shape)]
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        name = t.name
        if name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            hf = "model.norm.weight"
        elif name == "output.weight":
            hf = "lm_head.weight"
        else:
            _, layer, part, suffix = name.split(".")
            if part == "attn_q":
                w = _unpermute(w, heads)
            elif part == "attn_k":
                w = _unpermute(w, kv)
            hf = f"model.layers.{layer}.{GGUF_TO_HF[part]}.{suffix}"
        weights[hf] = w
    cfg = Config(
        hidden=hidden, layers=int(field(f"{arch}.block_count")), heads=heads, kv_heads=kv,
        head_dim=hidden // heads, rope_theta=float(field(f"{arch}.rope.freq_base")),
        eps=float(field(f"{arch}.attention.layer_norm_rms_epsilon")),
        vocab=weights["model.embed_tokens.weight"].shape[0],
    )
    return weights, cfg


def _rms(x: np.ndarray, g: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def _rotary(x: np.ndarray, theta: float) -> np.ndarray:
    """Rotate-half RoPE of x (seq, heads, dim) at positions 0..seq."""
    seq, _, dim = x.shape
    inv = theta ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    ang = np.outer(np.arange(seq), inv)
    cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None]
    x1, x2 = x[..., : dim // 2], x[..., dim // 2:]
    return x * cos + np.concatenate([-x2, x1], -1) * sin


def forward(w: dict[str, np.ndarray], cfg: Config, ids: list[int]) -> np.ndarray:
    """Logits (seq, vocab) of token ids `ids`."""
    s, d = len(ids), cfg.head_dim
    group = cfg.heads // cfg.kv_heads
    x = w["model.embed_tokens.weight"][ids].astype(np.float64)
    causal = np.triu(np.full((s, s), -np.inf), 1)
    for i in range(cfg.layers):
        p = f"model.layers.{i}."
        lin = lambda a, n: a @ w[p + n + ".weight"].T.astype(np.float64) + (  # noqa: E731
            w[p + n + ".bias"] if p + n + ".bias" in w else 0.0)
        n = _rms(x, w[p + "input_layernorm.weight"], cfg.eps)
        q = _rotary(lin(n, "self_attn.q_proj").reshape(s, cfg.heads, d), cfg.rope_theta)
        k = _rotary(lin(n, "self_attn.k_proj").reshape(s, cfg.kv_heads, d), cfg.rope_theta)
        v = lin(n, "self_attn.v_proj").reshape(s, cfg.kv_heads, d)
        out = np.empty((s, cfg.heads, d))
        for h in range(cfg.heads):
            scores = q[:, h] @ k[:, h // group].T / np.sqrt(d) + causal
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            out[:, h] = (scores / scores.sum(-1, keepdims=True)) @ v[:, h // group]
        x = x + lin(out.reshape(s, -1), "self_attn.o_proj")
        n = _rms(x, w[p + "post_attention_layernorm.weight"], cfg.eps)
        gate = lin(n, "mlp.gate_proj")
        x = x + lin(gate / (1 + np.exp(-gate)) * lin(n, "mlp.up_proj"), "mlp.down_proj")
    x = _rms(x, w["model.norm.weight"], cfg.eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T.astype(np.float64)
