//! The OpenAI error body, `{"error": {"message", "type", "param", "code"}}`, with the error
//! types OpenAI uses and the HTTP status each one goes with.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `type` of an OpenAI error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// `invalid_request_error` (HTTP 400): the request is malformed or has a bad value.
    InvalidRequest,
    /// `authentication_error` (HTTP 401): missing, unknown, revoked or expired key.
    Authentication,
    /// `permission_error` (HTTP 403): the key may not do this.
    Permission,
    /// `not_found_error` (HTTP 404): unknown model or resource.
    NotFound,
    /// `rate_limit_error` (HTTP 429): over a request or token budget.
    RateLimit,
    /// `server_error` (HTTP 500): a fault of the gateway or its backend.
    Server,
    /// Any other type string, as read from an upstream server.
    Other(String),
}

impl ErrorType {
    /// The wire string of this error type.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::RateLimit => "rate_limit_error",
            Self::Server => "server_error",
            Self::Other(other) => other,
        }
    }

    /// The HTTP status code OpenAI answers this error type with (500 for unknown types).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Authentication => 401,
            Self::Permission => 403,
            Self::NotFound => 404,
            Self::RateLimit => 429,
            Self::Server | Self::Other(_) => 500,
        }
    }
}

impl From<&str> for ErrorType {
    fn from(value: &str) -> Self {
        match value {
            "invalid_request_error" => Self::InvalidRequest,
            "authentication_error" => Self::Authentication,
            "permission_error" => Self::Permission,
            "not_found_error" => Self::NotFound,
            "rate_limit_error" => Self::RateLimit,
            "server_error" => Self::Server,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Ok(Self::from(value.as_str()))
    }
}

/// The whole error body: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorObject,
}

/// The object inside [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// Human-readable explanation.
    pub message: String,
    /// The error type, e.g. `invalid_request_error`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "invalid_request_error")]
    pub kind: ErrorType,
    /// The request parameter at fault (a JSON path such as `messages[0].content`), or `null`.
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code such as `invalid_api_key` or `model_not_found`, or `null`.
    /// Numeric codes sent by some upstream servers are read as their decimal string.
    #[serde(default, deserialize_with = "string_or_number")]
    pub code: Option<String>,
}

impl ErrorBody {
    /// An error of the given type with `param` and `code` null.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            error: ErrorObject {
                message: message.into(),
                kind,
                param: None,
                code: None,
            },
        }
    }

    /// An `invalid_request_error` (400).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorType::InvalidRequest, message)
    }

    /// An `invalid_request_error` (400) naming the parameter at fault.
    pub fn invalid_param(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    /// An `authentication_error` (401).
    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Authentication, message)
    }

    /// A `permission_error` (403).
    pub fn permission(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Permission, message)
    }

    /// A `not_found_error` (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorType::NotFound, message)
    }

    /// A `rate_limit_error` (429).
    pub fn rate_limit(message: impl Into<String>) -> Self {
        Self::new(ErrorType::RateLimit, message)
    }

    /// A `server_error` (500).
    pub fn server_error(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Server, message)
    }

    /// Sets `param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.error.param = Some(param.into());
        self
    }

    /// Sets `code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.error.code = Some(code.into());
        self
    }

    /// The HTTP status code that goes with this error's type.
    pub fn http_status(&self) -> u16 {
        self.error.kind.http_status()
    }
}

/// Reads `code` as a string, a number (as its decimal string) or null.
fn string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(code)) => Some(code),
            Some(other) => Some(other.to_string()),
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_nulls() {
        let body =
            ErrorBody::not_found("The model `gpt-5` does not exist").with_code("model_not_found");
        assert_eq!(body.http_status(), 404);
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"error": {
                "message": "The model `gpt-5` does not exist",
                "type": "not_found_error",
                "param": null,
                "code": "model_not_found"
            }})
        );
    }

    #[test]
    fn round_trips_and_reads_upstream_variants() {
        let body = ErrorBody::invalid_param("bad", "messages[0].content");
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), body);

        let upstream: ErrorBody = serde_json::from_value(json!({"error": {
            "message": "boom", "type": "BadRequestError", "code": 400
        }}))
        .unwrap();
        assert_eq!(
            upstream.error.kind,
            ErrorType::Other("BadRequestError".into())
        );
        assert_eq!(upstream.error.code.as_deref(), Some("400"));
        assert_eq!(upstream.error.param, None);
    }

    #[test]
    fn statuses() {
        for (kind, status) in [
            (ErrorType::InvalidRequest, 400),
            (ErrorType::Authentication, 401),
            (ErrorType::Permission, 403),
            (ErrorType::NotFound, 404),
            (ErrorType::RateLimit, 429),
            (ErrorType::Server, 500),
        ] {
            assert_eq!(kind.http_status(), status);
            assert_eq!(ErrorType::from(kind.as_str()), kind);
        }
    }
}
