//! The LLaMA-family decoder (LLaMA, Mistral, Qwen2) as an ONNX graph with a KV cache, built
//! on ONNX Runtime's contrib operators; `docs/model-format.md` is the contract with the
//! runtime.
//!
//! Inputs: `input_ids` (int64 `[batch, sequence]`), `attention_mask` (int64
//! `[batch, total_sequence]`, **right-padded**: row `b` has ones for its first `len_b` tokens,
//! past and new), `past_key_values.{i}.key` / `.value` (f32 `[batch, kv_heads, past, head_dim]`,
//! `past = 0` for a prefill, or a preallocated capacity when `present.*` shares its buffer),
//! `logits_positions` (int64 `[batch, positions]`: the sequence positions whose logits are
//! wanted). Outputs: `logits` (f32 `[batch, positions, vocab]`) and `present.{i}.key` /
//! `.value` (`[batch, kv_heads, present_sequence, head_dim]`, `present_sequence =
//! max(past, total_sequence)`). Positions are not an input: `GroupQueryAttention` derives
//! them from the mask (`seqlens_k = sum(mask) − 1`), and applies the rotary embedding itself
//! (`do_rotary`).
//!
//! Ops per layer: `SkipSimplifiedLayerNormalization` (RMSNorm with the residual add fused),
//! one fused q|k|v projection feeding `GroupQueryAttention` as packed QKV, the o projection,
//! one fused gate|up projection and `Split`, `Sigmoid`/`Mul` (SiLU gate), the down
//! projection. A projection is `MatMulIntegerToFloat` on per-row quantized activations (int8),
//! `MatMulNBits` (4-bit or 8-bit blocks of 32; Q4_1 adds `ReduceSum`·`MatMul` for the block
//! minimums) or `MatMul` (f32). The final hidden states are gathered at `logits_positions`
//! before the output head, which shares the embedding's weights when they are tied. Under
//! int8 the residual stream is rotated (`rotate`) so that per-row activation scales are not
//! set by outlier channels.

mod embed;
mod pack;
mod recipe;
mod rotate;
mod source;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use super::error::ImportError;
use super::gguf::QK;
use super::graph::{Attr, Dim, GraphBuilder, MS_DOMAIN};
use super::llama_config::LlamaConfig;
use super::onnx_proto::tensor_proto::DataType;
use recipe::{Fetcher, Layout, Matrix, Part, Piece, Recipe, Transform};
use rotate::Rotation;
pub(crate) use source::TensorSource;

/// `accuracy_level` of every `MatMulNBits`: 4 = int8 activations, ONNX Runtime's fast CPU
/// kernel (llama.cpp's CPU dot products quantize activations the same way).
const ACCURACY_LEVEL: i64 = 4;

/// The floor of a row's largest activation magnitude before it becomes the int8 scale, so
/// an all-zero row quantizes to zeros instead of dividing by zero.
const TINY_MAGNITUDE: f32 = 1e-30;

/// Seed of the int8 residual-stream rotation's sign flips (fixed: imports are reproducible).
const ROTATION_SEED: u64 = 0x005E_ED0F_1A7E;

/// The largest block of the int8 down projection's online input rotation, a Walsh–Hadamard
/// matrix: larger blocks spread outliers further (on SmolLM2, blocks of 512 instead of 64
/// raise top-1 agreement with llama.cpp from 94.6 % to 95.4 %).
const DOWN_ROTATION_BLOCK: usize = 4096;

/// The inner factor of the down rotation's block: `H_block = H_outer ⊗ H_inner`, applied as
/// `H_outer · X · H_inner` on each block reshaped to `[outer, inner]`, so a block costs
/// `inner + outer` multiply-adds per activation instead of `block`.
const DOWN_ROTATION_INNER: usize = 64;

/// The `ai.onnx` operator set of the decoder graph (21: `QuantizeLinear` with blocked
/// scales, which quantizes each row with its own scale).
const DECODER_OPSET: i64 = 21;

