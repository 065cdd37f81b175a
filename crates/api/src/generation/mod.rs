//! The one pipeline of chat and completion requests. Each route's wire request implements
//! [`GenerationRoute`]: it checks itself into a [`ValidatedGeneration`] (all checks in
//! [`validate`]) and names its [`AnswerFormat`]; [`handle`] does the rest: finds the model the
//! key may use, refuses what the backend cannot do and requests of more choices than allowed,
//! takes a place among the project's requests in flight ([`crate::concurrency`]), admits the
//! request against the project's budgets ([`crate::accounting`]), starts one generation per
//! prompt (with the project as its tenant, so the backend shares its queue fairly), merges
//! their choices, records the usage the backend reports ([`UsageMeter`]) and answers whole or
//! as a stream ([`crate::sse`]).

mod meter;
pub mod structured;
pub mod validate;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::stream::{self, BoxStream, StreamExt};
use gateway_backend::{
    Backend, BackendError, Capabilities, EchoedPrompt, FinishReason, GenerationEvent,
    GenerationRequest, GenerationStream, Prompt, TokenLogprob,
};
use gateway_core::openai;
use gateway_metering::{Outcome, Requester};
use serde::de::DeserializeOwned;

pub use self::meter::UsageMeter;
pub use self::validate::{PromptField, ValidatedGeneration};
use crate::accounting::{Budget, MeterSlot};
use crate::concurrency::ConcurrencyPermit;
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::routes::request_id;
use crate::state::AppState;

/// A wire request that the generation pipeline answers (implemented in [`validate`]).
pub trait GenerationRoute: DeserializeOwned + Send + 'static {
    /// How its answers are written.
    type Format: AnswerFormat;
    /// The model id it asks for.
    fn model(&self) -> &str;
    /// Checks every parameter into prompts and generation parameters.
    fn validate(&self) -> Result<ValidatedGeneration, ApiError>;
    /// What the answer echoes of the request.
    fn settings(&self) -> <Self::Format as AnswerFormat>::Settings;
}

/// What every answer of one request says about itself.
#[derive(Debug, Clone)]
pub struct AnswerMeta {
    /// The answer's id: the format's prefix and a UUID, e.g. `chatcmpl-…`.
    pub id: String,
    /// When it was created (Unix seconds).
    pub created: i64,
    /// The model id the client sent.
    pub model: String,
    /// Whether the answer carries log-probabilities.
    pub logprobs: bool,
    /// How the output is read back (text or tool calls).
    pub tool_output: structured::ToolOutput,
}

/// New text of one choice, for a stream chunk.
#[derive(Debug)]
pub struct Delta {
    /// The choice over the whole request.
    pub choice: u32,
    /// Text that may be shown now.
    pub text: String,
    /// The log-probabilities of its tokens.
    pub logprobs: Vec<TokenLogprob>,
    /// Why the choice ended, on its last chunk.
    pub finish: Option<FinishReason>,
}

/// How one kind of answer (chat or legacy completion) is written, whole or as chunks.
pub trait AnswerFormat: Send + 'static {
    /// What its answers' ids start with (`chatcmpl-`, `cmpl-`, `resp_`).
    const ID_PREFIX: &'static str;
    /// What the answers echo of their request (nothing for chat and completions).
    type Settings: Send;
    /// The format of the answer described by `answer`, echoing `settings`.
    fn new(answer: AnswerMeta, settings: Self::Settings) -> Self;
    /// The chunk that opens choice `choice`, if the format has one.
    fn opening(&mut self, choice: u32) -> Option<Bytes>;
    /// The chunks of a choice's new text (none while the format holds it back).
    fn delta(&mut self, delta: Delta) -> Bytes;
    /// The chunk of choice `choice`'s echoed prompt (only formats that echo have one).
    fn prompt(&mut self, _choice: u32, _prompt: EchoedPrompt) -> Bytes {
        Bytes::new()
    }
    /// The end of a complete stream, with the usage (shown when the client asked for it,
    /// or always where the format carries it).
    fn closing(&mut self, usage: openai::Usage, include_usage: bool) -> Bytes;
    /// The whole answer.
    fn whole(&self, choices: Vec<Collected>, usage: openai::Usage) -> Response;
}

/// One choice, collected.
#[derive(Debug, Default)]
pub struct Collected {
    /// Its prompt, when it is echoed.
    pub prompt: Option<EchoedPrompt>,
    /// The whole output text.
    pub text: String,
    /// Log-probabilities of each token, when asked for.
    pub logprobs: Vec<TokenLogprob>,
    /// Why it ended.
    pub finish: Option<FinishReason>,
}

