//! The hyper-parameters of a LLaMA-family decoder (LLaMA, Mistral, Qwen2), read either from
//! GGUF metadata (`llama.block_count`, `llama.embedding_length`, …) or from a Hugging Face
//! `config.json`, into one struct the decoder graph writer uses.

use serde::Serialize;
use serde_json::Value;

use super::error::ImportError;
use super::gguf::GgufFile;
use super::limits::{
    in_range, positive_finite, MAX_BLOCK_COUNT, MAX_CONTEXT_LENGTH, MAX_EMBEDDING_LENGTH,
    MAX_FEED_FORWARD_LENGTH, MAX_HEAD_COUNT, MAX_HEAD_DIM, MAX_ROPE_TABLE, MAX_VOCAB_SIZE,
};

/// GGUF architectures (`general.architecture`) read as LLaMA-family decoders.
const GGUF_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2"];
/// `config.json` model types read as LLaMA-family decoders.
const HF_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2"];

/// The hyper-parameters of a LLaMA-family decoder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    /// `general.architecture` (GGUF) or `model_type` (`config.json`).
    pub architecture: String,
    /// Width of the hidden state.
    pub hidden_size: usize,
    /// Width of the gated feed-forward layer.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_layers: usize,
    /// Query heads per block.
    pub num_heads: usize,
    /// Key/value heads per block (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Rows of the token embedding table.
    pub vocab_size: usize,
    /// Longest context the model was trained for.
    pub context_length: usize,
    /// RoPE base frequency (`rope_theta`).
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Whether the output head reuses the token embedding table.
    pub tie_word_embeddings: bool,
    /// Whether the Q/K/V projections have biases (Qwen2).
    pub attention_bias: bool,
}

