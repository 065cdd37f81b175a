//! The one pipeline of chat and completion requests. A handler maps its wire request to a
//! [`ValidatedGeneration`] (all checks in [`validate`]) and names an [`AnswerFormat`]; [`run`]
//! does the rest: refuses what the backend cannot do, starts one generation per prompt,
//! merges their choices, meters the usage the backend reports ([`UsageMeter`]) and answers
//! whole or as a stream ([`crate::sse`]).

mod meter;
pub mod validate;

use std::sync::Arc;

use axum::body::Bytes;
use axum::response::Response;
use futures::stream::{self, BoxStream, StreamExt};
use gateway_backend::{
    Backend, BackendError, Capabilities, FinishReason, GenerationEvent, GenerationRequest,
    GenerationStream, Prompt, TokenLogprob, Usage,
};
use gateway_core::openai;

pub use self::meter::UsageMeter;
pub use self::validate::{PromptField, ValidatedGeneration};
use crate::error::ApiError;
use crate::state::AppState;

/// How one kind of answer (chat or legacy completion) is written, whole or as chunks.
pub trait AnswerFormat: Send + 'static {
    /// The chunk that opens choice `choice`, if the format has one.
    fn opening(&self, choice: u32) -> Option<Bytes>;
    /// A chunk with new text, its tokens' log-probabilities and, on the last, the reason.
    fn delta(
        &self,
        choice: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
        finish: Option<FinishReason>,
    ) -> Bytes;
    /// The final usage chunk of a stream.
    fn usage_chunk(&self, usage: openai::Usage) -> Bytes;
    /// The whole answer.
    fn whole(&self, choices: Vec<Collected>, usage: openai::Usage) -> Response;
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

/// What the merged generations of a request report, choices numbered over all prompts.
#[derive(Debug)]
pub enum Output {
    /// Choice `choice` released text.
    Token {
        /// The choice over the whole request.
        choice: u32,
        /// Text that may be shown now.
        text: String,
        /// The token's log-probability, when asked for.
        logprob: Option<TokenLogprob>,
    },
    /// Choice `choice` ended.
    Finished {
        /// The choice over the whole request.
        choice: u32,
        /// Why.
        reason: FinishReason,
        /// Text released at the end.
        tail: String,
    },
    /// The generation of prompt `part` ended with this usage.
    Settled {
        /// The prompt's position in the request.
        part: usize,
        /// What it used.
        usage: Usage,
    },
    /// A generation failed; the answer is incomplete.
    Failed(BackendError),
}

/// Runs a validated chat or completion request on `backend` for `model`, answering in
/// `format`.
pub async fn run(
    state: &Arc<AppState>,
    backend: &dyn Backend,
    model: &str,
    generation: ValidatedGeneration,
    format: impl AnswerFormat,
    request_id: String,
) -> Result<Response, ApiError> {
    let field = generation.prompt_field;
    refuse_unsupported(backend.capabilities(), &generation)?;
    let params = generation.params;
    let choices_per_prompt = params.choices;
    let mut streams = Vec::with_capacity(generation.prompts.len());
    for prompt in generation.prompts {
        let request = GenerationRequest {
            prompt,
            choices: params.choices,
            max_tokens: params.max_tokens,
            sampling: params.sampling,
            stop: params.stop.clone(),
        };
        let stream = backend
            .generate(request)
            .await
            .map_err(|error| ApiError::backend(error, field.name()))?;
        streams.push(stream);
    }
    let handles = streams.iter().map(GenerationStream::usage_handle).collect();
    let mut meter = UsageMeter::new(Arc::clone(state), model, request_id, handles);
    let total_choices =
        choices_per_prompt.saturating_mul(u32::try_from(streams.len()).unwrap_or(u32::MAX));
    let outputs = merge(streams, choices_per_prompt);
    if params.stream {
        return Ok(crate::sse::stream_response(
            format,
            total_choices,
            outputs,
            meter,
            params.include_usage,
            field,
        ));
    }
    let choices = collect(outputs, total_choices, &mut meter)
        .await
        .map_err(|error| ApiError::backend(error, field.name()))?;
    Ok(format.whole(choices, meter.wire_usage()))
}

/// Refuses prompts and options the backend does not offer, before it is called.
fn refuse_unsupported(
    capabilities: Capabilities,
    generation: &ValidatedGeneration,
) -> Result<(), ApiError> {
    let unsupported = |operation| {
        Err(ApiError::backend(
            BackendError::Unsupported { operation },
            "model",
        ))
    };
    for prompt in &generation.prompts {
        let offered = match prompt {
            Prompt::Chat(_) => capabilities.chat,
            Prompt::Text(_) => capabilities.completion,
            Prompt::Tokens(_) => capabilities.completion && capabilities.token_ids,
        };
        if !offered {
            return unsupported(prompt.operation());
        }
    }
    if generation.params.logprobs && !capabilities.logprobs {
        return unsupported("logprobs");
    }
    Ok(())
}

/// The outputs of all prompts' generations as they come; choice `i` of prompt `p` is choice
/// `p * choices_per_prompt + i` of the request. A generation whose events stop before its end
/// is reported as failed, never as complete.
fn merge(streams: Vec<GenerationStream>, choices_per_prompt: u32) -> BoxStream<'static, Output> {
    let parts = streams.into_iter().enumerate().map(|(part, events)| {
        let offset = u32::try_from(part)
            .unwrap_or(u32::MAX)
            .saturating_mul(choices_per_prompt);
        stream::unfold(Some(events), move |events| async move {
            let mut events = events?;
            let output = match events.next().await {
                Some(GenerationEvent::Token {
                    choice,
                    text,
                    logprob,
                }) => Output::Token {
                    choice: offset + choice,
                    text,
                    logprob,
                },
                Some(GenerationEvent::Finished {
                    choice,
                    reason,
                    tail,
                }) => Output::Finished {
                    choice: offset + choice,
                    reason,
                    tail,
                },
                Some(GenerationEvent::Done { usage }) => {
                    return Some((Output::Settled { part, usage }, None))
                }
                Some(GenerationEvent::Failed { error, .. }) => {
                    return Some((Output::Failed(error), None))
                }
                None => return Some((Output::Failed(ended_early()), None)),
            };
            Some((output, Some(events)))
        })
        .boxed()
    });
    stream::select_all(parts).boxed()
}

/// The error of a generation whose backend dropped it before its end.
fn ended_early() -> BackendError {
    BackendError::Unavailable {
        reason: "the backend ended a generation before it finished".to_owned(),
    }
}

/// Collects every choice for a whole answer; the first failure fails the request.
async fn collect(
    mut outputs: BoxStream<'static, Output>,
    choices: u32,
    meter: &mut UsageMeter,
) -> Result<Vec<Collected>, BackendError> {
    let mut collected: Vec<Collected> = (0..choices).map(|_| Collected::default()).collect();
    while let Some(output) = outputs.next().await {
        match output {
            Output::Token {
                choice,
                text,
                logprob,
            } => {
                if let Some(choice) = collected.get_mut(choice as usize) {
                    choice.text.push_str(&text);
                    choice.logprobs.extend(logprob);
                }
            }
            Output::Finished {
                choice,
                reason,
                tail,
            } => {
                if let Some(choice) = collected.get_mut(choice as usize) {
                    choice.text.push_str(&tail);
                    choice.finish = Some(reason);
                }
            }
            Output::Settled { part, usage } => meter.settle(part, usage),
            Output::Failed(error) => return Err(error),
        }
    }
    meter.record();
    Ok(collected)
}
