//! The LLaMA-family decoder (LLaMA, Mistral, Qwen2) as an ONNX graph with a KV cache, built
//! on ONNX Runtime's contrib operators; `docs/model-format.md` is the contract with the
//! runtime.
//!
//! Inputs: `input_ids` (int64 `[batch, sequence]`), `attention_mask` (int64
//! `[batch, total_sequence]`, **right-padded**: row `b` has ones for its first `len_b` tokens,
//! past and new), `past_key_values.{i}.key` / `.value` (f32, or f16 in the f16 graph,
//! `[batch, kv_heads, past, head_dim]`,
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
//! projection. A projection (`matmul`) is `MatMulIntegerToFloat` on per-row quantized
//! activations (int8), `MatMulNBits` (4-bit or 8-bit blocks of 32; Q4_1 adds
//! `ReduceSum`·`MatMul` for the block minimums) or `MatMul` (f32 or f16; q4's q|k|v too). The
//! final hidden states
//! are gathered at `logits_positions` before the output head, which shares the embedding's
//! weights when they are tied. Under int8 the residual stream is rotated (`rotate`) so that
//! per-row activation scales are not set by outlier channels.

mod embed;
mod matmul;
mod pack;
mod recipe;
mod rotate;
mod source;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use gateway_core::ExecutionProvider;

use super::error::ImportError;
use super::graph::{Attr, Dim, GraphBuilder, MS_DOMAIN};
use super::llama_config::LlamaConfig;
use super::onnx_proto::tensor_proto::DataType;
use recipe::{Activations, Fetcher, Layout, Matrix, Part, Piece, Recipe, Transform};
use rotate::Rotation;
pub(crate) use source::TensorSource;

/// Seed of the int8 residual-stream rotation's sign flips (fixed: imports are reproducible).
const ROTATION_SEED: u64 = 0x005E_ED0F_1A7E;

/// The `ai.onnx` operator set of the decoder graph (21: `QuantizeLinear` with blocked
/// scales, which quantizes each row with its own scale).
const DECODER_OPSET: i64 = 21;

/// How projection weights are stored in the ONNX graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightFormat {
    /// The fastest format for the target execution provider that passes the quality gate
    /// (perplexity within 1 % of the f32 graph's, mean KL divergence from it no larger than
    /// llama.cpp's: docs/model-format.md): [`Self::Q4`] on the CPU ([`Self::Int8`] is faster
    /// for batches but fails the gate), [`Self::F16`] on CUDA (see [`Self::resolve`]).
    #[default]
    Auto,
    /// int8 weights with one f32 scale per output column (symmetric; dequantized from the
    /// source and rotated first, see `rotate`), run as `MatMulIntegerToFloat` on activations
    /// quantized per row to uint8: VNNI kernels on x86 CPUs, fast at every batch size.
    Int8,
    /// `MatMulNBits` blocks of 32: Q4_0/Q4_1 kept exactly as 4-bit, Q8_0 as 8-bit (when a
    /// fused projection has no other float parts), everything else requantized to symmetric
    /// 4-bit blocks (rows not a multiple of 32 long stay f32). The fused q|k|v projection is
    /// stored dequantized and multiplied on f32 activations: rounding its input to int8 is what
    /// moved q4 off the f32 graph (docs/model-format.md).
    Q4,
    /// f32 `MatMul` everywhere (dequantized): the fallback.
    F32,
    /// f16 weights, activations and key/value cache (logits cast to f32): the graph for GPUs,
    /// whose `GroupQueryAttention` computes in f16 or bf16 only.
    F16,
}

impl WeightFormat {
    /// The concrete format for `provider`: `Auto` becomes `Q4` on the CPU and `F16` on CUDA
    /// (the only graph whose attention runs there: the others compute in f32); the other
    /// formats stay as they are.
    pub fn resolve(self, provider: ExecutionProvider) -> Self {
        match (self, provider) {
            (Self::Auto, ExecutionProvider::Cpu) => Self::Q4,
            (Self::Auto, ExecutionProvider::Cuda) => Self::F16,
            (format, _) => format,
        }
    }

    /// The model card's `quantization` label: `int8`, `q4`, `f32`, `f16` (`auto` if
    /// unresolved).
    pub fn label(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Int8 => "int8",
            Self::Q4 => "q4",
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }

    /// The element type of the graph's activations, float weights and key/value cache.
    fn float_type(self) -> DataType {
        match self {
            Self::F16 => DataType::Float16,
            Self::Auto | Self::Int8 | Self::Q4 | Self::F32 => DataType::Float,
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
    /// The element type of activations, float weights and the key/value cache.
    float: DataType,
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
        Ok(self.declare(matrix, Part::Plain, tensor.to_owned(), &[len], self.float))
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
            float: format.float_type(),
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
        let data = fetcher.fetch(&spec.name, *recipe)?;
        Ok(data.into_elem(spec.elem))
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
            d.g.input(&name, d.float, &cache_dims("past_sequence"));
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
        let qkv = d.projection(
            &normed,
            &format!("{p}.attn_qkv"),
            &parts,
            (h, seq, Activations::Exact),
            &reads,
        )?;
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
        d.g.output(&present_k, d.float, &cache_dims("present_sequence"));
        d.g.output(&present_v, d.float, &cache_dims("present_sequence"));
        let o_part = format!("{p}.attn_output");
        let o = d.projection(
            &attn,
            &o_part,
            &[(&o_part, h)],
            (q_width, seq, Activations::Quantized),
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
            (h, seq, Activations::Quantized),
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
        let (act, block) = matmul::rotate_blocks(d, &act, ffn, &p);
        let down = format!("{p}.ffn_down");
        branch = d.projection(
            &act,
            &down,
            &[(&down, h)],
            (ffn, seq, Activations::Quantized),
            &Side::Writes(block),
        )?;
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
    let logits = embed::logits(d, &picked, &positions, cfg, embedding)?;
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
