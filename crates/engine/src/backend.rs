//! The [`Backend`] trait: what the HTTP layer asks of a served model, whatever runs it (our ONNX
//! Runtime engine, or later an upstream OpenAI-compatible server).

use async_trait::async_trait;
use gateway_core::ModelCard;

use crate::EngineError;

/// The inputs of one embedding request, as the client sent them.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInputs {
    /// Texts, tokenized by the model's tokenizer.
    Texts(Vec<String>),
    /// Pre-tokenized inputs: token ids of the model's vocabulary, used as given.
    Tokens(Vec<Vec<u32>>),
}

impl EmbeddingInputs {
    /// Number of inputs.
    pub fn len(&self) -> usize {
        match self {
            Self::Texts(texts) => texts.len(),
            Self::Tokens(tokens) => tokens.len(),
        }
    }

    /// Whether there are no inputs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The result of an embedding request: one vector per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in the order of the inputs.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the inputs were billed for (special tokens included).
    pub prompt_tokens: usize,
}

/// A served model. Object-safe, so the router holds `Arc<dyn Backend>` per model id.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The model's card: id, kind, context length and catalog facts.
    fn card(&self) -> &ModelCard;

    /// Whether the backend can take requests now (its worker is alive).
    fn is_ready(&self) -> bool;

    /// Embeds the inputs; one vector per input, in order.
    async fn embed(&self, inputs: EmbeddingInputs) -> Result<Embeddings, EngineError> {
        let _ = inputs;
        Err(EngineError::Unsupported {
            operation: "embeddings",
        })
    }
}
