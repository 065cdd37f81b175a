//! One generation: what a request asks for ([`GenerationRequest`], [`SamplingParams`]), the
//! events that come back ([`GenerationStream`] of [`GenerationEvent`]s, all choices on one
//! stream) and the backend's side of it ([`ChoiceSink`], one per choice, from
//! [`generation_channel`]). The sinks keep the request's [`Usage`] up to date as they go, so
//! that it is known also when the client goes away before the end.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use crate::{BackendError, OutputConstraint, Prompt, TokenCount, ToolSpec, Usage};

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
    /// Sample only among tokens at least `min_p` times as likely as the likeliest one
    /// (vLLM's `min_p`; 0: no limit).
    pub min_p: f32,
    /// The logit of every token of the prompt or generated so far is divided by this when
    /// positive and multiplied by it when negative (vLLM's `repetition_penalty`; 1: none).
    pub repetition_penalty: f32,
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
            min_p: 0.0,
            repetition_penalty: 1.0,
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
    /// How a choice may end besides its stop strings and length.
    pub ending: Ending,
    /// What every choice's output must look like; `None`: free text.
    pub constraint: Option<OutputConstraint>,
    /// Whether each choice's prompt comes back before its output (legacy `echo`), with the
    /// log-probabilities of its tokens when asked for; `None`: no echo.
    pub echo: Option<Echo>,
    /// Functions the model may call, shown to it with a chat prompt (the chat template renders
    /// them where it can, else the backend describes them in its own words); what the output
    /// means is the caller's to read.
    pub tools: Vec<ToolSpec>,
    /// Whom the request is for (the API sets the project id): a backend that serves several
    /// tenants from one queue shares it fairly between them; `None` is one shared tenant.
    pub tenant: Option<String>,
}

/// The prompt sent back before a choice's output (legacy completions' `echo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Echo {
    /// Alternatives per prompt position with the log-probabilities of the prompt's tokens;
    /// `None`: the prompt's text only.
    pub logprobs: Option<usize>,
}

/// The prompt of a choice as it comes back ([`GenerationEvent::Prompt`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EchoedPrompt {
    /// The prompt's text (its tokens decoded, special tokens left out).
    pub text: String,
    /// With log-probabilities: the text of the prompt's first token, which has none.
    pub first_token: Option<String>,
    /// With log-probabilities: each later token of the prompt, its log-probability given the
    /// tokens before it and the likeliest alternatives.
    pub logprobs: Vec<TokenLogprob>,
}

/// The tokens that end a choice (vLLM's `stop_token_ids`, `min_tokens`, `ignore_eos`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ending {
    /// Token ids that end a choice as the model's end-of-sequence token does; they are never
    /// part of the output.
    pub stop_token_ids: Vec<u32>,
    /// Tokens generated before the end-of-sequence token or a stop token may come: until
    /// then they are never sampled.
    pub min_tokens: usize,
    /// Whether the end-of-sequence token is generated like any other (without text) instead
    /// of ending the choice, which then ends at its length or a stop.
    pub ignore_eos: bool,
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
            ending: Ending::default(),
            constraint: None,
            echo: None,
            tools: Vec::new(),
            tenant: None,
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
    /// Choice `choice`'s prompt, echoed before its first token (only with
    /// [`GenerationRequest::echo`]).
    Prompt {
        /// The choice, from 0.
        choice: u32,
        /// The prompt.
        prompt: EchoedPrompt,
    },
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

/// What the sinks of one generation share with its stream.
#[derive(Debug)]
struct Tally {
    state: Mutex<TallyState>,
}

#[derive(Debug)]
struct TallyState {
    usage: Usage,
    /// Whether a choice has reported its cached prompt tokens yet.
    cached_reported: bool,
    open_choices: u32,
    ended: bool,
}

impl Tally {
    fn lock(&self) -> MutexGuard<'_, TallyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn usage(&self) -> Usage {
        self.lock().usage
    }
}

/// A generation's channel: one [`ChoiceSink`] per choice for the backend, one
/// [`GenerationStream`] for the caller. `prompt` is the prompt's token count, each prompt
/// billed once whatever the number of choices.
pub fn generation_channel(choices: u32, prompt: TokenCount) -> (Vec<ChoiceSink>, GenerationStream) {
    let (events, receiver) = mpsc::unbounded_channel();
    let usage = Usage {
        prompt_tokens: prompt.tokens,
        completion_tokens: 0,
        cached_prompt_tokens: 0,
        accuracy: prompt.accuracy,
    };
    let tally = Arc::new(Tally {
        state: Mutex::new(TallyState {
            usage,
            cached_reported: false,
            open_choices: choices,
            ended: false,
        }),
    });
    let sinks = (0..choices)
        .map(|choice| ChoiceSink {
            choice,
            events: events.clone(),
            tally: Arc::clone(&tally),
            ended: false,
        })
        .collect();
    let stream = GenerationStream {
        events: receiver,
        usage: UsageHandle(tally),
        ended: false,
    };
    (sinks, stream)
}