/// How projection weights are stored in the ONNX graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightFormat {
    /// The fastest format for the target execution provider that passes the accuracy gate
    /// (top-1 agreement with llama.cpp ≥ 95 %): [`Self::Q4`] on both (see [`Self::resolve`];
    /// [`Self::Int8`] is faster on CPUs for batches but agrees only about 95 %, at the gate's
    /// edge: docs/model-format.md).
    #[default]
    Auto,
    /// int8 weights with one f32 scale per output column (symmetric; dequantized from the
    /// source and rotated first, see `rotate`), run as `MatMulIntegerToFloat` on activations
    /// quantized per row to uint8: VNNI kernels on x86 CPUs, fast at every batch size.
    Int8,
    /// `MatMulNBits` blocks of 32: Q4_0/Q4_1 kept exactly as 4-bit, Q8_0 as 8-bit (when a
    /// fused projection has no other float parts), everything else requantized to symmetric
    /// 4-bit blocks (rows not a multiple of 32 long stay f32).
    Q4,
    /// f32 `MatMul` everywhere (dequantized): the fallback.
    F32,
}

/// The execution provider an import targets (what `WeightFormat::Auto` resolves for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider.
    Cuda,
}

impl WeightFormat {
    /// The concrete format for `provider`: `Auto` becomes `Q4` (on the CPU and on CUDA);
    /// the other formats stay as they are.
    pub fn resolve(self, provider: ExecutionProvider) -> Self {
        match (self, provider) {
            (Self::Auto, ExecutionProvider::Cpu | ExecutionProvider::Cuda) => Self::Q4,
            (format, _) => format,
        }
    }

    /// The model card's `quantization` label: `int8`, `q4`, `f32` (`auto` if unresolved).
    pub fn label(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Int8 => "int8",
            Self::Q4 => "q4",
            Self::F32 => "f32",
        }
    }
}

/// How a projection touches the residual stream, which decides the int8 rotations folded
/// into its weights (other formats ignore it).
#[derive(Debug, Clone)]
enum Side {
    /// It reads the normalized residual stream; the norm's weight (this source tensor) is
    /// folded into it.
    Reads(String),
    /// It writes to the residual stream; its input was rotated in blocks by this rotation in
    /// the graph, if any.
    Writes(Option<Rotation>),
}

/// Which rows an activation has: one per token of `input_ids`, or one per entry of
/// `logits_positions` (the output head's input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rows {
    /// `[batch, sequence, …]`.
    Sequence,
    /// `[batch, positions, …]`.
    Positions,
}

/// A `MatMulNBits` matrix declared in the graph: the names of its inputs.
#[derive(Debug, Clone)]
struct NbitsWeight {
    quants: String,
    scales: String,
    mins_t: Option<String>,
    bits: usize,
}

/// The graph under construction.
struct Decoder<'a> {
    g: GraphBuilder,
    /// The weight matrices, in declaration order.
    matrices: Vec<Matrix>,
    /// Every deferred graph weight and where its data comes from.
    recipes: HashMap<String, Recipe>,
    src: &'a TensorSource,
    /// The resolved weight format.
    format: WeightFormat,
    /// Shape constants already declared.
    shapes: HashMap<Vec<i64>, String>,
    /// Activations already quantized per row: name → (uint8 quants, f32 row scales).
    quantized: HashMap<String, (String, String)>,
    /// The uint8 zero points (128) shaped like the row scales, per kind of rows.
    zero_points: HashMap<Rows, String>,
    /// Named constants (scalars, the norms' ones, the MLP rotation) already declared.
    scalars: HashSet<String>,
    /// The residual-stream rotation (int8 only).
    residual_rotation: Option<Rotation>,
}

