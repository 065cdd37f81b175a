//! The one place where failures become HTTP responses: every error a handler or middleware can
//! return is an [`ApiError`], which knows its status and its client-safe OpenAI error body.
//! Server faults are logged in full and shown to the client only as a request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_core::openai::{ErrorBody, ErrorType, WireError};
use gateway_engine::EngineError;

/// Any failure of a request, mapped to an OpenAI-shaped error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON or a field has the wrong type.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A parameter has a value the gateway does not accept.
    #[error("{message}")]
    InvalidParam {
        /// What is wrong.
        message: String,
        /// The JSON path of the parameter.
        param: String,
    },
    /// The body is larger than the configured limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read from the connection.
    #[error("the request body could not be read")]
    UnreadableBody,
    /// The model id is unknown.
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound {
        /// The id the client sent.
        model: String,
    },
    /// No route has this path.
    #[error("unknown path {path}")]
    RouteNotFound {
        /// The request path.
        path: String,
    },
    /// The route exists but not with this method.
    #[error("method not allowed for this path")]
    MethodNotAllowed,
    /// The request took longer than the configured limit.
    #[error("the request took longer than {seconds} s")]
    Timeout {
        /// The limit in seconds.
        seconds: u64,
    },
    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The engine failed or rejected the request.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Marks a response whose body was masked because the failure was the server's; the request-id
/// middleware adds the request id to its message.
#[derive(Debug, Clone, Copy)]
pub struct MaskedServerError;

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Wire(_) | Self::InvalidParam { .. } | Self::UnreadableBody => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ModelNotFound { .. } | Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Engine(error) => engine_status(error),
        }
    }

    /// The body the client sees. Server faults say only that something failed.
    fn body(&self) -> ErrorBody {
        match self {
            Self::Wire(error) => error.to_error_body(),
            Self::InvalidParam { message, param } => {
                ErrorBody::invalid_param(message.clone(), param.clone())
            }
            Self::ModelNotFound { .. } => ErrorBody::new(ErrorType::NotFound, self.to_string())
                .with_param("model")
                .with_code("model_not_found"),
            Self::RouteNotFound { .. } | Self::MethodNotAllowed => {
                ErrorBody::new(ErrorType::NotFound, self.to_string())
            }
            Self::PayloadTooLarge { .. } | Self::UnreadableBody => {
                ErrorBody::invalid_request(self.to_string())
            }
            Self::Engine(error) if error.is_client_error() => engine_client_body(error),
            Self::Engine(EngineError::Overloaded) | Self::ShuttingDown | Self::Timeout { .. } => {
                ErrorBody::new(ErrorType::Server, self.to_string())
            }
            Self::Engine(_) => ErrorBody::new(
                ErrorType::Server,
                "The server had an error while processing your request.",
            ),
        }
    }
}

fn engine_status(error: &EngineError) -> StatusCode {
    match error {
        _ if error.is_client_error() => StatusCode::BAD_REQUEST,
        EngineError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn engine_client_body(error: &EngineError) -> ErrorBody {
    let body = ErrorBody::invalid_param(error.to_string(), "input");
    match error {
        EngineError::ContextLengthExceeded { .. } => body.with_code("context_length_exceeded"),
        EngineError::Unsupported { .. } => ErrorBody::invalid_param(error.to_string(), "model"),
        _ => body,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let masked = status.is_server_error();
        if masked {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        if masked {
            response.extensions_mut().insert(MaskedServerError);
        }
        if matches!(
            self,
            Self::Engine(EngineError::Overloaded) | Self::ShuttingDown
        ) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
