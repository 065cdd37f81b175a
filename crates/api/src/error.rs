//! The one place where failures become HTTP responses: every error a handler or middleware can
//! return is an [`ApiError`], which knows its status and its client-safe error body. The body
//! has the shape of the API the request belongs to ([`Surface`]): the model API answers
//! OpenAI's `{"error": {"message", "type", "param", "code"}}`, the management API the body the
//! STACKIT model-serving SDKs parse, `{"error": code, "message"}` ([`ManagementErrorBody`]);
//! management handlers return a [`ManagementError`]. Server faults (500) are logged in full and
//! shown to the client only as a request id, in either shape; a 503 (busy, unavailable, shutting
//! down) or 504 (over the time limit) tells the client what happened and when to retry, as its
//! message holds no internal detail.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_auth::AuthError;
use gateway_backend::BackendError;
use gateway_core::openai::{ErrorBody, ErrorType, WireError};
use serde::Serialize;

/// Any failure of a request, mapped to an error response in the shape of its API
/// (OpenAI-shaped on the model API, see [`ManagementError`] for the management API).
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
    /// The client stopped sending its body for longer than the configured limit.
    #[error(
        "the request body did not arrive within {seconds} s of its last part; send it at once"
    )]
    BodyTimeout {
        /// The limit in seconds.
        seconds: u64,
    },
    /// The model id is unknown.
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound {
        /// The id the client sent.
        model: String,
    },
    /// The model was retired and has no successor.
    #[error("The model `{model}` was retired on {} and has no successor.", retired.format("%Y-%m-%d"))]
    ModelRetired {
        /// The id the client sent.
        model: String,
        /// When it retired.
        retired: chrono::DateTime<chrono::Utc>,
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
    /// A browser sent a changing management request from a page of another origin.
    #[error(
        "Cross-origin request refused: a project can be changed only from this gateway's own \
         pages (its console at /console) or from a client that is not a browser."
    )]
    CrossOrigin,
    /// The request took longer than the configured limit.
    #[error("the request took longer than {seconds} s")]
    Timeout {
        /// The limit in seconds.
        seconds: u64,
    },
    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The shared rate limit store cannot be reached and limits fail closed.
    #[error("the rate limits cannot be checked")]
    LimitsUnavailable,
    /// A model API key could not be read from the store (its database is away) and is not
    /// one this replica verified within its outage grace.
    #[error("the API key cannot be checked: {0}")]
    KeysUnavailable(#[source] AuthError),
    /// The backend failed or rejected the request.
    #[error("{error}")]
    Backend {
        /// What the backend said (its message includes its cause).
        error: BackendError,
        /// The request field that holds the prompt or input (`messages`, `prompt`, `input`,
        /// `tokens`), named when the backend rejects it.
        input_param: &'static str,
    },
    /// The project's request or token budget on the model is spent for now.
    #[error(
        "Rate limit reached for {model} on {budget} per minute: limit {limit}, requested \
         {requested}. Retry in {}.", crate::accounting::go_duration(*retry_after)
    )]
    RateLimited {
        /// The model id the client sent.
        model: String,
        /// `requests` or `tokens`.
        budget: &'static str,
        /// The budget's rate per minute.
        limit: u64,
        /// What the request needed of it.
        requested: u64,
        /// When the request could be admitted.
        retry_after: std::time::Duration,
    },
    /// The client's address made too many failed management authentications in the last
    /// minute.
    #[error(
        "Too many failed authentications from this address. Retry in {}.",
        crate::accounting::go_duration(*retry_after)
    )]
    TooManyFailedAuthentications {
        /// When one more attempt is allowed.
        retry_after: std::time::Duration,
    },
    /// The project has as many requests in flight as it may.
    #[error(
        "Too many concurrent requests for this project: at most {limit} may run at once. Retry \
         when one of them has finished."
    )]
    ConcurrencyLimited {
        /// The project's limit.
        limit: usize,
    },
    /// A fault of the server that is none of the above; names what failed, for the log.
    #[error("internal error in {0}")]
    Internal(&'static str),
    /// Authentication, authorization or a management operation failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Which API a request belongs to; it decides the shape of the error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    /// The OpenAI-compatible model API (every path outside `/v1/projects`).
    Model,
    /// The management API (`/v1/projects` and everything under it).
    Management,
}

