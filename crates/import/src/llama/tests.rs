//! Tests of the decoder graph writer on tiny checkpoints built here (a GGUF file with Q4_0,
//! Q4_1, Q8_0, F16 and F32 tensors, and a safetensors file): the written model decodes with
//! prost and has the contract's inputs, outputs, operators and weight types, and its fused
//! weights hold the source tensors (exactly for 4-bit/8-bit blocks, within half a
//! quantization step for int8 after the rotations). The checks in ONNX Runtime against a
//! NumPy reference are in `tests/python/test_llama_import.py`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use half::f16;
use prost::Message;

use super::super::gguf::tests::{kv_f32, kv_str, kv_u32, save, write_gguf, TestTensor};
use super::super::gguf::GgufFile;
use super::super::onnx_proto::{tensor_proto::DataType, ModelProto, TensorProto};
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
    tiny_safetensors_with(dir, &[])
}

/// Like [`tiny_safetensors`], with the extra 1-D tensors `extra` (llama.cpp name, length).
fn tiny_safetensors_with(dir: &Path, extra: &[(&'static str, usize)]) -> SafetensorsFile {
    let mut header = BTreeMap::new();
    let mut data = Vec::new();
    let extra = extra.iter().map(|(name, len)| (*name, [1, *len], 0));
    for (i, (name, [rows, cols], _)) in layout().into_iter().chain(extra).enumerate() {
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

/// Writes `src` with `format` (already resolved); returns the decoded model.
fn write(mut src: TensorSource, format: WeightFormat) -> ModelProto {
    let cfg = config(&src);
    let mut buf = Vec::new();
    write_onnx(&cfg, &mut src, format, &mut buf, Path::new("test.onnx")).unwrap();
    ModelProto::decode(buf.as_slice()).unwrap()
}

/// Op types used by a model's graph, with their counts.
fn ops(model: &ModelProto) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for n in &model.graph.as_ref().unwrap().node {
        *out.entry(n.op_type.clone().unwrap()).or_default() += 1;
    }
    out
}

/// The first node of type `op`.
fn node<'a>(model: &'a ModelProto, op: &str) -> &'a super::super::onnx_proto::NodeProto {
    let graph = model.graph.as_ref().unwrap();
    graph
        .node
        .iter()
        .find(|n| n.op_type.as_deref() == Some(op))
        .unwrap_or_else(|| panic!("no {op} node"))
}

/// The value of integer attribute `name` of the first node of type `op`.
fn attr(model: &ModelProto, op: &str, name: &str) -> Option<i64> {
    node(model, op)
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
}

/// Initializer `name`.
fn init<'a>(model: &'a ModelProto, name: &str) -> &'a TensorProto {
    model
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no initializer {name}"))
}

/// An initializer's f32 values.
fn floats(t: &TensorProto) -> Vec<f32> {
    match &t.raw_data {
        Some(raw) => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        None => t.float_data.clone(),
    }
}

/// A value's dimensions: numbers, or symbols as strings.
fn dims(v: &super::super::onnx_proto::ValueInfoProto) -> Vec<String> {
    use super::super::onnx_proto::{tensor_shape_proto::dimension::Value, type_proto};
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().unwrap().value.as_ref() else {
        panic!("not a tensor");
    };
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            Value::DimValue(n) => n.to_string(),
            Value::DimParam(p) => p.clone(),
        })
        .collect()
}

/// The `[n, k]` matrix a `MatMulNBits` weight holds, from its arrays `{base}.quants`,
/// `.scales` and (optional) `.mins_t`, as ONNX Runtime reads them.
fn nbits_matrix(model: &ModelProto, base: &str, bits: usize) -> Vec<f32> {
    let quants = init(model, &format!("{base}.quants"));
    let n = quants.dims[0] as usize;
    let kb = quants.dims[1] as usize;
    let scales = floats(init(model, &format!("{base}.scales")));
    let graph = model.graph.as_ref().unwrap();
    let mins = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(&format!("{base}.mins_t")))
        .map(floats);
    let zp = if bits == 4 { 8.0 } else { 128.0 };
    let raw = quants.raw_data.as_ref().unwrap();
    let blob = 32 * bits / 8;
    let mut out = Vec::with_capacity(n * kb * 32);
    for row in 0..n {
        for b in 0..kb {
            let bytes = &raw[(row * kb + b) * blob..(row * kb + b + 1) * blob];
            let q: Vec<u8> = if bits == 4 {
                bytes.iter().flat_map(|x| [x & 0x0F, x >> 4]).collect()
            } else {
                bytes.to_vec()
            };
            let offset = mins.as_ref().map_or(0.0, |m| m[b * n + row]);
            let s = scales[row * kb + b];
            out.extend(q.iter().map(|&q| (f32::from(q) - zp) * s + offset));
        }
    }
    out
}