impl Decoder<'_> {
    /// Adds a matrix stacked from `pieces` (rows `cols` long) in `layout`, its f32 values
    /// transformed by `transform`; returns its index.
    fn matrix(
        &mut self,
        pieces: Vec<Piece>,
        cols: usize,
        layout: Layout,
        transform: Transform,
    ) -> usize {
        self.matrices.push(Matrix {
            pieces,
            cols,
            layout,
            transform,
            arrays: Vec::new(),
        });
        self.matrices.len() - 1
    }

    /// The transform of a projection's weights on side `side` of the residual stream:
    /// nothing unless the residual stream is rotated.
    fn transform(&self, side: &Side) -> Transform {
        let Some(r) = &self.residual_rotation else {
            return Transform::default();
        };
        match side {
            Side::Reads(gamma) => Transform {
                scale_columns: Some(gamma.clone()),
                rotate_rows: Some(r.clone()),
                rotate_columns: None,
            },
            Side::Writes(input) => Transform {
                scale_columns: None,
                rotate_rows: input.clone(),
                rotate_columns: Some(r.clone()),
            },
        }
    }

    /// Declares graph weight `name`, array `part` of matrix `matrix`.
    fn declare(
        &mut self,
        matrix: usize,
        part: Part,
        name: String,
        dims: &[usize],
        elem: DataType,
    ) -> String {
        self.g.typed_weight(&name, dims, elem);
        if let Some(m) = self.matrices.get_mut(matrix) {
            m.arrays.push((part, name.clone()));
        }
        self.recipes.insert(name.clone(), Recipe { matrix, part });
        name
    }

    /// An int64 constant (deduplicated by value).
    fn ints(&mut self, values: &[i64]) -> String {
        if let Some(name) = self.shapes.get(values) {
            return name.clone();
        }
        let tag: Vec<String> = values.iter().map(i64::to_string).collect();
        let name = self.g.const_i64(
            &format!("const/[{}]", tag.join(",")),
            &[values.len() as i64],
            values,
        );
        self.shapes.insert(values.to_vec(), name.clone());
        name
    }

    /// The f32 scalar constant `name` holding `value`, declared on first use.
    fn scalar_f32(&mut self, name: &str, value: f32) -> String {
        if self.scalars.insert(name.to_owned()) {
            self.g.const_f32(name, &[], &[value]);
        }
        name.to_owned()
    }

    /// The uint8 scalar constant `name` holding `value`, declared on first use.
    fn scalar_u8(&mut self, name: &str, value: u8) -> String {
        if self.scalars.insert(name.to_owned()) {
            self.g.const_u8(name, &[], &[value]);
        }
        name.to_owned()
    }

    /// Declares the `MatMulNBits` arrays of `[n, k]` matrix `matrix` under `base` names.
    fn nbits_weight(&mut self, matrix: usize, base: &str, bits: usize, mins: bool) -> NbitsWeight {
        let Some(m) = self.matrices.get(matrix) else {
            return NbitsWeight {
                quants: String::new(),
                scales: String::new(),
                mins_t: None,
                bits,
            };
        };
        let (n, kb) = (m.rows(), m.cols / QK);
        let quants = self.declare(
            matrix,
            Part::Quants,
            format!("{base}.quants"),
            &[n, kb, QK * bits / 8],
            DataType::Uint8,
        );
        let scales = self.declare(
            matrix,
            Part::Scales,
            format!("{base}.scales"),
            &[n, kb],
            DataType::Float,
        );
        let mins_t = mins.then(|| {
            self.declare(
                matrix,
                Part::MinsT,
                format!("{base}.mins_t"),
                &[kb, n],
                DataType::Float,
            )
        });
        NbitsWeight {
            quants,
            scales,
            mins_t,
            bits,
        }
    }

    /// `x @ Wᵀ` for a `MatMulNBits` `[n, k]` matrix, plus for Q4_1 blocks
    /// `ReduceSum(x per block) @ offsets`.
    fn nbits_matmul(&mut self, x: &str, w: &NbitsWeight, k: usize, n: usize, out: &str) -> String {
        let attrs = [
            ("K", Attr::Int(k as i64)),
            ("N", Attr::Int(n as i64)),
            ("bits", Attr::Int(w.bits as i64)),
            ("block_size", Attr::Int(QK as i64)),
            ("accuracy_level", Attr::Int(ACCURACY_LEVEL)),
        ];
        let y = format!("{out}/nbits");
        self.g.node_in(
            MS_DOMAIN,
            "MatMulNBits",
            &[&y],
            &[x, &w.quants, &w.scales],
            &attrs,
        );
        let Some(mins_t) = &w.mins_t else {
            return y;
        };
        let blocks = self.ints(&[0, 0, (k / QK) as i64, QK as i64]);
        let last = self.ints(&[-1]);
        let r = self
            .g
            .node("Reshape", &format!("{out}/blocks"), &[x, &blocks], &[]);
        let sums = self.g.node(
            "ReduceSum",
            &format!("{out}/block_sums"),
            &[&r, &last],
            &[("keepdims", Attr::Int(0))],
        );
        let m = self
            .g
            .node("MatMul", &format!("{out}/mins"), &[&sums, mins_t], &[]);
        self.g.node("Add", out, &[&y, &m], &[])
    }

    /// 128 as uint8 `[batch, rows, 1]`: the zero point of the per-row `QuantizeLinear`
    /// (which wants it shaped like its scales), built once per kind of rows.
    fn zero_point(&mut self, rows: Rows) -> String {
        if let Some(zp) = self.zero_points.get(&rows) {
            return zp.clone();
        }
        let (input, tag) = match rows {
            Rows::Sequence => ("input_ids", "sequence"),
            Rows::Positions => ("logits_positions", "positions"),
        };
        let scalar = self.scalar_u8("const/uint8_zero_point", 128);
        let one = self.ints(&[1]);
        let shape = self.g.node("Shape", &format!("{tag}/shape"), &[input], &[]);
        let shape = self.g.node(
            "Concat",
            &format!("{tag}/row_scale_shape"),
            &[&shape, &one],
            &[("axis", Attr::Int(0))],
        );
        let zp = self.g.node(
            "Expand",
            &format!("{tag}/row_zero_points"),
            &[&scalar, &shape],
            &[],
        );
        self.zero_points.insert(rows, zp.clone());
        zp
    }

    /// Per-row quantization of activation `x` (f32 `[batch, rows, k]`), emitted once per
    /// activation: `s = max(max|x_row|, tiny) / 127` (`[batch, rows, 1]`) and
    /// `x_q = QuantizeLinear(x, s, 128)` = `uint8(round(x / s) + 128)` (half to even; one
    /// block of `k` per row). Returns (quants, scales).
    fn quantize_rows(&mut self, x: &str, k: usize, rows: Rows) -> (String, String) {
        if let Some(q) = self.quantized.get(x) {
            return q.clone();
        }
        let abs = self.g.node("Abs", &format!("{x}/abs"), &[x], &[]);
        let last = self.ints(&[-1]);
        let max = self.g.node(
            "ReduceMax",
            &format!("{x}/row_max"),
            &[&abs, &last],
            &[("keepdims", Attr::Int(1))],
        );
        let tiny = self.scalar_f32("const/tiny_magnitude", TINY_MAGNITUDE);
        let floor = self
            .g
            .node("Max", &format!("{x}/row_max_floor"), &[&max, &tiny], &[]);
        let i8_max = self.scalar_f32("const/int8_max", 127.0);
        let scale = self
            .g
            .node("Div", &format!("{x}/row_scale"), &[&floor, &i8_max], &[]);
        let zp = self.zero_point(rows);
        let quants = self.g.node(
            "QuantizeLinear",
            &format!("{x}/quants"),
            &[x, &scale, &zp],
            &[("axis", Attr::Int(-1)), ("block_size", Attr::Int(k as i64))],
        );
        let q = (quants, scale);
        self.quantized.insert(x.to_owned(), q.clone());
        q
    }

    /// `x @ W` for int8 `W` (`[k, n]`, named `weight`) with per-column scales `scales`:
    /// `MatMulIntegerToFloat(x_q, W, s_row, scales, 128)`, which scales each output row by its
    /// `s_row` (a non-scalar `a_scale` is applied per row) and each column by its weight
    /// scale.
    fn int8_matmul(
        &mut self,
        x: &str,
        (k, rows): (usize, Rows),
        weight: &str,
        scales: &str,
        out: &str,
    ) -> String {
        let (quants, row_scales) = self.quantize_rows(x, k, rows);
        let zp = self.scalar_u8("const/uint8_zero_point", 128);
        self.g.node_in(
            MS_DOMAIN,
            "MatMulIntegerToFloat",
            &[out],
            &[&quants, weight, &row_scales, scales, &zp],
            &[],
        );
        out.to_owned()
    }

    /// The projection `x @ Wᵀ (+ b)` of the source tensors `{part}.weight` (`[n_part, k]`)
    /// stacked in the order given (one fused projection, output width `Σ n_part`); `name`
    /// names the graph's weights and nodes. Biases (`{part}.bias`), where any part has one,
    /// are stacked likewise (zeros for the parts without). `side` says which int8 rotations
    /// fold into the weights; `rows` what the rows of `x` are.
    fn projection(
        &mut self,
        x: &str,
        name: &str,
        parts: &[(&str, usize)],
        (k, rows): (usize, Rows),
        side: &Side,
    ) -> Result<String, ImportError> {
        let mut pieces = Vec::with_capacity(parts.len());
        for (part, n) in parts {
            let tensor = format!("{part}.weight");
            let stored = self.src.require(&tensor, &[*n, k])?;
            pieces.push(Piece {
                tensor,
                rows: *n,
                stored: Some(stored),
            });
        }
        let stored: Vec<_> = pieces.iter().filter_map(|p| p.stored).collect();
        let layout = Layout::choose(&stored, self.format, k);
        let n: usize = parts.iter().map(|(_, n)| n).sum();
        let transform = self.transform(side);
        let matrix = self.matrix(pieces, k, layout, transform);
        let base = format!("{name}.weight");
        let out = format!("{name}/out");
        let y = match layout {
            Layout::Nbits { bits, mins } => {
                let w = self.nbits_weight(matrix, &base, bits, mins);
                self.nbits_matmul(x, &w, k, n, &out)
            }
            Layout::Int8 => {
                let w = self.declare(
                    matrix,
                    Part::Int8Transposed,
                    format!("{base}.int8"),
                    &[k, n],
                    DataType::Int8,
                );
                let s = self.declare(
                    matrix,
                    Part::Int8Scales,
                    format!("{base}.scales"),
                    &[n],
                    DataType::Float,
                );
                self.int8_matmul(x, (k, rows), &w, &s, &out)
            }
            Layout::Float => {
                let w = self.declare(
                    matrix,
                    Part::Transposed,
                    format!("{base}.T"),
                    &[k, n],
                    DataType::Float,
                );
                self.g.node("MatMul", &out, &[x, &w], &[])
            }
        };
        let biases: Vec<Piece> = parts
            .iter()
            .map(|(part, rows)| {
                let tensor = format!("{part}.bias");
                let stored = self.src.meta(&tensor).map(|m| m.stored);
                Piece {
                    tensor,
                    rows: *rows,
                    stored,
                }
            })
            .collect();
        if biases.iter().all(|b| b.stored.is_none()) {
            return Ok(y);
        }
        for b in biases.iter().filter(|b| b.stored.is_some()) {
            self.src.require(&b.tensor, &[b.rows])?;
        }
        // A bias adds to the projection's output: rotated with it when it is the residual.
        let rotation = match side {
            Side::Writes(_) => self.residual_rotation.clone(),
            Side::Reads(_) => None,
        };
        let transform = Transform {
            rotate_columns: rotation,
            ..Transform::default()
        };
        let matrix = self.matrix(biases, 1, Layout::Float, transform);
        let b = self.declare(
            matrix,
            Part::Plain,
            format!("{name}.bias"),
            &[n],
            DataType::Float,
        );
        Ok(self
            .g
            .node("Add", &format!("{name}/biased"), &[&y, &b], &[]))
    }

    /// The weight of RMSNorm `tensor` (`[len]`): as stored, or ones when the residual stream
    /// is rotated (the weight is then folded into the projections that read the norm).
    fn norm_weight(&mut self, tensor: &str, len: usize) -> Result<String, ImportError> {
        self.src.require(tensor, &[len])?;
        if self.residual_rotation.is_some() {
            let name = "const/ones";
            if self.scalars.insert(name.to_owned()) {
                self.g.const_f32(name, &[len as i64], &vec![1.0; len]);
            }
            return Ok(name.to_owned());
        }
        self.norm_gamma(tensor, len)
    }

    /// The weight of RMSNorm `tensor` (`[len]`) as stored, whether or not the residual stream
    /// is rotated.
    fn norm_gamma(&mut self, tensor: &str, len: usize) -> Result<String, ImportError> {
        let stored = self.src.require(tensor, &[len])?;
        let piece = Piece {
            tensor: tensor.to_owned(),
            rows: len,
            stored: Some(stored),
        };
        let matrix = self.matrix(vec![piece], 1, Layout::Float, Transform::default());
        Ok(self.declare(
            matrix,
            Part::Plain,
            tensor.to_owned(),
            &[len],
            DataType::Float,
        ))
    }
}

