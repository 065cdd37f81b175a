//! Relays a streamed generation from an upstream server to the choice sinks, chunk by chunk
//! as it arrives: text (counted roughly, four characters a token, while it streams) or tokens
//! with log-probabilities, and each choice's end once the stream has ended, after the usage:
//! the upstream's when it reports it, else the prompt's estimate and the generated text
//! counted with the model's [`TokenCounter`] (marked estimated). When the client goes away
//! the upstream connection is dropped at once, which cancels the generation there.

use std::time::Duration;

use gateway_backend::{Accuracy, BackendError, ChoiceSink, FinishReason, TokenCount, Usage};

use crate::exchange::{next_data, Started};
use crate::sse::SseDecoder;
use crate::tokens::TokenCounter;
use crate::wire::{self, Chunk, ChunkChoice, WireUsage};

/// How to count what the upstream does not report: the prompt's estimate and the counter of
/// generated text.
pub(crate) struct Estimates {
    /// The prompt's tokens as counted before the request.
    pub(crate) prompt: TokenCount,
    /// The model's tokenizer (or `tiktoken`).
    pub(crate) counter: TokenCounter,
}

/// Relays `started` into `sinks` (one per choice) until the upstream's stream ends, breaks
/// off, pauses longer than `idle`, or the client goes away.
pub(crate) async fn run(
    started: Started,
    sinks: Vec<ChoiceSink>,
    estimates: Estimates,
    idle: Duration,
) {
    let Started {
        mut lease,
        mut body,
        first,
    } = started;
    let mut relay = Relay::new(sinks, estimates);
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
            Some(Ok(Ok(None))) if relay.finishes.iter().all(Option::is_some) => break Ok(()),
            Some(Ok(Ok(None))) => break Err("the stream ended before its choices did".to_owned()),
            Some(Ok(Ok(Some(piece)))) => relay.feed(&piece),
        }
    };
    match outcome {
        Ok(()) => {
            lease.succeeded();
            drop(lease);
            relay.finish();
            drain(&mut body).await;
        }
        Err(reason) => {
            tracing::warn!(upstream = %lease.endpoint().url(""), %reason, "upstream stream broke off");
            relay.fail();
        }
    }
}

/// Longest time spent reading what follows `[DONE]`.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// Reads the rest of a finished stream's body (the end of its chunked encoding follows
/// `[DONE]`), so that its connection goes back to the pool instead of being closed.
async fn drain(body: &mut hyper::body::Incoming) {
    let rest = async { while let Ok(Some(_)) = next_data(body).await {} };
    let _ = tokio::time::timeout(DRAIN_LIMIT, rest).await;
}

/// The state of one relayed stream.
struct Relay {
    sinks: Vec<Option<ChoiceSink>>,
    finishes: Vec<Option<FinishReason>>,
    decoder: SseDecoder,
    estimates: Estimates,
    /// Each choice's text so far, counted at the end if the upstream reports no usage.
    texts: Vec<String>,
    /// Whether tokens came one by one (with log-probabilities): then they are counted as such.
    tokens_seen: bool,
    reported: Option<WireUsage>,
    done: bool,
    broken: Option<String>,
}

