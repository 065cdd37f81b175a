//! `POST /v1/chat/completions`: the conversation is checked into a generation
//! ([`validate::chat`]) and run by the shared pipeline; this file maps the result to the chat
//! wire shapes, whole (`chat.completion`) or as `chat.completion.chunk`s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_backend::{FinishReason, TokenLogprob};
use gateway_core::openai::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatDelta, ChoiceLogprobs, ResponseMessage, Role, TokenLogprob as WireLogprob, TopLogprob,
    Usage,
};

use super::{finish_reason, request_id};
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::generation::{self, validate, AnswerFormat, Collected};
use crate::sse;
use crate::state::AppState;

/// Handles `POST /v1/chat/completions`.
pub async fn create_chat_completion(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    headers: HeaderMap,
    OpenAiJson(request): OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let backend = Arc::clone(&state.models.permitted(&request.model, &key)?.backend);
    let generation = validate::chat(&request)?;
    let format = ChatFormat {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        created: chrono::Utc::now().timestamp(),
        logprobs: generation.params.logprobs,
        model: request.model,
    };
    let model = format.model.clone();
    let request_id = request_id(&headers);
    generation::run(
        &state,
        backend.as_ref(),
        &model,
        generation,
        format,
        request_id,
    )
    .await
}

/// The backend's log-probabilities in the chat wire shape.
fn wire_logprobs(logprobs: Vec<TokenLogprob>) -> ChoiceLogprobs {
    let content = logprobs
        .into_iter()
        .map(|lp| WireLogprob {
            token: lp.text,
            logprob: lp.logprob,
            bytes: Some(lp.bytes),
            top_logprobs: lp
                .top
                .into_iter()
                .map(|(token, bytes, logprob)| TopLogprob {
                    token,
                    logprob,
                    bytes: Some(bytes),
                })
                .collect(),
        })
        .collect();
    ChoiceLogprobs {
        content: Some(content),
        refusal: None,
    }
}

/// Chat completions and their chunks.
struct ChatFormat {
    id: String,
    created: i64,
    model: String,
    logprobs: bool,
}

impl ChatFormat {
    fn chunk(&self, choice: ChatChunkChoice) -> ChatCompletionChunk {
        ChatCompletionChunk::new(&self.id, self.created, &self.model, vec![choice])
    }
}

impl AnswerFormat for ChatFormat {
    fn opening(&self, choice: u32) -> Option<Bytes> {
        let delta = ChatDelta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..ChatDelta::default()
        };
        Some(sse::event(&self.chunk(ChatChunkChoice {
            index: choice,
            delta,
            ..ChatChunkChoice::default()
        })))
    }

    fn delta(
        &self,
        choice: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
        finish: Option<FinishReason>,
    ) -> Bytes {
        let delta = ChatDelta {
            content: (!text.is_empty() || finish.is_none()).then_some(text),
            ..ChatDelta::default()
        };
        sse::event(&self.chunk(ChatChunkChoice {
            index: choice,
            delta,
            logprobs: (!logprobs.is_empty()).then(|| wire_logprobs(logprobs)),
            finish_reason: finish.map(finish_reason),
        }))
    }

    fn usage_chunk(&self, usage: Usage) -> Bytes {
        sse::event(&ChatCompletionChunk::usage_chunk(
            &self.id,
            self.created,
            &self.model,
            usage,
        ))
    }

    fn whole(&self, choices: Vec<Collected>, usage: Usage) -> Response {
        let choices = choices
            .into_iter()
            .zip(0u32..)
            .map(|(choice, index)| ChatChoice {
                index,
                message: ResponseMessage::text(choice.text),
                logprobs: self.logprobs.then(|| wire_logprobs(choice.logprobs)),
                finish_reason: choice.finish.map(finish_reason),
            })
            .collect();
        let completion = ChatCompletion::new(&self.id, self.created, &self.model, choices, usage);
        Json(completion).into_response()
    }
}
