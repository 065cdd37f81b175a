//! The catalog and the model lifecycle through the router in process: a deprecated model is
//! served with `Deprecation`, `Sunset` and `Link`; a retired one by its successor (under the
//! successor's id and plan) or answered 410; the announcements; and the product API's views,
//! public, by UUID or id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, Utc};
use gateway_api::{ModelRegistry, ServedModel};
use gateway_backend::Backend;
use gateway_core::{CatalogEntry, Deprecation, ServicePlan};
use serde_json::json;

use support::accounting::GENEROUS;
use support::app::{app_with, assert_error, chat, hello, App};
use support::scripted_backend::ScriptedBackend;

/// The catalog entry of a scripted backend served as `id`, with `deprecation`.
fn entry(backend: &ScriptedBackend, id: &str, deprecation: Option<Deprecation>) -> CatalogEntry {
    let mut entry = CatalogEntry::from_card(id, backend.card(), 1_234);
    entry.deprecation = deprecation;
    entry
}

fn serve(registry: &mut ModelRegistry, id: &str, deprecation: Option<Deprecation>) {
    let backend = hello();
    let entry = entry(&backend, id, deprecation);
    registry.insert(id, ServedModel::new(Arc::new(backend), entry, 0));
}

fn days(days: i64) -> chrono::DateTime<Utc> {
    Utc::now() + Duration::days(days)
}

fn notice(announced: i64, retires: i64, successor: Option<&str>) -> Option<Deprecation> {
    Some(Deprecation {
        announced: days(announced),
        retires: days(retires),
        successor: successor.map(str::to_owned),
    })
}

async fn lifecycle_app() -> App {
    let mut registry = ModelRegistry::default();
    serve(&mut registry, "current", None);
    serve(
        &mut registry,
        "sunsetting",
        notice(-10, 200, Some("current")),
    );
    let mut plus = entry(&hello(), "plus-successor", None);
    plus.plan = ServicePlan::Plus;
    registry.insert(
        "plus-successor",
        ServedModel::new(Arc::new(hello()), plus, 0),
    );
    let retired = entry(
        &hello(),
        "retired",
        notice(-200, -1, Some("plus-successor")),
    );
    registry.insert_retired(retired);
    let gone = entry(&hello(), "gone", notice(-200, -1, None));
    registry.insert_retired(gone);
    app_with(registry, GENEROUS).await
}

fn with_model(model: &str) -> serde_json::Value {
    let mut body = chat(json!({}));
    body["model"] = json!(model);
    body
}

#[tokio::test]
async fn a_deprecated_model_is_served_with_its_notice() {
    let app = lifecycle_app().await;
    let answer = app
        .post("/v1/chat/completions", with_model("sunsetting"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let header = |name: &str| answer.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("deprecation"), format!("@{}", days(-10).timestamp()));
    assert!(header("sunset").ends_with(" GMT"), "{}", header("sunset"));
    assert!(header("link").contains("</v1/models/current>; rel=\"successor-version\""));
    let current = app
        .post("/v1/chat/completions", with_model("current"))
        .await;
    assert!(!current.headers.contains_key("deprecation"));
}

#[tokio::test]
async fn a_retired_model_is_answered_by_its_successor_under_its_plan() {
    let app = lifecycle_app().await;
    let answer = app
        .post("/v1/chat/completions", with_model("retired"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["model"], "plus-successor");
    assert_eq!(answer.headers["x-model-retired"], "retired");
    let records = app.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].model, "plus-successor");
    assert_eq!(records[0].plan, ServicePlan::Plus);
}

#[tokio::test]
async fn a_retired_model_without_successor_is_gone() {
    let app = lifecycle_app().await;
    let answer = app.post("/v1/chat/completions", with_model("gone")).await;
    let error = assert_error(&answer, 410, Some("model"));
    assert_eq!(error["code"], "model_retired");
    let listed = app.get("/v1/models/gone").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json()["lifecycle"]["state"], "retired");
}

#[tokio::test]
async fn announcements_list_every_deprecation_as_json_or_atom() {
    let app = lifecycle_app().await;
    let request = |accept: &str| {
        Request::get("/v1/announcements")
            .header("accept", accept)
            .body(Body::empty())
            .unwrap()
    };
    let answer = app.call(request("application/json")).await;
    assert_eq!(answer.status, StatusCode::OK, "public, no key");
    let body = answer.json();
    let models: Vec<&str> = body["announcements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["sunsetting", "gone", "retired"]);
    assert_eq!(body["announcements"][0]["state"], "deprecated");
    let atom = app.call(request("application/atom+xml")).await;
    assert_eq!(atom.headers["content-type"], "application/atom+xml");
    assert_eq!(atom.text().matches("<entry>").count(), 3);
}

#[tokio::test]
async fn the_product_api_names_models_by_uuid_or_id_without_a_key() {
    let app = lifecycle_app().await;
    let get = |path: String| Request::get(path).body(Body::empty()).unwrap();
    let list = app.call(get("/v1/regions/eu01/models".to_owned())).await;
    assert_eq!(list.status, StatusCode::OK);
    let models = list.json()["models"].as_array().unwrap().clone();
    assert_eq!(models.len(), 5);
    let current = models
        .iter()
        .find(|m| m["displayedName"] == "current")
        .unwrap();
    assert_eq!(current["category"], "standard");
    assert_eq!(current["region"], "eu01");
    assert_eq!(current["modelId"], "current");
    assert!(current["license"].is_string(), "{current}");
    let uuid = current["id"].as_str().unwrap();
    let by_uuid = app
        .call(get(format!("/v1/regions/eu01/chat/models/{uuid}")))
        .await;
    assert_eq!(by_uuid.status, StatusCode::OK);
    assert_eq!(by_uuid.json()["model"]["size"], 1_234);
    let by_id = app
        .call(get("/v1/regions/eu01/chat/models/current".to_owned()))
        .await;
    assert_eq!(by_id.json()["model"]["id"], uuid);
    let wrong_kind = app
        .call(get("/v1/regions/eu01/embedding/models/current".to_owned()))
        .await;
    assert_eq!(wrong_kind.status, StatusCode::NOT_FOUND);
    assert_eq!(wrong_kind.json()["error"], "not_found");
}
