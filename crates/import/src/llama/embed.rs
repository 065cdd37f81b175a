//! The decoder graph's edges: sequence lengths for `GroupQueryAttention`, the rotary cos/sin
//! caches, the token embedding (a `Gather` of quantized rows, dequantized in the graph; the
//! table is stored once and shared with a tied head) and the output head, which runs only on
//! the hidden states gathered at `logits_positions`. Under `int8` the table keeps the
//! source's blocks: embedded tokens are rotated into the residual stream's basis after the
//! gather, and the head's inputs rotated back (and scaled by the final norm's weight), a
//! `[hidden, hidden]` `MatMul` per token either way.

use super::super::error::ImportError;
use super::super::gguf::QK;
use super::super::graph::Attr;
use super::super::llama_config::LlamaConfig;
use super::super::onnx_proto::tensor_proto::DataType;
use super::matmul::NbitsWeight;
use super::{Activations, Decoder, Layout, Part, Piece, Rows, Side, Transform};

/// The embedding table as declared in the graph (the tied head reuses it).
#[derive(Debug, Clone)]
pub(super) enum EmbeddingTable {
    /// `MatMulNBits` arrays.
    Nbits(NbitsWeight),
    /// Floats `[vocab, hidden]` in the graph's float type.
    Float(String),
}

/// `x @ M` for the `[hidden, hidden]` matrix of the residual stream's rotation: `Rᵀ`
/// (`inverse` false) rotates row vectors into the rotated basis, `R` back out of it.
fn rotate_rows_online(d: &mut Decoder<'_>, x: &str, inverse: bool, out: &str) -> String {
    let Some(rotation) = d.residual_rotation.clone() else {
        return x.to_owned();
    };
    let n = rotation.len();
    let (name, values) = if inverse {
        ("const/residual_rotation", rotation.matrix())
    } else {
        ("const/residual_rotation_t", rotation.transposed_matrix())
    };
    if d.scalars.insert(name.to_owned()) {
        d.g.const_f32(name, &[n as i64, n as i64], &values);
    }
    d.g.node("MatMul", out, &[x, name], &[])
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
        d.g.const_float("rotary/cos_cache", &dims, &cos, d.float),
        d.g.const_float("rotary/sin_cache", &dims, &sin, d.float),
    )
}

/// The embedded tokens (`[batch, sequence, hidden]`, the graph's float type) and the table as
/// declared.
pub(super) fn embedding(
    d: &mut Decoder<'_>,
    ids: &str,
    cfg: &LlamaConfig,
) -> Result<(String, EmbeddingTable), ImportError> {
    let tensor = "token_embd.weight";
    let (v, h) = (cfg.vocab_size, cfg.hidden_size);
    let stored = d.src.require(tensor, &[v, h])?;
    let layout = Layout::table(&[stored], d.format, h);
    let piece = Piece {
        tensor: tensor.to_owned(),
        rows: v,
        stored: Some(stored),
    };
    let matrix = d.matrix(vec![piece], h, layout, Transform::default());
    let last = d.ints(&[-1]);
    let float = ("to", Attr::Int(DataType::Float as i64));
    // `Layout::table` gives blocks or f32 (never per-row int8, which is for projections).
    let Layout::Nbits { bits, mins } = layout else {
        let table = d.declare(matrix, Part::Plain, tensor.to_owned(), &[v, h], d.float);
        let x = d.g.node("Gather", "embed/rows", &[&table, ids], &[]);
        let x = rotate_rows_online(d, &x, false, "embed/out");
        return Ok((x, EmbeddingTable::Float(table)));
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
    let x = d.g.node("Reshape", "embed/rows", &[&x, &shape], &[]);
    let x = rotate_rows_online(d, &x, false, "embed/out");
    Ok((x, EmbeddingTable::Nbits(w)))
}

/// The logits (f32 `[batch, positions, vocab]`, named `logits`) of the normalized hidden
/// states `x` gathered at `positions` (`[batch, positions, hidden]`): computed in the graph's
/// float type, then cast to f32 when that is f16 (one row per position asked for).
pub(super) fn logits(
    d: &mut Decoder<'_>,
    x: &str,
    positions: &str,
    cfg: &LlamaConfig,
    table: EmbeddingTable,
) -> Result<String, ImportError> {
    if d.float == DataType::Float {
        return head(d, x, positions, cfg, table, "logits");
    }
    let y = head(d, x, positions, cfg, table, "head/logits")?;
    let float = ("to", Attr::Int(DataType::Float as i64));
    Ok(d.g.node("Cast", "logits", &[&y], &[float]))
}

/// The head's output (`[batch, positions, vocab]`, named `out`, in the graph's float type)
/// for the hidden states `x` gathered at `positions`.
fn head(
    d: &mut Decoder<'_>,
    x: &str,
    positions: &str,
    cfg: &LlamaConfig,
    table: EmbeddingTable,
    out: &str,
) -> Result<String, ImportError> {
    let (v, h) = (cfg.vocab_size, cfg.hidden_size);
    let tied = cfg.tie_word_embeddings || d.src.meta("output.weight").is_none();
    let reads = Side::Reads("output_norm.weight".to_owned());
    if !tied {
        let y = d.projection(
            x,
            "output",
            &[("output", v)],
            (h, Rows::Positions, Activations::Quantized),
            &reads,
        )?;
        return Ok(d.g.node("Identity", out, &[&y], &[]));
    }
    // The tied table is not rotated: bring the hidden states back, with the final norm's
    // weight that the rotated stream leaves out.
    let x = if d.residual_rotation.is_some() {
        let back = rotate_rows_online(d, x, true, "head/unrotated");
        let gamma = d.norm_gamma("output_norm.weight", h)?;
        d.g.node("Mul", "head/normed", &[&back, &gamma], &[])
    } else {
        x.to_owned()
    };
    let x = x.as_str();
    match table {
        EmbeddingTable::Nbits(w) => {
            let y = d.nbits_matmul(x, &w, h, v, "head");
            Ok(d.g.node("Identity", out, &[&y], &[]))
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
            Ok(d.g.node("Reshape", out, &[&y, &shape], &[]))
        }
    }
}
