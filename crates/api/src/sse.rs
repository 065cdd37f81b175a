//! Server-sent events for streamed chat and completion answers, in the shape the OpenAI SDKs
//! read: the first chunk of each choice (a chat choice's carries the role), one chunk per
//! released piece of text, a chunk with the `finish_reason`, with
//! `stream_options.include_usage` a last chunk with `choices: []` and the usage (every other
//! chunk has `usage: null`), then `data: [DONE]`. A failure after the stream started becomes
//! one error event (`data: {"error": {…}}`, which the SDKs raise) and the stream ends without
//! `[DONE]`, so no client takes a truncated answer for a complete one. The usage is metered
//! when the stream ends or when the client goes away, whichever comes first.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, StreamExt};
use gateway_backend::BackendError;
use serde::Serialize;

use crate::error::ApiError;
use crate::generation::{AnswerFormat, Output, PromptField, UsageMeter};

/// One `data: …` event with `value` as JSON.
pub fn event<T: Serialize>(value: &T) -> Bytes {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("data: {json}\n\n"))
}

struct StreamState<F> {
    format: F,
    outputs: BoxStream<'static, Output>,
    meter: UsageMeter,
    include_usage: bool,
    prompt_field: PromptField,
    pending: VecDeque<Bytes>,
    done: bool,
}

/// The streamed answer of `choices` choices.
pub fn stream_response<F: AnswerFormat>(
    format: F,
    choices: u32,
    outputs: BoxStream<'static, Output>,
    meter: UsageMeter,
    include_usage: bool,
    prompt_field: PromptField,
) -> Response {
    let pending = (0..choices)
        .filter_map(|choice| format.opening(choice))
        .collect();
    let state = StreamState {
        format,
        outputs,
        meter,
        include_usage,
        prompt_field,
        pending,
        done: false,
    };
    let body = stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), state))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

impl<F: AnswerFormat> StreamState<F> {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            match self.outputs.next().await {
                Some(Output::Token {
                    choice,
                    text,
                    logprob,
                }) => {
                    if !text.is_empty() || logprob.is_some() {
                        let logprobs = logprob.into_iter().collect();
                        let chunk = self.format.delta(choice, text, logprobs, None);
                        self.pending.push_back(chunk);
                    }
                }
                Some(Output::Finished {
                    choice,
                    reason,
                    tail,
                }) => {
                    let chunk = self.format.delta(choice, tail, Vec::new(), Some(reason));
                    self.pending.push_back(chunk);
                }
                Some(Output::Settled { part, usage }) => self.meter.settle(part, usage),
                Some(Output::Failed(error)) => self.fail(error),
                None => self.finish(),
            }
        }
    }

    fn finish(&mut self) {
        self.meter.record();
        if self.include_usage {
            let chunk = self.format.usage_chunk(self.meter.wire_usage());
            self.pending.push_back(chunk);
        }
        self.pending
            .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        self.done = true;
    }

    fn fail(&mut self, error: BackendError) {
        self.meter.record();
        let error = ApiError::backend(error, self.prompt_field.name());
        let body = error.stream_body(self.meter.request_id());
        self.pending.push_back(event(&body));
        self.done = true;
    }
}
