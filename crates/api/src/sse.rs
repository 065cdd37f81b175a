//! Server-sent events for streamed chat and completion answers, in the shape the OpenAI SDKs
//! read: the first chunk of each choice (a chat choice's carries the role), one chunk per
//! released piece of text, a chunk with the `finish_reason`, with
//! `stream_options.include_usage` a last chunk with `choices: []` and the usage (every other
//! chunk has `usage: null`), then `data: [DONE]`. The usage is metered when the stream ends or
//! when the client goes away, whichever comes first.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, StreamExt};
use gateway_core::openai::Usage;
use gateway_engine::{FinishReason, GenerationEvent, TokenLogprob};
use serde::Serialize;

use crate::generation::UsageMeter;

/// How one kind of answer (chat or legacy completion) writes its chunks.
pub trait ChunkFormat: Send + 'static {
    /// The chunk that opens choice `index`, if the format has one.
    fn opening(&self, index: u32) -> Option<Bytes>;
    /// A chunk with new text, its tokens' log-probabilities and, on the last, the reason.
    fn delta(
        &self,
        index: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
        finish: Option<FinishReason>,
    ) -> Bytes;
    /// The final usage chunk.
    fn usage(&self, usage: Usage) -> Bytes;
}

/// One `data: …` event with `value` as JSON.
pub fn event<T: Serialize>(value: &T) -> Bytes {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("data: {json}\n\n"))
}

struct StreamState<F> {
    format: F,
    events: BoxStream<'static, (u32, GenerationEvent)>,
    meter: UsageMeter,
    include_usage: bool,
    pending: VecDeque<Bytes>,
    done: bool,
}

/// The streamed answer of `choices` generations.
pub fn stream_response<F: ChunkFormat>(
    format: F,
    choices: u32,
    events: BoxStream<'static, (u32, GenerationEvent)>,
    meter: UsageMeter,
    include_usage: bool,
) -> Response {
    let pending = (0..choices)
        .filter_map(|index| format.opening(index))
        .collect();
    let state = StreamState {
        format,
        events,
        meter,
        include_usage,
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

impl<F: ChunkFormat> StreamState<F> {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            match self.events.next().await {
                Some((index, GenerationEvent::Token { text, logprob })) => {
                    self.meter.completion_tokens += 1;
                    if !text.is_empty() || logprob.is_some() {
                        let logprobs = logprob.into_iter().collect();
                        let chunk = self.format.delta(index, text, logprobs, None);
                        self.pending.push_back(chunk);
                    }
                }
                Some((index, GenerationEvent::Finished { reason, tail, .. })) => {
                    let chunk = self.format.delta(index, tail, Vec::new(), Some(reason));
                    self.pending.push_back(chunk);
                }
                Some((_, GenerationEvent::Failed(error))) => {
                    tracing::error!(%error, "generation failed mid-stream");
                    self.finish();
                }
                None => self.finish(),
            }
        }
    }

    fn finish(&mut self) {
        self.meter.record();
        if self.include_usage {
            let chunk = self.format.usage(self.meter.usage());
            self.pending.push_back(chunk);
        }
        self.pending
            .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        self.done = true;
    }
}