impl LlamaConfig {
    /// Reads the hyper-parameters from a GGUF file's metadata; the vocabulary size comes from
    /// `{arch}.vocab_size`, else the tokenizer's token list, else the embedding table, and
    /// the head is tied when the file has no `output.weight`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, ImportError> {
        let arch = gguf.require_str("general.architecture")?.to_owned();
        if !GGUF_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(ImportError::UnsupportedArchitecture { model_type: arch });
        }
        let key = |k: &str| format!("{arch}.{k}");
        let int =
            |k: &str| -> Result<usize, ImportError> { Ok(gguf.require_u64(&key(k))? as usize) };
        let hidden_size = int(EMBEDDING_LENGTH.gguf)?;
        let num_heads = heads(int(HEAD_COUNT.gguf)?, &key(HEAD_COUNT.gguf))?;
        let num_kv_heads = match gguf.get(&key(HEAD_COUNT_KV.gguf)) {
            Some(_) => int(HEAD_COUNT_KV.gguf)?,
            None => num_heads,
        };
        let head_dim = match gguf.get(&key(KEY_LENGTH.gguf)) {
            Some(_) => int(KEY_LENGTH.gguf)?,
            None => hidden_size / num_heads,
        };
        let vocab_size = match gguf.get(&key(VOCAB_SIZE.gguf)) {
            Some(_) => int(VOCAB_SIZE.gguf)?,
            None => match gguf.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
                Some(tokens) => tokens.len(),
                None => gguf
                    .tensor("token_embd.weight")
                    .and_then(|t| t.dims.get(1).copied())
                    .ok_or_else(|| ImportError::MissingTensor {
                        name: "token_embd.weight".to_owned(),
                    })? as usize,
            },
        };
        let rope_theta = match gguf.get(&key(ROPE_FREQ_BASE.gguf)) {
            Some(_) => gguf.require_f64(&key(ROPE_FREQ_BASE.gguf))? as f32,
            None => 10_000.0,
        };
        let config = Self {
            hidden_size,
            intermediate_size: int(FEED_FORWARD_LENGTH.gguf)?,
            num_layers: int(BLOCK_COUNT.gguf)?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size,
            context_length: int(CONTEXT_LENGTH.gguf)?,
            rope_theta,
            rms_norm_eps: gguf.require_f64(&key(RMS_EPSILON.gguf))? as f32,
            tie_word_embeddings: gguf.tensor("output.weight").is_none(),
            attention_bias: gguf.tensor("blk.0.attn_q.bias").is_some(),
            architecture: arch,
        };
        config.check(
            |field| format!("{}.{}", config.architecture, field.gguf),
            |key, reason| ImportError::GgufMetadata { key, reason },
        )?;
        Ok(config)
    }

    /// Reads the hyper-parameters from a parsed Hugging Face `config.json` (LLaMA, Mistral and
    /// Qwen2 field names and defaults).
    pub fn from_hf_config(config: &Value) -> Result<Self, ImportError> {
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !HF_MODEL_TYPES.contains(&model_type.as_str()) {
            return Err(ImportError::UnsupportedArchitecture { model_type });
        }
        if let Some(act) = config.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(ImportError::UnsupportedActivation {
                    hidden_act: act.to_owned(),
                });
            }
        }
        let hidden_size = usize_field(config, EMBEDDING_LENGTH.hf, None)?;
        let num_heads = heads(usize_field(config, HEAD_COUNT.hf, None)?, HEAD_COUNT.hf)?;
        let parsed = Self {
            hidden_size,
            intermediate_size: usize_field(config, FEED_FORWARD_LENGTH.hf, None)?,
            num_layers: usize_field(config, BLOCK_COUNT.hf, None)?,
            num_heads,
            num_kv_heads: usize_field(config, HEAD_COUNT_KV.hf, Some(num_heads))?,
            head_dim: usize_field(config, KEY_LENGTH.hf, Some(hidden_size / num_heads))?,
            vocab_size: usize_field(config, VOCAB_SIZE.hf, None)?,
            context_length: usize_field(config, CONTEXT_LENGTH.hf, None)?,
            rope_theta: f32_field(config, ROPE_FREQ_BASE.hf, 10_000.0)?,
            rms_norm_eps: f32_field(config, RMS_EPSILON.hf, 1e-6)?,
            tie_word_embeddings: bool_field(config, "tie_word_embeddings", false)?,
            attention_bias: bool_field(config, "attention_bias", model_type == "qwen2")?,
            architecture: model_type,
        };
        parsed.check(
            |field| field.hf.to_owned(),
            |field, reason| ImportError::InvalidConfig { field, reason },
        )?;
        Ok(parsed)
    }

    /// Rejects shapes a decoder graph cannot have and sizes beyond the importer's limits
    /// (the query head count is checked where it is read, before it divides); `name` names a
    /// field as the source does, `error` makes the error of a malformed shape.
    fn check(
        &self,
        name: impl Fn(Field) -> String,
        error: impl Fn(String, String) -> ImportError,
    ) -> Result<(), ImportError> {
        let limits = [
            (EMBEDDING_LENGTH, self.hidden_size, MAX_EMBEDDING_LENGTH),
            (
                FEED_FORWARD_LENGTH,
                self.intermediate_size,
                MAX_FEED_FORWARD_LENGTH,
            ),
            (BLOCK_COUNT, self.num_layers, MAX_BLOCK_COUNT),
            (HEAD_COUNT_KV, self.num_kv_heads, MAX_HEAD_COUNT),
            (KEY_LENGTH, self.head_dim, MAX_HEAD_DIM),
            (VOCAB_SIZE, self.vocab_size, MAX_VOCAB_SIZE),
            (CONTEXT_LENGTH, self.context_length, MAX_CONTEXT_LENGTH),
        ];
        for (field, value, max) in limits {
            in_range(&name(field), value as u64, 1, max)?;
        }
        // The rotary cos/sin tables hold `context_length × key_length / 2` entries each.
        let rope_max = MAX_ROPE_TABLE / self.head_dim as u64;
        in_range(
            &name(CONTEXT_LENGTH),
            self.context_length as u64,
            1,
            rope_max,
        )?;
        positive_finite(&name(ROPE_FREQ_BASE), self.rope_theta)?;
        positive_finite(&name(RMS_EPSILON), self.rms_norm_eps)?;
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(error(
                name(HEAD_COUNT_KV),
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(error(
                name(KEY_LENGTH),
                format!(
                    "head width {} is odd, rotary embeddings need pairs",
                    self.head_dim
                ),
            ));
        }
        Ok(())
    }
}

