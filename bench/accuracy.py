#!/usr/bin/env python3
"""Accuracy of each weight format over long texts: top-1 agreement with llama.cpp and with our
own `f32` import, and the mean KL divergence from the `f32` import; `--int8-budget` also splits
the `int8` format's divergence into its sources.

    cargo build --release -p gateway-bin
    .venv/bin/python bench/accuracy.py [--formats q4,int8] [--window 320] [--gguf PATH]
        [--keep DIR] [--int8-budget]

llama.cpp comes from `llama-cpp-python` (built from its sdist, see
tests/python/llamacpp_agreement.py). The texts are long, stable files every Debian machine of
this kind holds: three license texts from base-files and three modules of Python's standard
library. Two windows of `--window` tokens per file (at token 0 and at 2 × window), each fed
whole (teacher forcing), every position compared: 3,840 positions by default, four times the
suite's gate (tests/data/llamacpp-smollm2.json), so a difference of 0.5 % is about 19
positions rather than 5.

`--int8-budget` builds three variants of the `int8` graph in a temporary directory and
measures them the same way:

- exact activations: every `QuantizeLinear` + `MatMulIntegerToFloat` replaced by an f32
  `MatMul` with the same int8 weights (dequantized), so only the weights are rounded;
- exact activations and head: also the tied head's `MatMulNBits` (int8 activations per block
  of 32) replaced by an f32 `MatMul` on the same 8-bit table, dequantized;
- exact projections: every projection's weights recomputed from the `f32` import in the
  rotated basis (`Rᵀ·diag(norm)·W`, `W·R`, `Hᵀ·W·R`, docs/model-format.md) on f32
  activations, so only the head still rounds;
- the same for five layers at a time, to see whether some layers matter more.

The differences between the rows are what per-row activation quantization, per-column weight
requantization and the head each cost.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "python"))
from llamacpp_agreement import llama_logits  # noqa: E402
from quality_measure import SOURCES, THREADS  # noqa: E402
from step_formats import default_gguf, import_format  # noqa: E402
from test_llama_import import Decoder, mean_kl  # noqa: E402

PROJECTION = re.compile(r"blk\.(\d+)\.(attn_qkv|attn_output|ffn_gate_up|ffn_down)/out$")


def windows(tokenizer, width: int) -> list[list[int]]:
    """Two windows of `width` token ids from every file of `SOURCES`."""
    out = []
    for source in SOURCES:
        ids = tokenizer.encode(source.read_text()).ids
        for start in (0, 2 * width):
            if len(ids) < start + width:
                sys.exit(f"{source} has fewer than {start + width} tokens")
            out.append(ids[start:start + width])
    return out


def measure(model: Decoder, texts: list[list[int]], llama_top1, f32_logits) -> dict:
    """Top-1 agreement with llama.cpp and with the f32 import, and mean KL(f32 || model)."""
    agree_llama = agree_f32 = total = 0
    kls = []
    for ids, theirs, exact in zip(texts, llama_top1, f32_logits):
        logits = model.prefill(ids)
        top1 = logits.argmax(-1)
        agree_llama += int((top1 == theirs).sum())
        agree_f32 += int((top1 == exact.argmax(-1)).sum())
        total += len(ids)
        kls.append(mean_kl(exact, logits))
    return {"llama": agree_llama, "f32": agree_f32, "total": total, "kl": float(np.mean(kls))}


def row(name: str, r: dict) -> str:
    t = r["total"]
    return (f"| {name} | {r['llama']}/{t} = {100 * r['llama'] / t:.2f} % | "
            f"{r['f32']}/{t} = {100 * r['f32'] / t:.2f} % | {r['kl']:.4f} |")


class Int8Graph:
    """An `int8` import's graph, edited into the `--int8-budget` variants."""

    def __init__(self, directory: Path, f32_directory: Path):
        self.directory = directory
        self.weight_errors: dict[str, float] = {}  # per projection node, whichever variant
        self.f32 = {i.name: numpy_helper.to_array(i)
                    for i in onnx.load(str(f32_directory / "model.onnx")).graph.initializer}

    def load(self):
        """A fresh copy of the graph and its initializers as arrays."""
        model = onnx.load(str(self.directory / "model.onnx"))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        return model, inits

    def exact_weights(self, inits: dict, nodes: dict, layer: int, kind: str) -> np.ndarray:
        """Projection `kind` of `layer` from the f32 import, in the int8 graph's rotated basis."""
        w = self.f32[f"blk.{layer}.{kind}.weight.T"].astype(np.float64)
        rotation = inits[nodes["embed/out"].input[1]].astype(np.float64)
        if kind in ("attn_qkv", "ffn_gate_up"):
            norm = "attn_norm" if kind == "attn_qkv" else "ffn_norm"
            return rotation.T @ (self.f32[f"blk.{layer}.{norm}.weight"][:, None] * w)
        if kind == "attn_output":
            return w @ rotation
        inner = inits[nodes[f"blk.{layer}/act_rotated_inner"].input[1]].astype(np.float64)
        outer = inits[nodes[f"blk.{layer}/act_rotated"].input[0]].astype(np.float64)
        ffn = w.shape[0]
        basis = np.eye(ffn).reshape(ffn, -1, outer.shape[0], inner.shape[0])
        blocks = np.einsum("ij,nbjk,kl->nbil", outer, basis, inner).reshape(ffn, ffn)
        return blocks.T @ w @ rotation

    def variant(self, out: Path, *, weights: str, head: bool,
                layers: range | None = None) -> Path:
        """Writes a variant to `out`: the projections of `layers` (default: all) on f32
        activations with the int8 weights (`weights="int8"`) or the exact ones (`"exact"`), and
        the head in f32 if `head`."""
        model, inits = self.load()
        graph = model.graph
        nodes = {n.name: n for n in graph.node}
        producer = {o: n for n in graph.node for o in n.output}
        edited = []
        for node in graph.node:
            match = PROJECTION.match(node.name)
            chosen = match and (layers is None or int(match[1]) in layers)
            if node.op_type == "MatMulIntegerToFloat" and chosen:
                rounded = inits[node.input[1]].astype(np.float32) * inits[node.input[3]][None, :]
                w = rounded
                if weights == "exact":
                    w = self.exact_weights(inits, nodes, int(match[1]), match[2])
                    self.weight_errors[node.name] = float(
                        np.linalg.norm(rounded - w) / np.linalg.norm(w))
                name = f"{node.name}/f32_weights"
                graph.initializer.append(numpy_helper.from_array(w.astype(np.float32), name))
                unquantized = producer[node.input[0]].input[0]
                edited.append(helper.make_node("MatMul", [unquantized, name], list(node.output)))
            elif head and node.name == "head/nbits":
                quants, scales = inits[node.input[1]], inits[node.input[2]]
                table = (quants.astype(np.float32) - 128.0) * scales[:, :, None]
                graph.initializer.append(numpy_helper.from_array(
                    np.ascontiguousarray(table.reshape(quants.shape[0], -1).T), "head/f32"))
                edited.append(helper.make_node("MatMul", [node.input[0], "head/f32"],
                                               list(node.output)))
            else:
                edited.append(node)
        del graph.node[:]
        graph.node.extend(edited)
        out.mkdir(parents=True, exist_ok=True)
        for f in self.directory.iterdir():
            if f.name != "model.onnx":
                (out / f.name).write_bytes(f.read_bytes())
        onnx.save(model, str(out / "model.onnx"), save_as_external_data=True,
                  location="model.onnx.data")
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default="q4,int8")
    ap.add_argument("--window", type=int, default=320)
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="import into (and reuse) DIR/FORMAT")
    ap.add_argument("--int8-budget", action="store_true")
    args = ap.parse_args()

    from llama_cpp import Llama
    from tokenizers import Tokenizer

    gguf = args.gguf or default_gguf()
    formats = args.formats.split(",")
    if args.int8_budget and "int8" not in formats:
        formats.append("int8")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        dirs = {fmt: root / fmt for fmt in ["f32", *formats]}
        for fmt, directory in dirs.items():
            import_format(gguf, fmt, directory)
        texts = windows(Tokenizer.from_file(str(dirs["f32"] / "tokenizer.json")), args.window)
        llm = Llama(model_path=str(gguf), n_ctx=args.window + 16, n_threads=THREADS,
                    logits_all=True, verbose=False)
        llama_top1 = [llama_logits(llm, ids).argmax(-1) for ids in texts]
        f32 = Decoder(dirs["f32"])
        f32_logits = [f32.prefill(ids) for ids in texts]
        results = {fmt: measure(Decoder(dirs[fmt]), texts, llama_top1, f32_logits)
                   for fmt in ["f32", *formats]}
        if args.int8_budget:
            graph = Int8Graph(dirs["int8"], dirs["f32"])
            variants = {
                "int8, exact activations": dict(weights="int8", head=False),
                "int8, exact activations and head": dict(weights="int8", head=True),
                "int8, exact projections": dict(weights="exact", head=False),
            }
            for first in range(0, json.loads((dirs["int8"] / "model-card.json").read_text())
                               ["num_layers"], 5):
                variants[f"int8, exact projections in layers {first}-{first + 4}"] = dict(
                    weights="exact", head=False, layers=range(first, first + 5))
            for i, (name, spec) in enumerate(variants.items()):
                directory = graph.variant(Path(tmp) / f"variant{i}", **spec)
                results[name] = measure(Decoder(directory), texts, llama_top1, f32_logits)

    print(f"{len(texts)} windows of {args.window} tokens ({', '.join(s.name for s in SOURCES)}); "
          f"llama.cpp and ONNX Runtime with {THREADS} threads\n")
    print("| graph | top-1 = llama.cpp | top-1 = our f32 | mean KL(f32 ‖ graph) |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(row(name, r))
    if args.int8_budget:
        errors = np.array(list(graph.weight_errors.values()))
        print(f"\nint8 weights against the exact rotated ones, relative (Frobenius) error per "
              f"matrix: median {100 * np.median(errors):.2f} %, range "
              f"{100 * errors.min():.2f}-{100 * errors.max():.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
