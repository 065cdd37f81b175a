//! Tests of the decoder graph writer on tiny checkpoints built here (a GGUF file with Q4_0,
//! Q4_1, Q8_0, F16 and F32 tensors, and a safetensors file): the written model decodes with
//! prost and has the contract's inputs, outputs, operators and weight types. The numerical
//! checks (ONNX Runtime against a NumPy reference) are in `tests/python/test_llama_import.py`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use half::f16;
use prost::Message;

use super::super::gguf::tests::{kv_f32, kv_str, kv_u32, save, write_gguf, TestTensor};
use super::super::gguf::GgufFile;
use super::super::onnx_proto::{tensor_proto::DataType, ModelProto};
use super::super::weights::SafetensorsFile;
use super::*;

const HIDDEN: usize = 64;
const FFN: usize = 96;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const VOCAB: usize = 40;

/// Deterministic pseudo-random bytes.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// `rows × cols` weights stored as ggml type `ty` (0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0).
fn tensor_data(ty: u32, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let n = rows * cols;
    let raw = bytes(seed, n * 2);
    let small = |i: usize| (f32::from(raw[i]) - 128.0) / 1000.0;
    let block = |head: &[f32], len: usize, b: usize| {
        let mut out: Vec<u8> = head
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        out.extend(&raw[b * len..b * len + len]);
        out
    };
    match ty {
        0 => (0..n)
            .flat_map(|i| (1.0 + small(i)).to_le_bytes())
            .collect(),
        1 => (0..n)
            .flat_map(|i| f16::from_f32(small(i)).to_le_bytes())
            .collect(),
        2 => (0..n / 32).flat_map(|b| block(&[0.01], 16, b)).collect(),
        3 => (0..n / 32)
            .flat_map(|b| block(&[0.01, -0.08], 16, b))
            .collect(),
        8 => (0..n / 32).flat_map(|b| block(&[0.001], 32, b)).collect(),
        _ => panic!("unsupported test type {ty}"),
    }
}

/// The tensors of a one-layer model: (GGUF name, [rows, cols], ggml type).
fn layout() -> Vec<(&'static str, [usize; 2], u32)> {
    let kv = KV_HEADS * HEAD_DIM;
    vec![
        ("token_embd.weight", [VOCAB, HIDDEN], 8),
        ("blk.0.attn_norm.weight", [1, HIDDEN], 0),
        ("blk.0.attn_q.weight", [HIDDEN, HIDDEN], 2),
        ("blk.0.attn_k.weight", [kv, HIDDEN], 3),
        ("blk.0.attn_v.weight", [kv, HIDDEN], 8),
        ("blk.0.attn_output.weight", [HIDDEN, HIDDEN], 1),
        ("blk.0.ffn_norm.weight", [1, HIDDEN], 0),
        ("blk.0.ffn_gate.weight", [FFN, HIDDEN], 3),
        ("blk.0.ffn_up.weight", [FFN, HIDDEN], 2),
        ("blk.0.ffn_down.weight", [HIDDEN, FFN], 0),
        ("output_norm.weight", [1, HIDDEN], 0),
    ]
}

