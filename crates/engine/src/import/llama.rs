//! The LLaMA-family decoder (LLaMA, Mistral, Qwen2) as an ONNX graph with a KV cache, built
//! on ONNX Runtime's contrib operators; `docs/model-format.md` is the contract with the
//! runtime.
//!
//! Inputs: `input_ids` (int64 `[batch, sequence]`), `attention_mask` (int64
//! `[batch, total_sequence]`, **right-padded**: row `b` has ones for its first `len_b` tokens,
//! past and new), `past_key_values.{i}.key` / `.value` (f32 `[batch, kv_heads, past, head_dim]`,
//! `past = 0` for a prefill). Outputs: `logits` (f32 `[batch, sequence, vocab]`) and
//! `present.{i}.key` / `.value` (`[batch, kv_heads, total_sequence, head_dim]`).
//! Positions are not an input: `GroupQueryAttention` derives them from the mask
//! (`seqlens_k = sum(mask) − 1`), and applies the rotary embedding itself (`do_rotary`).
//!
//! Ops: `Gather` + dequantizing arithmetic (embedding), `SimplifiedLayerNormalization` /
//! `SkipSimplifiedLayerNormalization` (RMSNorm with the residual add fused), `MatMulNBits`
//! (4-bit or 8-bit blocks of 32; Q4_1 adds `ReduceSum`·`MatMul` for the block minimums) or
//! `MatMul` (f32) for projections, `GroupQueryAttention`, `Sigmoid`/`Mul` (SiLU gate), and the
//! output head sharing the embedding's weights when they are tied.

mod embed;
mod pack;
mod recipe;
mod source;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::error::ImportError;
use super::gguf::QK;
use super::graph::{Attr, Dim, GraphBuilder, MS_DOMAIN};
use super::llama_config::LlamaConfig;
use super::onnx_proto::tensor_proto::DataType;
use recipe::{fetch, Layout, Part, Recipe};
pub(crate) use source::TensorSource;

/// `accuracy_level` of every `MatMulNBits`: 4 = int8 activations, ONNX Runtime's fast CPU
/// kernel (llama.cpp's CPU dot products quantize activations the same way).
const ACCURACY_LEVEL: i64 = 4;

/// How projection weights are stored in the ONNX graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightFormat {
    /// Keep what the source has: Q4_0/Q4_1 as 4-bit and Q8_0 as 8-bit `MatMulNBits`, every
    /// other type (F32, F16, BF16, K-quants) as f32 `MatMul`.
    #[default]
    Auto,
    /// 4-bit `MatMulNBits` everywhere: Q4_0/Q4_1 kept exactly, all else requantized to
    /// symmetric 4-bit blocks of 32 (rows not a multiple of 32 long stay f32).
    Q4,
    /// f32 `MatMul` everywhere (dequantized): the fallback.
    F32,
}

/// A quantized matrix declared in the graph: the names of its `MatMulNBits` inputs.
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
    recipes: HashMap<String, Recipe>,
    src: &'a TensorSource,
    format: WeightFormat,
    /// Projections written as 4-bit, 8-bit and f32.
    counts: [usize; 3],
    /// Shape constants already declared.
    shapes: HashMap<Vec<i64>, String>,
}

impl Decoder<'_> {
    /// Declares graph weight `name` holding `part` of source tensor `tensor`.
    fn declare(&mut self, name: String, dims: &[usize], elem: DataType, recipe: Recipe) -> String {
        self.g.typed_weight(&name, dims, elem);
        self.recipes.insert(name.clone(), recipe);
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

    /// Declares the `MatMulNBits` arrays of `[n, k]` tensor `tensor` with layout `layout`.
    fn nbits_weight(&mut self, tensor: &str, n: usize, k: usize, layout: Layout) -> NbitsWeight {
        let Layout::Nbits { bits, mins, .. } = layout else {
            return NbitsWeight {
                quants: String::new(),
                scales: String::new(),
                mins_t: None,
                bits: 0,
            };
        };
        let recipe = |part| Recipe {
            tensor: tensor.to_owned(),
            part,
            layout,
            rows: n,
            cols: k,
        };
        let kb = k / QK;
        let quants = self.declare(
            format!("{tensor}.quants"),
            &[n, kb, QK * bits / 8],
            DataType::Uint8,
            recipe(Part::Quants),
        );
        let scales = self.declare(
            format!("{tensor}.scales"),
            &[n, kb],
            DataType::Float,
            recipe(Part::Scales),
        );
        let mins_t = mins.then(|| {
            self.declare(
                format!("{tensor}.mins_t"),
                &[kb, n],
                DataType::Float,
                recipe(Part::MinsT),
            )
        });
        NbitsWeight {
            quants,
            scales,
            mins_t,
            bits,
        }
    }

    /// `x @ Wᵀ` for a quantized `[n, k]` matrix: `MatMulNBits`, plus for Q4_1
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

    /// The projection `x @ Wᵀ (+ b)` of source tensor `{name}.weight` (`[n, k]`).
    fn linear(&mut self, x: &str, name: &str, k: usize, n: usize) -> Result<String, ImportError> {
        let tensor = format!("{name}.weight");
        let stored = self.src.require(&tensor, &[n, k])?;
        let layout = Layout::choose(stored, self.format, k);
        let y = match layout {
            Layout::Nbits { bits, .. } => {
                self.counts[usize::from(bits == 8)] += 1;
                let w = self.nbits_weight(&tensor, n, k, layout);
                self.nbits_matmul(x, &w, k, n, &format!("{name}/out"))
            }
            Layout::Float => {
                self.counts[2] += 1;
                let recipe = Recipe {
                    tensor: tensor.clone(),
                    part: Part::Transposed,
                    layout,
                    rows: n,
                    cols: k,
                };
                let w = self.declare(format!("{tensor}.T"), &[k, n], DataType::Float, recipe);
                self.g.node("MatMul", &format!("{name}/out"), &[x, &w], &[])
            }
        };
        let bias = format!("{name}.bias");
        if self.src.meta(&bias).is_none() {
            return Ok(y);
        }
        let b = self.plain(&bias, n)?;
        Ok(self
            .g
            .node("Add", &format!("{name}/biased"), &[&y, &b], &[]))
    }

    /// A 1-D f32 tensor (norm weight, bias) as stored.
    fn plain(&mut self, tensor: &str, len: usize) -> Result<String, ImportError> {
        self.src.require(tensor, &[len])?;
        let recipe = Recipe {
            tensor: tensor.to_owned(),
            part: Part::Plain,
            layout: Layout::Float,
            rows: len,
            cols: 1,
        };
        Ok(self.declare(tensor.to_owned(), &[len], DataType::Float, recipe))
    }

    /// The weight-format label of the model card: the format most projections use.
    fn quantization(&self) -> &'static str {
        let [q4, q8, f32] = self.counts;
        if q4 >= q8 && q4 >= f32 && q4 > 0 {
            "q4"
        } else if q8 >= f32 && q8 > 0 {
            "q8"
        } else {
            "f32"
        }
    }
}

