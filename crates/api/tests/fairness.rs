//! What one project may ask of the models at once, in process: the cap on choices (prompts ×
//! `n`) per request, the limit on a project's requests in flight (429 at once, the places
//! freed when answers end or streams are dropped, other projects unaffected), and the project
//! id passed to the backend as the tenant its queue is shared by.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use gateway_api::{Fairness, ServedModel};
use gateway_auth::CreateToken;
use serde_json::{json, Value};
use tower::ServiceExt;

use support::accounting::GENEROUS;
use support::app::{app_with_fairness, assert_error, chat, hello, App};
use support::scripted_backend::ScriptedBackend;

const CAPPED: Fairness = Fairness {
    max_choices_per_request: 4,
    max_concurrent_requests_per_project: 2,
};

async fn app_of(backend: Arc<ScriptedBackend>, fairness: Fairness) -> App {
    let mut registry = gateway_api::ModelRegistry::default();
    registry.insert("scripted".to_owned(), ServedModel::from_card(backend));
    let embedder = Arc::new(ScriptedBackend::embedding("embedder", 4));
    registry.insert("embedder".to_owned(), ServedModel::from_card(embedder));
    app_with_fairness(registry, GENEROUS, fairness).await
}

fn completion(prompts: usize, n: u32) -> Value {
    let prompt: Vec<String> = (0..prompts).map(|i| format!("prompt {i}")).collect();
    json!({"model": "scripted", "prompt": prompt, "n": n, "max_tokens": 2})
}

/// Sends a request and returns the response as soon as its head is ready (a stream's body
/// still running).
async fn open(app: &App, key: &str, body: Value) -> Response {
    let request = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    app.router.clone().oneshot(request).await.unwrap()
}

/// A key of a second project.
async fn other_project_key(app: &App) -> String {
    let management = &app.state.management;
    let project = management.create_project("other").await.unwrap();
    let request = CreateToken {
        name: "other".into(),
        ..CreateToken::default()
    };
    let created = management
        .create_key(project.id, "eu01", request)
        .await
        .unwrap();
    created.content.expose().to_owned()
}

#[tokio::test]
async fn more_choices_than_allowed_are_refused_before_the_backend_is_called() {
    let backend = Arc::new(hello());
    let app = app_of(Arc::clone(&backend), CAPPED).await;
    let answer = app.post("/v1/completions", completion(5, 1)).await;
    let error = assert_error(&answer, 400, Some("prompt"));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("5 choices") && message.contains("at most 4"),
        "{message}"
    );
    assert!(answer
        .headers
        .contains_key("x-ratelimit-remaining-requests"));
    let answer = app
        .post("/v1/chat/completions", chat(json!({"n": 5})))
        .await;
    assert_error(&answer, 400, Some("n"));
    let answer = app.post("/v1/completions", completion(3, 2)).await;
    assert_error(&answer, 400, Some("prompt"));
    assert!(backend.tenants().is_empty(), "the backend was called");
    let answer = app.post("/v1/completions", completion(2, 2)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["choices"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_project_over_its_requests_in_flight_gets_429_and_others_do_not() {
    let backend = Arc::new(hello());
    let app = app_of(backend, CAPPED).await;
    let stream = chat(json!({"stream": true}));
    let first = open(&app, &app.key, stream.clone()).await;
    let second = open(&app, &app.key, stream.clone()).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );

    let refused = app.post("/v1/chat/completions", chat(json!({}))).await;
    let error = assert_error(&refused, 429, None);
    assert_eq!(error["type"], "requests");
    assert_eq!(error["code"], "concurrency_limit_exceeded");
    assert!(error["message"].as_str().unwrap().contains("at most 2"));
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(refused
        .headers
        .contains_key("x-ratelimit-remaining-requests"));
    let refused = app
        .post(
            "/v1/embeddings",
            json!({"model": "embedder", "input": "hi"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);

    let other = other_project_key(&app).await;
    let answer = app
        .send("/v1/chat/completions", Some(&other), chat(json!({})))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    // a dropped stream gives its place back
    drop(first);
    let answer = app.post("/v1/chat/completions", chat(json!({}))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    drop(second);
}

#[tokio::test]
async fn finished_answers_give_their_places_back() {
    let app = app_of(Arc::new(hello()), CAPPED).await;
    for _ in 0..5 {
        let answer = app.post("/v1/chat/completions", chat(json!({}))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let streamed = app
            .post("/v1/chat/completions", chat(json!({"stream": true})))
            .await;
        assert_eq!(streamed.status, StatusCode::OK, "{}", streamed.text());
    }
}

#[tokio::test]
async fn zero_means_no_limit_on_requests_in_flight() {
    let fairness = Fairness {
        max_concurrent_requests_per_project: 0,
        ..CAPPED
    };
    let app = app_of(Arc::new(hello()), fairness).await;
    let mut open_streams = Vec::new();
    for _ in 0..8 {
        let response = open(&app, &app.key, chat(json!({"stream": true}))).await;
        assert_eq!(response.status(), StatusCode::OK);
        open_streams.push(response);
    }
}

#[tokio::test]
async fn the_project_is_the_tenant_of_every_generation() {
    let backend = Arc::new(hello());
    let app = app_of(Arc::clone(&backend), CAPPED).await;
    let answer = app.post("/v1/completions", completion(2, 1)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let project = Some(app.project.to_string());
    assert_eq!(backend.tenants(), vec![project.clone(), project]);
}