/// Handles a chat or completion request: finds the model, checks the request, admits it
/// against the project's budgets and runs it.
pub async fn handle<R: GenerationRoute>(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    slot: MeterSlot,
    headers: HeaderMap,
    OpenAiJson(request): OpenAiJson<R>,
) -> Result<Response, ApiError> {
    let served = state.models.permitted(request.model(), &key)?;
    let (backend, plan, model) = (Arc::clone(&served.backend), served.entry.plan, served.id);
    slot.tell(served.notice.clone());
    let card = backend.card();
    let budget = state.accounting.budget(key.project_id, model, plan);
    slot.aim(budget.clone());
    let generation = request.validate()?;
    validate::check_choices(&generation, state.fairness.max_choices_per_request)?;
    refuse_unsupported(backend.capabilities(), &generation)?;
    let permit = state.concurrency.acquire(key.project_id)?;
    let reserve = reservation(&state, &budget, &generation, card.context_length);
    let requester = Requester {
        project_id: key.project_id,
        key_id: key.key_id,
        model: model.to_owned(),
        request_id: request_id(&headers),
    };
    let ticket = state
        .accounting
        .admit(&slot, budget, requester, plan, reserve)
        .await?;
    let settings = request.settings();
    let format = R::Format::new(
        AnswerMeta {
            id: format!("{}{}", R::Format::ID_PREFIX, uuid::Uuid::new_v4().simple()),
            created: chrono::Utc::now().timestamp(),
            model: model.to_owned(),
            logprobs: generation.params.logprobs,
            tool_output: generation.params.tool_output.clone(),
        },
        settings,
    );
    let meter = UsageMeter::new(Arc::clone(&state), ticket, model, request_id(&headers));
    let held = Held {
        meter,
        permit,
        tenant: key.project_id.to_string(),
    };
    run(backend.as_ref(), generation, format, held).await
}

/// What a running request holds until its answer ends: its meter, its place among the
/// project's requests in flight, and the tenant its generations are queued for.
struct Held {
    meter: UsageMeter,
    permit: ConcurrencyPermit,
    tenant: String,
}

/// The tokens a generation request reserves: its prompts' estimated tokens and, for each
/// choice, `max_tokens` (or the context left) generated tokens, weighted.
fn reservation(
    state: &AppState,
    budget: &Budget,
    generation: &ValidatedGeneration,
    context_length: usize,
) -> u64 {
    let choices = generation.params.choices as usize;
    let (prompt, output) = generation
        .prompts
        .iter()
        .map(|prompt| {
            let tokens = prompt.estimated_tokens().tokens;
            let longest = generation
                .params
                .max_tokens
                .unwrap_or_else(|| context_length.saturating_sub(tokens));
            (tokens, longest.saturating_mul(choices))
        })
        .fold((0usize, 0usize), |(p, o), (tokens, longest)| {
            (p.saturating_add(tokens), o.saturating_add(longest))
        });
    state
        .accounting
        .reservation(budget, prompt as u64, output as u64)
}

/// Runs a validated request on `backend`, answering in `format`. Every generation that
/// starts counts into the meter at once, so that one refused after others started (a later
/// prompt too long, a full queue) still leaves their usage recorded. The events hold the
/// request's concurrency permit until they end or are dropped.
async fn run(
    backend: &dyn Backend,
    generation: ValidatedGeneration,
    format: impl AnswerFormat,
    held: Held,
) -> Result<Response, ApiError> {
    let Held {
        mut meter,
        permit,
        tenant,
    } = held;
    let field = generation.prompt_field;
    let params = generation.params;
    let mut streams = Vec::with_capacity(generation.prompts.len());
    for prompt in generation.prompts {
        let request = GenerationRequest {
            prompt,
            choices: params.choices,
            max_tokens: params.max_tokens,
            sampling: params.sampling,
            stop: params.stop.clone(),
            ending: params.ending.clone(),
            constraint: params.constraint.as_ref().map(|c| c.constraint.clone()),
            echo: params.echo,
            tools: params.tools.clone(),
            tenant: Some(tenant.clone()),
        };
        let stream = backend
            .generate(request)
            .await
            .map_err(|error| match error {
                BackendError::InvalidConstraint { message } => ApiError::InvalidParam {
                    message,
                    param: params
                        .constraint
                        .as_ref()
                        .map_or("response_format", |c| c.param)
                        .to_owned(),
                },
                other => ApiError::backend(other, field.name()),
            })?;
        meter.track(stream.usage_handle());
        streams.push(stream);
    }
    let prompts = u32::try_from(streams.len()).unwrap_or(u32::MAX);
    let choices = params.choices.saturating_mul(prompts);
    let events = holding(merge(streams, params.choices), permit);
    if params.stream {
        let stream = crate::sse::StreamOptions {
            choices,
            include_usage: params.include_usage,
            prompt_field: field,
        };
        return Ok(crate::sse::stream_response(format, events, meter, stream));
    }
    let choices = collect(events, choices, &mut meter)
        .await
        .map_err(|error| ApiError::backend(error, field.name()))?;
    Ok(format.whole(choices, meter.wire_usage()))
}

