//! `POST /v1/embeddings`: checks the request, runs it on the model's backend and answers with
//! one vector per input, as floats or base64, with the billed prompt tokens (admitted against
//! the project's budgets, recorded with 0 output tokens). The request holds a place among its
//! project's requests in flight ([`crate::concurrency`]) while the model runs it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_backend::{Accuracy, BackendError, EmbeddingInputs, TokenCount};
use gateway_core::openai::{
    Embedding, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, TextOrTokens,
};
use gateway_metering::{Outcome, Requester, TokenCounts};

use crate::accounting::MeterSlot;
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::routes::request_id;
use crate::state::AppState;

/// Handles `POST /v1/embeddings`.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "model",
    request_body = EmbeddingRequest,
    responses(
        (status = 200, description = "One embedding per input, in input order.",
         body = EmbeddingResponse),
        crate::openapi::ModelErrors,
    ),
    security(("api_key" = []))
)]
pub async fn create_embeddings(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    slot: MeterSlot,
    headers: HeaderMap,
    OpenAiJson(request): OpenAiJson<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    let model = state.models.permitted(&request.model, &key)?;
    slot.tell(model.notice.clone());
    let plan = model.entry.plan;
    let budget = state.accounting.budget(key.project_id, model.id, plan);
    slot.aim(budget.clone());
    let capabilities = model.backend.capabilities();
    if !capabilities.embeddings {
        let unsupported = BackendError::Unsupported {
            operation: "embeddings",
        };
        return Err(ApiError::backend(unsupported, "model"));
    }
    let card = model.backend.card();
    if let Some(dimensions) = request.dimensions {
        if card.dimensions != Some(dimensions as usize) {
            let produces = card
                .dimensions
                .map_or_else(|| "vectors".to_owned(), |d| format!("{d} dimensions"));
            return Err(ApiError::InvalidParam {
                message: format!(
                    "model {} produces {produces} and cannot shorten them to {dimensions}",
                    card.id
                ),
                param: "dimensions".to_owned(),
            });
        }
    }
    let inputs = backend_inputs(request.input);
    if matches!(inputs, EmbeddingInputs::Tokens(_)) && !capabilities.token_ids {
        let unsupported = BackendError::Unsupported {
            operation: "token id inputs",
        };
        return Err(ApiError::backend(unsupported, "input"));
    }
    let _permit = state.concurrency.acquire(key.project_id)?;
    let reserve = state
        .accounting
        .reservation(&budget, estimated_tokens(&inputs), 0);
    let requester = Requester {
        project_id: key.project_id,
        key_id: key.key_id,
        model: model.id.to_owned(),
        request_id: request_id(&headers),
    };
    let ticket = state
        .accounting
        .admit(&slot, budget, requester, plan, reserve)
        .await?;
    let embeddings = model.backend.embed(inputs).await?;
    let usage = embeddings.usage;
    let counts = TokenCounts {
        input: usage.prompt_tokens as u64,
        cached_input: 0,
        output: 0,
        exact: usage.accuracy == Accuracy::Exact,
    };
    ticket.close(counts, Outcome::Complete);
    let prompt_tokens = u32::try_from(usage.prompt_tokens).unwrap_or(u32::MAX);
    state
        .metrics
        .add_prompt_tokens(model.id, u64::from(prompt_tokens));
    let data = embeddings
        .vectors
        .iter()
        .zip(0u32..)
        .map(|(vector, index)| Embedding::new(index, vector, request.encoding_format))
        .collect();
    Ok(Json(EmbeddingResponse::new(
        model.id.to_owned(),
        data,
        EmbeddingUsage::new(prompt_tokens),
    ))
    .into_response())
}

/// The inputs' tokens before the model counts them: exact for token ids, else an estimate.
fn estimated_tokens(inputs: &EmbeddingInputs) -> u64 {
    let tokens: usize = match inputs {
        EmbeddingInputs::Texts(texts) => texts
            .iter()
            .map(|text| TokenCount::estimate(text).tokens)
            .sum(),
        EmbeddingInputs::Tokens(batch) => batch.iter().map(Vec::len).sum(),
    };
    tokens as u64
}

/// The wire input as the backend's inputs; a single text or token array is a batch of one.
fn backend_inputs(input: TextOrTokens) -> EmbeddingInputs {
    match input {
        TextOrTokens::Text(text) => EmbeddingInputs::Texts(vec![text]),
        TextOrTokens::TextBatch(texts) => EmbeddingInputs::Texts(texts),
        TextOrTokens::Tokens(tokens) => EmbeddingInputs::Tokens(vec![tokens]),
        TextOrTokens::TokenBatch(batch) => EmbeddingInputs::Tokens(batch),
    }
}
