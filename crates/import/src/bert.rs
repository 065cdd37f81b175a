//! The BERT encoder as an ONNX graph (also RoBERTa-style checkpoints, which differ only in
//! their tensor prefix and position offset).
//!
//! Contract with the runtime: inputs `input_ids`, `attention_mask`, `token_type_ids` (int64,
//! `[batch, sequence]`), output `last_hidden_state` (f32, `[batch, sequence, hidden]`). Position
//! ids `0..sequence` are computed in the graph; masked keys get an additive bias of -1e9 before
//! the softmax; GELU is the exact erf form. Linear weights are transposed at import time so every
//! projection is one `MatMul` plus an `Add`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::config::BertConfig;
use super::error::ImportError;
use super::graph::{Attr, Dim, GraphBuilder};
use super::onnx_proto::tensor_proto::DataType;
use super::weights::{check_dtype, SafetensorsFile};

/// Additive attention bias of a masked key: large enough that `exp` underflows to 0, finite so
/// fully padded rows stay NaN-free.
const MASK_BIAS: f32 = -1.0e9;

/// Where a graph weight comes from: a checkpoint tensor, optionally transposed.
#[derive(Debug)]
struct Recipe {
    /// Full tensor name in the file (with any prefix).
    source: String,
    /// Stored shape, as checked against the config.
    shape: Vec<usize>,
    /// Whether the 2-D tensor is transposed (`[out, in]` to `[in, out]`).
    transpose: bool,
}

/// The graph under construction plus the recipes of its weights.
struct Builder<'a> {
    g: GraphBuilder,
    recipes: HashMap<String, Recipe>,
    file: &'a SafetensorsFile,
    prefix: String,
}

