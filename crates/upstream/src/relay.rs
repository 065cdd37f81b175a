//! Relays a streamed generation from an upstream server to the choice sinks, chunk by chunk
//! as it arrives: text (with its estimated tokens) or tokens with log-probabilities, the
//! upstream's usage when it reports it, and each choice's end once the stream has ended, so
//! that the reported usage is what the generation ends with. When the client goes away the
//! upstream connection is dropped at once, which cancels the generation there.

use std::time::Duration;

use gateway_backend::{Accuracy, BackendError, ChoiceSink, FinishReason, Usage};

use crate::exchange::{next_data, Started};
use crate::sse::SseDecoder;
use crate::tokens::TokenCounter;
use crate::wire::{self, Chunk, ChunkChoice, WireUsage};

/// Relays `started` into `sinks` (one per choice) until the upstream's stream ends, breaks
/// off, pauses longer than `idle`, or the client goes away.
pub(crate) async fn run(
    started: Started,
    sinks: Vec<ChoiceSink>,
    counter: TokenCounter,
    idle: Duration,
) {
    let Started {
        mut lease,
        mut body,
        first,
    } = started;
    let mut relay = Relay::new(sinks, counter);
    relay.feed(&first);
    let outcome = loop {
        if let Some(reason) = relay.broken.take() {
            break Err(reason);
        }
        if relay.done {
            break Ok(());
        }
        let Some(open) = relay.sinks.iter().flatten().next() else {
            break Ok(());
        };
        let next = tokio::select! {
            piece = tokio::time::timeout(idle, next_data(&mut body)) => Some(piece),
            () = open.closed() => None,
        };
        match next {
            None => return,
            Some(Err(_)) => break Err(format!("no data for {idle:?}")),
            Some(Ok(Err(error))) => break Err(error.to_string()),
            Some(Ok(Ok(None))) if relay.decoder.has_partial_line() => {
                break Err("the stream ended inside an event".to_owned())
            }
            Some(Ok(Ok(None))) => break Ok(()),
            Some(Ok(Ok(Some(piece)))) => relay.feed(&piece),
        }
    };
    match outcome {
        Ok(()) => {
            lease.succeeded();
            relay.finish();
        }
        Err(reason) => {
            tracing::warn!(upstream = %lease.endpoint().url(""), %reason, "upstream stream broke off");
            relay.fail();
        }
    }
}

/// The state of one relayed stream.
struct Relay {
    sinks: Vec<Option<ChoiceSink>>,
    finishes: Vec<Option<FinishReason>>,
    decoder: SseDecoder,
    counter: TokenCounter,
    reported: Option<WireUsage>,
    done: bool,
    broken: Option<String>,
}

impl Relay {
    fn new(sinks: Vec<ChoiceSink>, counter: TokenCounter) -> Self {
        Self {
            finishes: vec![None; sinks.len()],
            sinks: sinks.into_iter().map(Some).collect(),
            decoder: SseDecoder::default(),
            counter,
            reported: None,
            done: false,
            broken: None,
        }
    }

    /// Takes the next piece of the stream.
    fn feed(&mut self, piece: &[u8]) {
        let mut decoder = std::mem::take(&mut self.decoder);
        decoder.feed(piece, |payload| self.on_event(payload));
        self.decoder = decoder;
    }

    fn on_event(&mut self, payload: &[u8]) {
        if payload == b"[DONE]" {
            self.done = true;
            return;
        }
        let chunk: Chunk = match serde_json::from_slice(payload) {
            Ok(chunk) => chunk,
            Err(error) => {
                self.broken = Some(format!("an unreadable chunk: {error}"));
                return;
            }
        };
        if chunk.error.is_some() {
            self.broken = Some("the upstream reported an error inside its stream".to_owned());
            return;
        }
        if let Some(usage) = chunk.usage {
            self.reported = Some(usage);
        }
        for choice in &chunk.choices {
            self.on_choice(choice);
        }
    }

    fn on_choice(&mut self, choice: &ChunkChoice) {
        let index = choice.index as usize;
        let Some(Some(sink)) = self.sinks.get(index) else {
            return;
        };
        let text = choice.text();
        let logprobs = choice
            .logprobs
            .as_ref()
            .map(wire::logprobs)
            .unwrap_or_default();
        if logprobs.is_empty() {
            if !text.is_empty() {
                sink.text(text.to_owned(), self.counter.count(text));
            }
        } else {
            let tokens_spell_text = logprobs
                .iter()
                .map(|lp| lp.text.as_str())
                .collect::<String>()
                == text;
            for (position, logprob) in logprobs.into_iter().enumerate() {
                let piece = match (tokens_spell_text, position) {
                    (true, _) => logprob.text.clone(),
                    (false, 0) => text.to_owned(),
                    (false, _) => String::new(),
                };
                sink.token(piece, Some(logprob));
            }
        }
        if let Some(reason) = &choice.finish_reason {
            self.finishes[index] = Some(match reason.as_str() {
                "length" => FinishReason::Length,
                _ => FinishReason::Stop,
            });
        }
    }

    /// Ends every choice, after the upstream's usage (when it reported one) replaced the
    /// estimate.
    fn finish(&mut self) {
        if let (Some(usage), Some(Some(sink))) = (self.reported, self.sinks.first()) {
            sink.report_usage(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                accuracy: Accuracy::Exact,
            });
        }
        for (sink, reason) in self.sinks.iter_mut().zip(&self.finishes) {
            if let Some(sink) = sink.take() {
                sink.finish(reason.unwrap_or(FinishReason::Stop), String::new());
            }
        }
    }

    /// Fails the generation; what it produced so far stays counted.
    fn fail(&mut self) {
        if let Some(sink) = self.sinks.iter_mut().find_map(Option::take) {
            sink.fail(BackendError::Unavailable {
                reason: "the model's server stopped answering mid-stream".to_owned(),
            });
        }
    }
}