/// The source tensors `names` of `gguf` dequantized and stacked by rows.
fn stacked(gguf: &mut GgufFile, names: &[&str]) -> Vec<f32> {
    names
        .iter()
        .flat_map(|n| gguf.read_f32(n).unwrap())
        .collect()
}

/// The q|k|v source tensors, in the fused projection's order.
const QKV: [&str; 3] = [
    "blk.0.attn_q.weight",
    "blk.0.attn_k.weight",
    "blk.0.attn_v.weight",
];

/// The `[n, k]` rows of a `[k, n]` transposed weight's `values`, as `stacked` gives them.
fn untransposed<T: Copy>(values: &[T], dims: &[i64]) -> Vec<T> {
    let (k, n) = (dims[0] as usize, dims[1] as usize);
    (0..n)
        .flat_map(|row| (0..k).map(move |col| values[col * n + row]))
        .collect()
}

#[test]
fn q4_graph_has_the_contract_inputs_outputs_and_fused_ops() {
    let dir = tempfile::tempdir().unwrap();
    let model = write(
        TensorSource::Gguf(tiny_gguf(dir.path(), "")),
        WeightFormat::Q4,
    );
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
            "past_key_values.0.value",
            "logits_positions"
        ]
    );
    let outputs: HashSet<String> = names(&graph.output).into_iter().collect();
    let want: HashSet<String> = ["logits", "present.0.key", "present.0.value"]
        .map(str::to_owned)
        .into();
    assert_eq!(outputs, want);
    let output = |name: &str| {
        graph
            .output
            .iter()
            .find(|o| o.name.as_deref() == Some(name))
    };
    assert_eq!(
        dims(output("logits").unwrap()),
        ["batch", "positions", "40"]
    );
    assert_eq!(
        dims(output("present.0.key").unwrap()),
        ["batch", "2", "present_sequence", "16"]
    );
    assert_eq!(dims(&graph.input[2]), ["batch", "2", "past_sequence", "16"]);
    let ops = ops(&model);
    // o, one fused gate|up, down, and the head tied to the embedding; q|k|v (f32
    // activations) is an f32 MatMul, the first.
    assert_eq!(ops["MatMulNBits"], 4);
    let qkv = node(&model, "MatMul");
    assert_eq!(qkv.input[1], "blk.0.attn_qkv.weight.T");
    assert_eq!(ops["GroupQueryAttention"], 1);
    assert_eq!(ops["Split"], 1);
    assert_eq!(ops["GatherND"], 1);
    assert_eq!(ops["SimplifiedLayerNormalization"], 1);
    assert_eq!(ops["SkipSimplifiedLayerNormalization"], 2);
    let gqa = node(&model, "GroupQueryAttention");
    assert_eq!(gqa.input[0], "blk.0.attn_qkv/out");
    assert_eq!((gqa.input[1].as_str(), gqa.input[2].as_str()), ("", ""));
    assert_eq!(
        attr(&model, "GroupQueryAttention", "rotary_interleaved"),
        Some(1)
    );
    assert_eq!(attr(&model, "GroupQueryAttention", "do_rotary"), Some(1));
    assert!(model
        .opset_import
        .iter()
        .any(|o| o.domain.as_deref() == Some(MS_DOMAIN)));
    // q|k|v is dequantized (k: 64, n: 128); gate (Q4_1), up (Q4_0) share 4-bit blocks; the
    // Q8_0 embedding table keeps 8-bit ones.
    let qkv = init(&model, "blk.0.attn_qkv.weight.T");
    assert_eq!(qkv.data_type, Some(DataType::Float as i32));
    assert_eq!(qkv.dims, vec![64, 128]);
    assert_eq!(
        init(&model, "blk.0.ffn_gate_up.weight.mins_t").dims,
        vec![2, 192]
    );
    assert_eq!(
        init(&model, "blk.0.ffn_gate_up.weight.quants").data_type,
        Some(DataType::Uint8 as i32)
    );
    assert_eq!(
        init(&model, "blk.0.ffn_gate_up.weight.quants").dims,
        vec![192, 2, 16]
    );
    assert_eq!(
        init(&model, "token_embd.weight.quants").dims,
        vec![40, 2, 32]
    );
    assert_eq!(
        init(&model, "blk.0.ffn_down.weight.quants").dims,
        vec![64, 3, 16]
    );
    assert_eq!(init(&model, "rotary/cos_cache").dims, vec![32, 8]);
}