/// Where a backend sends the output of one choice. Sending never blocks; once the caller has
/// dropped the stream, [`Self::is_closed`] says so and the backend should stop the choice.
/// [`Self::finish`] and [`Self::fail`] take the sink, so a choice ends once; a sink dropped
/// without either fails the generation, so no caller waits for an end that never comes.
/// Nothing reaches the stream after its last event.
#[derive(Debug)]
pub struct ChoiceSink {
    choice: u32,
    events: mpsc::UnboundedSender<GenerationEvent>,
    tally: Arc<Tally>,
    ended: bool,
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

    /// Resolves once the caller has gone away (the stream was dropped), so that a backend
    /// waiting on something else can stop at once.
    pub async fn closed(&self) {
        self.events.closed().await;
    }

    /// Reports one generated token and the text it releases; `false` when the caller has gone
    /// away or the generation has ended (the token is counted either way: it was computed).
    pub fn token(&self, text: String, logprob: Option<TokenLogprob>) -> bool {
        self.release(text, logprob, TokenCount::exact(1))
    }

    /// Reports text that counts `tokens` (an estimate where the backend does not see the
    /// tokens, as with an upstream server's chunks).
    pub fn text(&self, text: String, tokens: TokenCount) -> bool {
        self.release(text, None, tokens)
    }

    /// Replaces the generation's usage by the counts of the server that ran it, when it
    /// reports them: they are what is billed.
    pub fn report_usage(&self, usage: Usage) {
        self.tally.lock().usage = usage;
    }

    /// Reports how many of the prompt's tokens this choice took from the backend's prompt
    /// cache. The prompt is billed once for all choices, so the generation's count is the
    /// fewest any choice took: the part every choice was spared.
    pub fn report_cached_prompt(&self, tokens: usize) {
        let mut state = self.tally.lock();
        let cached = if state.cached_reported {
            state.usage.cached_prompt_tokens.min(tokens)
        } else {
            tokens
        };
        state.usage.cached_prompt_tokens = cached.min(state.usage.prompt_tokens);
        state.cached_reported = true;
    }

    /// Ends the choice; after the last choice, the stream ends with its usage.
    pub fn finish(mut self, reason: FinishReason, tail: String) {
        self.ended = true;
        let mut state = self.tally.lock();
        if state.ended {
            return;
        }
        let _ = self.events.send(GenerationEvent::Finished {
            choice: self.choice,
            reason,
            tail,
        });
        state.open_choices = state.open_choices.saturating_sub(1);
        if state.open_choices == 0 {
            state.ended = true;
            // A closed channel means the caller went away; the usage stays readable.
            let _ = self
                .events
                .send(GenerationEvent::Done { usage: state.usage });
        }
    }

    /// Fails the whole generation (all its choices) with `error`.
    pub fn fail(mut self, error: BackendError) {
        self.ended = true;
        self.end_with(error);
    }

    fn end_with(&self, error: BackendError) {
        let mut state = self.tally.lock();
        if !state.ended {
            state.ended = true;
            let usage = state.usage;
            let _ = self.events.send(GenerationEvent::Failed { error, usage });
        }
    }

    /// Sends the choice's prompt back before its first token (for [`GenerationRequest::echo`]);
    /// false when nobody listens any more.
    pub fn prompt(&self, prompt: EchoedPrompt) -> bool {
        let state = self.tally.lock();
        let event = GenerationEvent::Prompt {
            choice: self.choice,
            prompt,
        };
        !state.ended && self.events.send(event).is_ok()
    }

    fn release(&self, text: String, logprob: Option<TokenLogprob>, tokens: TokenCount) -> bool {
        let mut state = self.tally.lock();
        state.usage.completion_tokens += tokens.tokens;
        state.usage.accuracy = state.usage.accuracy.and(tokens.accuracy);
        let event = GenerationEvent::Token {
            choice: self.choice,
            text,
            logprob,
        };
        !state.ended && self.events.send(event).is_ok()
    }
}