/// Builds the decoder graph for `cfg` from `src` and writes the ONNX model to `out`.
/// Returns the model card's quantization label (`q4`, `q8` or `f32`).
pub(crate) fn write_onnx<W: Write>(
    cfg: &LlamaConfig,
    src: &mut TensorSource,
    format: WeightFormat,
    out: W,
    out_path: &Path,
) -> Result<&'static str, ImportError> {
    let (g, recipes, label) = {
        let mut d = Decoder {
            g: GraphBuilder::new(),
            recipes: HashMap::new(),
            src,
            format,
            counts: [0; 3],
            shapes: HashMap::new(),
        };
        build(&mut d, cfg)?;
        let label = d.quantization();
        (d.g, d.recipes, label)
    };
    let written = g.write_data(cfg.architecture.as_str(), out, |spec| {
        let recipe = recipes
            .get(&spec.name)
            .ok_or_else(|| ImportError::MissingTensor {
                name: spec.name.clone(),
            })?;
        fetch(src, recipe)
    });
    written.map_err(|e| e.into_import_error(out_path))?;
    Ok(label)
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
    let (seqlens, total) = embed::sequence_lengths(d, &mask);
    let (cos, sin) = embed::rotary_caches(d, cfg);
    let interleaved = d.src.rotary_interleaved(&cfg.architecture);
    let eps = ("epsilon", Attr::Float(cfg.rms_norm_eps));

    let (mut residual, embedding) = embed::embedding(d, &ids, cfg)?;
    let gamma = d.plain("blk.0.attn_norm.weight", h)?;
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
            let gamma = d.plain(&format!("{p}.attn_norm.weight"), h)?;
            (normed, residual) = skip_norm(d, &branch, &residual, &gamma, &p, "attn_norm", &eps);
        }
        let q = d.linear(&normed, &format!("{p}.attn_q"), h, q_width)?;
        let k = d.linear(&normed, &format!("{p}.attn_k"), h, kv_width)?;
        let v = d.linear(&normed, &format!("{p}.attn_v"), h, kv_width)?;
        let past_k = format!("past_key_values.{i}.key");
        let past_v = format!("past_key_values.{i}.value");
        let (present_k, present_v) = (format!("present.{i}.key"), format!("present.{i}.value"));
        let attn = format!("{p}/attention");
        d.g.node_in(
            MS_DOMAIN,
            "GroupQueryAttention",
            &[&attn, &present_k, &present_v],
            &[&q, &k, &v, &past_k, &past_v, &seqlens, &total, &cos, &sin],
            &[
                ("num_heads", Attr::Int(cfg.num_heads as i64)),
                ("kv_num_heads", Attr::Int(kv as i64)),
                ("do_rotary", Attr::Int(1)),
                ("rotary_interleaved", Attr::Int(i64::from(interleaved))),
            ],
        );
        d.g.output(&present_k, DataType::Float, &cache_dims("total_sequence"));
        d.g.output(&present_v, DataType::Float, &cache_dims("total_sequence"));
        let o = d.linear(&attn, &format!("{p}.attn_output"), q_width, h)?;

        let gamma = d.plain(&format!("{p}.ffn_norm.weight"), h)?;
        (normed, residual) = skip_norm(d, &o, &residual, &gamma, &p, "ffn_norm", &eps);
        let gate = d.linear(&normed, &format!("{p}.ffn_gate"), h, ffn)?;
        let up = d.linear(&normed, &format!("{p}.ffn_up"), h, ffn)?;
        let sig =
            d.g.node("Sigmoid", &format!("{p}/gate_sigmoid"), &[&gate], &[]);
        let silu =
            d.g.node("Mul", &format!("{p}/gate_silu"), &[&gate, &sig], &[]);
        let act = d.g.node("Mul", &format!("{p}/gated"), &[&silu, &up], &[]);
        branch = d.linear(&act, &format!("{p}.ffn_down"), ffn, h)?;
    }
    let gamma = d.plain("output_norm.weight", h)?;
    let (normed, _) = skip_norm(d, &branch, &residual, &gamma, "output", "norm", &eps);
    let logits = embed::head(d, &normed, &ids, cfg, embedding)?;
    d.g.output(
        &logits,
        DataType::Float,
        &[
            Dim::Symbolic("batch"),
            Dim::Symbolic("sequence"),
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
