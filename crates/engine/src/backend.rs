//! The [`Backend`] trait: what the HTTP layer asks of a served model, whatever runs it (our ONNX
//! Runtime engine, or later an upstream OpenAI-compatible server).

use async_trait::async_trait;
use gateway_core::ModelCard;

use crate::{ChatTurn, EngineError, GenerationRequest, GenerationStream, StepStats};

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

    /// Where a generating model's scheduler spends its time; `None` for other backends.
    fn step_stats(&self) -> Option<StepStats> {
        None
    }

    /// Embeds the inputs; one vector per input, in order.
    async fn embed(&self, inputs: EmbeddingInputs) -> Result<Embeddings, EngineError> {
        let _ = inputs;
        Err(EngineError::Unsupported {
            operation: "embeddings",
        })
    }

    /// Starts a generation; its events arrive on the returned stream. Dropping the stream
    /// cancels the generation.
    async fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, EngineError> {
        let _ = request;
        Err(EngineError::Unsupported {
            operation: "text generation",
        })
    }

    /// Renders a conversation with the model's chat template (ending with the header of an
    /// assistant turn) and tokenizes it: the exact prompt a chat request runs.
    fn render_chat(&self, turns: &[ChatTurn]) -> Result<Vec<u32>, EngineError> {
        let _ = turns;
        Err(EngineError::Unsupported { operation: "chat" })
    }

    /// Tokenizes a raw prompt the way a completion request runs it.
    fn tokenize(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let _ = text;
        Err(EngineError::Unsupported {
            operation: "tokenization",
        })
    }

    /// Turns token ids back into text (special tokens left out).
    fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError> {
        let _ = tokens;
        Err(EngineError::Unsupported {
            operation: "detokenization",
        })
    }
}
