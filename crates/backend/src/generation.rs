//! One generation: what a request asks for ([`GenerationRequest`], [`SamplingParams`]), the
//! events that come back ([`GenerationStream`] of [`GenerationEvent`]s, all choices on one
//! stream) and the backend's side of it ([`ChoiceSink`], one per choice, from
//! [`generation_channel`]). The sinks keep the request's [`Usage`] up to date as they go, so
//! that it is known also when the client goes away before the end.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{Accuracy, BackendError, Prompt, TokenCount, Usage};

/// How the next token is chosen. Greedy when `temperature` is 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the likeliest token.
    pub temperature: f32,
    /// Nucleus mass: sample among the likeliest tokens whose probabilities sum to `top_p`.
    pub top_p: f32,
    /// Sample only among the `top_k` likeliest tokens (0: no limit).
    pub top_k: usize,
    /// Seed of the random generator; choice `i` samples with `seed + i`, so the choices
    /// differ and the same seed and request give the same output.
    pub seed: u64,
    /// Subtracted once from the logit of every token already generated.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was generated.
    pub frequency_penalty: f32,
    /// Alternatives returned per position with the log-probabilities (`None`: no logprobs).
    pub top_logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            top_logprobs: None,
        }
    }
}

/// One checked generation: a prompt and how to continue it.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// What to continue.
    pub prompt: Prompt,
    /// Independent continuations of the prompt (`n`), at least 1.
    pub choices: u32,
    /// Most tokens to generate per choice; `None`: what the context leaves after the prompt.
    pub max_tokens: Option<usize>,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Strings that end a choice; they are never part of the output.
    pub stop: Vec<String>,
}

impl GenerationRequest {
    /// One choice of `prompt` with the default sampling, up to the context's end.
    pub fn new(prompt: Prompt) -> Self {
        Self {
            prompt,
            choices: 1,
            max_tokens: None,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
        }
    }
}

/// Why a choice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its turn or a stop string was reached.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
}

/// The log-probability of one generated token and its likeliest alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's text (may be part of a character).
    pub text: String,
    /// The token's UTF-8 bytes.
    pub bytes: Vec<u8>,
    /// Its log-probability.
    pub logprob: f32,
    /// The likeliest tokens at this position: text, bytes and log-probability.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// What a running generation reports.
#[derive(Debug)]
pub enum GenerationEvent {
    /// Choice `choice` generated output. `text` may be empty (an incomplete character, or
    /// text held back while it may start a stop string).
    Token {
        /// The choice, from 0.
        choice: u32,
        /// Text that may be shown now.
        text: String,
        /// The token's log-probability, when asked for.
        logprob: Option<TokenLogprob>,
    },
    /// Choice `choice` ended; no more tokens of it follow.
    Finished {
        /// The choice, from 0.
        choice: u32,
        /// Why it ended.
        reason: FinishReason,
        /// Output released at the end (text that was held back).
        tail: String,
    },
    /// Every choice has ended; nothing follows.
    Done {
        /// What the whole generation used.
        usage: Usage,
    },
    /// The generation failed; nothing follows.
    Failed {
        /// Why.
        error: BackendError,
        /// What it had used when it failed.
        usage: Usage,
    },
}

/// The counters the sinks of one generation share with its stream.
#[derive(Debug)]
struct Tally {
    prompt_tokens: usize,
    prompt_accuracy: Accuracy,
    completion_tokens: AtomicUsize,
    open_choices: AtomicU32,
    ended: AtomicBool,
}

impl Tally {
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens.load(Ordering::SeqCst),
            accuracy: self.prompt_accuracy,
        }
    }
}

/// A generation's channel: one [`ChoiceSink`] per choice for the backend, one
/// [`GenerationStream`] for the caller. `prompt` is the prompt's token count, each prompt
/// billed once whatever the number of choices.
pub fn generation_channel(choices: u32, prompt: TokenCount) -> (Vec<ChoiceSink>, GenerationStream) {
    let (events, receiver) = mpsc::unbounded_channel();
    let tally = Arc::new(Tally {
        prompt_tokens: prompt.tokens,
        prompt_accuracy: prompt.accuracy,
        completion_tokens: AtomicUsize::new(0),
        open_choices: AtomicU32::new(choices),
        ended: AtomicBool::new(false),
    });
    let sinks = (0..choices)
        .map(|choice| ChoiceSink {
            choice,
            events: events.clone(),
            tally: Arc::clone(&tally),
        })
        .collect();
    let stream = GenerationStream {
        events: receiver,
        usage: UsageHandle(tally),
    };
    (sinks, stream)
}

/// Where a backend sends the output of one choice. Sending never blocks; once the caller has
/// dropped the stream, [`Self::is_closed`] says so and the backend should stop the choice.
#[derive(Debug)]
pub struct ChoiceSink {
    choice: u32,
    events: mpsc::UnboundedSender<GenerationEvent>,
    tally: Arc<Tally>,
}

