//! `POST /v1/tokenize` and `POST /v1/detokenize` (extensions, shaped like vLLM's): the exact
//! tokens a chat request (`messages`, rendered with the model's chat template) or a completion
//! request (`prompt`) runs, and the text of token ids; also at vLLM's paths `/tokenize` and
//! `/detokenize`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use gateway_backend::{Backend, BackendError, Prompt};
use gateway_core::openai::ChatMessage;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::generation::validate::chat_turns;
use crate::state::AppState;

/// The body of `POST /v1/tokenize`: `messages` or `prompt`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenizeRequest {
    /// The model id.
    pub model: String,
    /// A conversation, counted as a chat request renders it.
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    /// A raw prompt, counted as a completion request tokenizes it.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// The answer of `POST /v1/tokenize`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenizeResponse {
    /// Number of tokens.
    pub count: usize,
    /// The model's context length as served.
    pub max_model_len: usize,
    /// The token ids.
    pub tokens: Vec<u32>,
}

/// The body of `POST /v1/detokenize`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct DetokenizeRequest {
    /// The model id.
    pub model: String,
    /// Token ids of the model's vocabulary.
    pub tokens: Vec<u32>,
}

/// The answer of `POST /v1/detokenize`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DetokenizeResponse {
    /// The text of the tokens (special tokens left out).
    pub prompt: String,
}

/// Handles `POST /v1/tokenize`.
#[utoipa::path(
    post,
    path = "/v1/tokenize",
    tag = "model",
    request_body = TokenizeRequest,
    responses(
        (status = 200, description = "The tokens the request runs.", body = TokenizeResponse),
        crate::openapi::ModelErrors,
    ),
    security(("api_key" = []))
)]
pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    OpenAiJson(request): OpenAiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    let backend = &state.models.permitted(&request.model, &key)?.backend;
    require_tokenizer(backend.as_ref())?;
    let (prompt, param) = match (request.messages, request.prompt) {
        (Some(messages), None) => (Prompt::Chat(chat_turns(&messages)?), "messages"),
        (None, Some(prompt)) => (Prompt::Text(prompt), "prompt"),
        _ => {
            return Err(ApiError::InvalidParam {
                message: "send exactly one of 'messages' and 'prompt'".to_owned(),
                param: "messages".to_owned(),
            })
        }
    };
    let tokens = backend
        .tokenize(&prompt)
        .await
        .map_err(|error| ApiError::backend(error, param))?;
    Ok(Json(TokenizeResponse {
        count: tokens.len(),
        max_model_len: backend.card().context_length,
        tokens,
    }))
}

/// Handles `POST /v1/detokenize`.
#[utoipa::path(
    post,
    path = "/v1/detokenize",
    tag = "model",
    request_body = DetokenizeRequest,
    responses(
        (status = 200, description = "The text of the tokens.", body = DetokenizeResponse),
        crate::openapi::ModelErrors,
    ),
    security(("api_key" = []))
)]
pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    OpenAiJson(request): OpenAiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    let backend = &state.models.permitted(&request.model, &key)?.backend;
    require_tokenizer(backend.as_ref())?;
    let prompt = backend
        .detokenize(&request.tokens)
        .await
        .map_err(|error| ApiError::backend(error, "tokens"))?;
    Ok(Json(DetokenizeResponse { prompt }))
}

/// Refuses models whose backend offers no tokenizer.
fn require_tokenizer(backend: &dyn Backend) -> Result<(), ApiError> {
    if backend.capabilities().tokenize {
        Ok(())
    } else {
        let unsupported = BackendError::Unsupported {
            operation: "tokenization",
        };
        Err(ApiError::backend(unsupported, "model"))
    }
}

/// Handles `POST /tokenize`: [`tokenize`] at the path vLLM serves it.
#[utoipa::path(
    post,
    path = "/tokenize",
    tag = "model",
    request_body = TokenizeRequest,
    responses(
        (status = 200, description = "The tokens the request runs (as `/v1/tokenize`).",
         body = TokenizeResponse),
        crate::openapi::ModelErrors,
    ),
    security(("api_key" = []))
)]
pub async fn tokenize_at_root(
    state: State<Arc<AppState>>,
    key: ApiKey,
    request: OpenAiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    tokenize(state, key, request).await
}

/// Handles `POST /detokenize`: [`detokenize`] at the path vLLM serves it.
#[utoipa::path(
    post,
    path = "/detokenize",
    tag = "model",
    request_body = DetokenizeRequest,
    responses(
        (status = 200, description = "The text of the tokens (as `/v1/detokenize`).",
         body = DetokenizeResponse),
        crate::openapi::ModelErrors,
    ),
    security(("api_key" = []))
)]
pub async fn detokenize_at_root(
    state: State<Arc<AppState>>,
    key: ApiKey,
    request: OpenAiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    detokenize(state, key, request).await
}
