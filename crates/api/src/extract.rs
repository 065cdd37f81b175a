//! The JSON body extractor of the model API. Unlike axum's `Json`, every rejection (malformed
//! JSON, a wrong type, a missing field, a body over the limit) is an OpenAI-shaped error that
//! names the field at fault. The content type is not checked: the body is parsed as JSON
//! whatever it says, as `curl -d` sends a form content type by default.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A request body parsed as `T` with OpenAI-shaped rejections.
#[derive(Debug)]
pub struct OpenAiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<std::sync::Arc<AppState>> for OpenAiJson<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &std::sync::Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let limit = state.limits.max_body_bytes;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_error(rejection, limit))?;
        Ok(Self(gateway_core::openai::from_json_slice(&bytes)?))
    }
}

fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::UnreadableBody
    }
}
