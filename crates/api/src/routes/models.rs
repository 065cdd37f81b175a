//! `GET /v1/models` and `GET /v1/models/{model}`: the catalog as OpenAI model objects, with
//! the catalog's facts as extra fields (type, plan, names, context length, licence, source,
//! size, quantization, tags and the lifecycle). Retired models stay listed, with their state.
//! A key restricted to some models sees only those.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use gateway_core::openai::{Model, ModelList};
use gateway_core::CatalogEntry;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::ApiKey;
use crate::state::AppState;

/// Who the model objects say owns the models.
const OWNER: &str = "gateway";

/// Handles `GET /v1/models`.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "model",
    responses(
        (status = 200, description = "The models the key may use, with the catalog's facts \
                                      as extra fields.", body = ModelList),
        crate::openapi::ModelReadErrors,
    ),
    security(("api_key" = []))
)]
pub async fn list_models(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
) -> Json<ModelList> {
    let data = state
        .models
        .entries()
        .into_iter()
        .filter(|entry| key.allows_model(&entry.id))
        .map(|entry| model_object(&state, entry))
        .collect();
    Json(ModelList::new(data))
}

/// Handles `GET /v1/models/{model}`.
#[utoipa::path(
    get,
    path = "/v1/models/{model}",
    tag = "model",
    params(("model" = String, Path, description = "The model id.")),
    responses(
        (status = 200, description = "The model, with the catalog's facts as extra fields.",
         body = Model),
        crate::openapi::ModelReadErrors,
    ),
    security(("api_key" = []))
)]
pub async fn get_model(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    let entry = state
        .models
        .entry(&id)
        .filter(|_| key.allows_model(&id))
        .ok_or(ApiError::ModelNotFound { model: id })?;
    Ok(Json(model_object(&state, entry)))
}

fn model_object(state: &AppState, entry: &CatalogEntry) -> Model {
    let created = state.models.served(&entry.id).map_or_else(
        || {
            entry
                .deprecation
                .as_ref()
                .map_or(0, |d| d.announced.timestamp())
        },
        |model| model.created,
    );
    let mut object = Model::new(&entry.id, created, OWNER);
    object.extra.extend(catalog_fields(entry));
    object
}

/// The catalog's facts as the extra fields of a model object, with vLLM's names for some.
fn catalog_fields(entry: &CatalogEntry) -> Vec<(String, Value)> {
    let mut fields = vec![
        ("type", json!(entry.kind)),
        ("plan", json!(entry.plan)),
        ("displayed_name", json!(entry.displayed_name)),
        ("description", json!(entry.description)),
        ("hugging_face_name", json!(entry.hugging_face_name)),
        ("context_length", json!(entry.context_length)),
        ("license", json!(entry.license)),
        ("source", json!(entry.url)),
        ("size_bytes", json!(entry.size_bytes)),
        ("quantization", json!(entry.quantization)),
        ("bits", json!(entry.bits())),
        ("tags", json!(entry.tags)),
        ("lifecycle", lifecycle(entry)),
        // vLLM's fields, which its clients read: the context, what the model was made from
        // (its Hugging Face name, else its id) and the model it adapts (none: no adapters).
        ("max_model_len", json!(entry.context_length)),
        ("root", json!(root(entry))),
        ("parent", Value::Null),
    ];
    if let Some(dimensions) = entry.dimensions {
        fields.push(("dimensions", json!(dimensions)));
    }
    fields
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// What the model was made from: its Hugging Face name, else its id.
fn root(entry: &CatalogEntry) -> &str {
    if entry.hugging_face_name.is_empty() {
        &entry.id
    } else {
        &entry.hugging_face_name
    }
}

/// `{"state", "announced", "retires", "successor"}` of an entry now.
pub fn lifecycle(entry: &CatalogEntry) -> Value {
    let state = entry.state_at(Utc::now());
    match &entry.deprecation {
        None => json!({ "state": state }),
        Some(deprecation) => json!({
            "state": state,
            "announced": deprecation.announced,
            "retires": deprecation.retires,
            "successor": deprecation.successor,
        }),
    }
}
