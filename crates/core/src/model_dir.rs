//! The layout of an ONNX model directory, written by `gateway models import` and read by the
//! ONNX backend: its file names and its manifest (`model-card.json`), which holds the model's
//! catalog card and what only ONNX Runtime needs (graph and tokenizer files, the shapes of the
//! KV cache, pooling). Defined here once so that writer and reader cannot drift apart; reading
//! and writing the files is theirs.

use serde::{Deserialize, Serialize};

use crate::ModelCard;

/// File name of the manifest.
pub const MANIFEST_FILE: &str = "model-card.json";
/// File name of the ONNX graph.
pub const ONNX_FILE: &str = "model.onnx";
/// File name of the Hugging Face `tokenizer.json`.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// File name of the tokenizer's special tokens (decoders).
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// File name of the Jinja chat template (decoders that have one).
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// How an encoder's token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average of the token vectors under the attention mask.
    Mean,
    /// The vector of the first (`[CLS]`) token.
    Cls,
}

/// `model-card.json`: the catalog card (its fields at the top level of the file) and the
/// facts the ONNX backend needs to run the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnnxManifest {
    /// What the catalog shows about the model.
    #[serde(flatten)]
    pub card: ModelCard,
    /// The architecture family of the checkpoint, e.g. `bert` or `llama`.
    pub architecture: String,
    /// Width of the hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Size of the tokenizer's vocabulary.
    pub vocab_size: usize,
    /// Pooling of token vectors (encoders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// Whether sentence vectors are L2-normalised (encoders only).
    #[serde(default)]
    pub normalize: bool,
    /// File name of the ONNX graph inside the model directory.
    pub onnx_file: String,
    /// File name of the Hugging Face `tokenizer.json` inside the model directory.
    pub tokenizer_file: String,
    /// Key/value heads per layer (decoders with grouped-query attention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_kv_heads: Option<usize>,
    /// Width of one attention head (decoders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Whether the directory holds a chat template ([`CHAT_TEMPLATE_FILE`]).
    #[serde(default)]
    pub chat_template: bool,
}

impl OnnxManifest {
    /// The catalog card, with an embedding model's dimensions filled in from its hidden size
    /// (manifests written before the card carried them).
    pub fn catalog_card(&self) -> ModelCard {
        let mut card = self.card.clone();
        if card.kind == crate::ModelKind::Embedding && card.dimensions.is_none() {
            card.dimensions = Some(self.hidden_size);
        }
        card
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ModelKind;

    #[test]
    fn the_card_fields_sit_at_the_top_level() {
        let json = serde_json::json!({
            "id": "all-minilm-l6-v2", "kind": "embedding", "architecture": "bert",
            "context_length": 256, "hidden_size": 384, "num_layers": 6, "num_heads": 12,
            "vocab_size": 30522, "quantization": "f32", "pooling": "mean", "normalize": true,
            "license": "Apache-2.0", "source": "", "onnx_file": ONNX_FILE,
            "tokenizer_file": TOKENIZER_FILE, "chat_template": false
        });
        let manifest: OnnxManifest = serde_json::from_value(json).unwrap();
        assert_eq!(manifest.card.kind, ModelKind::Embedding);
        assert_eq!(manifest.catalog_card().dimensions, Some(384));
        let written = serde_json::to_value(&manifest).unwrap();
        assert_eq!(written["id"], "all-minilm-l6-v2");
        assert_eq!(written["plan"], "base");
    }
}
