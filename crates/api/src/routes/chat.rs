//! `POST /v1/chat/completions` (served by the shared generation pipeline, checked in
//! `generation::validate`) and its answers: the chat wire shapes, whole (`chat.completion`) or
//! as `chat.completion.chunk`s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_backend::TokenLogprob;
use gateway_core::openai::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatDelta, ChoiceLogprobs, ResponseMessage, Role, TokenLogprob as WireLogprob, TopLogprob,
    Usage,
};

use super::finish_reason;
use crate::accounting::MeterSlot;
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::generation::{self, AnswerFormat, AnswerMeta, Collected, Delta};
use crate::sse;
use crate::state::AppState;

/// Handles `POST /v1/chat/completions` with the shared generation pipeline.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "model",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion, whole (`chat.completion`) or, with \
                                      `stream: true`, as server-sent events of \
                                      `chat.completion.chunk`s ending with `data: [DONE]`.",
         content(
             (ChatCompletion = "application/json"),
             (ChatCompletionChunk = "text/event-stream"),
         )),
        crate::openapi::ModelErrors,
    ),
    security(("api_key" = []))
)]
pub async fn create_chat_completion(
    state: State<Arc<AppState>>,
    key: ApiKey,
    slot: MeterSlot,
    headers: HeaderMap,
    body: OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    generation::handle(state, key, slot, headers, body).await
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
pub struct ChatFormat(AnswerMeta);

impl ChatFormat {
    fn chunk(&self, choice: ChatChunkChoice) -> ChatCompletionChunk {
        let answer = &self.0;
        ChatCompletionChunk::new(&answer.id, answer.created, &answer.model, vec![choice])
    }
}

impl AnswerFormat for ChatFormat {
    const ID_PREFIX: &'static str = "chatcmpl";

    fn new(answer: AnswerMeta) -> Self {
        Self(answer)
    }

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

    fn delta(&self, delta: Delta) -> Bytes {
        let Delta {
            choice,
            text,
            logprobs,
            finish,
        } = delta;
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
        let answer = &self.0;
        let chunk =
            ChatCompletionChunk::usage_chunk(&answer.id, answer.created, &answer.model, usage);
        sse::event(&chunk)
    }

    fn whole(&self, choices: Vec<Collected>, usage: Usage) -> Response {
        let choices = choices
            .into_iter()
            .zip(0u32..)
            .map(|(choice, index)| ChatChoice {
                index,
                message: ResponseMessage::text(choice.text),
                logprobs: self.0.logprobs.then(|| wire_logprobs(choice.logprobs)),
                finish_reason: choice.finish.map(finish_reason),
            })
            .collect();
        let answer = &self.0;
        let completion =
            ChatCompletion::new(&answer.id, answer.created, &answer.model, choices, usage);
        Json(completion).into_response()
    }
}
