//! The data types of text generation shared by every backend: what a request asks for
//! ([`GenerationRequest`], [`SamplingParams`]), the conversation a chat template renders
//! ([`ChatTurn`]), and what comes back ([`GenerationStream`] of [`GenerationEvent`]s).

use serde::Serialize;
use tokio::sync::mpsc;

use crate::EngineError;

/// One turn of a conversation as the chat template sees it: `{"role", "content"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatTurn {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The turn's text.
    pub content: String,
}

/// How the next token is chosen. Greedy when `temperature` is 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the likeliest token.
    pub temperature: f32,
    /// Nucleus mass: sample among the likeliest tokens whose probabilities sum to `top_p`.
    pub top_p: f32,
    /// Sample only among the `top_k` likeliest tokens (0: no limit).
    pub top_k: usize,
    /// Seed of the random generator; the same seed and request give the same output.
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

/// One checked generation: the prompt's token ids and how to continue it.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The prompt, tokenized (for chat, the rendered template).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Strings that end the generation; they are never part of the output.
    pub stop: Vec<String>,
}

/// Why a generation ended.
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
    /// One token was generated. `text` is the output it releases: possibly empty (an
    /// incomplete character, or text held back while it may start a stop string).
    Token {
        /// Text that may be shown now.
        text: String,
        /// The token's log-probability, when asked for.
        logprob: Option<TokenLogprob>,
    },
    /// The generation ended; nothing follows.
    Finished {
        /// Why it ended.
        reason: FinishReason,
        /// Output released at the end (text that was held back), after the last token's.
        tail: String,
        /// Tokens of the prompt.
        prompt_tokens: usize,
        /// Tokens generated.
        completion_tokens: usize,
    },
    /// The generation failed; nothing follows.
    Failed(EngineError),
}

/// The events of one generation, in order. Dropping it cancels the generation: the engine
/// frees its sequence at the next step.
#[derive(Debug)]
pub struct GenerationStream {
    events: mpsc::UnboundedReceiver<GenerationEvent>,
}

impl GenerationStream {
    /// A stream reading from `events`.
    pub fn new(events: mpsc::UnboundedReceiver<GenerationEvent>) -> Self {
        Self { events }
    }

    /// The next event, or `None` once the engine has dropped the generation.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        self.events.recv().await
    }
}