/// How a hyper-parameter is named in GGUF metadata (after `{architecture}.`) and in a Hugging
/// Face `config.json`.
#[derive(Debug, Clone, Copy)]
struct Field {
    /// The GGUF key without the architecture prefix.
    gguf: &'static str,
    /// The `config.json` field.
    hf: &'static str,
}

/// The width of the hidden state.
const EMBEDDING_LENGTH: Field = Field {
    gguf: "embedding_length",
    hf: "hidden_size",
};
/// The width of the feed-forward layer.
const FEED_FORWARD_LENGTH: Field = Field {
    gguf: "feed_forward_length",
    hf: "intermediate_size",
};
/// The number of blocks.
const BLOCK_COUNT: Field = Field {
    gguf: "block_count",
    hf: "num_hidden_layers",
};
/// The number of query heads.
const HEAD_COUNT: Field = Field {
    gguf: "attention.head_count",
    hf: "num_attention_heads",
};
/// The number of key/value heads.
const HEAD_COUNT_KV: Field = Field {
    gguf: "attention.head_count_kv",
    hf: "num_key_value_heads",
};
/// The width of one head.
const KEY_LENGTH: Field = Field {
    gguf: "attention.key_length",
    hf: "head_dim",
};
/// The vocabulary size.
const VOCAB_SIZE: Field = Field {
    gguf: "vocab_size",
    hf: "vocab_size",
};
/// The trained context length.
const CONTEXT_LENGTH: Field = Field {
    gguf: "context_length",
    hf: "max_position_embeddings",
};
/// The RoPE base frequency.
const ROPE_FREQ_BASE: Field = Field {
    gguf: "rope.freq_base",
    hf: "rope_theta",
};
/// The RMSNorm epsilon.
const RMS_EPSILON: Field = Field {
    gguf: "attention.layer_norm_rms_epsilon",
    hf: "rms_norm_eps",
};

/// A query head count within `1..=`[`MAX_HEAD_COUNT`] (checked before anything divides by
/// it), else [`ImportError::OutOfRange`] naming `field`.
fn heads(value: usize, field: &str) -> Result<usize, ImportError> {
    in_range(field, value as u64, 1, MAX_HEAD_COUNT).map(|_| value)
}

/// A non-negative integer field of `config.json`, or `default` when absent (null counts as
/// absent).
fn usize_field(config: &Value, field: &str, default: Option<usize>) -> Result<usize, ImportError> {
    match config.get(field).filter(|v| !v.is_null()) {
        Some(v) => v
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| ImportError::InvalidConfig {
                field: field.to_owned(),
                reason: format!("expected a non-negative integer, found {v}"),
            }),
        None => default.ok_or_else(|| ImportError::InvalidConfig {
            field: field.to_owned(),
            reason: "missing".to_owned(),
        }),
    }
}

/// A number field of `config.json`, or `default` when absent.
fn f32_field(config: &Value, field: &str, default: f32) -> Result<f32, ImportError> {
    match config.get(field).filter(|v| !v.is_null()) {
        Some(v) => v
            .as_f64()
            .map(|n| n as f32)
            .ok_or_else(|| ImportError::InvalidConfig {
                field: field.to_owned(),
                reason: format!("expected a number, found {v}"),
            }),
        None => Ok(default),
    }
}

