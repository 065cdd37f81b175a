//! Model catalog types: the model card that describes a served model, written by the importer
//! into a model directory (`model-card.json`) and shown by `/v1/models`.

use serde::{Deserialize, Serialize};

/// File name of the model card inside a model directory.
pub const MODEL_CARD_FILE: &str = "model-card.json";

/// What a model does, which decides its endpoints and how its tokens are billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A generative model served by `/v1/chat/completions` and `/v1/completions`.
    Chat,
    /// An encoder served by `/v1/embeddings`; only input tokens are billed.
    Embedding,
}

/// The service plan a model belongs to, by ascending model size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServicePlan {
    /// Small models.
    Base,
    /// Medium models.
    Plus,
    /// Large models.
    Premium,
}

/// How an encoder's token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average of the token vectors under the attention mask.
    Mean,
    /// The vector of the first (`[CLS]`) token.
    Cls,
}

/// Everything the gateway knows about one model: written by `gateway models import` beside the
/// ONNX graph and the tokenizer, read by the engine and the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The model id clients send, e.g. `all-minilm-l6-v2`.
    pub id: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// The architecture family of the checkpoint, e.g. `bert` or `llama`.
    pub architecture: String,
    /// Longest input, in tokens, the model accepts.
    pub context_length: usize,
    /// Width of the hidden state (and of embedding vectors for encoders).
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Size of the tokenizer's vocabulary.
    pub vocab_size: usize,
    /// Weight format of the ONNX graph, e.g. `f32`, `q4`, `int8`.
    pub quantization: String,
    /// Pooling of token vectors (encoders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// Whether sentence vectors are L2-normalised (encoders only).
    #[serde(default)]
    pub normalize: bool,
    /// SPDX identifier of the model's license, e.g. `Apache-2.0`.
    pub license: String,
    /// Where the weights come from, e.g. the model's Hugging Face page.
    pub source: String,
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
    /// Whether the directory holds a chat template (`chat_template.jinja`).
    #[serde(default)]
    pub chat_template: bool,
}
