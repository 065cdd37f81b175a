#!/usr/bin/env python3
"""Generate a tiny LLaMA-shaped checkpoint with random weights, as GGUF and as Hugging Face files.

Usage: make_tiny_llama.py OUT_DIR [--seed N]

Writes into OUT_DIR (under 1 MB in all):
- `tiny-llama.gguf`: architecture `llama`, hidden 64, 2 blocks, 4 heads / 2 KV heads,
  FFN 256 (so that `ffn_down` rows are 256 long, the K-quant super-block size), tied output
  head, byte-level BPE tokenizer (`tokenizer.ggml.model = gpt2`, `pre = smollm`), a ChatML
  chat template. Tensors cover F32, F16, BF16, Q8_0, Q4_0, Q4_1 (quantized with the `gguf`
  package), and Q4_K and Q6_K (random blocks with sane scales: the `gguf` package cannot
  quantize K-quants).
- `hf/`: `model.safetensors` (f32), `config.json`, `tokenizer.json`, `tokenizer_config.json`:
  the same model in Hugging Face layout. Its weights are the GGUF tensors dequantized, with
  llama.cpp's Q/K row permutation undone, so both files describe exactly the same function.
- `manifest.json`: per GGUF tensor its ggml type and Hugging Face name.

Needs numpy, safetensors, tokenizers and gguf (PyPI).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, CONTEXT = 64, 2, 4, 2, 256, 256
HEAD_DIM = HIDDEN // HEADS
ROPE_THETA, RMS_EPS, VOCAB_TARGET = 10000.0, 1e-5, 300
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "the cat sat on the mat, and the dog sat on the log.",
    "def hello(name):\n    return 'Hello, ' + name\n",
    "for i in range(10):\n    print(i * 2)\n",
    "Numbers: 1234567890, 3.14159, 2024-11-26.",
    "Grüße aus München! Café, naïve, façade — 東京 🚀",
] * 20

# GGUF type of each tensor (GGUF names; `blk.N.` prefix per layer).
LAYER_TYPES = [
    {"attn_q": T.Q4_0, "attn_k": T.Q4_1, "attn_v": T.Q8_0, "attn_output": T.F16,
     "ffn_gate": T.Q4_1, "ffn_up": T.Q4_0, "ffn_down": T.Q6_K},
    {"attn_q": T.F16, "attn_k": T.BF16, "attn_v": T.Q4_1, "attn_output": T.Q4_0,
     "ffn_gate": T.Q8_0, "ffn_up": T.F32, "ffn_down": T.Q4_K},
]
HF_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


def train_tokenizer() -> Tokenizer:
    """A byte-level BPE with ~300 tokens, pre-tokenized like SmolLM2 (digits split)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET, special_tokens=SPECIAL, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row permutation (HF rotate-half layout to interleaved pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of `permute`."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_k_blocks(rng: np.random.Generator, rows: int, cols: int, qtype: T) -> np.ndarray:
    """Random Q4_K / Q6_K super-blocks whose weights are of order 0.05."""
    n = rows * cols // 256
    if qtype == T.Q4_K:
        b = rng.integers(0, 256, size=(n, 144), dtype=np.uint8)
        b[:, 0:2] = np.full((n, 1), 1.2e-4, np.float16).view(np.uint8)  # d
        b[:, 2:4] = np.full((n, 1), 4e-4, np.float16).view(np.uint8)  # dmin
    else:
        b = rng.integers(0, 256, size=(n, 210), dtype=np.uint8)
        b[:, 192:208] = rng.integers(-40, 41, size=(n, 16)).astype(np.int8).view(np.uint8)
        b[:, 208:210] = np.full((n, 1), 5e-5, np.float16).view(np.uint8)  # d
    return b.reshape(rows, -1)


def encode(rng: np.random.Generator, w: np.ndarray, qtype: T) -> tuple[np.ndarray, np.ndarray]:
    """(GGUF data, the f32 values it stores) for HF-layout weight `w`."""
    if qtype == T.F32:
        data = w.astype(np.float32)
    elif qtype == T.F16:
        data = w.astype(np.float16)
    elif qtype in (T.Q4_K, T.Q6_K):
        data = random_k_blocks(rng, w.shape[0], w.shape[1], qtype)
    else:
        data = quantize(w.astype(np.float32), qtype)
    if qtype in (T.F32, T.F16):
        return data, data.astype(np.float32)
    return data, dequantize(data, qtype).astype(np.float32).reshape(w.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out: Path = args.out
    hf = out / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    tok = train_tokenizer()
    tok.save(str(hf / "tokenizer.json"))
    tj = json.loads((hf / "tokenizer.json").read_text())
    vocab = {v: k for k, v in tj["model"]["vocab"].items()}
    tokens = [vocab[i] for i in range(len(vocab))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    n_vocab = len(tokens)

    def normal(*shape: int, scale: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = GGUFWriter(str(out / "tiny-llama.gguf"), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(LAYERS)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIAL else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    hf_weights: dict[str, np.ndarray] = {}
    manifest: dict[str, dict[str, str]] = {}

    def put(gguf_name: str, hf_name: str, value: np.ndarray, qtype: T, heads: int = 0) -> None:
        stored = permute(value, heads) if heads else value
        data, values = encode(rng, stored, qtype)
        w.add_tensor(gguf_name, data, raw_dtype=None if qtype in (T.F32, T.F16) else qtype)
        hf_weights[hf_name] = np.ascontiguousarray(unpermute(values, heads) if heads else values)
        manifest[gguf_name] = {"type": qtype.name, "hf_name": hf_name}

    put("token_embd.weight", "model.embed_tokens.weight", normal(n_vocab, HIDDEN, scale=0.5), T.Q8_0)
    for i, types in enumerate(LAYER_TYPES):
        pre = f"model.layers.{i}."
        shapes = {
            "attn_q": (HIDDEN, HIDDEN), "attn_k": (KV_HEADS * HEAD_DIM, HIDDEN),
            "attn_v": (KV_HEADS * HEAD_DIM, HIDDEN), "attn_output": (HIDDEN, HIDDEN),
            "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN), "ffn_down": (HIDDEN, FFN),
        }
        for norm in ("attn_norm", "ffn_norm"):
            put(f"blk.{i}.{norm}.weight", pre + HF_NAMES[norm] + ".weight",
                1.0 + normal(HIDDEN, scale=0.1), T.F32)
        for part, shape in shapes.items():
            heads = {"attn_q": HEADS, "attn_k": KV_HEADS}.get(part, 0)
            put(f"blk.{i}.{part}.weight", pre + HF_NAMES[part] + ".weight", normal(*shape),
                types[part], heads)
    put("output_norm.weight", "model.norm.weight", 1.0 + normal(HIDDEN, scale=0.1), T.F32)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    save_file(hf_weights, str(hf / "model.safetensors"))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "vocab_size": n_vocab,
        "max_position_embeddings": CONTEXT, "rope_theta": ROPE_THETA, "rms_norm_eps": RMS_EPS,
        "hidden_act": "silu", "tie_word_embeddings": True, "attention_bias": False,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "torch_dtype": "float32",
    }
    (hf / "config.json").write_text(json.dumps(config, indent=2))
    (hf / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>", "add_bos_token": False, "chat_template": CHAT_TEMPLATE,
        "model_max_length": CONTEXT, "tokenizer_class": "GPT2Tokenizer",
    }, indent=2))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    print(json.dumps({"gguf": str(out / "tiny-llama.gguf"), "hf": str(hf), "vocab": n_vocab}))


if __name__ == "__main__":
    main()
