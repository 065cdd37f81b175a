//! The engine's typed errors. Each variant says what went wrong in terms the HTTP layer can map
//! to a status; none carries request text, token ids of a request or generated text, so that
//! every message may be shown to the client and written to the log.

use std::path::PathBuf;

/// Why the engine could not serve a request or load a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The backend does not offer this operation (e.g. embeddings from a chat model).
    #[error("model does not support {operation}")]
    Unsupported {
        /// The operation that was asked for.
        operation: &'static str,
    },
    /// The request has no inputs.
    #[error("input must not be empty")]
    EmptyInput,
    /// One input item is empty (an empty string or token array).
    #[error("input[{index}] must not be empty")]
    EmptyItem {
        /// Position of the item in the request.
        index: usize,
    },
    /// More inputs than the model accepts in one request.
    #[error("too many inputs: {count}, the maximum is {max}")]
    TooManyInputs {
        /// Number of inputs sent.
        count: usize,
        /// Largest number accepted.
        max: usize,
    },
    /// One input is longer than the model's context.
    #[error("input[{index}] has {tokens} tokens, but this model's maximum context length is {max} tokens")]
    ContextLengthExceeded {
        /// Position of the item in the request.
        index: usize,
        /// Number of tokens of the item.
        tokens: usize,
        /// The model's context length.
        max: usize,
    },
    /// The prompt and the requested completion do not fit the model's context.
    #[error("This model's maximum context length is {context_length} tokens. However, you requested {} tokens ({prompt_tokens} in the prompt, {max_tokens} for the completion). Please reduce the length of the prompt or the completion.", prompt_tokens + max_tokens)]
    PromptTooLong {
        /// Tokens of the prompt.
        prompt_tokens: usize,
        /// Tokens requested for the completion.
        max_tokens: usize,
        /// The model's (served) context length.
        context_length: usize,
    },
    /// The chat template could not render the conversation (or rejected it).
    #[error(transparent)]
    ChatTemplate(#[from] crate::chat_template::ChatTemplateError),
    /// A message's content holds special-token text, and the chat template changes the content
    /// so that the engine cannot find it in the prompt to encode that text as text.
    #[error("the messages contain special-token text that this model's chat template does not let the server encode as text")]
    SpecialTokenText,
    /// A token id is outside the model's vocabulary. The message names where, never the id:
    /// token ids are the client's input.
    #[error(
        "input[{index}] has a token id outside the vocabulary of {vocab_size} tokens (at position {position})"
    )]
    TokenOutOfRange {
        /// Position of the item in the request.
        index: usize,
        /// Position of the offending token id in the item.
        position: usize,
        /// Size of the vocabulary.
        vocab_size: usize,
    },
    /// The output constraint cannot be compiled (a schema or pattern outside what the grammar
    /// engine accepts, or past its size limits). The grammar engine's reason is left out: it
    /// may quote the schema or pattern the client sent.
    #[error("the grammar engine cannot compile {0} (an unsupported or invalid construct, or one past its size limits)")]
    InvalidConstraint(&'static str),
    /// The output constraint failed while generating (no token can continue the output).
    #[error("constrained decoding failed: {0}")]
    Constraint(String),
    /// The request queue is full; the client should retry later.
    #[error("the model is overloaded, retry later")]
    Overloaded,
    /// The model's worker has stopped (shutdown or a crash).
    #[error("the model worker is not running")]
    WorkerStopped,
    /// A task on the blocking pool (tokenizing, templating) failed: it `panicked` or `was
    /// cancelled`. A panic's own message is left out, as it may quote the text being worked on.
    #[error("a tokenization task {0}")]
    TaskFailed(&'static str),
    /// A token id is outside the model's vocabulary. The message names where, never the id.
    #[error(
        "the token id at position {position} is outside the vocabulary of {vocab_size} tokens"
    )]
    UnknownToken {
        /// Position of the offending token id in the prompt.
        position: usize,
        /// Size of the vocabulary.
        vocab_size: usize,
    },
    /// A prompt has no tokens.
    #[error("the prompt must not be empty")]
    EmptyPrompt,
    /// Tokenization failed.
    #[error("tokenization failed: {0}")]
    Tokenizer(String),
    /// ONNX Runtime reported an error while running the model.
    #[error("inference failed: {0}")]
    Inference(std::sync::Arc<ort::Error>),
    /// The model's output did not have the shape the engine expects.
    #[error("unexpected model output: {0}")]
    OutputShape(String),
    /// The KV cache could not take a run (no free row, or past its capacity).
    #[error("KV cache: {0}")]
    KvCache(String),
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A model file is not what the engine expects.
    #[error("invalid model file {path}: {message}")]
    InvalidModel {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The ONNX Runtime library could not be loaded.
    #[error("cannot load the ONNX Runtime library {path}: {message}")]
    RuntimeLibrary {
        /// The library path that was tried.
        path: PathBuf,
        /// Why loading failed.
        message: String,
    },
    /// The configured execution provider is not available.
    #[error("execution provider {provider} is not available: {reason}")]
    DeviceUnavailable {
        /// The provider asked for, e.g. `cuda`.
        provider: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
}

impl EngineError {
    /// Whether the error is the client's fault (bad input) rather than the server's.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::Unsupported { .. }
                | Self::EmptyInput
                | Self::EmptyItem { .. }
                | Self::TooManyInputs { .. }
                | Self::ContextLengthExceeded { .. }
                | Self::PromptTooLong { .. }
                | Self::TokenOutOfRange { .. }
                | Self::UnknownToken { .. }
                | Self::EmptyPrompt
                | Self::SpecialTokenText
                | Self::InvalidConstraint(_)
                | Self::ChatTemplate(crate::chat_template::ChatTemplateError::Rejected(_))
                | Self::ChatTemplate(crate::chat_template::ChatTemplateError::OutOfFuel)
        )
    }
}

impl From<ort::Error> for EngineError {
    fn from(error: ort::Error) -> Self {
        Self::Inference(std::sync::Arc::new(error))
    }
}

impl From<EngineError> for gateway_backend::BackendError {
    /// The contract's view of an engine error: the client's mistakes with their message, the
    /// rest as overload, unavailability or an internal failure whose details stay in the log.
    fn from(error: EngineError) -> Self {
        use gateway_backend::BackendError;
        match error {
            EngineError::Unsupported { operation } => BackendError::Unsupported { operation },
            EngineError::InvalidConstraint(_) => BackendError::InvalidConstraint {
                message: error.to_string(),
            },
            EngineError::ContextLengthExceeded { .. } | EngineError::PromptTooLong { .. } => {
                BackendError::ContextLengthExceeded {
                    message: error.to_string(),
                }
            }
            _ if error.is_client_error() => BackendError::InvalidInput {
                message: error.to_string(),
            },
            EngineError::Overloaded => BackendError::Overloaded,
            EngineError::WorkerStopped => BackendError::Unavailable {
                reason: error.to_string(),
            },
            other => BackendError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::ChatTemplateError;
    use gateway_backend::BackendError;

    #[test]
    fn a_conversation_too_large_for_the_template_is_the_clients_error() {
        let error = EngineError::ChatTemplate(ChatTemplateError::OutOfFuel);
        assert!(error.is_client_error());
        assert!(matches!(
            BackendError::from(error),
            BackendError::InvalidInput { ref message } if message.contains("work limit")
        ));
    }
}