/// Writes the tiny model as GGUF into `dir`, leaving out tensor `skip`.
fn tiny_gguf(dir: &Path, skip: &str) -> GgufFile {
    let kvs = [
        ("general.architecture", kv_str("llama")),
        ("llama.embedding_length", kv_u32(HIDDEN as u32)),
        ("llama.feed_forward_length", kv_u32(FFN as u32)),
        ("llama.block_count", kv_u32(1)),
        ("llama.attention.head_count", kv_u32(HEADS as u32)),
        ("llama.attention.head_count_kv", kv_u32(KV_HEADS as u32)),
        ("llama.context_length", kv_u32(32)),
        ("llama.vocab_size", kv_u32(VOCAB as u32)),
        ("llama.attention.layer_norm_rms_epsilon", kv_f32(1e-5)),
    ];
    let kvs: Vec<(&str, u32, Vec<u8>)> = kvs.into_iter().map(|(k, (t, v))| (k, t, v)).collect();
    let tensors: Vec<TestTensor<'_>> = layout()
        .into_iter()
        .enumerate()
        .filter(|(_, (name, _, _))| *name != skip)
        .map(|(i, (name, [rows, cols], ty))| TestTensor {
            name,
            dims: if rows == 1 {
                vec![cols as u64]
            } else {
                vec![cols as u64, rows as u64]
            },
            ty,
            data: tensor_data(ty, rows, cols, i as u64 + 1),
        })
        .collect();
    let path = save(dir, &write_gguf(3, &kvs, &tensors, 32));
    GgufFile::open(&path).unwrap()
}

/// Writes the tiny model as an f32 safetensors file (Hugging Face names) into `dir`.
fn tiny_safetensors(dir: &Path) -> SafetensorsFile {
    let mut header = BTreeMap::new();
    let mut data = Vec::new();
    for (i, (name, [rows, cols], _)) in layout().into_iter().enumerate() {
        let start = data.len();
        data.extend(tensor_data(0, rows, cols, i as u64 + 1));
        let shape = if rows == 1 {
            vec![cols]
        } else {
            vec![rows, cols]
        };
        header.insert(
            source::hf_name(name).unwrap(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    let path = dir.join("model.safetensors");
    std::fs::write(&path, file).unwrap();
    SafetensorsFile::open(&path).unwrap()
}

/// The tiny model's hyper-parameters.
fn config(src: &TensorSource) -> LlamaConfig {
    match src {
        TensorSource::Gguf(file) => LlamaConfig::from_gguf(file).unwrap(),
        TensorSource::Safetensors(_) => LlamaConfig::from_hf_config(&serde_json::json!({
            "model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": FFN,
            "num_hidden_layers": 1, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB,
            "max_position_embeddings": 32, "tie_word_embeddings": true,
        }))
        .unwrap(),
    }
}

/// Writes `src` with `format`; returns the decoded model and the quantization label.
fn write(mut src: TensorSource, format: WeightFormat) -> (ModelProto, &'static str) {
    let cfg = config(&src);
    let mut buf = Vec::new();
    let label = write_onnx(&cfg, &mut src, format, &mut buf, Path::new("test.onnx")).unwrap();
    (ModelProto::decode(buf.as_slice()).unwrap(), label)
}

/// Op types used by a model's graph, with their counts.
fn ops(model: &ModelProto) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for n in &model.graph.as_ref().unwrap().node {
        *out.entry(n.op_type.clone().unwrap()).or_default() += 1;
    }
    out
}

/// The value of integer attribute `name` of the first node of type `op`.
fn attr(model: &ModelProto, op: &str, name: &str) -> Option<i64> {
    let graph = model.graph.as_ref().unwrap();
    let node = graph
        .node
        .iter()
        .find(|n| n.op_type.as_deref() == Some(op))?;
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
}

#[test]
fn gguf_graph_has_the_contract_inputs_outputs_and_ops() {
    let dir = tempfile::tempdir().unwrap();
    let (model, label) = write(
        TensorSource::Gguf(tiny_gguf(dir.path(), "")),
        WeightFormat::Auto,
    );
    assert_eq!(label, "q4");
    let graph = model.graph.as_ref().unwrap();
    let names = |v: &[super::super::onnx_proto::ValueInfoProto]| -> Vec<String> {
        v.iter().map(|i| i.name.clone().unwrap()).collect()
    };
    assert_eq!(
        names(&graph.input),
        [
            "input_ids",
            "attention_mask",
            "past_key_values.0.key",
            "past_key_values.0.value"
        ]
    );
    let outputs: HashSet<String> = names(&graph.output).into_iter().collect();
    let want: HashSet<String> = ["logits", "present.0.key", "present.0.value"]
        .map(str::to_owned)
        .into();
    assert_eq!(outputs, want);
    let ops = ops(&model);
    // q, k, v, gate, up and the tied head are quantized; o (F16) and down (F32) are f32.
    assert_eq!(ops["MatMulNBits"], 6);
    assert_eq!(ops["GroupQueryAttention"], 1);
    assert_eq!(ops["SimplifiedLayerNormalization"], 1);
    assert_eq!(ops["SkipSimplifiedLayerNormalization"], 2);
    assert_eq!(
        attr(&model, "GroupQueryAttention", "rotary_interleaved"),
        Some(1)
    );
    assert_eq!(attr(&model, "GroupQueryAttention", "do_rotary"), Some(1));
    assert!(model
        .opset_import
        .iter()
        .any(|o| o.domain.as_deref() == Some(MS_DOMAIN)));
    let init = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no initializer {name}"))
    };
    let k = init("blk.0.attn_k.weight.quants");
    assert_eq!(k.data_type, Some(DataType::Uint8 as i32));
    assert_eq!(k.dims, vec![32, 2, 16]);
    assert_eq!(k.raw_data.as_ref().unwrap().len(), 32 * 2 * 16);
    assert_eq!(init("blk.0.attn_k.weight.mins_t").dims, vec![2, 32]);
    assert_eq!(init("blk.0.attn_v.weight.quants").dims, vec![32, 2, 32]);
    assert_eq!(init("token_embd.weight.quants").dims, vec![40, 2, 32]);
    assert_eq!(init("blk.0.ffn_down.weight.T").dims, vec![96, 64]);
    assert_eq!(init("rotary/cos_cache").dims, vec![32, 8]);
}

#[test]
fn f32_format_dequantizes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (model, label) = write(
        TensorSource::Gguf(tiny_gguf(dir.path(), "")),
        WeightFormat::F32,
    );
    assert_eq!(label, "f32");
    let ops = ops(&model);
    assert!(!ops.contains_key("MatMulNBits"));
    assert_eq!(ops["MatMul"], 7);
    assert_eq!(
        ops["Gemm"], 1,
        "tied f32 head reads the embedding table transposed"
    );
}