/// Builds the decoder graph for `cfg` from `src` with weights in `format` (resolved by the
/// caller; `Auto` counts as `Q4`) and writes the ONNX model to `out`.
pub(crate) fn write_onnx<W: Write>(
    cfg: &LlamaConfig,
    src: &mut TensorSource,
    format: WeightFormat,
    out: W,
    out_path: &Path,
) -> Result<(), ImportError> {
    let format = format.resolve(ExecutionProvider::Cpu);
    let residual_rotation =
        (format == WeightFormat::Int8).then(|| Rotation::new(cfg.hidden_size, ROTATION_SEED));
    let (g, matrices, recipes) = {
        let mut d = Decoder {
            g: GraphBuilder::with_opset(DECODER_OPSET),
            matrices: Vec::new(),
            recipes: HashMap::new(),
            src,
            format,
            shapes: HashMap::new(),
            quantized: HashMap::new(),
            zero_points: HashMap::new(),
            scalars: HashSet::new(),
            residual_rotation,
        };
        build(&mut d, cfg)?;
        (d.g, d.matrices, d.recipes)
    };
    let mut fetcher = Fetcher::new(src, &matrices);
    let written = g.write_data(cfg.architecture.as_str(), out, |spec| {
        let recipe = recipes
            .get(&spec.name)
            .ok_or_else(|| ImportError::MissingTensor {
                name: spec.name.clone(),
            })?;
        fetcher.fetch(&spec.name, *recipe)
    });
    written.map_err(|e| e.into_import_error(out_path))?;
    Ok(())
}

