//! What the chat and completion routes share: checking the sampling parameters into the
//! engine's [`SamplingParams`], starting one generation per choice, collecting them for a
//! plain answer, and the [`UsageMeter`] that meters and logs a request's tokens exactly once,
//! also when the client goes away in the middle of a stream.

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use gateway_engine::{
    Backend, FinishReason, GenerationEvent, GenerationRequest, GenerationStream, SamplingParams,
    TokenLogprob,
};

use crate::error::ApiError;
use crate::state::AppState;

/// Most choices per request (`n`).
pub const MAX_CHOICES: u32 = 8;
/// Most stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Most alternatives per position with log-probabilities.
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// The sampling fields of a chat or completion request, as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct SamplingFields {
    /// `temperature`.
    pub temperature: Option<f32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `top_k` (extension).
    pub top_k: Option<u32>,
    /// `seed`.
    pub seed: Option<i64>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f32>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f32>,
    /// Alternatives per position when log-probabilities are asked for.
    pub top_logprobs: Option<u32>,
}

fn invalid(param: &str, message: String) -> ApiError {
    ApiError::InvalidParam {
        message,
        param: param.to_owned(),
    }
}

fn in_range(param: &str, value: Option<f32>, low: f32, high: f32) -> Result<(), ApiError> {
    match value {
        Some(v) if !(low..=high).contains(&v) => Err(invalid(
            param,
            format!("{v} is not a valid value for '{param}': it must be between {low} and {high}"),
        )),
        _ => Ok(()),
    }
}

/// Checks the sampling fields; a missing seed is drawn at random.
pub fn check_sampling(fields: SamplingFields) -> Result<SamplingParams, ApiError> {
    in_range("temperature", fields.temperature, 0.0, 2.0)?;
    in_range("top_p", fields.top_p, 0.0, 1.0)?;
    in_range("presence_penalty", fields.presence_penalty, -2.0, 2.0)?;
    in_range("frequency_penalty", fields.frequency_penalty, -2.0, 2.0)?;
    if fields.top_p == Some(0.0) {
        return Err(invalid(
            "top_p",
            "'top_p' must be greater than 0".to_owned(),
        ));
    }
    if let Some(top) = fields.top_logprobs.filter(|&t| t > MAX_TOP_LOGPROBS) {
        return Err(invalid(
            "top_logprobs",
            format!("{top} is not a valid value for 'top_logprobs': at most {MAX_TOP_LOGPROBS}"),
        ));
    }
    Ok(SamplingParams {
        temperature: fields.temperature.unwrap_or(1.0),
        top_p: fields.top_p.unwrap_or(1.0),
        top_k: fields.top_k.unwrap_or(0) as usize,
        seed: fields
            .seed
            .map_or_else(rand::random, |seed| u64::from_ne_bytes(seed.to_ne_bytes())),
        presence_penalty: fields.presence_penalty.unwrap_or(0.0),
        frequency_penalty: fields.frequency_penalty.unwrap_or(0.0),
        top_logprobs: fields.top_logprobs.map(|t| t as usize),
    })
}

/// Checks `n` and the stop sequences.
pub fn check_choices(n: u32, stop: &[String]) -> Result<(), ApiError> {
    if n == 0 || n > MAX_CHOICES {
        return Err(invalid(
            "n",
            format!("{n} is not a valid value for 'n': it must be between 1 and {MAX_CHOICES}"),
        ));
    }
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(invalid(
            "stop",
            format!("at most {MAX_STOP_SEQUENCES} stop sequences are allowed"),
        ));
    }
    Ok(())
}

/// The `max_tokens` of a prompt: the requested one (at least 1), else what the context has
/// left; a prompt and completion over the context length are a 400 with the numbers that
/// names `prompt_param` (`messages` or `prompt`).
pub fn max_tokens_for(
    backend: &dyn Backend,
    prompt_tokens: usize,
    requested: Option<u32>,
    param: &str,
    prompt_param: &str,
) -> Result<usize, ApiError> {
    let context = backend.card().context_length;
    if requested == Some(0) {
        return Err(invalid(param, format!("'{param}' must be at least 1")));
    }
    let max_tokens = requested.map_or(context.saturating_sub(prompt_tokens), |m| m as usize);
    if prompt_tokens + max_tokens.max(1) > context {
        let too_long = gateway_engine::EngineError::PromptTooLong {
            prompt_tokens,
            max_tokens: max_tokens.max(1),
            context_length: context,
        };
        return Err(ApiError::ContextLengthExceeded {
            message: too_long.to_string(),
            param: prompt_param.to_owned(),
        });
    }
    Ok(max_tokens)
}