impl Surface {
    /// The API a request path belongs to.
    pub(crate) fn of_path(path: &str) -> Self {
        if crate::auth_layer::is_management_path(path) {
            Self::Management
        } else {
            Self::Model
        }
    }
}

/// The error body of the management API, `{"error": code, "message"}`: the STACKIT
/// model-serving API's `ErrorMessageResponse`, which its SDKs parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ManagementErrorBody {
    /// A machine-readable code such as `invalid_request` or `not_found`.
    pub error: String,
    /// Human-readable explanation; for an invalid field it names the field and the rule.
    pub message: String,
}

/// An [`ApiError`] of the management API: the same status, answered with a
/// [`ManagementErrorBody`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ManagementError(pub ApiError);

impl From<ApiError> for ManagementError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<AuthError> for ManagementError {
    fn from(error: AuthError) -> Self {
        Self(ApiError::Auth(error))
    }
}

impl IntoResponse for ManagementError {
    fn into_response(self) -> Response {
        self.0.respond(Surface::Management)
    }
}

/// Marks a response whose body was masked because the failure was the server's; the request-id
/// middleware writes the body, naming the request id, in the shape of the request's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskedServerError {
    /// A model API error (OpenAI shape).
    Model,
    /// A management API error, with its `error` code.
    Management(&'static str),
}

