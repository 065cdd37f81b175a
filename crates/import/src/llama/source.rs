//! Where the decoder's tensors come from: a GGUF file or a Hugging Face safetensors file,
//! behind one interface that speaks llama.cpp's tensor names (`token_embd.weight`,
//! `blk.N.attn_q.weight`, …) and says how each tensor is stored.

use super::super::error::ImportError;
use super::super::gguf::{GgmlType, GgufFile, QuantizedBlocks, QK};
use super::super::weights::{check_dtype, SafetensorsFile};

/// How a tensor is stored in the source, as far as the graph writer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// ggml Q4_0 blocks (`w = d·(q − 8)`).
    Q4_0,
    /// ggml Q4_1 blocks (`w = d·q + m`).
    Q4_1,
    /// ggml Q8_0 blocks (`w = d·q`).
    Q8_0,
    /// Anything read as `f32` (F32, F16, BF16, and the K-quants, which are dequantized).
    Float,
}

/// A tensor's row-major shape and storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorMeta {
    /// Row-major shape (`[out, in]` for a projection).
    pub shape: Vec<usize>,
    /// How it is stored.
    pub stored: Stored,
}

/// A checkpoint the decoder graph reads its tensors from.
#[derive(Debug)]
pub(crate) enum TensorSource {
    /// A llama.cpp GGUF file: Q/K rows are in llama.cpp's interleaved rotary order.
    Gguf(GgufFile),
    /// A Hugging Face safetensors file: Q/K rows are in the rotate-half order.
    Safetensors(SafetensorsFile),
}

impl TensorSource {
    /// Whether the Q/K projections' rows are ordered for interleaved rotary pairs rather than
    /// Hugging Face's rotate-half halves: llama.cpp permutes them for its `llama` and
    /// `mistral` architectures (rope type "norm") but not for `qwen2` ("neox").
    pub fn rotary_interleaved(&self, architecture: &str) -> bool {
        matches!(self, Self::Gguf(_)) && architecture != "qwen2"
    }

    /// Shape and storage of tensor `name` (llama.cpp naming), if present.
    pub fn meta(&self, name: &str) -> Option<TensorMeta> {
        match self {
            Self::Gguf(file) => {
                let info = file.tensor(name)?;
                let whole_blocks = info.row_len() % QK as u64 == 0;
                let stored = match info.ggml_type {
                    GgmlType::Q4_0 if whole_blocks => Stored::Q4_0,
                    GgmlType::Q4_1 if whole_blocks => Stored::Q4_1,
                    GgmlType::Q8_0 if whole_blocks => Stored::Q8_0,
                    _ => Stored::Float,
                };
                Some(TensorMeta {
                    shape: info.shape(),
                    stored,
                })
            }
            Self::Safetensors(file) => {
                let info = file.info(&hf_name(name)?)?;
                Some(TensorMeta {
                    shape: info.shape.clone(),
                    stored: Stored::Float,
                })
            }
        }
    }

    /// Checks that tensor `name` exists with row-major shape `shape` and a data type this
    /// importer reads, and returns its storage.
    pub fn require(&self, name: &str, shape: &[usize]) -> Result<Stored, ImportError> {
        let meta = self.meta(name).ok_or_else(|| ImportError::MissingTensor {
            name: self.display_name(name),
        })?;
        if meta.shape != shape {
            return Err(ImportError::ShapeMismatch {
                name: self.display_name(name),
                expected: shape.to_vec(),
                found: meta.shape,
            });
        }
        match self {
            Self::Gguf(file) => {
                if let Some(info) = file.tensor(name) {
                    if !info.ggml_type.dequantizes() {
                        return Err(ImportError::UnsupportedTensorType {
                            name: name.to_owned(),
                            ggml_type: info.ggml_type.name(),
                        });
                    }
                }
            }
            Self::Safetensors(file) => {
                let hf = self.display_name(name);
                if let Some(info) = file.info(&hf) {
                    check_dtype(&hf, &info.dtype)?;
                }
            }
        }
        Ok(meta.stored)
    }

    /// Tensor `name` as `f32`, row-major.
    pub fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, ImportError> {
        match self {
            Self::Gguf(file) => file.read_f32(name),
            Self::Safetensors(file) => {
                let hf = hf_name(name).ok_or_else(|| ImportError::MissingTensor {
                    name: name.to_owned(),
                })?;
                file.read_f32(&hf)
            }
        }
    }

    /// The ggml blocks of tensor `name` (GGUF Q4_0, Q4_1 or Q8_0 tensors only).
    pub fn read_quantized(&mut self, name: &str) -> Result<QuantizedBlocks, ImportError> {
        match self {
            Self::Gguf(file) => file.read_quantized(name),
            Self::Safetensors(_) => Err(ImportError::UnsupportedDtype {
                name: self.display_name(name),
                dtype: "quantized blocks".to_owned(),
            }),
        }
    }

    /// The name the user sees in errors: the source's own name for the tensor.
    fn display_name(&self, name: &str) -> String {
        match self {
            Self::Gguf(_) => name.to_owned(),
            Self::Safetensors(_) => hf_name(name).unwrap_or_else(|| name.to_owned()),
        }
    }
}

/// The Hugging Face name of llama.cpp tensor `name` (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`).
pub(crate) fn hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_owned());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (part, suffix) = rest.split_once('.')?;
    let hf_part = match part {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_part}.{suffix}"))
}