impl Builder<'_> {
    /// Declares checkpoint tensor `name` (without prefix) of shape `shape` as a graph weight.
    fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        transpose: bool,
    ) -> Result<String, ImportError> {
        let source = format!("{}{name}", self.prefix);
        let info = self
            .file
            .info(&source)
            .ok_or_else(|| ImportError::MissingTensor {
                name: name.to_owned(),
            })?;
        if info.shape != shape {
            return Err(ImportError::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        check_dtype(name, &info.dtype)?;
        let dims: Vec<usize> = if transpose {
            shape.iter().rev().copied().collect()
        } else {
            shape.to_vec()
        };
        let graph_name = if transpose {
            format!("{name}.T")
        } else {
            name.to_owned()
        };
        self.g.weight(&graph_name, &dims);
        self.recipes.insert(
            graph_name.clone(),
            Recipe {
                source,
                shape: shape.to_vec(),
                transpose,
            },
        );
        Ok(graph_name)
    }

    /// `x @ W.T + b` for the checkpoint's `Linear` layer `name` (`[out, in]` weight).
    fn linear(
        &mut self,
        x: &str,
        name: &str,
        inp: usize,
        out: usize,
    ) -> Result<String, ImportError> {
        let w = self.tensor(&format!("{name}.weight"), &[out, inp], true)?;
        let b = self.tensor(&format!("{name}.bias"), &[out], false)?;
        let y = self
            .g
            .node("MatMul", &format!("{name}/matmul"), &[x, &w], &[]);
        Ok(self.g.node("Add", &format!("{name}/out"), &[&y, &b], &[]))
    }

    /// LayerNormalization over the last axis with the checkpoint's `name.{weight,bias}`.
    fn layer_norm(
        &mut self,
        x: &str,
        name: &str,
        width: usize,
        eps: f32,
    ) -> Result<String, ImportError> {
        let gamma = self.tensor(&format!("{name}.weight"), &[width], false)?;
        let beta = self.tensor(&format!("{name}.bias"), &[width], false)?;
        let attrs = [("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))];
        Ok(self.g.node(
            "LayerNormalization",
            &format!("{name}/out"),
            &[x, &gamma, &beta],
            &attrs,
        ))
    }
}

/// The tensor-name prefix of the checkpoint (`bert.`, `roberta.`, or none).
fn detect_prefix(file: &SafetensorsFile) -> String {
    let key = "embeddings.word_embeddings.weight";
    file.names()
        .find(|n| n.ends_with(key))
        .map(|n| n[..n.len() - key.len()].to_owned())
        .unwrap_or_default()
}

/// Builds the BERT graph for `cfg` from the tensors in `file` and writes the ONNX model to `out`.
/// All tensors are checked (presence, shape, dtype) before anything is written.
pub(crate) fn write_onnx<W: Write>(
    cfg: &BertConfig,
    file: &mut SafetensorsFile,
    out: W,
    out_path: &Path,
) -> Result<u64, ImportError> {
    let (g, recipes) = build(cfg, file)?;
    let written = g.write("bert", out, |spec| {
        let recipe = recipes
            .get(&spec.name)
            .ok_or_else(|| ImportError::MissingTensor {
                name: spec.name.clone(),
            })?;
        let data = file.read_f32(&recipe.source)?;
        Ok(if recipe.transpose {
            transpose(&data, recipe.shape[0], recipe.shape[1])
        } else {
            data
        })
    });
    written.map_err(|e| e.into_import_error(out_path))
}

/// Row-major `[rows, cols]` to `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// The graph (with deferred weights) and the recipe of each weight.
fn build(
    cfg: &BertConfig,
    file: &SafetensorsFile,
) -> Result<(GraphBuilder, HashMap<String, Recipe>), ImportError> {
    let mut b = Builder {
        g: GraphBuilder::new(),
        recipes: HashMap::new(),
        file,
        prefix: detect_prefix(file),
    };
    let (h, heads) = (cfg.hidden_size, cfg.num_attention_heads);
    let head_dim = h / heads;
    let eps = cfg.layer_norm_eps;
    let bs = [Dim::Symbolic("batch"), Dim::Symbolic("sequence")];
    let ids = b.g.input("input_ids", DataType::Int64, &bs);
    let mask = b.g.input("attention_mask", DataType::Int64, &bs);
    let types = b.g.input("token_type_ids", DataType::Int64, &bs);

    // Embeddings: word + token type + position rows offset..offset+sequence, then LayerNorm.
    let word_table = b.tensor(
        "embeddings.word_embeddings.weight",
        &[cfg.vocab_size, h],
        false,
    )?;
    let pos_table = b.tensor(
        "embeddings.position_embeddings.weight",
        &[cfg.max_position_embeddings, h],
        false,
    )?;
    let type_table = b.tensor(
        "embeddings.token_type_embeddings.weight",
        &[cfg.type_vocab_size, h],
        false,
    )?;
    let word =
        b.g.node("Gather", "embeddings/word", &[&word_table, &ids], &[]);
    let typ = b.g.node(
        "Gather",
        "embeddings/token_type",
        &[&type_table, &types],
        &[],
    );
    let seq = b.g.node(
        "Shape",
        "embeddings/seq_len",
        &[&ids],
        &[("start", Attr::Int(1)), ("end", Attr::Int(2))],
    );
    let offset =
        b.g.const_i64("const/position_offset", &[1], &[cfg.position_offset as i64]);
    let end =
        b.g.node("Add", "embeddings/position_end", &[&seq, &offset], &[]);
    let axis0 = b.g.const_i64("const/axis0", &[1], &[0]);
    let pos = b.g.node(
        "Slice",
        "embeddings/position",
        &[&pos_table, &offset, &end, &axis0],
        &[],
    );
    let sum = b.g.node("Add", "embeddings/word_type", &[&word, &typ], &[]);
    let sum = b.g.node("Add", "embeddings/sum", &[&sum, &pos], &[]);
    let mut x = b.layer_norm(&sum, "embeddings.LayerNorm", h, eps)?;

    // Attention bias [batch, 1, 1, sequence]: 0 where attended, MASK_BIAS where masked.
    let maskf = b.g.node(
        "Cast",
        "mask/float",
        &[&mask],
        &[("to", Attr::Int(DataType::Float as i64))],
    );
    let one = b.g.const_f32("const/one", &[], &[1.0]);
    let inverted = b.g.node("Sub", "mask/inverted", &[&one, &maskf], &[]);
    let big = b.g.const_f32("const/mask_bias", &[], &[MASK_BIAS]);
    let bias = b.g.node("Mul", "mask/bias", &[&inverted, &big], &[]);
    let axes12 = b.g.const_i64("const/axes12", &[2], &[1, 2]);
    let bias = b.g.node("Unsqueeze", "mask/bias4", &[&bias, &axes12], &[]);

    let split_heads = b.g.const_i64(
        "const/split_heads",
        &[4],
        &[0, 0, heads as i64, head_dim as i64],
    );
    let merge_heads = b.g.const_i64("const/merge_heads", &[3], &[0, 0, h as i64]);
    let scale = b.g.const_f32(
        "const/attention_scale",
        &[],
        &[1.0 / (head_dim as f32).sqrt()],
    );
    let half = b.g.const_f32("const/half", &[], &[0.5]);
    let inv_sqrt2 =
        b.g.const_f32("const/inv_sqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
    let bhsd = Attr::Ints(vec![0, 2, 1, 3]);

    for i in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        // Self-attention: heads as [batch, heads, sequence, head_dim]; keys pre-transposed.
        let heads_of =
            |b: &mut Builder, name: &str, perm: Vec<i64>| -> Result<String, ImportError> {
                let y = b.linear(&x, &format!("{p}.attention.self.{name}"), h, h)?;
                let y = b.g.node(
                    "Reshape",
                    &format!("{p}/{name}/split"),
                    &[&y, &split_heads],
                    &[],
                );
                Ok(b.g.node(
                    "Transpose",
                    &format!("{p}/{name}/heads"),
                    &[&y],
                    &[("perm", Attr::Ints(perm))],
                ))
            };
        let q = heads_of(&mut b, "query", vec![0, 2, 1, 3])?;
        let k = heads_of(&mut b, "key", vec![0, 2, 3, 1])?;
        let v = heads_of(&mut b, "value", vec![0, 2, 1, 3])?;
        let scores = b.g.node("MatMul", &format!("{p}/scores"), &[&q, &k], &[]);
        let scores = b.g.node(
            "Mul",
            &format!("{p}/scores_scaled"),
            &[&scores, &scale],
            &[],
        );
        let scores =
            b.g.node("Add", &format!("{p}/scores_masked"), &[&scores, &bias], &[]);
        let probs = b.g.node(
            "Softmax",
            &format!("{p}/probs"),
            &[&scores],
            &[("axis", Attr::Int(-1))],
        );
        let ctx =
            b.g.node("MatMul", &format!("{p}/context"), &[&probs, &v], &[]);
        let ctx = b.g.node(
            "Transpose",
            &format!("{p}/context_bshd"),
            &[&ctx],
            &[("perm", bhsd.clone())],
        );
        let ctx = b.g.node(
            "Reshape",
            &format!("{p}/context_merged"),
            &[&ctx, &merge_heads],
            &[],
        );
        let attn = b.linear(&ctx, &format!("{p}.attention.output.dense"), h, h)?;
        let attn =
            b.g.node("Add", &format!("{p}/attention_residual"), &[&attn, &x], &[]);
        let attn = b.layer_norm(&attn, &format!("{p}.attention.output.LayerNorm"), h, eps)?;

        // Feed-forward with exact GELU: 0.5 * y * (1 + erf(y / sqrt(2))).
        let inter = cfg.intermediate_size;
        let y = b.linear(&attn, &format!("{p}.intermediate.dense"), h, inter)?;
        let e =
            b.g.node("Mul", &format!("{p}/gelu/scaled"), &[&y, &inv_sqrt2], &[]);
        let e = b.g.node("Erf", &format!("{p}/gelu/erf"), &[&e], &[]);
        let e =
            b.g.node("Add", &format!("{p}/gelu/erf_plus_one"), &[&e, &one], &[]);
        let y2 =
            b.g.node("Mul", &format!("{p}/gelu/half"), &[&y, &half], &[]);
        let y = b.g.node("Mul", &format!("{p}/gelu/out"), &[&y2, &e], &[]);
        let y = b.linear(&y, &format!("{p}.output.dense"), inter, h)?;
        let y =
            b.g.node("Add", &format!("{p}/output_residual"), &[&y, &attn], &[]);
        x = b.layer_norm(&y, &format!("{p}.output.LayerNorm"), h, eps)?;
    }

    let out = b.g.node("Identity", "last_hidden_state", &[&x], &[]);
    let bsh = [
        Dim::Symbolic("batch"),
        Dim::Symbolic("sequence"),
        Dim::Fixed(h as i64),
    ];
    b.g.output(&out, DataType::Float, &bsh);
    Ok((b.g, b.recipes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