/// Adds the whole decoder to `d`.
fn build(d: &mut Decoder<'_>, cfg: &LlamaConfig) -> Result<(), ImportError> {
    let (h, ffn, kv) = (cfg.hidden_size, cfg.intermediate_size, cfg.num_kv_heads);
    let (q_width, kv_width) = (cfg.num_heads * cfg.head_dim, kv * cfg.head_dim);
    let ids = d.g.input(
        "input_ids",
        DataType::Int64,
        &[Dim::Symbolic("batch"), Dim::Symbolic("sequence")],
    );
    let mask = d.g.input(
        "attention_mask",
        DataType::Int64,
        &[Dim::Symbolic("batch"), Dim::Symbolic("total_sequence")],
    );
    let cache_dims = |len| {
        [
            Dim::Symbolic("batch"),
            Dim::Fixed(kv as i64),
            Dim::Symbolic(len),
            Dim::Fixed(cfg.head_dim as i64),
        ]
    };
    for i in 0..cfg.num_layers {
        for kind in ["key", "value"] {
            let name = format!("past_key_values.{i}.{kind}");
            d.g.input(&name, DataType::Float, &cache_dims("past_sequence"));
        }
    }
    let positions = d.g.input(
        "logits_positions",
        DataType::Int64,
        &[Dim::Symbolic("batch"), Dim::Symbolic("positions")],
    );
    let (seqlens, total) = embed::sequence_lengths(d, &mask);
    let (cos, sin) = embed::rotary_caches(d, cfg);
    let interleaved = d.src.rotary_interleaved(&cfg.architecture);
    let eps = ("epsilon", Attr::Float(cfg.rms_norm_eps));
    let seq = Rows::Sequence;

    let (mut residual, embedding) = embed::embedding(d, &ids, cfg)?;
    let gamma = d.norm_weight("blk.0.attn_norm.weight", h)?;
    let mut normed = d.g.node(
        "SimplifiedLayerNormalization",
        "blk.0/attn_norm",
        &[&residual, &gamma],
        &[eps.clone(), ("axis", Attr::Int(-1))],
    );
    let mut branch = String::new();
    for i in 0..cfg.num_layers {
        let p = format!("blk.{i}");
        if i > 0 {
            let gamma = d.norm_weight(&format!("{p}.attn_norm.weight"), h)?;
            (normed, residual) = skip_norm(d, &branch, &residual, &gamma, &p, "attn_norm", &eps);
        }
        let (q, k, v) = (
            format!("{p}.attn_q"),
            format!("{p}.attn_k"),
            format!("{p}.attn_v"),
        );
        let parts = [(q.as_str(), q_width), (&k, kv_width), (&v, kv_width)];
        let reads = Side::Reads(format!("{p}.attn_norm.weight"));
        let qkv = d.projection(&normed, &format!("{p}.attn_qkv"), &parts, (h, seq), &reads)?;
        let past_k = format!("past_key_values.{i}.key");
        let past_v = format!("past_key_values.{i}.value");
        let (present_k, present_v) = (format!("present.{i}.key"), format!("present.{i}.value"));
        let attn = format!("{p}/attention");
        d.g.node_in(
            MS_DOMAIN,
            "GroupQueryAttention",
            &[&attn, &present_k, &present_v],
            &[&qkv, "", "", &past_k, &past_v, &seqlens, &total, &cos, &sin],
            &[
                ("num_heads", Attr::Int(cfg.num_heads as i64)),
                ("kv_num_heads", Attr::Int(kv as i64)),
                ("do_rotary", Attr::Int(1)),
                ("rotary_interleaved", Attr::Int(i64::from(interleaved))),
            ],
        );
        d.g.output(&present_k, DataType::Float, &cache_dims("present_sequence"));
        d.g.output(&present_v, DataType::Float, &cache_dims("present_sequence"));
        let o_part = format!("{p}.attn_output");
        let o = d.projection(
            &attn,
            &o_part,
            &[(&o_part, h)],
            (q_width, seq),
            &Side::Writes(None),
        )?;

        let gamma = d.norm_weight(&format!("{p}.ffn_norm.weight"), h)?;
        (normed, residual) = skip_norm(d, &o, &residual, &gamma, &p, "ffn_norm", &eps);
        let (gate, up) = (format!("{p}.ffn_gate"), format!("{p}.ffn_up"));
        let parts = [(gate.as_str(), ffn), (&up, ffn)];
        let reads = Side::Reads(format!("{p}.ffn_norm.weight"));
        let gate_up = d.projection(
            &normed,
            &format!("{p}.ffn_gate_up"),
            &parts,
            (h, seq),
            &reads,
        )?;
        let split = d.ints(&[ffn as i64, ffn as i64]);
        let (gate, up) = (format!("{p}/gate"), format!("{p}/up"));
        d.g.node_in(
            "",
            "Split",
            &[&gate, &up],
            &[&gate_up, &split],
            &[("axis", Attr::Int(-1))],
        );
        let sig =
            d.g.node("Sigmoid", &format!("{p}/gate_sigmoid"), &[&gate], &[]);
        let silu =
            d.g.node("Mul", &format!("{p}/gate_silu"), &[&gate, &sig], &[]);
        let act = d.g.node("Mul", &format!("{p}/gated"), &[&silu, &up], &[]);
        let (act, block) = rotate_blocks(d, &act, ffn, &p);
        let down = format!("{p}.ffn_down");
        branch = d.projection(&act, &down, &[(&down, h)], (ffn, seq), &Side::Writes(block))?;
    }
    let gamma = d.norm_weight("output_norm.weight", h)?;
    let (normed, _) = skip_norm(d, &branch, &residual, &gamma, "output", "norm", &eps);
    let last = d.ints(&[-1]);
    let index =
        d.g.node("Unsqueeze", "output/positions", &[&positions, &last], &[]);
    let picked = d.g.node(
        "GatherND",
        "output/picked",
        &[&normed, &index],
        &[("batch_dims", Attr::Int(1))],
    );
    let logits = embed::head(d, &picked, &positions, cfg, embedding)?;
    d.g.output(
        &logits,
        DataType::Float,
        &[
            Dim::Symbolic("batch"),
            Dim::Symbolic("positions"),
            Dim::Fixed(cfg.vocab_size as i64),
        ],
    );
    Ok(())
}

