//! The `config.json` of a BERT-family checkpoint: the fields the ONNX graph needs, checked
//! for what the graph can express (architecture, activation, position embeddings) and
//! against the importer's size limits.

use serde_json::Value;

use super::error::ImportError;
use super::limits::{
    in_range, positive_finite, MAX_BLOCK_COUNT, MAX_CONTEXT_LENGTH, MAX_EMBEDDING_LENGTH,
    MAX_FEED_FORWARD_LENGTH, MAX_HEAD_COUNT, MAX_TYPE_VOCAB_SIZE, MAX_VOCAB_SIZE,
};

/// The `config.json` fields the graph needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BertConfig {
    /// `model_type` (`bert`, `roberta`, `xlm-roberta`, `camembert`).
    pub model_type: String,
    /// Width of the hidden state.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Rows of the position embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the word embedding table.
    pub vocab_size: usize,
    /// Rows of the token type embedding table.
    pub type_vocab_size: usize,
    /// First position id (0 for BERT, `pad_token_id + 1` for RoBERTa).
    pub position_offset: usize,
}

impl BertConfig {
    /// Reads the fields from a parsed `config.json`; rejects what the graph cannot express.
    pub fn from_json(config: &Value) -> Result<Self, ImportError> {
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let position_offset = match model_type.as_str() {
            "bert" => 0,
            "roberta" | "xlm-roberta" | "camembert" => {
                usize_field(config, "pad_token_id", Some(1))? + 1
            }
            _ => return Err(ImportError::UnsupportedArchitecture { model_type }),
        };
        let act = config
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("gelu");
        if act != "gelu" {
            return Err(ImportError::UnsupportedActivation {
                hidden_act: act.to_owned(),
            });
        }
        if let Some(kind) = config
            .get("position_embedding_type")
            .and_then(Value::as_str)
        {
            if kind != "absolute" {
                return Err(invalid(
                    "position_embedding_type",
                    format!("`{kind}` is not supported"),
                ));
            }
        }
        let cfg = Self {
            model_type,
            hidden_size: usize_field(config, "hidden_size", None)?,
            num_hidden_layers: usize_field(config, "num_hidden_layers", None)?,
            num_attention_heads: usize_field(config, "num_attention_heads", None)?,
            intermediate_size: usize_field(config, "intermediate_size", None)?,
            layer_norm_eps: config
                .get("layer_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-12) as f32,
            max_position_embeddings: usize_field(config, "max_position_embeddings", None)?,
            vocab_size: usize_field(config, "vocab_size", None)?,
            type_vocab_size: usize_field(config, "type_vocab_size", Some(2))?,
            position_offset,
        };
        let limits = [
            ("hidden_size", cfg.hidden_size, MAX_EMBEDDING_LENGTH),
            ("num_hidden_layers", cfg.num_hidden_layers, MAX_BLOCK_COUNT),
            (
                "num_attention_heads",
                cfg.num_attention_heads,
                MAX_HEAD_COUNT,
            ),
            (
                "intermediate_size",
                cfg.intermediate_size,
                MAX_FEED_FORWARD_LENGTH,
            ),
            (
                "max_position_embeddings",
                cfg.max_position_embeddings,
                MAX_CONTEXT_LENGTH,
            ),
            ("vocab_size", cfg.vocab_size, MAX_VOCAB_SIZE),
            ("type_vocab_size", cfg.type_vocab_size, MAX_TYPE_VOCAB_SIZE),
        ];
        for (field, value, max) in limits {
            in_range(field, value as u64, 1, max)?;
        }
        positive_finite("layer_norm_eps", cfg.layer_norm_eps)?;
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(invalid(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    cfg.num_attention_heads, cfg.hidden_size
                ),
            ));
        }
        if cfg.position_offset >= cfg.max_position_embeddings {
            return Err(invalid(
                "max_position_embeddings",
                "smaller than the position offset".into(),
            ));
        }
        Ok(cfg)
    }

    /// Longest sequence the position table allows.
    pub fn max_sequence(&self) -> usize {
        self.max_position_embeddings - self.position_offset
    }
}

/// A `config.json` integer, or `default` when absent.
fn usize_field(config: &Value, field: &str, default: Option<usize>) -> Result<usize, ImportError> {
    match (config.get(field), default) {
        (Some(v), _) => v
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| invalid(field, format!("expected a non-negative integer, found {v}"))),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(invalid(field, "missing".into())),
    }
}

/// An [`ImportError::InvalidConfig`].
fn invalid(field: &str, reason: String) -> ImportError {
    ImportError::InvalidConfig {
        field: field.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn config_rejects_other_architectures_and_activations() {
        let gpt = serde_json::json!({"model_type": "gpt2"});
        assert!(matches!(
            BertConfig::from_json(&gpt),
            Err(ImportError::UnsupportedArchitecture { model_type }) if model_type == "gpt2"
        ));
        let relu = serde_json::json!({"model_type": "bert", "hidden_act": "relu"});
        assert!(matches!(
            BertConfig::from_json(&relu),
            Err(ImportError::UnsupportedActivation { .. })
        ));
        let missing = serde_json::json!({"model_type": "bert"});
        assert!(matches!(
            BertConfig::from_json(&missing),
            Err(ImportError::InvalidConfig { .. })
        ));
    }
}
