//! `GET /v1/models` and `GET /v1/models/{model}`: the served models as OpenAI model objects,
//! with the catalog facts of their model cards (kind, context length, license, source). A key
//! restricted to some models sees only those.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use gateway_core::openai::{Model, ModelList};

use crate::error::ApiError;
use crate::extract::ApiKey;
use crate::state::{AppState, ServedModel};

/// Who the model objects say owns the models.
const OWNER: &str = "gateway";

/// Handles `GET /v1/models`.
pub async fn list_models(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
) -> Json<ModelList> {
    let data = state
        .models
        .iter()
        .filter(|(id, _)| key.allows_model(id))
        .map(|(id, model)| model_object(id, model))
        .collect();
    Json(ModelList::new(data))
}

/// Handles `GET /v1/models/{model}`.
pub async fn get_model(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    let model = state.models.permitted(&id, &key)?;
    Ok(Json(model_object(&id, model)))
}

fn model_object(id: &str, model: &ServedModel) -> Model {
    let card = model.backend.card();
    let mut object = Model::new(id, model.created, OWNER);
    let facts = [
        ("type", serde_json::json!(card.kind)),
        ("context_length", serde_json::json!(card.context_length)),
        ("license", serde_json::json!(card.license)),
        ("source", serde_json::json!(card.source)),
        ("quantization", serde_json::json!(card.quantization)),
    ];
    if let Some(dimensions) = card.dimensions {
        object
            .extra
            .insert("dimensions".to_owned(), serde_json::json!(dimensions));
    }
    object.extra.extend(
        facts
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
    );
    object
}