impl ChoiceSink {
    /// The choice this sink feeds, from 0.
    pub fn choice(&self) -> u32 {
        self.choice
    }

    /// Whether the caller has gone away.
    pub fn is_closed(&self) -> bool {
        self.events.is_closed()
    }

    /// Reports one generated token and the text it releases; `false` when the caller has gone
    /// away (the token is counted either way: it was computed).
    pub fn token(&self, text: String, logprob: Option<TokenLogprob>) -> bool {
        self.tally.completion_tokens.fetch_add(1, Ordering::SeqCst);
        self.send(GenerationEvent::Token {
            choice: self.choice,
            text,
            logprob,
        })
    }

    /// Ends the choice; after the last choice, the stream ends with its usage.
    pub fn finish(&self, reason: FinishReason, tail: String) {
        self.send(GenerationEvent::Finished {
            choice: self.choice,
            reason,
            tail,
        });
        if self.tally.open_choices.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.end(|usage| GenerationEvent::Done { usage });
        }
    }

    /// Fails the whole generation (all its choices) with `error`.
    pub fn fail(&self, error: BackendError) {
        self.end(|usage| GenerationEvent::Failed { error, usage });
    }

    /// Sends the stream's last event, once.
    fn end(&self, last: impl FnOnce(Usage) -> GenerationEvent) {
        if !self.tally.ended.swap(true, Ordering::SeqCst) {
            // A closed channel means the caller went away; the usage stays readable.
            let _ = self.events.send(last(self.tally.usage()));
        }
    }

    fn send(&self, event: GenerationEvent) -> bool {
        !self.tally.ended.load(Ordering::SeqCst) && self.events.send(event).is_ok()
    }
}

/// The events of one generation, all choices interleaved, ending with
/// [`GenerationEvent::Done`] or [`GenerationEvent::Failed`]. Dropping it cancels the
/// generation.
#[derive(Debug)]
pub struct GenerationStream {
    events: mpsc::UnboundedReceiver<GenerationEvent>,
    usage: UsageHandle,
}

impl GenerationStream {
    /// The next event, or `None` after the last (or once the backend dropped the generation).
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        self.events.recv().await
    }

    /// The next event if one is waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<GenerationEvent> {
        self.events.try_recv().ok()
    }

    /// What the generation has used so far.
    pub fn usage(&self) -> Usage {
        self.usage.usage()
    }

    /// A handle that reads the usage also after the stream was consumed or dropped.
    pub fn usage_handle(&self) -> UsageHandle {
        self.usage.clone()
    }
}

/// Reads the usage of a generation as its backend counts it.
#[derive(Debug, Clone)]
pub struct UsageHandle(Arc<Tally>);

impl UsageHandle {
    /// What the generation has used so far.
    pub fn usage(&self) -> Usage {
        self.0.usage()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    async fn drain(stream: &mut GenerationStream) -> Vec<GenerationEvent> {
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            events.push(event);
        }
        events
    }

    #[tokio::test]
    async fn the_last_choice_to_finish_ends_the_stream_with_the_usage() {
        let (sinks, mut stream) = generation_channel(2, TokenCount::exact(5));
        sinks[0].token("a".into(), None);
        sinks[1].token("b".into(), None);
        sinks[1].token("c".into(), None);
        sinks[1].finish(FinishReason::Length, String::new());
        sinks[0].finish(FinishReason::Stop, "!".into());
        drop(sinks);
        let events = drain(&mut stream).await;
        assert_eq!(events.len(), 6);
        let GenerationEvent::Done { usage } = &events[5] else {
            panic!("{events:?}")
        };
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (5, 3));
        assert_eq!(usage.accuracy, Accuracy::Exact);
    }

    #[tokio::test]
    async fn a_failure_ends_the_stream_once_and_keeps_the_usage() {
        let (sinks, mut stream) = generation_channel(2, TokenCount::estimate("abcd"));
        sinks[0].token("a".into(), None);
        sinks[0].fail(BackendError::Overloaded);
        sinks[1].fail(BackendError::Overloaded);
        assert!(!sinks[1].token("late".into(), None));
        drop(sinks);
        let events = drain(&mut stream).await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(events[1], GenerationEvent::Failed { .. }));
        assert_eq!(stream.usage().completion_tokens, 2);
        assert_eq!(stream.usage().accuracy, Accuracy::Estimated);
    }

    #[tokio::test]
    async fn a_dropped_stream_closes_the_sinks() {
        let (sinks, stream) = generation_channel(1, TokenCount::exact(1));
        let usage = stream.usage_handle();
        assert!(sinks[0].token("a".into(), None));
        drop(stream);
        assert!(sinks[0].is_closed());
        assert!(!sinks[0].token("b".into(), None));
        assert_eq!(usage.usage().completion_tokens, 2);
    }
}