#[test]
fn q4_keeps_ggml_blocks_exactly_and_q_k_v_dequantized() {
    let dir = tempfile::tempdir().unwrap();
    let mut gguf = tiny_gguf(dir.path(), "");
    let model = write(
        TensorSource::Gguf(tiny_gguf(dir.path(), "")),
        WeightFormat::Q4,
    );
    // q|k|v keep f32 activations: their mixed blocks are stored dequantized, transposed.
    let transposed = init(&model, "blk.0.attn_qkv.weight.T");
    let got = untransposed(&floats(transposed), &transposed.dims);
    assert_eq!(
        got,
        stacked(&mut gguf, &QKV),
        "fused q|k|v is the sources' own values"
    );
    let want = stacked(&mut gguf, &["blk.0.ffn_gate.weight", "blk.0.ffn_up.weight"]);
    assert_eq!(nbits_matrix(&model, "blk.0.ffn_gate_up.weight", 4), want);
}

/// A value's element type.
fn elem(v: &super::super::onnx_proto::ValueInfoProto) -> Option<i32> {
    use super::super::onnx_proto::type_proto;
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().unwrap().value.as_ref() else {
        panic!("not a tensor");
    };
    t.elem_type
}

#[test]
fn f16_graph_keeps_f16_weights_and_cache_and_gives_f32_logits() {
    let dir = tempfile::tempdir().unwrap();
    let mut gguf = tiny_gguf(dir.path(), "");
    let model = write(
        TensorSource::Gguf(tiny_gguf(dir.path(), "")),
        WeightFormat::F16,
    );
    let graph = model.graph.as_ref().unwrap();
    let value = |list: &[super::super::onnx_proto::ValueInfoProto], name: &str| {
        let found = list.iter().find(|v| v.name.as_deref() == Some(name));
        elem(found.unwrap_or_else(|| panic!("no value {name}")))
    };
    let f16_type = Some(DataType::Float16 as i32);
    assert_eq!(value(&graph.input, "past_key_values.0.key"), f16_type);
    assert_eq!(value(&graph.output, "present.0.value"), f16_type);
    assert_eq!(
        value(&graph.output, "logits"),
        Some(DataType::Float as i32),
        "logits are cast to f32 for sampling"
    );
    let ops = ops(&model);
    assert!(!ops.contains_key("MatMulNBits"));
    assert_eq!(ops["GroupQueryAttention"], 1);
    let qkv = init(&model, "blk.0.attn_qkv.weight.T");
    assert_eq!(qkv.data_type, f16_type);
    let raw = qkv.raw_data.as_ref().unwrap();
    let values: Vec<f16> = raw
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]))
        .collect();
    let want: Vec<f16> = stacked(&mut gguf, &QKV)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    assert_eq!(
        untransposed(&values, &qkv.dims),
        want,
        "q|k|v rounded to f16"
    );
}

#[test]
fn int8_graph_quantizes_rows_and_folds_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let mut gguf = tiny_gguf(dir.path(), "");
    let model = write(
        TensorSource::Gguf(tiny_gguf(dir.path(), "")),
        WeightFormat::Int8,
    );
    let ops = ops(&model);
    assert_eq!(ops["MatMulIntegerToFloat"], 4);
    // The tied head reads the embedding table's own blocks (stored once).
    assert_eq!(ops["MatMulNBits"], 1);
    let graph = model.graph.as_ref().unwrap();
    let names = graph.initializer.iter().filter_map(|t| t.name.as_deref());
    assert!(!names.clone().any(|n| n.starts_with("head.")));
    assert!(names.clone().any(|n| n.starts_with("token_embd.weight")));
    // One per distinct activation: attention norm, attention output, MLP norm, rotated MLP
    // activation.
    assert_eq!(ops["QuantizeLinear"], 4);
    assert_eq!(attr(&model, "QuantizeLinear", "block_size"), Some(64));
    assert_eq!(model.opset_import[0].version, Some(21));
    // The norms' weights are folded into the projections: the graph's are ones, except the
    // final norm's, applied after the head's input is rotated back.
    assert!(floats(init(&model, "const/ones")).iter().all(|&g| g == 1.0));
    let final_gamma = gguf.read_f32("output_norm.weight").unwrap();
    assert_eq!(floats(init(&model, "output_norm.weight")), final_gamma);
    let rotation = Rotation::new(HIDDEN, ROTATION_SEED);
    assert_eq!(
        floats(init(&model, "const/residual_rotation_t")),
        rotation.transposed_matrix()
    );
    assert_eq!(
        floats(init(&model, "const/residual_rotation")),
        rotation.matrix()
    );
    let w = init(&model, "blk.0.attn_qkv.weight.int8");
    assert_eq!(w.data_type, Some(DataType::Int8 as i32));
    assert_eq!(w.dims, vec![64, 128]);

    // The int8 q|k|v is W·diag(γ)·Rᵀ within half a step per weight (saturated where the
    // row's range clips it).
    let mut want = stacked(&mut gguf, &QKV);
    let gamma = gguf.read_f32("blk.0.attn_norm.weight").unwrap();
    for row in want.chunks_exact_mut(HIDDEN) {
        row.iter_mut().zip(&gamma).for_each(|(w, g)| *w *= g);
    }
    rotation.apply_chunks(&mut want);
    let quants: Vec<i8> = w
        .raw_data
        .as_ref()
        .unwrap()
        .iter()
        .map(|b| i8::from_le_bytes([*b]))
        .collect();
    let scales = floats(init(&model, "blk.0.attn_qkv.weight.scales"));
    for (i, w) in want.iter().enumerate() {
        let (row, col) = (i / HIDDEN, i % HIDDEN);
        let s = scales[row];
        let q = quants[col * 128 + row];
        let got = f32::from(q) * s;
        let saturated = q.abs() == 127 && w.abs() >= got.abs();
        assert!(
            saturated || (got - w).abs() <= 0.5001 * s,
            "[{row}, {col}]: {got} vs {w}"
        );
    }
}

