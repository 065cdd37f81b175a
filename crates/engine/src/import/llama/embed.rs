//! The decoder graph's edges: sequence lengths for `GroupQueryAttention`, the rotary cos/sin
//! caches, the token embedding (a `Gather` of quantized rows, dequantized in the graph; for
//! `q4` and `f32` the table is stored once and shared with a tied head, for `int8` the head
//! is a second, rotated int8 copy) and the output head, which runs only on the hidden states
//! gathered at `logits_positions`.

use super::super::error::ImportError;
use super::super::gguf::QK;
use super::super::graph::Attr;
use super::super::llama_config::LlamaConfig;
use super::super::onnx_proto::tensor_proto::DataType;
use super::{Decoder, Layout, NbitsWeight, Part, Piece, Rows, Side, Transform};

/// The embedding table as declared in the graph (the tied head reuses it).
#[derive(Debug, Clone)]
pub(super) enum EmbeddingTable {
    /// `MatMulNBits` arrays.
    Nbits(NbitsWeight),
    /// int8 rows with one scale per row, rotated like the residual stream (the head is its
    /// own int8 matrix: the table with the final norm's weight folded in).
    Int8,
    /// f32 `[vocab, hidden]`.
    Float(String),
}

/// `seqlens_k` (int32 `[batch]`, valid tokens per row minus one) and `total_sequence_length`
/// (int32 scalar) from the right-padded attention mask.
pub(super) fn sequence_lengths(d: &mut Decoder<'_>, mask: &str) -> (String, String) {
    let axis1 = d.ints(&[1]);
    let one = d.g.const_i64("const/one", &[], &[1]);
    let sums = d.g.node(
        "ReduceSum",
        "mask/lengths",
        &[mask, &axis1],
        &[("keepdims", Attr::Int(0))],
    );
    let minus =
        d.g.node("Sub", "mask/lengths_minus_one", &[&sums, &one], &[]);
    let int32 = ("to", Attr::Int(DataType::Int32 as i64));
    let seqlens =
        d.g.node("Cast", "seqlens_k", &[&minus], std::slice::from_ref(&int32));
    let shape = d.g.node("Shape", "mask/shape", &[mask], &[]);
    let total = d.g.node(
        "Gather",
        "mask/total_length",
        &[&shape, &one],
        &[("axis", Attr::Int(0))],
    );
    let total =
        d.g.node("Cast", "total_sequence_length", &[&total], &[int32]);
    (seqlens, total)
}

