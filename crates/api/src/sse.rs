//! Server-sent events for streamed chat and completion answers, in the shape the OpenAI SDKs
//! read: the first chunk of each choice (a chat choice's carries the role), one chunk per
//! released piece of text, a chunk with the `finish_reason`, with
//! `stream_options.include_usage` a last chunk with `choices: []` and the usage (every other
//! chunk has `usage: null`), then `data: [DONE]`. A failure after the stream started becomes
//! one error event (`data: {"error": {…}}`, which the SDKs raise) and the stream ends without
//! `[DONE]`, so no client takes a truncated answer for a complete one. The usage is recorded
//! (durably) before the last event is sent, or when the client goes away, whichever comes
//! first.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::stream::{self, BoxStream, StreamExt};
use futures::FutureExt;
use gateway_backend::{BackendError, GenerationEvent};
use gateway_metering::Outcome;
use serde::Serialize;

use crate::error::ApiError;
use crate::generation::{AnswerFormat, Delta, PromptField, UsageMeter};

/// One `data: …` event with `value` as JSON.
pub fn event<T: Serialize>(value: &T) -> Bytes {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("data: {json}\n\n"))
}

/// The end of a chat or completion stream: the usage chunk when asked for, then
/// `data: [DONE]`.
pub fn closing(usage_chunk: Option<Bytes>) -> Bytes {
    let done = Bytes::from_static(b"data: [DONE]\n\n");
    match usage_chunk {
        Some(chunk) => [chunk, done].concat().into(),
        None => done,
    }
}

/// What a stream holds besides its events.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Choices over the whole request.
    pub choices: u32,
    /// Whether the stream ends with a usage chunk.
    pub include_usage: bool,
    /// The field that holds the prompt, for errors about it.
    pub prompt_field: PromptField,
}

struct StreamState<F> {
    format: F,
    events: BoxStream<'static, GenerationEvent>,
    meter: UsageMeter,
    options: StreamOptions,
    pending: VecDeque<Bytes>,
    done: bool,
}

/// The streamed answer of a request's merged generations.
pub fn stream_response<F: AnswerFormat>(
    mut format: F,
    events: BoxStream<'static, GenerationEvent>,
    meter: UsageMeter,
    options: StreamOptions,
) -> Response {
    let pending = (0..options.choices)
        .filter_map(|choice| format.opening(choice))
        .collect();
    let state = StreamState {
        format,
        events,
        meter,
        options,
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
    /// The next piece of the body: the chunks of the next event, together with those of every
    /// event already waiting (several choices' tokens of one step, an upstream's chunks that
    /// arrived in one read), so that they go out in one write; nothing waits for later events.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        while self.pending.is_empty() && !self.done {
            let event = self.events.next().await;
            self.handle(event);
        }
        while !self.done {
            match self.events.next().now_or_never() {
                Some(event) => self.handle(event),
                None => break,
            }
        }
        match self.pending.len() {
            0 | 1 => self.pending.pop_front(),
            _ => {
                let mut joined = BytesMut::new();
                for chunk in self.pending.drain(..) {
                    joined.extend_from_slice(&chunk);
                }
                Some(joined.freeze())
            }
        }
    }

    /// Turns one event (`None`: the events ended) into pending chunks.
    fn handle(&mut self, event: Option<GenerationEvent>) {
        match event {
            Some(GenerationEvent::Token {
                choice,
                text,
                logprob,
            }) => {
                if !text.is_empty() || logprob.is_some() {
                    let logprobs = logprob.into_iter().collect();
                    self.send(Delta {
                        choice,
                        text,
                        logprobs,
                        finish: None,
                    });
                }
            }
            Some(GenerationEvent::Finished {
                choice,
                reason,
                tail,
            }) => {
                let finish = Some(reason);
                self.send(Delta {
                    choice,
                    text: tail,
                    logprobs: Vec::new(),
                    finish,
                });
            }
            Some(GenerationEvent::Prompt { choice, prompt }) => {
                let chunk = self.format.prompt(choice, prompt);
                if !chunk.is_empty() {
                    self.pending.push_back(chunk);
                }
            }
            Some(GenerationEvent::Done { .. }) => {}
            Some(GenerationEvent::Failed { error, .. }) => self.fail(error),
            None => self.finish(),
        }
    }

    fn send(&mut self, delta: Delta) {
        let chunk = self.format.delta(delta);
        if !chunk.is_empty() {
            self.pending.push_back(chunk);
        }
    }

    fn finish(&mut self) {
        self.meter.record(Outcome::Complete);
        let usage = self.meter.wire_usage();
        let closing = self.format.closing(usage, self.options.include_usage);
        self.pending.push_back(closing);
        self.done = true;
    }

    fn fail(&mut self, error: BackendError) {
        self.meter.record(Outcome::Failed);
        let error = ApiError::backend(error, self.options.prompt_field.name());
        let body = error.stream_body(self.meter.request_id());
        self.pending.push_back(event(&body));
        self.done = true;
    }
}