/// Refuses prompts and options the backend does not offer, before it is called.
fn refuse_unsupported(
    capabilities: Capabilities,
    generation: &ValidatedGeneration,
) -> Result<(), ApiError> {
    let unsupported = |operation, param: &str| {
        Err(ApiError::InvalidParam {
            message: BackendError::Unsupported { operation }.to_string(),
            param: param.to_owned(),
        })
    };
    for prompt in &generation.prompts {
        let offered = match prompt {
            Prompt::Chat(_) => capabilities.chat,
            Prompt::Text(_) => capabilities.completion,
            Prompt::Tokens(_) => capabilities.completion && capabilities.token_ids,
        };
        if !offered {
            return unsupported(prompt.operation(), "model");
        }
    }
    let params = &generation.params;
    if params.logprobs && !capabilities.logprobs {
        return unsupported("logprobs", "model");
    }
    if !params.tools.is_empty() && !capabilities.tools {
        return unsupported("tools", "tools");
    }
    if params.echo.is_some() && !capabilities.echo {
        return unsupported("echo", "echo");
    }
    match &params.constraint {
        Some(constraint) if !capabilities.constrained_output => {
            unsupported("structured outputs", constraint.param)
        }
        _ => Ok(()),
    }
}

/// The events of all prompts' generations as they come; choice `i` of prompt `p` becomes
/// choice `p * choices_per_prompt + i` of the request. A generation whose events stop before
/// its end is reported as failed, never as complete.
fn merge(
    streams: Vec<GenerationStream>,
    choices_per_prompt: u32,
) -> BoxStream<'static, GenerationEvent> {
    let parts = streams.into_iter().enumerate().map(|(part, events)| {
        let offset = u32::try_from(part)
            .unwrap_or(u32::MAX)
            .saturating_mul(choices_per_prompt);
        stream::unfold(Some(events), move |events| async move {
            let mut events = events?;
            let event = match events.next().await {
                Some(GenerationEvent::Token {
                    choice,
                    text,
                    logprob,
                }) => GenerationEvent::Token {
                    choice: offset + choice,
                    text,
                    logprob,
                },
                Some(GenerationEvent::Finished {
                    choice,
                    reason,
                    tail,
                }) => GenerationEvent::Finished {
                    choice: offset + choice,
                    reason,
                    tail,
                },
                Some(GenerationEvent::Prompt { choice, prompt }) => GenerationEvent::Prompt {
                    choice: offset + choice,
                    prompt,
                },
                Some(last @ (GenerationEvent::Done { .. } | GenerationEvent::Failed { .. })) => {
                    return Some((last, None))
                }
                None => {
                    let failed = GenerationEvent::Failed {
                        error: ended_early(),
                        usage: events.usage(),
                    };
                    return Some((failed, None));
                }
            };
            Some((event, Some(events)))
        })
        .boxed()
    });
    stream::select_all(parts).boxed()
}

/// `events`, holding `permit` until they end or are dropped.
fn holding(
    events: BoxStream<'static, GenerationEvent>,
    permit: ConcurrencyPermit,
) -> BoxStream<'static, GenerationEvent> {
    stream::unfold((events, permit), |(mut events, permit)| async move {
        let event = events.next().await?;
        Some((event, (events, permit)))
    })
    .boxed()
}

/// The error of a generation whose backend dropped it before its end.
fn ended_early() -> BackendError {
    BackendError::Unavailable {
        reason: "the backend ended a generation before it finished".to_owned(),
    }
}

/// Collects every choice for a whole answer; the first failure fails the request.
async fn collect(
    mut events: BoxStream<'static, GenerationEvent>,
    choices: u32,
    meter: &mut UsageMeter,
) -> Result<Vec<Collected>, BackendError> {
    let mut collected: Vec<Collected> = (0..choices).map(|_| Collected::default()).collect();
    while let Some(event) = events.next().await {
        match event {
            GenerationEvent::Token {
                choice,
                text,
                logprob,
            } => {
                if let Some(choice) = collected.get_mut(choice as usize) {
                    choice.text.push_str(&text);
                    choice.logprobs.extend(logprob);
                }
            }
            GenerationEvent::Finished {
                choice,
                reason,
                tail,
            } => {
                if let Some(choice) = collected.get_mut(choice as usize) {
                    choice.text.push_str(&tail);
                    choice.finish = Some(reason);
                }
            }
            GenerationEvent::Prompt { choice, prompt } => {
                if let Some(choice) = collected.get_mut(choice as usize) {
                    choice.prompt = Some(prompt);
                }
            }
            GenerationEvent::Done { .. } => {}
            GenerationEvent::Failed { error, .. } => {
                meter.record(Outcome::Failed);
                return Err(error);
            }
        }
    }
    meter.record(Outcome::Complete);
    Ok(collected)
}