/// The cos and sin caches (`[context, head_dim / 2]`) of the rotary embedding:
/// angle `p · θ^(−2i/head_dim)` for position `p` and pair `i`.
pub(super) fn rotary_caches(d: &mut Decoder<'_>, cfg: &LlamaConfig) -> (String, String) {
    let half = cfg.head_dim / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| f64::from(cfg.rope_theta).powf(-(2.0 * i as f64) / cfg.head_dim as f64))
        .collect();
    let mut cos = Vec::with_capacity(cfg.context_length * half);
    let mut sin = Vec::with_capacity(cfg.context_length * half);
    for p in 0..cfg.context_length {
        for f in &inv_freq {
            // Angles in f32 first, as Hugging Face and llama.cpp compute them.
            let angle = f64::from(p as f32 * *f as f32);
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let dims = [cfg.context_length as i64, half as i64];
    (
        d.g.const_f32("rotary/cos_cache", &dims, &cos),
        d.g.const_f32("rotary/sin_cache", &dims, &sin),
    )
}

/// The embedded tokens (f32 `[batch, sequence, hidden]`) and the table as declared.
pub(super) fn embedding(
    d: &mut Decoder<'_>,
    ids: &str,
    cfg: &LlamaConfig,
) -> Result<(String, EmbeddingTable), ImportError> {
    let tensor = "token_embd.weight";
    let (v, h) = (cfg.vocab_size, cfg.hidden_size);
    let stored = d.src.require(tensor, &[v, h])?;
    let layout = Layout::choose(&[stored], d.format, h);
    let piece = Piece {
        tensor: tensor.to_owned(),
        rows: v,
        stored: Some(stored),
    };
    // Under int8 the table's rows are in the rotated basis of the residual stream.
    let transform = Transform {
        rotate_rows: d.residual_rotation.clone(),
        ..Transform::default()
    };
    let matrix = d.matrix(vec![piece], h, layout, transform);
    let last = d.ints(&[-1]);
    let float = ("to", Attr::Int(DataType::Float as i64));
    let (bits, mins) = match layout {
        Layout::Nbits { bits, mins } => (bits, mins),
        Layout::Float => {
            let table = d.declare(
                matrix,
                Part::Plain,
                tensor.to_owned(),
                &[v, h],
                DataType::Float,
            );
            let x = d.g.node("Gather", "embed/out", &[&table, ids], &[]);
            return Ok((x, EmbeddingTable::Float(table)));
        }
        Layout::Int8 => {
            let rows = d.declare(
                matrix,
                Part::Int8Rows,
                format!("{tensor}.int8"),
                &[v, h],
                DataType::Int8,
            );
            let scales = d.declare(
                matrix,
                Part::Int8Scales,
                format!("{tensor}.scales"),
                &[v],
                DataType::Float,
            );
            let q = d.g.node("Gather", "embed/quants", &[&rows, ids], &[]);
            let q = d.g.node("Cast", "embed/quants_f32", &[&q], &[float]);
            let s = d.g.node("Gather", "embed/scales", &[&scales, ids], &[]);
            let s = d.g.node("Unsqueeze", "embed/scales1", &[&s, &last], &[]);
            let x = d.g.node("Mul", "embed/out", &[&q, &s], &[]);
            return Ok((x, EmbeddingTable::Int8));
        }
    };
    let w = d.nbits_weight(matrix, tensor, bits, mins);
    let rows = d.g.node("Gather", "embed/quants", &[&w.quants, ids], &[]);
    let mut q = d.g.node("Cast", "embed/quants_f32", &[&rows], &[float]);
    if bits == 4 {
        // Byte b holds weights 2k (low nibble, b mod 16) and 2k+1 (high nibble, ⌊b/16⌋).
        let sixteen = d.g.const_f32("const/sixteen", &[], &[16.0]);
        let div = d.g.node("Div", "embed/div16", &[&q, &sixteen], &[]);
        let high = d.g.node("Floor", "embed/high", &[&div], &[]);
        let shifted = d.g.node("Mul", "embed/high16", &[&high, &sixteen], &[]);
        let low = d.g.node("Sub", "embed/low", &[&q, &shifted], &[]);
        let low = d.g.node("Unsqueeze", "embed/low1", &[&low, &last], &[]);
        let high = d.g.node("Unsqueeze", "embed/high1", &[&high, &last], &[]);
        let pairs = d.g.node(
            "Concat",
            "embed/pairs",
            &[&low, &high],
            &[("axis", Attr::Int(-1))],
        );
        let blocks = d.ints(&[0, 0, (h / QK) as i64, QK as i64]);
        q =
            d.g.node("Reshape", "embed/nibbles", &[&pairs, &blocks], &[]);
    }
    let zero_point = if bits == 4 { 8.0 } else { 128.0 };
    let zp = d.g.const_f32("const/zero_point", &[], &[zero_point]);
    q = d.g.node("Sub", "embed/centred", &[&q, &zp], &[]);
    let scales = d.g.node("Gather", "embed/scales", &[&w.scales, ids], &[]);
    let scales =
        d.g.node("Unsqueeze", "embed/scales1", &[&scales, &last], &[]);
    let mut x = d.g.node("Mul", "embed/scaled", &[&q, &scales], &[]);
    if let Some(mins_t) = &w.mins_t {
        let m = d.g.node(
            "Gather",
            "embed/mins_t",
            &[mins_t, ids],
            &[("axis", Attr::Int(1))],
        );
        let m = d.g.node(
            "Transpose",
            "embed/mins",
            &[&m],
            &[("perm", Attr::Ints(vec![1, 2, 0]))],
        );
        let m = d.g.node("Unsqueeze", "embed/mins1", &[&m, &last], &[]);
        x = d.g.node("Add", "embed/shifted", &[&x, &m], &[]);
    }
    let shape = d.ints(&[0, 0, h as i64]);
    let x = d.g.node("Reshape", "embed/out", &[&x, &shape], &[]);
    Ok((x, EmbeddingTable::Nbits(w)))
}

/// The logits (`[batch, positions, vocab]`, named `logits`) of the normalized hidden states
/// `x` gathered at `positions` (`[batch, positions, hidden]`).
pub(super) fn head(
    d: &mut Decoder<'_>,
    x: &str,
    positions: &str,
    cfg: &LlamaConfig,
    table: EmbeddingTable,
) -> Result<String, ImportError> {
    let (v, h) = (cfg.vocab_size, cfg.hidden_size);
    let tied = cfg.tie_word_embeddings || d.src.meta("output.weight").is_none();
    let reads = Side::Reads("output_norm.weight".to_owned());
    if !tied {
        let y = d.projection(x, "output", &[("output", v)], (h, Rows::Positions), &reads)?;
        return Ok(d.g.node("Identity", "logits", &[&y], &[]));
    }
    match table {
        EmbeddingTable::Nbits(w) => {
            let y = d.nbits_matmul(x, &w, h, v, "head");
            Ok(d.g.node("Identity", "logits", &[&y], &[]))
        }
        EmbeddingTable::Int8 => {
            // A second int8 copy of the table, [hidden, vocab], with the final norm's weight
            // folded in and one scale per vocabulary column.
            let y = d.projection(
                x,
                "head",
                &[("token_embd", v)],
                (h, Rows::Positions),
                &reads,
            )?;
            Ok(d.g.node("Identity", "logits", &[&y], &[]))
        }
        EmbeddingTable::Float(table) => {
            // Gemm reads the [vocab, hidden] table transposed in place (no second copy).
            let flat = d.ints(&[-1, h as i64]);
            let x2 = d.g.node("Reshape", "head/flat", &[x, &flat], &[]);
            let y = d.g.node(
                "Gemm",
                "head/gemm",
                &[&x2, &table],
                &[("transB", Attr::Int(1))],
            );
            let rows_shape = d.g.node("Shape", "head/positions_shape", &[positions], &[]);
            let vocab = d.ints(&[v as i64]);
            let shape = d.g.node(
                "Concat",
                "head/shape",
                &[&rows_shape, &vocab],
                &[("axis", Attr::Int(0))],
            );
            Ok(d.g.node("Reshape", "logits", &[&y, &shape], &[]))
        }
    }
}
