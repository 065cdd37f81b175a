//! `POST /v1/completions`, the legacy endpoint (served by the shared generation pipeline,
//! checked in `generation::validate`; choices are prompt-major), and its answers:
//! `text_completion` objects, whole or as chunks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_backend::{EchoedPrompt, TokenLogprob};
use gateway_core::openai::{
    Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, Usage,
};

use super::finish_reason;
use crate::accounting::MeterSlot;
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::generation::{self, AnswerFormat, AnswerMeta, Collected, Delta};
use crate::sse;
use crate::state::AppState;

/// Handles `POST /v1/completions` with the shared generation pipeline.
#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "model",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion (`text_completion`), whole or, with \
                                      `stream: true`, as server-sent events of \
                                      `text_completion` chunks ending with `data: [DONE]`.",
         content(
             (Completion = "application/json"),
             (Completion = "text/event-stream"),
         )),
        crate::openapi::ModelErrors,
    ),
    security(("api_key" = []))
)]
pub async fn create_completion(
    state: State<Arc<AppState>>,
    key: ApiKey,
    slot: MeterSlot,
    headers: HeaderMap,
    body: OpenAiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    generation::handle(state, key, slot, headers, body).await
}

/// The backend's log-probabilities as legacy parallel arrays, after those of the echoed
/// `prompt` (its first token without a log-probability) when there is one.
fn legacy_logprobs(
    prompt: Option<&EchoedPrompt>,
    logprobs: Vec<TokenLogprob>,
) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    let mut offset = 0u32;
    if let Some(first) = prompt.and_then(|prompt| prompt.first_token.as_ref()) {
        out.tokens.push(first.clone());
        out.token_logprobs.push(None);
        out.top_logprobs.push(None);
        out.text_offset.push(offset);
        offset += u32::try_from(first.len()).unwrap_or(0);
    }
    let echoed = prompt
        .map(|prompt| prompt.logprobs.clone())
        .unwrap_or_default();
    for lp in echoed.into_iter().chain(logprobs) {
        out.text_offset.push(offset);
        offset += u32::try_from(lp.text.len()).unwrap_or(0);
        out.token_logprobs.push(Some(lp.logprob));
        out.top_logprobs.push(Some(
            lp.top
                .into_iter()
                .map(|(text, _, logprob)| (text, logprob))
                .collect(),
        ));
        out.tokens.push(lp.text);
    }
    out
}

/// Legacy completions and their chunks.
pub struct CompletionFormat(AnswerMeta);

impl CompletionFormat {
    fn completion(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Completion {
        let answer = &self.0;
        Completion::new(&answer.id, answer.created, &answer.model, choices, usage)
    }
}

impl AnswerFormat for CompletionFormat {
    const ID_PREFIX: &'static str = "cmpl-";

    type Settings = ();

    fn new(answer: AnswerMeta, (): ()) -> Self {
        Self(answer)
    }

    fn opening(&mut self, _choice: u32) -> Option<Bytes> {
        None
    }

    fn delta(&mut self, delta: Delta) -> Bytes {
        let choice = CompletionChoice {
            text: delta.text,
            index: delta.choice,
            logprobs: (!delta.logprobs.is_empty()).then(|| legacy_logprobs(None, delta.logprobs)),
            finish_reason: delta.finish.map(finish_reason),
        };
        sse::event(&self.completion(vec![choice], None))
    }

    fn closing(&mut self, usage: Usage, include_usage: bool) -> Bytes {
        sse::closing(include_usage.then(|| sse::event(&self.completion(Vec::new(), Some(usage)))))
    }

    fn prompt(&mut self, choice: u32, prompt: EchoedPrompt) -> Bytes {
        let logprobs = self
            .0
            .logprobs
            .then(|| legacy_logprobs(Some(&prompt), Vec::new()));
        let choice = CompletionChoice {
            text: prompt.text,
            index: choice,
            logprobs,
            finish_reason: None,
        };
        sse::event(&self.completion(vec![choice], None))
    }

    fn whole(&self, choices: Vec<Collected>, usage: Usage) -> Response {
        let choices = choices
            .into_iter()
            .zip(0u32..)
            .map(|(choice, index)| {
                let logprobs = self
                    .0
                    .logprobs
                    .then(|| legacy_logprobs(choice.prompt.as_ref(), choice.logprobs));
                let text = match choice.prompt {
                    Some(prompt) => prompt.text + &choice.text,
                    None => choice.text,
                };
                CompletionChoice {
                    text,
                    index,
                    logprobs,
                    finish_reason: choice.finish.map(finish_reason),
                }
            })
            .collect();
        Json(self.completion(choices, Some(usage))).into_response()
    }
}
