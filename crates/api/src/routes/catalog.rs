//! The catalog as the managed service's model API shows it, so that its SDKs read ours:
//! `GET /v1/regions/{regionId}/models` (`ListModelsResponse`),
//! `GET /v1/regions/{regionId}/chat/models/{modelId}` (`GetChatModelResponse`) and
//! `GET /v1/regions/{regionId}/embedding/models/{modelId}` (`GetEmbeddingsModelResp`), each
//! model with our `lifecycle` object besides the service's fields; and the announcements of
//! deprecations, `GET /v1/announcements` (JSON, or an Atom feed when the client accepts
//! `application/atom+xml`). All public: the catalog is what the service publishes anyway.
//!
//! A model is named by its catalog UUID (stable on every replica) or by its id. Plans are the
//! service's categories: Base = `standard`, Plus = `plus`, Premium = `premium`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use gateway_core::{CatalogEntry, ModelKind, ServicePlan};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, ManagementError};
use crate::registry::http_date;
use crate::routes::accepts;
use crate::routes::models::lifecycle;
use crate::state::AppState;

/// The media type of the announcements feed.
pub const ATOM: &str = "application/atom+xml";

/// One price line of a model (`SKU`).
#[derive(Debug, Serialize, ToSchema)]
struct Sku {
    /// The line's id, e.g. `standard-input-tokens`.
    id: String,
    /// `input`, `cached-input` (input tokens served from the prompt cache) or `output`
    /// (tokens).
    #[serde(rename = "type")]
    kind: &'static str,
    /// The price per 1 million tokens and its currency.
    description: String,
}

/// The fields every model view shares (`Model`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CatalogModel)]
struct ModelView {
    /// The model's catalog UUID (the same on every replica).
    id: uuid::Uuid,
    /// Its Hugging Face name.
    name: String,
    /// The id clients send in the model API's `model` field (an extension of this gateway).
    model_id: String,
    /// Its name for people.
    displayed_name: String,
    /// What it is good for.
    description: String,
    /// Its plan: `standard`, `plus` or `premium`.
    category: &'static str,
    /// `chat` or `embedding`.
    #[serde(rename = "type")]
    kind: ModelKind,
    /// Where it comes from, e.g. its Hugging Face page.
    url: String,
    /// The region asked for.
    region: String,
    /// Its price lines now.
    skus: Vec<Sku>,
    /// Free-form tags.
    tags: Vec<String>,
    /// The SPDX licence of its weights (an extension of this gateway).
    license: String,
    /// `{"state"}` (`active`, `deprecated` or `retired`), with `announced`, `retires` and
    /// `successor` once the model's retirement is announced.
    #[schema(value_type = Object)]
    lifecycle: Value,
}

/// A chat model's details (`ChatModelDetails`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChatModelDetails)]
#[serde(rename_all = "camelCase")]
struct ChatDetails {
    /// The fields every model has.
    #[serde(flatten)]
    model: ModelView,
    /// Its context length in tokens, as served.
    context_length: usize,
    /// Its size in bytes.
    size: u64,
    /// Bits per weight, when quantized.
    bits: Option<u8>,
    /// How it was quantized, if it was.
    quantization_method: Option<&'static str>,
}

/// An embedding model's details (`EmbeddingModelDetails`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EmbeddingModelDetails)]
#[serde(rename_all = "camelCase")]
struct EmbeddingDetails {
    /// The fields every model has.
    #[serde(flatten)]
    model: ModelView,
    /// The length of its vectors.
    output_dimension: usize,
    /// Its context length in tokens, as served.
    context_length: usize,
    /// Its size in bytes.
    size: u64,
}

/// The answer of `GET /v1/regions/{regionId}/models` (`ListModelsResponse`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ListModelsResponse)]
pub struct ModelListView {
    /// Every model of the catalog.
    models: Vec<ModelView>,
}

/// The answer of `GET /v1/regions/{regionId}/chat/models/{modelId}` (`GetChatModelResponse`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GetChatModelResponse)]
pub struct ChatModelView {
    /// The model.
    model: ChatDetails,
}

/// The answer of `GET /v1/regions/{regionId}/embedding/models/{modelId}`
/// (`GetEmbeddingsModelResp`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GetEmbeddingsModelResp)]
pub struct EmbeddingModelView {
    /// The model.
    model: EmbeddingDetails,
}