#[test]
fn f32_format_dequantizes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let model = write(
        TensorSource::Gguf(tiny_gguf(dir.path(), "")),
        WeightFormat::F32,
    );
    let ops = ops(&model);
    assert!(!ops.contains_key("MatMulNBits"));
    assert!(!ops.contains_key("MatMulIntegerToFloat"));
    assert_eq!(ops["MatMul"], 4);
    assert_eq!(
        ops["Gemm"], 1,
        "tied f32 head reads the embedding table transposed"
    );
    assert_eq!(init(&model, "blk.0.attn_qkv.weight.T").dims, vec![64, 128]);
}

#[test]
fn safetensors_graph_uses_rotate_half_and_q4_requantizes() {
    let dir = tempfile::tempdir().unwrap();
    let src = TensorSource::Safetensors(tiny_safetensors(dir.path()));
    let model = write(src, WeightFormat::Int8);
    assert_eq!(
        attr(&model, "GroupQueryAttention", "rotary_interleaved"),
        Some(0)
    );
    assert_eq!(ops(&model)["MatMulIntegerToFloat"], 4);
    let src = TensorSource::Safetensors(tiny_safetensors(dir.path()));
    let model = write(src, WeightFormat::Q4);
    assert_eq!(ops(&model)["MatMulNBits"], 4);
    assert_eq!(attr(&model, "MatMulNBits", "bits"), Some(4));
}

#[test]
fn qkv_biases_are_stacked_in_projection_order() {
    let dir = tempfile::tempdir().unwrap();
    let kv = KV_HEADS * HEAD_DIM;
    let biases = [
        ("blk.0.attn_q.bias", HIDDEN),
        ("blk.0.attn_k.bias", kv),
        ("blk.0.attn_v.bias", kv),
    ];
    let want: Vec<f32> = {
        let mut file = tiny_safetensors_with(dir.path(), &biases);
        biases
            .iter()
            .flat_map(|(name, _)| file.read_f32(&source::hf_name(name).unwrap()).unwrap())
            .collect()
    };
    for format in [WeightFormat::F32, WeightFormat::Int8] {
        let src = TensorSource::Safetensors(tiny_safetensors_with(dir.path(), &biases));
        let model = write(src, format);
        assert_eq!(
            floats(init(&model, "blk.0.attn_qkv.bias")),
            want,
            "{format:?}"
        );
        assert_eq!(ops(&model)["Add"], 1, "{format:?}: one bias Add");
    }
}

#[test]
fn auto_resolves_per_execution_provider() {
    assert_eq!(
        WeightFormat::Auto.resolve(ExecutionProvider::Cpu),
        WeightFormat::Q4
    );
    assert_eq!(
        WeightFormat::Auto.resolve(ExecutionProvider::Cuda),
        WeightFormat::F16
    );
    assert_eq!(
        WeightFormat::F32.resolve(ExecutionProvider::Cuda),
        WeightFormat::F32
    );
    let labels = [
        WeightFormat::Int8,
        WeightFormat::Q4,
        WeightFormat::F32,
        WeightFormat::F16,
    ]
    .map(WeightFormat::label);
    assert_eq!(labels, ["int8", "q4", "f32", "f16"]);
}

#[test]
fn missing_and_misshapen_tensors_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = TensorSource::Gguf(tiny_gguf(dir.path(), "blk.0.ffn_up.weight"));
    let cfg = config(&src);
    let err = write_onnx(&cfg, &mut src, WeightFormat::Q4, Vec::new(), Path::new("x"));
    assert!(
        matches!(&err, Err(ImportError::MissingTensor { name }) if name == "blk.0.ffn_up.weight"),
        "{err:?}"
    );
    let mut cfg = config(&src);
    cfg.intermediate_size = 128;
    let err = write_onnx(
        &cfg,
        &mut src,
        WeightFormat::Int8,
        Vec::new(),
        Path::new("x"),
    );
    assert!(
        matches!(err, Err(ImportError::ShapeMismatch { .. })),
        "{err:?}"
    );
}