impl Relay {
    fn new(sinks: Vec<ChoiceSink>, estimates: Estimates) -> Self {
        Self {
            finishes: vec![None; sinks.len()],
            texts: vec![String::new(); sinks.len()],
            sinks: sinks.into_iter().map(Some).collect(),
            decoder: SseDecoder::default(),
            estimates,
            tokens_seen: false,
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
        self.texts[index].push_str(text);
        let logprobs = choice
            .logprobs
            .as_ref()
            .map(wire::logprobs)
            .unwrap_or_default();
        if logprobs.is_empty() {
            if !text.is_empty() {
                sink.text(text.to_owned(), TokenCount::estimate(text));
            }
        } else {
            self.tokens_seen = true;
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

    /// Ends every choice, after the usage: the upstream's, else the estimate.
    fn finish(&mut self) {
        if let Some(usage) = self.final_usage() {
            if let Some(Some(sink)) = self.sinks.first() {
                sink.report_usage(usage);
            }
        }
        for (sink, reason) in self.sinks.iter_mut().zip(&self.finishes) {
            if let Some(sink) = sink.take() {
                sink.finish(reason.unwrap_or(FinishReason::Stop), String::new());
            }
        }
    }

    /// The usage the generation ends with: the upstream's, else the prompt's estimate and the
    /// generated text counted with the tokenizer; `None` keeps the sinks' own count (tokens
    /// that came one by one).
    fn final_usage(&self) -> Option<Usage> {
        if let Some(usage) = self.reported {
            return Some(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                cached_prompt_tokens: usage.cached_prompt_tokens(),
                accuracy: Accuracy::Exact,
            });
        }
        if self.tokens_seen {
            return None;
        }
        let counter = &self.estimates.counter;
        let completion_tokens = self
            .texts
            .iter()
            .map(|text| counter.count(text).tokens)
            .sum();
        Some(Usage {
            prompt_tokens: self.estimates.prompt.tokens,
            completion_tokens,
            cached_prompt_tokens: 0,
            accuracy: Accuracy::Estimated,
        })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use gateway_backend::{generation_channel, GenerationEvent};

    use super::*;

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"Hello there\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Paris\"},\"finish_reason\":\"length\"}]}\n\n",
        "data: {\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    );

    async fn relayed(stream: &str) -> (Vec<GenerationEvent>, Usage) {
        let counter = TokenCounter::tiktoken().unwrap();
        let prompt = TokenCount {
            tokens: 9,
            accuracy: Accuracy::Estimated,
        };
        let (sinks, mut events) = generation_channel(2, prompt);
        let mut relay = Relay::new(sinks, Estimates { prompt, counter });
        for piece in stream.as_bytes().chunks(7) {
            relay.feed(piece);
        }
        assert!(relay.done && relay.broken.is_none());
        relay.finish();
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            seen.push(event);
        }
        let usage = events.usage();
        (seen, usage)
    }

    #[tokio::test]
    async fn the_upstreams_usage_is_what_the_choices_end_with() {
        let stream = format!(
            "{STREAM}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":3}}}}\n\ndata: [DONE]\n\n"
        );
        let (events, usage) = relayed(&stream).await;
        let texts: Vec<_> = events
            .iter()
            .filter_map(|event| match event {
                GenerationEvent::Token { choice, text, .. } => Some((*choice, text.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(texts, [(1, "Hello there"), (0, "Paris")]);
        let ends: Vec<_> = events
            .iter()
            .filter_map(|event| match event {
                GenerationEvent::Finished { choice, reason, .. } => Some((*choice, *reason)),
                _ => None,
            })
            .collect();
        assert_eq!(ends, [(0, FinishReason::Length), (1, FinishReason::Stop)]);
        assert!(matches!(events.last(), Some(GenerationEvent::Done { .. })));
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 12,
                completion_tokens: 3,
                cached_prompt_tokens: 0,
                accuracy: Accuracy::Exact
            }
        );
    }

    #[tokio::test]
    async fn the_upstreams_cached_prompt_tokens_are_kept() {
        let usage = |details: &str| {
            format!(
                "{STREAM}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":3{details}}}}}\n\ndata: [DONE]\n\n"
            )
        };
        let (_, vllm) = relayed(&usage(",\"prompt_tokens_details\":{\"cached_tokens\":8}")).await;
        assert_eq!(vllm.cached_prompt_tokens, 8);
        assert_eq!((vllm.prompt_tokens, vllm.completion_tokens), (12, 3));
        for unknown in [
            ",\"prompt_tokens_details\":null",
            ",\"prompt_tokens_details\":{\"cached_tokens\":null}",
            ",\"prompt_tokens_details\":{\"audio_tokens\":0}",
            "",
        ] {
            let (_, usage) = relayed(&usage(unknown)).await;
            assert_eq!(usage.cached_prompt_tokens, 0, "{unknown}");
        }
        let (_, too_many) =
            relayed(&usage(",\"prompt_tokens_details\":{\"cached_tokens\":99}")).await;
        assert_eq!(too_many.cached_prompt_tokens, 12, "at most the prompt");
    }

    #[tokio::test]
    async fn without_usage_the_text_is_counted_with_the_tokenizer_and_marked() {
        let (_, usage) = relayed(&format!("{STREAM}data: [DONE]\n\n")).await;
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 9,
                completion_tokens: 3,
                cached_prompt_tokens: 0,
                accuracy: Accuracy::Estimated
            },
            "'Hello there' is two o200k tokens, 'Paris' one"
        );
    }

    #[test]
    fn an_error_inside_the_stream_or_an_unreadable_chunk_breaks_it() {
        for bad in [
            "data: {\"error\":{\"message\":\"boom\"}}\n",
            "data: {not json\n",
        ] {
            let (sinks, _events) = generation_channel(1, TokenCount::exact(1));
            let estimates = Estimates {
                prompt: TokenCount::exact(1),
                counter: TokenCounter::tiktoken().unwrap(),
            };
            let mut relay = Relay::new(sinks, estimates);
            relay.feed(bad.as_bytes());
            assert!(relay.broken.is_some(), "{bad}");
        }
    }
}