/// Under int8, rotates the MLP activation `act` (`[…, ffn]`) in blocks of a Walsh–Hadamard
/// matrix `B` (the largest power of two dividing `ffn`, at most [`DOWN_ROTATION_BLOCK`]), so
/// the down projection's per-row scales are not set by outlier channels; returns the
/// activation to project and `B` (which the down weights fold in). `B = H_outer ⊗ H_inner`
/// (Sylvester's construction), so each block, reshaped to `[outer, inner]`, becomes
/// `H_outer · X · H_inner` (two `MatMul`s; both factors are symmetric). Other formats, and
/// widths without an even block, pass through.
fn rotate_blocks(
    d: &mut Decoder<'_>,
    act: &str,
    ffn: usize,
    prefix: &str,
) -> (String, Option<Rotation>) {
    let block = 1usize
        << ffn
            .trailing_zeros()
            .min(DOWN_ROTATION_BLOCK.trailing_zeros());
    if d.residual_rotation.is_none() || block < 2 {
        return (act.to_owned(), None);
    }
    let inner = block.min(DOWN_ROTATION_INNER);
    let outer = block / inner;
    let hadamard = |d: &mut Decoder<'_>, n: usize| {
        let name = format!("const/hadamard_{n}");
        if d.scalars.insert(name.clone()) {
            let side = n as i64;
            d.g.const_f32(&name, &[side, side], &Rotation::new(n, 0).matrix());
        }
        name
    };
    let (h_inner, h_outer) = (hadamard(d, inner), hadamard(d, outer));
    let shape = [0, 0, (ffn / block) as i64, outer as i64, inner as i64];
    let blocks = d.ints(&shape);
    let flat = d.ints(&[0, 0, ffn as i64]);
    let mut r = d.g.node(
        "Reshape",
        &format!("{prefix}/act_blocks"),
        &[act, &blocks],
        &[],
    );
    r = d.g.node(
        "MatMul",
        &format!("{prefix}/act_rotated_inner"),
        &[&r, &h_inner],
        &[],
    );
    if outer > 1 {
        r = d.g.node(
            "MatMul",
            &format!("{prefix}/act_rotated"),
            &[&h_outer, &r],
            &[],
        );
    }
    let r =
        d.g.node("Reshape", &format!("{prefix}/act_rot"), &[&r, &flat], &[]);
    (r, Some(Rotation::new(block, 0)))
}

/// `SkipSimplifiedLayerNormalization(branch + residual)`: returns (normalized, new residual).
fn skip_norm(
    d: &mut Decoder<'_>,
    branch: &str,
    residual: &str,
    gamma: &str,
    prefix: &str,
    what: &str,
    eps: &(&str, Attr),
) -> (String, String) {
    let normed = format!("{prefix}/{what}");
    let sum = format!("{prefix}/{what}_residual");
    d.g.node_in(
        MS_DOMAIN,
        "SkipSimplifiedLayerNormalization",
        &[&normed, "", "", &sum],
        &[branch, residual, gamma],
        std::slice::from_ref(eps),
    );
    (normed, sum)
}