/// Starts one generation per `(prompt, choice)`: choice `i` of a prompt samples with the
/// request's seed + `i`, so that the choices differ and a request with a seed repeats.
pub async fn start(
    backend: &dyn Backend,
    prompts: &[(Vec<u32>, usize)],
    n: u32,
    sampling: SamplingParams,
    stop: &[String],
) -> Result<Vec<GenerationStream>, ApiError> {
    let mut streams = Vec::new();
    for (prompt, max_tokens) in prompts {
        for choice in 0..u64::from(n) {
            let request = GenerationRequest {
                prompt: prompt.clone(),
                max_tokens: *max_tokens,
                sampling: SamplingParams {
                    seed: sampling.seed.wrapping_add(choice),
                    ..sampling
                },
                stop: stop.to_vec(),
            };
            streams.push(backend.generate(request).await?);
        }
    }
    Ok(streams)
}

/// The events of all choices, tagged with the choice index, as they come.
pub fn merge(streams: Vec<GenerationStream>) -> BoxStream<'static, (u32, GenerationEvent)> {
    let tagged = streams.into_iter().zip(0u32..).map(|(events, index)| {
        stream::unfold(events, |mut events| async move {
            events.next().await.map(|event| (event, events))
        })
        .map(move |event| (index, event))
        .boxed()
    });
    stream::select_all(tagged).boxed()
}

/// One choice, collected.
#[derive(Debug, Default)]
pub struct Collected {
    /// The whole output text.
    pub text: String,
    /// Log-probabilities of each token, when asked for.
    pub logprobs: Vec<TokenLogprob>,
    /// Why it ended.
    pub finish: Option<FinishReason>,
}

/// Runs every choice to its end; the usage goes to `meter`.
pub async fn collect(
    streams: Vec<GenerationStream>,
    meter: &mut UsageMeter,
) -> Result<Vec<Collected>, ApiError> {
    let mut choices: Vec<Collected> = streams.iter().map(|_| Collected::default()).collect();
    let mut events = merge(streams);
    while let Some((index, event)) = events.next().await {
        let choice = &mut choices[index as usize];
        match event {
            GenerationEvent::Token { text, logprob } => {
                meter.completion_tokens += 1;
                choice.text.push_str(&text);
                choice.logprobs.extend(logprob);
            }
            GenerationEvent::Finished { reason, tail, .. } => {
                choice.text.push_str(&tail);
                choice.finish = Some(reason);
            }
            GenerationEvent::Failed(error) => return Err(ApiError::Engine(error)),
        }
    }
    meter.record();
    Ok(choices)
}

/// Meters a generation request's tokens once: when [`Self::record`] is called or, failing
/// that, when it is dropped (a client that went away mid-stream).
pub struct UsageMeter {
    state: Arc<AppState>,
    model: String,
    request_id: String,
    /// Tokens of the prompt(s), each prompt counted once.
    pub prompt_tokens: usize,
    /// Tokens generated so far over all choices.
    pub completion_tokens: usize,
    recorded: bool,
}

impl UsageMeter {
    /// A meter for a request on `model`.
    pub fn new(
        state: Arc<AppState>,
        model: &str,
        request_id: String,
        prompt_tokens: usize,
    ) -> Self {
        Self {
            state,
            model: model.to_owned(),
            request_id,
            prompt_tokens,
            completion_tokens: 0,
            recorded: false,
        }
    }

    /// The usage as the wire shows it.
    pub fn usage(&self) -> gateway_core::openai::Usage {
        let count = |tokens: usize| u32::try_from(tokens).unwrap_or(u32::MAX);
        gateway_core::openai::Usage::new(count(self.prompt_tokens), count(self.completion_tokens))
    }

    /// Meters and logs the usage (once).
    pub fn record(&mut self) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let metrics = &self.state.metrics;
        metrics.add_prompt_tokens(&self.model, self.prompt_tokens as u64);
        metrics.add_completion_tokens(&self.model, self.completion_tokens as u64);
        tracing::info!(
            request_id = %self.request_id,
            model = %self.model,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens,
            "usage"
        );
    }
}

impl Drop for UsageMeter {
    fn drop(&mut self) {
        self.record();
    }
}
