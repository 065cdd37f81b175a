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

use crate::error::{ApiError, ManagementError};
use crate::registry::http_date;
use crate::routes::accepts;
use crate::routes::models::lifecycle;
use crate::state::AppState;

/// The media type of the announcements feed.
pub const ATOM: &str = "application/atom+xml";

/// One price line of a model (`SKU`).
#[derive(Debug, Serialize)]
struct Sku {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    description: String,
}

/// The fields every model view shares (`Model`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelView {
    id: uuid::Uuid,
    name: String,
    displayed_name: String,
    description: String,
    category: &'static str,
    #[serde(rename = "type")]
    kind: ModelKind,
    url: String,
    region: String,
    skus: Vec<Sku>,
    tags: Vec<String>,
    lifecycle: Value,
}

/// A chat model's details (`ChatModelDetails`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChatDetails {
    #[serde(flatten)]
    model: ModelView,
    context_length: usize,
    size: u64,
    bits: Option<u8>,
    quantization_method: Option<&'static str>,
}

/// An embedding model's details (`EmbeddingModelDetails`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbeddingDetails {
    #[serde(flatten)]
    model: ModelView,
    output_dimension: usize,
    context_length: usize,
    size: u64,
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
pub async fn list_models(
    State(state): State<Arc<AppState>>,
    Path(region): Path<String>,
) -> Json<Value> {
    let models: Vec<ModelView> = state
        .models
        .entries()
        .into_iter()
        .map(|entry| view(&state, entry, &region))
        .collect();
    Json(serde_json::json!({ "models": models }))
}

/// Handles `GET /v1/regions/{regionId}/chat/models/{modelId}`.
pub async fn get_chat_model(
    State(state): State<Arc<AppState>>,
    Path((region, model)): Path<(String, String)>,
) -> Result<Json<Value>, ManagementError> {
    let entry = find(&state, &model, ModelKind::Chat)?;
    let details = ChatDetails {
        context_length: entry.context_length,
        size: entry.size_bytes,
        bits: entry.bits(),
        quantization_method: entry.quantization_method(),
        model: view(&state, entry, &region),
    };
    Ok(Json(serde_json::json!({ "model": details })))
}

/// Handles `GET /v1/regions/{regionId}/embedding/models/{modelId}`.
pub async fn get_embedding_model(
    State(state): State<Arc<AppState>>,
    Path((region, model)): Path<(String, String)>,
) -> Result<Json<Value>, ManagementError> {
    let entry = find(&state, &model, ModelKind::Embedding)?;
    let details = EmbeddingDetails {
        output_dimension: entry.dimensions.unwrap_or_default(),
        context_length: entry.context_length,
        size: entry.size_bytes,
        model: view(&state, entry, &region),
    };
    Ok(Json(serde_json::json!({ "model": details })))
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
        displayed_name: entry.displayed_name.clone(),
        description: entry.description.clone(),
        category: category(entry.plan),
        kind: entry.kind,
        url: entry.url.clone(),
        region: region.to_owned(),
        skus: skus(state, entry),
        tags: entry.tags.clone(),
        lifecycle: lifecycle(entry),
    }
}

/// The price lines of a model now: input tokens, and output tokens for chat models.
fn skus(state: &AppState, entry: &CatalogEntry) -> Vec<Sku> {
    let Some(price) = state.accounting.prices.at(entry.plan, Utc::now()) else {
        return Vec::new();
    };
    let plan = category(entry.plan);
    let mut lines = vec![("input", price.input_per_million)];
    if entry.kind == ModelKind::Chat {
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
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Announcement<'a> {
    model: &'a str,
    displayed_name: &'a str,
    state: gateway_core::LifecycleState,
    announced: DateTime<Utc>,
    retires: DateTime<Utc>,
    successor: Option<&'a str>,
}

/// Handles `GET /v1/announcements`: every deprecation, newest announcement first, as JSON
/// `{"announcements": [...]}` or, for `Accept: application/atom+xml`, an Atom feed.
pub async fn announcements(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let now = Utc::now();
    let entries = state.models.entries();
    let mut announcements: Vec<Announcement<'_>> = entries
        .iter()
        .filter_map(|entry| {
            let deprecation = entry.deprecation.as_ref()?;
            Some(Announcement {
                model: &entry.id,
                displayed_name: &entry.displayed_name,
                state: entry.state_at(now),
                announced: deprecation.announced,
                retires: deprecation.retires,
                successor: deprecation.successor.as_deref(),
            })
        })
        .collect();
    announcements.sort_by(|a, b| b.announced.cmp(&a.announced).then(a.model.cmp(b.model)));
    if accepts(&headers, ATOM) {
        return (
            [(header::CONTENT_TYPE, ATOM)],
            atom_feed(&announcements, now),
        )
            .into_response();
    }
    Json(serde_json::json!({ "announcements": announcements })).into_response()
}

/// The announcements as an Atom feed (RFC 4287), one entry per deprecation.
fn atom_feed(announcements: &[Announcement<'_>], now: DateTime<Utc>) -> String {
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

fn atom_entry(announcement: &Announcement<'_>) -> String {
    let successor = announcement.successor.map_or_else(
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
        escape_xml(announcement.displayed_name),
        announcement.retires.format("%Y-%m-%d"),
        escape_xml(announcement.model),
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