/// The service's category of a plan.
pub fn category(plan: ServicePlan) -> &'static str {
    match plan {
        ServicePlan::Base => "standard",
        ServicePlan::Plus => "plus",
        ServicePlan::Premium => "premium",
    }
}

/// Handles `GET /v1/regions/{regionId}/models`.
#[utoipa::path(
    get,
    path = "/v1/regions/{regionId}/models",
    operation_id = "list_catalog_models",
    tag = "catalog",
    params(("regionId" = String, Path, description = "The region, e.g. `eu01`.")),
    responses(
        (status = 200, description = "Every model of the catalog.", body = ModelListView),
        crate::openapi::CatalogErrors,
    )
)]
pub async fn list_models(
    State(state): State<Arc<AppState>>,
    Path(region): Path<String>,
) -> Json<ModelListView> {
    let models = state
        .models
        .entries()
        .into_iter()
        .map(|entry| view(&state, entry, &region))
        .collect();
    Json(ModelListView { models })
}

/// Handles `GET /v1/regions/{regionId}/chat/models/{modelId}`.
#[utoipa::path(
    get,
    path = "/v1/regions/{regionId}/chat/models/{modelId}",
    tag = "catalog",
    params(
        ("regionId" = String, Path, description = "The region, e.g. `eu01`."),
        ("modelId" = String, Path, description = "The model's catalog UUID or its id."),
    ),
    responses(
        (status = 200, description = "The chat model.", body = ChatModelView),
        crate::openapi::CatalogErrors,
    )
)]
pub async fn get_chat_model(
    State(state): State<Arc<AppState>>,
    Path((region, model)): Path<(String, String)>,
) -> Result<Json<ChatModelView>, ManagementError> {
    let entry = find(&state, &model, ModelKind::Chat)?;
    let details = ChatDetails {
        context_length: entry.context_length,
        size: entry.size_bytes,
        bits: entry.bits(),
        quantization_method: entry.quantization_method(),
        model: view(&state, entry, &region),
    };
    Ok(Json(ChatModelView { model: details }))
}

/// Handles `GET /v1/regions/{regionId}/embedding/models/{modelId}`.
#[utoipa::path(
    get,
    path = "/v1/regions/{regionId}/embedding/models/{modelId}",
    tag = "catalog",
    params(
        ("regionId" = String, Path, description = "The region, e.g. `eu01`."),
        ("modelId" = String, Path, description = "The model's catalog UUID or its id."),
    ),
    responses(
        (status = 200, description = "The embedding model.", body = EmbeddingModelView),
        crate::openapi::CatalogErrors,
    )
)]
pub async fn get_embedding_model(
    State(state): State<Arc<AppState>>,
    Path((region, model)): Path<(String, String)>,
) -> Result<Json<EmbeddingModelView>, ManagementError> {
    let entry = find(&state, &model, ModelKind::Embedding)?;
    let details = EmbeddingDetails {
        output_dimension: entry.dimensions.unwrap_or_default(),
        context_length: entry.context_length,
        size: entry.size_bytes,
        model: view(&state, entry, &region),
    };
    Ok(Json(EmbeddingModelView { model: details }))
}

/// The entry of kind `kind` named by its UUID or id, or 404.
fn find<'a>(
    state: &'a AppState,
    name: &str,
    kind: ModelKind,
) -> Result<&'a CatalogEntry, ManagementError> {
    let by_uuid = |entry: &&CatalogEntry| entry.uuid().to_string() == name;
    state
        .models
        .entries()
        .into_iter()
        .find(|entry| entry.id == name || by_uuid(entry))
        .filter(|entry| entry.kind == kind)
        .ok_or_else(|| {
            ManagementError(ApiError::ModelNotFound {
                model: name.to_owned(),
            })
        })
}

fn view(state: &AppState, entry: &CatalogEntry, region: &str) -> ModelView {
    ModelView {
        id: entry.uuid(),
        name: entry.hugging_face_name.clone(),
        model_id: entry.id.clone(),
        displayed_name: entry.displayed_name.clone(),
        description: entry.description.clone(),
        category: category(entry.plan),
        kind: entry.kind,
        url: entry.url.clone(),
        region: region.to_owned(),
        skus: skus(state, entry),
        tags: entry.tags.clone(),
        license: entry.license.clone(),
        lifecycle: lifecycle(entry),
    }
}

