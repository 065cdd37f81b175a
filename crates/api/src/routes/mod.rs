//! The route handlers, one file per group of routes, and the small mappings the model routes
//! share.

pub mod audit;
pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod health;
pub mod models;
pub mod tokenize;
pub mod tokens;

use axum::http::HeaderMap;
use gateway_backend::FinishReason;
use gateway_core::openai::FinishReason as WireFinishReason;

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
