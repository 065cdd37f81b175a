//! The [`Backend`] trait and the plain data it speaks besides generations: what a backend can
//! do ([`Capabilities`]), whether it can serve now ([`Health`]), embeddings in and out, and the
//! engine-specific [`Figure`]s it shows on `/metrics`.

use async_trait::async_trait;
use gateway_core::ModelCard;

use crate::{BackendError, GenerationRequest, GenerationStream, Prompt, TokenCount, Usage};

/// What a backend offers; the HTTP layer refuses the rest before calling it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Chat prompts ([`Prompt::Chat`]).
    pub chat: bool,
    /// Text prompts ([`Prompt::Text`]).
    pub completion: bool,
    /// Embeddings.
    pub embeddings: bool,
    /// Prompts and embedding inputs as token ids of the model's vocabulary.
    pub token_ids: bool,
    /// Log-probabilities of generated tokens.
    pub logprobs: bool,
    /// [`Backend::tokenize`] and [`Backend::detokenize`].
    pub tokenize: bool,
    /// The prompt echoed before each choice ([`crate::GenerationRequest::echo`]).
    pub echo: bool,
    /// Outputs held to an [`crate::OutputConstraint`].
    pub constrained_output: bool,
    /// Tools shown to the model with a chat prompt ([`crate::GenerationRequest::tools`]).
    pub tools: bool,
}

/// Whether a backend can take requests now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// It can.
    Ready,
    /// It cannot, and why.
    Unavailable(String),
}

/// The inputs of one embedding request, as the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// What the inputs were billed for (prompt tokens only).
    pub usage: Usage,
}

/// A figure of a backend's own, shown on `/metrics` as `gateway_engine_<name>{model=…}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// Metric name after `gateway_engine_`, e.g. `steps`.
    pub name: &'static str,
    /// The metric's help text.
    pub help: &'static str,
    /// Its current value (a cumulative count or a level).
    pub value: f64,
}

/// A served model. Object-safe, so the router holds `Arc<dyn Backend>` per model id. Every
/// method that does work is async and must not block the caller's thread: a backend moves
/// tokenization, templating and inference to threads of its own.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The model's catalog card.
    fn card(&self) -> &ModelCard;

    /// What the backend offers.
    fn capabilities(&self) -> Capabilities;

    /// Whether the backend can take requests now.
    fn health(&self) -> Health;

    /// Figures of the backend's own for `/metrics`; none by default.
    fn figures(&self) -> Vec<Figure> {
        Vec::new()
    }

    /// The tokens `prompt` will be billed for, before it is admitted: exact where the backend
    /// has the model's tokenizer; by default an estimate from the prompt's text.
    async fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<TokenCount, BackendError> {
        Ok(prompt.estimated_tokens())
    }

    /// Starts a generation of `request.choices` choices; its events arrive on the returned
    /// stream. Dropping the stream cancels the generation.
    async fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, BackendError> {
        Err(BackendError::Unsupported {
            operation: request.prompt.operation(),
        })
    }

    /// Embeds the inputs; one vector per input, in order.
    async fn embed(&self, inputs: EmbeddingInputs) -> Result<Embeddings, BackendError> {
        let _ = inputs;
        Err(BackendError::Unsupported {
            operation: "embeddings",
        })
    }

    /// The token ids the backend runs for `prompt` (for chat, the rendered template).
    async fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, BackendError> {
        let _ = prompt;
        Err(BackendError::Unsupported {
            operation: "tokenization",
        })
    }

    /// The text of token ids (special tokens left out).
    async fn detokenize(&self, tokens: &[u32]) -> Result<String, BackendError> {
        let _ = tokens;
        Err(BackendError::Unsupported {
            operation: "detokenization",
        })
    }
}
