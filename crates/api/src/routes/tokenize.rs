//! `POST /v1/tokenize` and `POST /v1/detokenize` (extensions, shaped like vLLM's): the exact
//! tokens a chat request (`messages`, rendered with the model's chat template) or a completion
//! request (`prompt`) runs, and the text of token ids.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use gateway_core::openai::ChatMessage;
use serde::{Deserialize, Serialize};

use super::chat::chat_turns;
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::state::AppState;

/// The body of `POST /v1/tokenize`: `messages` or `prompt`.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Serialize)]
pub struct TokenizeResponse {
    /// Number of tokens.
    pub count: usize,
    /// The model's context length as served.
    pub max_model_len: usize,
    /// The token ids.
    pub tokens: Vec<u32>,
}

/// The body of `POST /v1/detokenize`.
#[derive(Debug, Clone, Deserialize)]
pub struct DetokenizeRequest {
    /// The model id.
    pub model: String,
    /// Token ids of the model's vocabulary.
    pub tokens: Vec<u32>,
}

/// The answer of `POST /v1/detokenize`.
#[derive(Debug, Clone, Serialize)]
pub struct DetokenizeResponse {
    /// The text of the tokens (special tokens left out).
    pub prompt: String,
}

/// Handles `POST /v1/tokenize`.
pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    OpenAiJson(request): OpenAiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    let backend = &state.models.permitted(&request.model, &key)?.backend;
    let tokens = match (&request.messages, &request.prompt) {
        (Some(messages), None) => backend.render_chat(&chat_turns(messages)?)?,
        (None, Some(prompt)) => backend.tokenize(prompt)?,
        _ => {
            return Err(ApiError::InvalidParam {
                message: "send exactly one of 'messages' and 'prompt'".to_owned(),
                param: "messages".to_owned(),
            })
        }
    };
    Ok(Json(TokenizeResponse {
        count: tokens.len(),
        max_model_len: backend.card().context_length,
        tokens,
    }))
}

/// Handles `POST /v1/detokenize`.
pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    OpenAiJson(request): OpenAiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    let backend = &state.models.permitted(&request.model, &key)?.backend;
    let vocab_size = backend.card().vocab_size;
    if let Some(&token) = request.tokens.iter().find(|&&t| t as usize >= vocab_size) {
        return Err(ApiError::InvalidParam {
            message: format!("token id {token} is outside the vocabulary of {vocab_size} tokens"),
            param: "tokens".to_owned(),
        });
    }
    Ok(Json(DetokenizeResponse {
        prompt: backend.detokenize(&request.tokens)?,
    }))
}