#[test]
fn safetensors_graph_uses_rotate_half_and_q4_requantizes() {
    let dir = tempfile::tempdir().unwrap();
    let src = TensorSource::Safetensors(tiny_safetensors(dir.path()));
    let (model, label) = write(src, WeightFormat::Auto);
    assert_eq!(label, "f32");
    assert_eq!(
        attr(&model, "GroupQueryAttention", "rotary_interleaved"),
        Some(0)
    );
    let src = TensorSource::Safetensors(tiny_safetensors(dir.path()));
    let (model, label) = write(src, WeightFormat::Q4);
    assert_eq!(label, "q4");
    assert_eq!(ops(&model)["MatMulNBits"], 8);
    assert_eq!(attr(&model, "MatMulNBits", "bits"), Some(4));
}

#[test]
fn missing_and_misshapen_tensors_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = TensorSource::Gguf(tiny_gguf(dir.path(), "blk.0.ffn_up.weight"));
    let cfg = config(&src);
    let err = write_onnx(
        &cfg,
        &mut src,
        WeightFormat::Auto,
        Vec::new(),
        Path::new("x"),
    );
    assert!(
        matches!(&err, Err(ImportError::MissingTensor { name }) if name == "blk.0.ffn_up.weight"),
        "{err:?}"
    );
    let mut cfg = config(&src);
    cfg.intermediate_size = 128;
    let err = write_onnx(
        &cfg,
        &mut src,
        WeightFormat::Auto,
        Vec::new(),
        Path::new("x"),
    );
    assert!(
        matches!(err, Err(ImportError::ShapeMismatch { .. })),
        "{err:?}"
    );
}
