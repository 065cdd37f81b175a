//! `POST /v1/completions`: the legacy endpoint. Each prompt (a string, strings, or token
//! arrays) is checked into a generation ([`validate::completion`]) and run by the shared
//! pipeline; choices are prompt-major. This file maps the result to `text_completion`
//! objects, whole or as chunks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_backend::{FinishReason, TokenLogprob};
use gateway_core::openai::{
    Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, Usage,
};

use super::{finish_reason, request_id};
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::generation::{self, validate, AnswerFormat, Collected};
use crate::sse;
use crate::state::AppState;

/// Handles `POST /v1/completions`.
pub async fn create_completion(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    headers: HeaderMap,
    OpenAiJson(request): OpenAiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let backend = Arc::clone(&state.models.permitted(&request.model, &key)?.backend);
    let generation = validate::completion(&request)?;
    let format = CompletionFormat {
        id: format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
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

/// The backend's log-probabilities as legacy parallel arrays.
fn legacy_logprobs(logprobs: Vec<TokenLogprob>) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    let mut offset = 0u32;
    for lp in logprobs {
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
struct CompletionFormat {
    id: String,
    created: i64,
    model: String,
    logprobs: bool,
}

impl AnswerFormat for CompletionFormat {
    fn opening(&self, _choice: u32) -> Option<Bytes> {
        None
    }

    fn delta(
        &self,
        choice: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
        finish: Option<FinishReason>,
    ) -> Bytes {
        let choice = CompletionChoice {
            text,
            index: choice,
            logprobs: (!logprobs.is_empty()).then(|| legacy_logprobs(logprobs)),
            finish_reason: finish.map(finish_reason),
        };
        sse::event(&Completion::new(
            &self.id,
            self.created,
            &self.model,
            vec![choice],
            None,
        ))
    }

    fn usage_chunk(&self, usage: Usage) -> Bytes {
        sse::event(&Completion::new(
            &self.id,
            self.created,
            &self.model,
            Vec::new(),
            Some(usage),
        ))
    }

    fn whole(&self, choices: Vec<Collected>, usage: Usage) -> Response {
        let choices = choices
            .into_iter()
            .zip(0u32..)
            .map(|(choice, index)| CompletionChoice {
                text: choice.text,
                index,
                logprobs: self.logprobs.then(|| legacy_logprobs(choice.logprobs)),
                finish_reason: choice.finish.map(finish_reason),
            })
            .collect();
        let completion = Completion::new(&self.id, self.created, &self.model, choices, Some(usage));
        Json(completion).into_response()
    }
}
