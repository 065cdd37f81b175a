//! `POST /v1/embeddings`: checks the request, runs it on the model's backend and answers with
//! one vector per input, as floats or base64, with the billed prompt tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use gateway_backend::{BackendError, EmbeddingInputs};
use gateway_core::openai::{
    Embedding, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, TextOrTokens,
};

use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::state::AppState;

/// Handles `POST /v1/embeddings`.
pub async fn create_embeddings(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    OpenAiJson(request): OpenAiJson<EmbeddingRequest>,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    let model = state.models.permitted(&request.model, &key)?;
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
    let embeddings = model.backend.embed(inputs).await?;
    let prompt_tokens = u32::try_from(embeddings.usage.prompt_tokens).unwrap_or(u32::MAX);
    state
        .metrics
        .add_prompt_tokens(&request.model, u64::from(prompt_tokens));
    let data = embeddings
        .vectors
        .iter()
        .zip(0u32..)
        .map(|(vector, index)| Embedding::new(index, vector, request.encoding_format))
        .collect();
    Ok(Json(EmbeddingResponse::new(
        request.model,
        data,
        EmbeddingUsage::new(prompt_tokens),
    )))
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