/// A bool field of `config.json`, or `default` when absent.
fn bool_field(config: &Value, field: &str, default: bool) -> Result<bool, ImportError> {
    match config.get(field).filter(|v| !v.is_null()) {
        Some(v) => v.as_bool().ok_or_else(|| ImportError::InvalidConfig {
            field: field.to_owned(),
            reason: format!("expected true or false, found {v}"),
        }),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::gguf::tests::{kv_f32, kv_str, kv_str_array, kv_u32, save, write_gguf};
    use super::*;

    #[test]
    fn reads_gguf_metadata() {
        let kvs = [
            ("general.architecture", kv_str("llama")),
            ("llama.block_count", kv_u32(30)),
            ("llama.embedding_length", kv_u32(576)),
            ("llama.feed_forward_length", kv_u32(1536)),
            ("llama.attention.head_count", kv_u32(9)),
            ("llama.attention.head_count_kv", kv_u32(3)),
            ("llama.rope.freq_base", kv_f32(100_000.0)),
            ("llama.attention.layer_norm_rms_epsilon", kv_f32(1e-5)),
            ("llama.context_length", kv_u32(8192)),
            ("tokenizer.ggml.tokens", kv_str_array(&["a", "b", "c"])),
        ];
        let kvs: Vec<_> = kvs.into_iter().map(|(k, (t, v))| (k, t, v)).collect();
        let dir = tempfile::tempdir().unwrap();
        let gguf = GgufFile::open(&save(dir.path(), &write_gguf(3, &kvs, &[], 32))).unwrap();
        let c = LlamaConfig::from_gguf(&gguf).unwrap();
        assert_eq!(
            c,
            LlamaConfig {
                architecture: "llama".to_owned(),
                hidden_size: 576,
                intermediate_size: 1536,
                num_layers: 30,
                num_heads: 9,
                num_kv_heads: 3,
                head_dim: 64,
                vocab_size: 3,
                context_length: 8192,
                rope_theta: 100_000.0,
                rms_norm_eps: 1e-5,
                tie_word_embeddings: true,
                attention_bias: false,
            }
        );
        let missing: Vec<_> = kvs
            .into_iter()
            .filter(|(k, ..)| *k != "llama.block_count")
            .collect();
        let gguf = GgufFile::open(&save(dir.path(), &write_gguf(3, &missing, &[], 32))).unwrap();
        let err = LlamaConfig::from_gguf(&gguf).unwrap_err();
        assert!(
            matches!(err, ImportError::GgufMetadata { ref key, .. } if key == "llama.block_count")
        );
    }

    #[test]
    fn reads_hf_configs() {
        let llama = serde_json::json!({
            "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
            "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
            "vocab_size": 49152, "max_position_embeddings": 8192, "rope_theta": 100000.0,
            "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "hidden_act": "silu"
        });
        let c = LlamaConfig::from_hf_config(&llama).unwrap();
        assert_eq!((c.head_dim, c.num_kv_heads, c.vocab_size), (64, 3, 49152));
        assert!(c.tie_word_embeddings && !c.attention_bias);

        let qwen = serde_json::json!({
            "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "vocab_size": 151936, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6, "tie_word_embeddings": true
        });
        let c = LlamaConfig::from_hf_config(&qwen).unwrap();
        assert!(c.attention_bias);
        assert_eq!(c.head_dim, 64);

        let mistral = serde_json::json!({
            "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "vocab_size": 32768, "max_position_embeddings": 32768
        });
        let c = LlamaConfig::from_hf_config(&mistral).unwrap();
        assert_eq!((c.rope_theta, c.rms_norm_eps), (10_000.0, 1e-6));

        let bad = serde_json::json!({"model_type": "llama", "hidden_size": "big"});
        assert!(matches!(
            LlamaConfig::from_hf_config(&bad),
            Err(ImportError::InvalidConfig { ref field, .. }) if field == "hidden_size"
        ));
        let gqa = serde_json::json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 3,
            "vocab_size": 300, "max_position_embeddings": 128
        });
        assert!(LlamaConfig::from_hf_config(&gqa).is_err());
        let bert = serde_json::json!({"model_type": "bert"});
        assert!(matches!(
            LlamaConfig::from_hf_config(&bert),
            Err(ImportError::UnsupportedArchitecture { .. })
        ));
    }
}