impl MaskedServerError {
    /// The masked body naming `request_id`, as JSON.
    pub(crate) fn body(self, request_id: &str) -> serde_json::Result<Vec<u8>> {
        match self {
            Self::Model => serde_json::to_vec(&masked_body(request_id)),
            Self::Management(code) => serde_json::to_vec(&ManagementErrorBody {
                error: code.to_owned(),
                message: masked_message(request_id),
            }),
        }
    }
}

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
    /// client's mistakes and 503/504 as they are, server faults masked down to the request id
    /// (and logged in full here).
    pub(crate) fn stream_body(&self, request_id: &str) -> ErrorBody {
        self.log("request failed mid-stream");
        if self.is_masked() {
            masked_body(request_id)
        } else {
            self.body()
        }
    }

    /// Whether the client sees only the request id: a fault of the server (a 5xx other than
    /// 503 and 504, whose messages say what happened and when to retry).
    fn is_masked(&self) -> bool {
        let status = self.status();
        status.is_server_error()
            && status != StatusCode::SERVICE_UNAVAILABLE
            && status != StatusCode::GATEWAY_TIMEOUT
    }

    /// Logs a failure of the server with its causes: a masked fault as an error, a 503 or 504
    /// as a warning; the client's mistakes are not logged here.
    fn log(&self, what: &'static str) {
        let status = self.status().as_u16();
        if self.is_masked() {
            tracing::error!(error = %self, cause = %Causes(self), status, "{what}");
        } else if self.status().is_server_error() {
            tracing::warn!(error = %self, cause = %Causes(self), status, "{what}");
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Wire(_) | Self::InvalidParam { .. } | Self::UnreadableBody => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::ModelNotFound { .. } | Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::ModelRetired { .. } => StatusCode::GONE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::CrossOrigin => StatusCode::FORBIDDEN,
            Self::RateLimited { .. }
            | Self::ConcurrencyLimited { .. }
            | Self::TooManyFailedAuthentications { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::ShuttingDown | Self::LimitsUnavailable | Self::KeysUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Backend { error, .. } => backend_status(error),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Auth(error) => {
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// The `error` code of the management body.
    fn management_code(&self) -> &'static str {
        match self {
            Self::Wire(_) | Self::InvalidParam { .. } | Self::UnreadableBody => "invalid_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyTimeout { .. } => "timeout",
            Self::ModelNotFound { .. } | Self::RouteNotFound { .. } => "not_found",
            Self::ModelRetired { .. } => "gone",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::CrossOrigin => "cross_origin_request",
            Self::RateLimited { .. } => "rate_limit_exceeded",
            Self::ConcurrencyLimited { .. } => "concurrency_limit_exceeded",
            Self::TooManyFailedAuthentications { .. } => "too_many_requests",
            Self::Timeout { .. } => "timeout",
            Self::ShuttingDown | Self::LimitsUnavailable | Self::KeysUnavailable(_) => {
                "unavailable"
            }
            Self::Backend { error, .. } => match backend_status(error) {
                StatusCode::BAD_REQUEST => "invalid_request",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                _ => "internal_error",
            },
            Self::Internal(_) => "internal_error",
            Self::Auth(error) => match error {
                AuthError::InvalidKey => "invalid_api_key",
                AuthError::Unauthenticated => "invalid_management_token",
                AuthError::NotFound => "not_found",
                AuthError::Forbidden => "insufficient_role",
                AuthError::Validation { .. } => "invalid_request",
                AuthError::Conflict(_) => "conflict",
                AuthError::Store(_) => "internal_error",
            },
        }
    }

    /// The body the client sees in the management API: the management code and the same
    /// message as the model API's body.
    fn management_body(&self) -> ManagementErrorBody {
        ManagementErrorBody {
            error: self.management_code().to_owned(),
            message: self.body().error.message,
        }
    }

    /// The response of this error in the API `surface`: status, body of that API's shape, the
    /// masking marker of server faults (logged here, as 503 and 504 are) and `Retry-After`
    /// where a retry helps.
    pub(crate) fn respond(self, surface: Surface) -> Response {
        let status = self.status();
        let masked = self.is_masked();
        self.log("request failed");
        let mut response = match surface {
            Surface::Model => (status, Json(self.body())).into_response(),
            Surface::Management => (status, Json(self.management_body())).into_response(),
        };
        if masked {
            response.extensions_mut().insert(match surface {
                Surface::Model => MaskedServerError::Model,
                Surface::Management => MaskedServerError::Management(self.management_code()),
            });
        }
        if let Self::RateLimited { retry_after, .. }
        | Self::TooManyFailedAuthentications { retry_after } = &self
        {
            write_retry_after(response.headers_mut(), *retry_after);
        } else if matches!(
            self,
            Self::Backend {
                error: BackendError::Overloaded | BackendError::Unavailable { .. },
                ..
            } | Self::ShuttingDown
                | Self::LimitsUnavailable
                | Self::KeysUnavailable(_)
                | Self::ConcurrencyLimited { .. }
        ) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }

    /// The body the client sees. Server faults say only that something failed (and are
    /// masked further down to the request id); 503 and 504 say what happened and when to retry.
    fn body(&self) -> ErrorBody {
        match self {
            Self::Wire(error) => error.to_error_body(),
            Self::InvalidParam { message, param } => {
                ErrorBody::invalid_param(message.clone(), param.clone())
            }
            Self::ModelNotFound { .. } => ErrorBody::new(ErrorType::NotFound, self.to_string())
                .with_param("model")
                .with_code("model_not_found"),
            Self::ModelRetired { .. } => {
                ErrorBody::new(ErrorType::InvalidRequest, self.to_string())
                    .with_param("model")
                    .with_code("model_retired")
            }
            Self::RouteNotFound { .. } | Self::MethodNotAllowed => {
                ErrorBody::new(ErrorType::NotFound, self.to_string())
            }
            Self::CrossOrigin => ErrorBody::new(ErrorType::Permission, self.to_string())
                .with_code("cross_origin_request"),
            Self::ConcurrencyLimited { .. } => {
                ErrorBody::new(ErrorType::Other("requests".to_owned()), self.to_string())
                    .with_code("concurrency_limit_exceeded")
            }
            Self::TooManyFailedAuthentications { .. } => {
                ErrorBody::new(ErrorType::RateLimit, self.to_string())
                    .with_code("too_many_requests")
            }
            Self::RateLimited { budget, .. } => {
                ErrorBody::new(ErrorType::Other((*budget).to_owned()), self.to_string())
                    .with_code("rate_limit_exceeded")
            }
            Self::PayloadTooLarge { .. } | Self::UnreadableBody | Self::BodyTimeout { .. } => {
                ErrorBody::invalid_request(self.to_string())
            }
            Self::Backend { error, input_param } if error.is_client_error() => {
                backend_client_body(error, input_param)
            }
            Self::Backend {
                error: BackendError::Overloaded,
                ..
            } => ErrorBody::new(
                ErrorType::Server,
                "The model is busy: its queue is full. Retry after the seconds in Retry-After.",
            ),
            Self::Backend {
                error: BackendError::Unavailable { .. },
                ..
            } => ErrorBody::new(
                ErrorType::Server,
                "The model is unavailable right now. Retry after the seconds in Retry-After; \
                 if it stays unavailable, tell the operator.",
            ),
            Self::ShuttingDown => ErrorBody::new(
                ErrorType::Server,
                "The server is shutting down and takes no new requests. Retry after the seconds \
                 in Retry-After; another replica or the restarted server will answer.",
            ),
            Self::KeysUnavailable(_) => ErrorBody::new(
                ErrorType::Server,
                "API keys cannot be checked right now. Retry after the seconds in Retry-After.",
            ),
            Self::LimitsUnavailable => ErrorBody::new(
                ErrorType::Server,
                "Rate limits cannot be checked right now, and this service refuses requests \
                 until they can. Retry after the seconds in Retry-After.",
            ),
            Self::Timeout { seconds } => ErrorBody::new(
                ErrorType::Server,
                format!(
                    "The request took longer than the server's limit of {seconds} s and was \
                     stopped. Retry with less work (fewer or shorter inputs, a lower \
                     max_tokens) or later."
                ),
            ),
            Self::Backend { .. } | Self::Internal(_) => ErrorBody::new(
                ErrorType::Server,
                "The server had an error while processing your request.",
            ),
            Self::Auth(error) => auth_body(error),
        }
    }
}

/// `Retry-After` in whole seconds (rounded up) and `retry-after-ms`, which the OpenAI SDKs
/// read first.
fn write_retry_after(headers: &mut axum::http::HeaderMap, wait: std::time::Duration) {
    let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    headers.insert(
        axum::http::header::RETRY_AFTER,
        millis.div_ceil(1_000).into(),
    );
    headers.insert("retry-after-ms", millis.into());
}

/// The client-safe body of an authentication or management error. An invalid model API key
/// gets one fixed message whatever the reason (missing, unknown, expired, revoked); an invalid
/// field names the field and the rule it breaks.
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
        AuthError::Conflict(_) => ErrorBody::invalid_request(
            "The object already exists or was changed concurrently; retry the request.",
        )
        .with_code("conflict"),
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

/// The message of a server fault as the client sees it: only the request id, to quote to the
/// operator.
fn masked_message(request_id: &str) -> String {
    format!("The server had an error while processing your request (request id {request_id}).")
}

/// The OpenAI body of a server fault as the client sees it.
pub(crate) fn masked_body(request_id: &str) -> ErrorBody {
    ErrorBody::new(ErrorType::Server, masked_message(request_id))
}

/// A model API error: the OpenAI body.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(Surface::Model)
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

    fn management(error: impl Into<ManagementError>) -> (u16, serde_json::Value) {
        let ManagementError(error) = error.into();
        let body = serde_json::to_value(error.management_body()).unwrap();
        (error.status().as_u16(), body)
    }

    #[test]
    fn management_errors_have_the_service_body() {
        let cases = [
            (
                ManagementError::from(AuthError::Unauthenticated),
                401,
                "invalid_management_token",
            ),
            (AuthError::NotFound.into(), 404, "not_found"),
            (AuthError::Forbidden.into(), 403, "insufficient_role"),
            (
                AuthError::Conflict("api_keys".to_owned()).into(),
                409,
                "conflict",
            ),
            (ApiError::MethodNotAllowed.into(), 405, "method_not_allowed"),
            (ApiError::CrossOrigin.into(), 403, "cross_origin_request"),
            (ApiError::Timeout { seconds: 3 }.into(), 504, "timeout"),
            (ApiError::Internal("x").into(), 500, "internal_error"),
        ];
        for (error, status, code) in cases {
            let (got_status, body) = management(error);
            assert_eq!(
                (got_status, &body["error"]),
                (status, &code.into()),
                "{body}"
            );
            assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let (status, body) = management(AuthError::validation("name", "must match the rule"));
        assert_eq!(status, 400);
        assert_eq!(
            body,
            serde_json::json!({"error": "invalid_request", "message": "invalid name: must match the rule"})
        );
        let wire =
            gateway_core::openai::from_json_slice::<gateway_auth::CreateToken>(br#"{"name": 5}"#)
                .unwrap_err();
        let (status, body) = management(ApiError::from(wire));
        assert_eq!((status, &body["error"]), (400, &"invalid_request".into()));
        assert!(
            body["message"].as_str().unwrap().contains("'name'"),
            "{body}"
        );
    }

    #[test]
    fn masked_bodies_keep_the_shape_of_their_api() {
        let model: serde_json::Value =
            serde_json::from_slice(&MaskedServerError::Model.body("req_1").unwrap()).unwrap();
        assert_eq!(model["error"]["type"], "server_error");
        assert!(model["error"]["message"]
            .as_str()
            .unwrap()
            .contains("req_1"));
        let masked = MaskedServerError::Management("internal_error");
        let body: serde_json::Value =
            serde_json::from_slice(&masked.body("req_2").unwrap()).unwrap();
        assert_eq!(body["error"], "internal_error");
        assert_eq!(
            body["message"],
            "The server had an error while processing your request (request id req_2)."
        );
    }

    #[test]
    fn only_server_faults_are_masked() {
        let busy = ApiError::from(BackendError::Overloaded);
        let unavailable = ApiError::from(BackendError::Unavailable {
            reason: "worker thread 3 panicked".to_owned(),
        });
        let cases = [
            (busy, 503, "queue is full"),
            (unavailable, 503, "unavailable right now"),
            (ApiError::ShuttingDown, 503, "shutting down"),
            (
                ApiError::LimitsUnavailable,
                503,
                "Rate limits cannot be checked",
            ),
            (
                ApiError::KeysUnavailable(AuthError::Store(
                    gateway_auth::StoreError::UnsupportedUrl,
                )),
                503,
                "API keys cannot be checked",
            ),
            (ApiError::Timeout { seconds: 7 }, 504, "limit of 7 s"),
        ];
        for (error, status, says) in cases {
            assert!(!error.is_masked(), "{error}");
            assert_eq!(error.status().as_u16(), status);
            let message = error.stream_body("req_1").error.message;
            assert!(message.contains(says), "{message}");
            assert!(message.contains("Retry"), "{message}");
            assert!(!message.contains("worker thread"), "{message}");
        }
        let fault = ApiError::Internal("the journal");
        assert!(fault.is_masked());
        assert_eq!(
            fault.stream_body("req_1").error.message,
            "The server had an error while processing your request (request id req_1)."
        );
    }

    #[test]
    fn a_503_keeps_its_message_in_the_management_shape() {
        let response = ApiError::ShuttingDown.respond(Surface::Management);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
        assert!(response.extensions().get::<MaskedServerError>().is_none());
        let (_, body) = management(ApiError::ShuttingDown);
        assert_eq!(body["error"], "unavailable");
        assert!(body["message"].as_str().unwrap().contains("shutting down"));
    }

    #[test]
    fn management_paths_are_the_management_surface() {
        assert_eq!(Surface::of_path("/v1/projects"), Surface::Management);
        assert_eq!(
            Surface::of_path("/v1/projects/x/audit-log"),
            Surface::Management
        );
        assert_eq!(Surface::of_path("/v1/projectsx"), Surface::Model);
        assert_eq!(Surface::of_path("/v1/embeddings"), Surface::Model);
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
        let store = AuthError::Store(gateway_auth::StoreError::Corrupt("row 7".to_owned()));
        let (status, body) = management(store);
        assert_eq!(status, 500);
        assert!(!body.to_string().contains("row 7"));
    }
}