/// The price lines of a model now: input tokens, and for chat models cached input tokens
/// (served from the prompt cache) and output tokens.
fn skus(state: &AppState, entry: &CatalogEntry) -> Vec<Sku> {
    let Some(price) = state.accounting.prices.at(entry.plan, Utc::now()) else {
        return Vec::new();
    };
    let plan = category(entry.plan);
    let mut lines = vec![("input", price.input_per_million)];
    if entry.kind == ModelKind::Chat {
        lines.push(("cached-input", price.cached_input_per_million));
        lines.push(("output", price.output_per_million));
    }
    lines
        .into_iter()
        .map(|(kind, per_million)| Sku {
            id: format!("{plan}-{kind}-tokens"),
            kind,
            description: format!(
                "{per_million} {} per 1 million {kind} tokens",
                price.currency
            ),
        })
        .collect()
}

/// One deprecation, past or coming.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Announcement {
    /// The model id.
    model: String,
    /// The model's name for people.
    displayed_name: String,
    /// Where the model stands now.
    state: gateway_core::LifecycleState,
    /// When the retirement was announced.
    announced: DateTime<Utc>,
    /// When the model retires.
    retires: DateTime<Utc>,
    /// The model that takes its requests after retirement, if any.
    successor: Option<String>,
}

/// The answer of `GET /v1/announcements` as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnnouncementList {
    /// Every deprecation, newest announcement first.
    announcements: Vec<Announcement>,
}

/// Handles `GET /v1/announcements`: every deprecation, newest announcement first, as JSON
/// `{"announcements": [...]}` or, for `Accept: application/atom+xml`, an Atom feed.
#[utoipa::path(
    get,
    path = "/v1/announcements",
    tag = "catalog",
    responses(
        (status = 200, description = "Every deprecation, newest announcement first: JSON, or \
                                      an Atom feed with `Accept: application/atom+xml`.",
         content(
             (AnnouncementList = "application/json"),
             (String = "application/atom+xml"),
         )),
        crate::openapi::CatalogErrors,
    )
)]
pub async fn announcements(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let now = Utc::now();
    let mut announcements: Vec<Announcement> = state
        .models
        .entries()
        .into_iter()
        .filter_map(|entry| {
            let deprecation = entry.deprecation.as_ref()?;
            Some(Announcement {
                model: entry.id.clone(),
                displayed_name: entry.displayed_name.clone(),
                state: entry.state_at(now),
                announced: deprecation.announced,
                retires: deprecation.retires,
                successor: deprecation.successor.clone(),
            })
        })
        .collect();
    announcements.sort_by(|a, b| b.announced.cmp(&a.announced).then(a.model.cmp(&b.model)));
    if accepts(&headers, ATOM) {
        return (
            [(header::CONTENT_TYPE, ATOM)],
            atom_feed(&announcements, now),
        )
            .into_response();
    }
    Json(AnnouncementList { announcements }).into_response()
}

/// The announcements as an Atom feed (RFC 4287), one entry per deprecation.
fn atom_feed(announcements: &[Announcement], now: DateTime<Utc>) -> String {
    let updated = announcements
        .iter()
        .map(|a| a.announced)
        .max()
        .unwrap_or(now);
    let entries: String = announcements.iter().map(atom_entry).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <title>Model deprecations</title>\n\
         <id>urn:gateway:announcements</id>\n\
         <updated>{}</updated>\n{entries}</feed>\n",
        updated.to_rfc3339()
    )
}

fn atom_entry(announcement: &Announcement) -> String {
    let successor = announcement.successor.as_deref().map_or_else(
        || "No successor: requests get 410 after retirement.".to_owned(),
        |successor| format!("Requests go to {successor} after retirement."),
    );
    let summary = format!(
        "{} is deprecated from {} and retires on {}. {successor}",
        announcement.model,
        http_date(announcement.announced),
        http_date(announcement.retires),
    );
    format!(
        "<entry>\n<title>{} retires on {}</title>\n<id>urn:gateway:deprecation:{}</id>\n\
         <updated>{}</updated>\n<summary>{}</summary>\n</entry>\n",
        escape_xml(&announcement.displayed_name),
        announcement.retires.format("%Y-%m-%d"),
        escape_xml(&announcement.model),
        announcement.announced.to_rfc3339(),
        escape_xml(&summary),
    )
}

/// `text` with XML's five special characters escaped.
fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_the_services_categories() {
        assert_eq!(category(ServicePlan::Base), "standard");
        assert_eq!(category(ServicePlan::Plus), "plus");
        assert_eq!(category(ServicePlan::Premium), "premium");
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(escape_xml("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
