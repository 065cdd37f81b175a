//! The answers of `POST /v1/completions`, the legacy endpoint (served by the shared generation
//! pipeline, checked in `generation::validate`; choices are prompt-major): `text_completion`
//! objects, whole or as chunks.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_backend::TokenLogprob;
use gateway_core::openai::{Completion, CompletionChoice, CompletionLogprobs, Usage};

use super::finish_reason;
use crate::generation::{AnswerFormat, AnswerMeta, Collected, Delta};
use crate::sse;

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
pub struct CompletionFormat(AnswerMeta);

impl CompletionFormat {
    fn completion(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Completion {
        let answer = &self.0;
        Completion::new(&answer.id, answer.created, &answer.model, choices, usage)
    }
}

impl AnswerFormat for CompletionFormat {
    const ID_PREFIX: &'static str = "cmpl";

    fn new(answer: AnswerMeta) -> Self {
        Self(answer)
    }

    fn opening(&self, _choice: u32) -> Option<Bytes> {
        None
    }

    fn delta(&self, delta: Delta) -> Bytes {
        let choice = CompletionChoice {
            text: delta.text,
            index: delta.choice,
            logprobs: (!delta.logprobs.is_empty()).then(|| legacy_logprobs(delta.logprobs)),
            finish_reason: delta.finish.map(finish_reason),
        };
        sse::event(&self.completion(vec![choice], None))
    }

    fn usage_chunk(&self, usage: Usage) -> Bytes {
        sse::event(&self.completion(Vec::new(), Some(usage)))
    }

    fn whole(&self, choices: Vec<Collected>, usage: Usage) -> Response {
        let choices = choices
            .into_iter()
            .zip(0u32..)
            .map(|(choice, index)| CompletionChoice {
                text: choice.text,
                index,
                logprobs: self.0.logprobs.then(|| legacy_logprobs(choice.logprobs)),
                finish_reason: choice.finish.map(finish_reason),
            })
            .collect();
        Json(self.completion(choices, Some(usage))).into_response()
    }
}