impl Drop for ChoiceSink {
    fn drop(&mut self) {
        if !self.ended {
            self.end_with(BackendError::Unavailable {
                reason: "the backend dropped a choice before it ended".to_owned(),
            });
        }
    }
}

/// The events of one generation, all choices interleaved, ending with
/// [`GenerationEvent::Done`] or [`GenerationEvent::Failed`]. Dropping it cancels the
/// generation.
#[derive(Debug)]
pub struct GenerationStream {
    events: mpsc::UnboundedReceiver<GenerationEvent>,
    usage: UsageHandle,
    ended: bool,
}

impl GenerationStream {
    /// The next event, or `None` after the last.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        if self.ended {
            return None;
        }
        let event = self.events.recv().await;
        self.ended = event.as_ref().is_none_or(GenerationEvent::is_last);
        event
    }

    /// The next event if one is waiting, without waiting for one; `None` also after the last.
    pub fn try_next(&mut self) -> Option<GenerationEvent> {
        if self.ended {
            return None;
        }
        let event = self.events.try_recv().ok();
        self.ended = event.as_ref().is_some_and(GenerationEvent::is_last);
        event
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

impl GenerationEvent {
    /// Whether nothing follows this event.
    pub fn is_last(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Failed { .. })
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
    use crate::Accuracy;

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
        let [first, second]: [ChoiceSink; 2] = sinks.try_into().unwrap();
        first.token("a".into(), None);
        second.token("b".into(), None);
        second.token("c".into(), None);
        second.finish(FinishReason::Length, String::new());
        first.finish(FinishReason::Stop, "!".into());
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
        let [first, second]: [ChoiceSink; 2] = sinks.try_into().unwrap();
        first.token("a".into(), None);
        first.fail(BackendError::Overloaded);
        assert!(!second.token("late".into(), None));
        second.finish(FinishReason::Stop, String::new());
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
        sinks[0].closed().await;
        assert!(!sinks[0].token("b".into(), None));
        assert_eq!(usage.usage().completion_tokens, 2);
    }

    #[tokio::test]
    async fn a_choice_dropped_without_an_end_fails_the_generation() {
        let (sinks, mut stream) = generation_channel(2, TokenCount::exact(1));
        let [first, second]: [ChoiceSink; 2] = sinks.try_into().unwrap();
        first.finish(FinishReason::Stop, String::new());
        drop(second);
        let events = drain(&mut stream).await;
        assert!(
            matches!(events.last(), Some(GenerationEvent::Failed { .. })),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn estimated_text_and_reported_usage_are_what_the_stream_ends_with() {
        let (sinks, mut stream) = generation_channel(1, TokenCount::exact(3));
        let [sink]: [ChoiceSink; 1] = sinks.try_into().unwrap();
        sink.text(
            "four words of text".into(),
            TokenCount::estimate("four words of text"),
        );
        assert_eq!(stream.usage().accuracy, Accuracy::Estimated);
        assert_eq!(stream.usage().completion_tokens, 5);
        let reported = Usage {
            prompt_tokens: 4,
            completion_tokens: 4,
            cached_prompt_tokens: 0,
            accuracy: Accuracy::Exact,
        };
        sink.report_usage(reported);
        sink.finish(FinishReason::Stop, String::new());
        let events = drain(&mut stream).await;
        assert!(
            matches!(events.last(), Some(GenerationEvent::Done { usage }) if *usage == reported),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn cached_prompt_tokens_are_the_fewest_any_choice_took() {
        let (sinks, mut stream) = generation_channel(3, TokenCount::exact(40));
        assert_eq!(stream.usage().cached_prompt_tokens, 0);
        let [first, second, third]: [ChoiceSink; 3] = sinks.try_into().unwrap();
        first.report_cached_prompt(0);
        second.report_cached_prompt(32);
        assert_eq!(stream.usage().cached_prompt_tokens, 0);
        let (sinks, _) = generation_channel(2, TokenCount::exact(40));
        let [a, b]: [ChoiceSink; 2] = sinks.try_into().unwrap();
        a.report_cached_prompt(48);
        assert_eq!(a.tally.lock().usage.cached_prompt_tokens, 40);
        b.report_cached_prompt(16);
        assert_eq!(b.tally.lock().usage.cached_prompt_tokens, 16);
        third.report_cached_prompt(16);
        for sink in [first, second, third] {
            sink.finish(FinishReason::Stop, String::new());
        }
        let events = drain(&mut stream).await;
        assert!(
            matches!(events.last(), Some(GenerationEvent::Done { usage }) if usage.cached_prompt_tokens == 0),
            "{events:?}"
        );
    }
}
