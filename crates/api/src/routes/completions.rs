//! `POST /v1/completions`: the legacy endpoint. Each prompt (a string, strings, or token
//! arrays) is tokenized without a chat template and completed `n` times; choices are
//! prompt-major. Answers whole or as a stream of `text_completion` chunks.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_core::openai::{
    Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, FinishReason as Wire,
    InputItem, Usage,
};
use gateway_engine::{FinishReason, TokenLogprob};

use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::generation::{self, SamplingFields, UsageMeter};
use crate::sse::{self, ChunkFormat};
use crate::state::AppState;
use crate::REQUEST_ID_HEADER;

/// Most alternatives per position of legacy `logprobs`.
const MAX_LEGACY_LOGPROBS: u32 = 5;

/// Handles `POST /v1/completions`.
pub async fn create_completion(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    headers: HeaderMap,
    OpenAiJson(request): OpenAiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let backend = Arc::clone(&state.models.permitted(&request.model, &key)?.backend);
    let refuse = |param: &str, message: &str| ApiError::InvalidParam {
        message: message.to_owned(),
        param: param.to_owned(),
    };
    if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(refuse("suffix", "suffix is not supported"));
    }
    if request.echo == Some(true) {
        return Err(refuse("echo", "echo is not supported"));
    }
    if request.best_of.is_some_and(|b| b != request.n()) {
        return Err(refuse("best_of", "best_of other than n is not supported"));
    }
    if request.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(refuse("logit_bias", "logit_bias is not supported"));
    }
    if request.logprobs.is_some_and(|l| l > MAX_LEGACY_LOGPROBS) {
        return Err(refuse("logprobs", "'logprobs' must be at most 5"));
    }
    if request.prompt.is_empty() {
        return Err(refuse("prompt", "'prompt' must not be empty"));
    }
    let mut prompts = Vec::new();
    for item in request.prompt.items() {
        let tokens = match item {
            InputItem::Text(text) => backend.tokenize(text)?,
            InputItem::Tokens(tokens) => tokens.to_vec(),
        };
        let max_tokens = generation::max_tokens_for(
            backend.as_ref(),
            tokens.len(),
            Some(request.max_tokens()),
            "max_tokens",
            "prompt",
        )?;
        prompts.push((tokens, max_tokens));
    }
    let n = request.n();
    generation::check_choices(n, request.stop_sequences())?;
    let sampling = generation::check_sampling(SamplingFields {
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        seed: request.seed,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        top_logprobs: request.logprobs,
    })?;
    let prompt_tokens = prompts.iter().map(|(p, _)| p.len()).sum();
    let streams = generation::start(
        backend.as_ref(),
        &prompts,
        n,
        sampling,
        request.stop_sequences(),
    )
    .await?;
    let choices = u32::try_from(streams.len()).unwrap_or(u32::MAX);
    let mut meter = UsageMeter::new(
        Arc::clone(&state),
        &request.model,
        request_id(&headers),
        prompt_tokens,
    );
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if request.is_stream() {
        let format = CompletionFormat {
            id,
            created,
            model: request.model.clone(),
        };
        let events = generation::merge(streams);
        return Ok(sse::stream_response(
            format,
            choices,
            events,
            meter,
            request.include_usage(),
        ));
    }
    let collected = generation::collect(streams, &mut meter).await?;
    let choices = collected
        .into_iter()
        .zip(0u32..)
        .map(|(choice, index)| CompletionChoice {
            text: choice.text,
            index,
            logprobs: request.logprobs.map(|_| legacy_logprobs(choice.logprobs)),
            finish_reason: choice.finish.map(finish_reason),
        })
        .collect();
    let usage = Some(meter.usage());
    Ok(Json(Completion::new(id, created, request.model, choices, usage)).into_response())
}

/// The request id the middleware set, for the usage log line.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The engine's finish reason on the wire.
pub(crate) fn finish_reason(reason: FinishReason) -> Wire {
    match reason {
        FinishReason::Stop => Wire::Stop,
        FinishReason::Length => Wire::Length,
    }
}

/// The engine's log-probabilities as legacy parallel arrays.
fn legacy_logprobs(logprobs: Vec<TokenLogprob>) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    let mut offset = 0u32;
    for lp in logprobs {
        out.text_offset.push(offset);
        offset += u32::try_from(lp.text.len()).unwrap_or(0);
        out.token_logprobs.push(Some(lp.logprob));
        out.top_logprobs.push(Some(
            lp.top
                .into_iter()
                .map(|(text, _, logprob)| (text, logprob))
                .collect(),
        ));
        out.tokens.push(lp.text);
    }
    out
}

/// Legacy completion chunks.
struct CompletionFormat {
    id: String,
    created: i64,
    model: String,
}

impl ChunkFormat for CompletionFormat {
    fn opening(&self, _index: u32) -> Option<axum::body::Bytes> {
        None
    }

    fn delta(
        &self,
        index: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
        finish: Option<FinishReason>,
    ) -> axum::body::Bytes {
        let choice = CompletionChoice {
            text,
            index,
            logprobs: (!logprobs.is_empty()).then(|| legacy_logprobs(logprobs)),
            finish_reason: finish.map(finish_reason),
        };
        sse::event(&Completion::new(
            &self.id,
            self.created,
            &self.model,
            vec![choice],
            None,
        ))
    }

    fn usage(&self, usage: Usage) -> axum::body::Bytes {
        sse::event(&Completion::new(
            &self.id,
            self.created,
            &self.model,
            Vec::new(),
            Some(usage),
        ))
    }
}
