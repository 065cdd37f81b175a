//! The route handlers, one file per group of routes, and the small mappings the model routes
//! share.

pub mod audit;
pub mod catalog;
pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod health;
pub mod models;
pub mod projects;
pub mod responses;
pub mod tokenize;
pub mod tokens;
pub mod usage;

use axum::http::{header, HeaderMap};
use chrono::{DateTime, Utc};
use gateway_backend::FinishReason;
use gateway_core::openai::FinishReason as WireFinishReason;

use crate::error::ApiError;
use crate::REQUEST_ID_HEADER;

/// The request id the middleware set, for the usage log line and masked errors.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A backend's finish reason on the wire.
pub(crate) fn finish_reason(reason: FinishReason) -> WireFinishReason {
    match reason {
        FinishReason::Stop => WireFinishReason::Stop,
        FinishReason::Length => WireFinishReason::Length,
    }
}

/// A time in a query string: RFC 3339 (`2026-05-20T10:00:00Z`) or a UTC date (`2026-05-20`,
/// its midnight); an error names the parameter.
pub(crate) fn time(param: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    gateway_core::time::parse_instant(text).ok_or_else(|| ApiError::InvalidParam {
        message: format!(
            "{param} must be an RFC 3339 time such as 2026-05-20T00:00:00Z or a date such as \
             2026-05-20"
        ),
        param: param.to_owned(),
    })
}

/// Whether the request's `Accept` header names `media_type`.
pub(crate) fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains(media_type))
}
