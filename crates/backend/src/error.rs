//! [`BackendError`]: why a backend did not serve a request, typed so that the HTTP layer can
//! pick the status and the parameter to name. No variant carries prompt or output text.

use std::sync::Arc;

/// Why a backend could not serve a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The model does not offer this operation (e.g. embeddings from a chat model).
    #[error("model does not support {operation}")]
    Unsupported {
        /// The operation that was asked for.
        operation: &'static str,
    },
    /// The prompt or input is not acceptable to this model (an empty input, a token id
    /// outside the vocabulary, a conversation the chat template rejects). The message is safe
    /// to show the client; it names the item (`input[2]`) where there are several.
    #[error("{message}")]
    InvalidInput {
        /// What is wrong, for the client.
        message: String,
    },
    /// The output constraint cannot be used (a schema or pattern the backend cannot
    /// compile); the message is safe to show the client.
    #[error("{message}")]
    InvalidConstraint {
        /// What is wrong, for the client.
        message: String,
    },
    /// The prompt (with the tokens asked for) does not fit the model's context.
    #[error("{message}")]
    ContextLengthExceeded {
        /// What is too long, with the numbers, for the client.
        message: String,
    },
    /// The backend's queue is full; the client should retry later.
    #[error("the model is overloaded, retry later")]
    Overloaded,
    /// The backend cannot serve now (its worker stopped, its upstream is down).
    #[error("the model is unavailable: {reason}")]
    Unavailable {
        /// Why, for the log.
        reason: String,
    },
    /// The backend failed while serving; the cause is for the log only.
    #[error("the backend failed: {0}")]
    Internal(Arc<dyn std::error::Error + Send + Sync>),
}

impl BackendError {
    /// An internal failure caused by `error`.
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Arc::new(error))
    }

    /// Whether the error is the client's fault (bad input) rather than the server's.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::Unsupported { .. }
                | Self::InvalidInput { .. }
                | Self::InvalidConstraint { .. }
                | Self::ContextLengthExceeded { .. }
        )
    }
}
