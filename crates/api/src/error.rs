//! The one place where failures become HTTP responses: every error a handler or middleware can
//! return is an [`ApiError`], which knows its status and its client-safe OpenAI error body.
//! Server faults are logged in full and shown to the client only as a request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_auth::AuthError;
use gateway_backend::BackendError;
use gateway_core::openai::{ErrorBody, ErrorType, WireError};

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
    /// The backend failed or rejected the request.
    #[error("{error}")]
    Backend {
        /// What the backend said (its message includes its cause).
        error: BackendError,
        /// The request field that holds the prompt or input (`messages`, `prompt`, `input`,
        /// `tokens`), named when the backend rejects it.
        input_param: &'static str,
    },
    /// A fault of the server that is none of the above; names what failed, for the log.
    #[error("internal error in {0}")]
    Internal(&'static str),
    /// Authentication, authorization or a management operation failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Marks a response whose body was masked because the failure was the server's; the request-id
/// middleware adds the request id to its message.
#[derive(Debug, Clone, Copy)]
pub struct MaskedServerError;

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        Self::backend(error, "input")
    }
}

impl ApiError {
    /// A backend's error on a request whose prompt or input is the field `input_param`.
    pub fn backend(error: BackendError, input_param: &'static str) -> Self {
        Self::Backend { error, input_param }
    }

    /// The body of this error as the last event of a stream that already started: the
    /// client's mistakes as they are, server faults masked down to the request id (and
    /// logged in full here).
    pub(crate) fn stream_body(&self, request_id: &str) -> ErrorBody {
        if self.status().is_server_error() {
            tracing::error!(error = %self, cause = %Causes(self), "request failed mid-stream");
            masked_body(request_id)
        } else {
            self.body()
        }
    }

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
            Self::Backend { error, .. } => backend_status(error),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Auth(error) => {
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
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
            Self::Backend { error, input_param } if error.is_client_error() => {
                backend_client_body(error, input_param)
            }
            Self::Backend {
                error: BackendError::Overloaded,
                ..
            }
            | Self::ShuttingDown
            | Self::Timeout { .. } => ErrorBody::new(ErrorType::Server, self.to_string()),
            Self::Backend {
                error: BackendError::Unavailable { .. },
                ..
            } => ErrorBody::new(ErrorType::Server, "The model is unavailable, retry later."),
            Self::Backend { .. } | Self::Internal(_) => ErrorBody::new(
                ErrorType::Server,
                "The server had an error while processing your request.",
            ),
            Self::Auth(error) => auth_body(error),
        }
    }
}

/// The client-safe body of an authentication or management error. An invalid model API key
/// gets one fixed message whatever the reason (missing, unknown, expired, revoked).
fn auth_body(error: &AuthError) -> ErrorBody {
    match error {
        AuthError::InvalidKey => ErrorBody::authentication(
            "Incorrect or missing API key. Pass a valid key as `Authorization: Bearer <key>`.",
        )
        .with_code("invalid_api_key"),
        AuthError::Unauthenticated => ErrorBody::authentication(
            "Incorrect or missing management token. Pass it as `Authorization: Bearer <token>`.",
        )
        .with_code("invalid_management_token"),
        AuthError::NotFound => ErrorBody::not_found(error.client_message()).with_code("not_found"),
        AuthError::Forbidden => {
            ErrorBody::permission(error.client_message()).with_code("insufficient_role")
        }
        AuthError::Validation { field, .. } => {
            ErrorBody::invalid_param(error.client_message(), *field)
        }
        AuthError::Conflict(_) => {
            ErrorBody::invalid_request("The object already exists.").with_code("conflict")
        }
        AuthError::Store(_) => ErrorBody::new(
            ErrorType::Server,
            "The server had an error while processing your request.",
        ),
    }
}

fn backend_status(error: &BackendError) -> StatusCode {
    match error {
        _ if error.is_client_error() => StatusCode::BAD_REQUEST,
        BackendError::Overloaded | BackendError::Unavailable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn backend_client_body(error: &BackendError, input_param: &str) -> ErrorBody {
    match error {
        BackendError::ContextLengthExceeded { .. } => {
            ErrorBody::invalid_param(error.to_string(), input_param)
                .with_code("context_length_exceeded")
        }
        BackendError::Unsupported { .. } => ErrorBody::invalid_param(error.to_string(), "model"),
        _ => ErrorBody::invalid_param(error.to_string(), input_param),
    }
}

/// The body of a server fault as the client sees it: only the request id, to quote to the
/// operator.
pub(crate) fn masked_body(request_id: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorType::Server,
        format!("The server had an error while processing your request (request id {request_id})."),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let masked = status.is_server_error();
        if masked {
            tracing::error!(
                error = %self,
                cause = %Causes(&self),
                status = status.as_u16(),
                "request failed"
            );
        }
        let mut response = (status, Json(self.body())).into_response();
        if masked {
            response.extensions_mut().insert(MaskedServerError);
        }
        if matches!(
            self,
            Self::Backend {
                error: BackendError::Overloaded | BackendError::Unavailable { .. },
                ..
            } | Self::ShuttingDown
        ) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// Formats the `source()` chain of an error (below its own message) for the log.
struct Causes<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut source = self.0.source();
        let mut first = true;
        while let Some(error) = source {
            if !first {
                f.write_str(": ")?;
            }
            write!(f, "{error}")?;
            first = false;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn wire(error: AuthError) -> (u16, serde_json::Value) {
        let error = ApiError::from(error);
        let body = serde_json::to_value(error.body()).unwrap();
        (error.status().as_u16(), body)
    }

    #[test]
    fn an_invalid_key_is_one_openai_shaped_401() {
        let (status, body) = wire(AuthError::InvalidKey);
        assert_eq!(status, 401);
        assert_eq!(body["error"]["type"], "authentication_error");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(body["error"]["param"].is_null());
    }

    #[test]
    fn management_errors_map_to_their_status() {
        assert_eq!(wire(AuthError::Unauthenticated).0, 401);
        assert_eq!(wire(AuthError::NotFound).0, 404);
        assert_eq!(
            wire(AuthError::Forbidden).1["error"]["type"],
            "permission_error"
        );
        let (status, body) = wire(AuthError::validation("ttlDuration", "bad"));
        assert_eq!(
            (status, &body["error"]["param"]),
            (400, &"ttlDuration".into())
        );
    }

    #[test]
    fn store_details_never_reach_the_client() {
        let (status, body) = wire(AuthError::Conflict("api_keys".to_owned()));
        assert_eq!(status, 409);
        assert!(!body.to_string().contains("api_keys"));
        let store = AuthError::Store(gateway_auth::StoreError::Corrupt("row 7".to_owned()));
        let (status, body) = wire(store);
        assert_eq!(status, 500);
        assert!(!body.to_string().contains("row 7"));
    }
}
