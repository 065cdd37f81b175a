//! The management API over HTTP, in process: the real router on a real SQLite store, driven
//! through `tower::ServiceExt::oneshot`. Status codes, the token object and the error bodies
//! as the STACKIT model-serving API defines them, and the model API keeping OpenAI's shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/accounting.rs"]
mod accounting;

use std::sync::Arc;

use accounting::{accounting, test_policy, GENEROUS};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use gateway_api::{AppState, Limits, ModelRegistry};
use gateway_auth::{Management, Role, SqliteStore, NEVER_EXPIRES};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// A router, a project with an owner's management token, and the store underneath.
struct App {
    router: Router,
    store: SqliteStore,
    token: String,
    tokens: String,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("gateway.db").display()
    );
    let store = SqliteStore::open(&url).await.unwrap();
    let management = Management::new(Arc::new(store.clone()));
    let project = management.create_project("management").await.unwrap();
    management
        .add_principal(project.id, "owner", "owner@example.com", Role::Owner)
        .await
        .unwrap();
    let token = management
        .create_management_token("owner", None)
        .await
        .unwrap();
    let limits = Limits {
        max_body_bytes: 1 << 16,
        request_timeout_secs: 10,
        body_read_timeout_secs: 10,
        failed_authentications_per_minute: 5,
        unknown_fields: gateway_core::openai::UnknownFields::Refuse,
    };
    let accounting = accounting(&url, dir.path(), test_policy(GENEROUS))
        .await
        .unwrap();
    let state = Arc::new(AppState::new(
        ModelRegistry::default(),
        limits,
        Arc::new(store.clone()),
        accounting,
    ));
    App {
        router: gateway_api::router(state),
        store,
        token: token.content.expose().to_owned(),
        tokens: format!("/v1/projects/{}/regions/eu01/tokens", project.id),
        _dir: dir,
    }
}

impl App {
    /// One request with the owner's management token: status and JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.call_as(Some(&self.token), method, path, body).await
    }

    async fn call_as(
        &self,
        credential: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("x-request-id", "req_test");
        if let Some(credential) = credential {
            request = request.header("authorization", format!("Bearer {credential}"));
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

/// Asserts the management error body: exactly `error` and `message`.
fn assert_management_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn a_principal_lists_the_projects_it_has_a_role_on() {
    let app = app().await;
    let (status, body) = app.call(Method::GET, "/v1/projects", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["principal"],
        json!({"subject": "owner", "email": "owner@example.com"})
    );
    let projects = body["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1, "{body}");
    assert_eq!(projects[0]["name"], "management");
    assert_eq!(projects[0]["role"], "owner");
    assert!(app.tokens.contains(projects[0]["id"].as_str().unwrap()));
    let refused = app.call_as(None, Method::GET, "/v1/projects", None).await;
    assert_management_error(
        &refused,
        StatusCode::UNAUTHORIZED,
        "invalid_management_token",
    );
}

#[tokio::test]
async fn changes_a_browser_sends_from_another_origin_are_refused() {
    let app = app().await;
    let send = |method: Method, origin: Option<&str>, site: Option<&str>| {
        let mut request = Request::builder()
            .method(method)
            .uri(&app.tokens)
            .header("host", "gateway.test:8080")
            .header("authorization", format!("Bearer {}", app.token));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        let body = Body::from(r#"{"name": "from a browser"}"#);
        let router = app.router.clone();
        async move {
            let response = router.oneshot(request.body(body).unwrap()).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    for (origin, site) in [
        (Some("http://evil.example"), None),
        (Some("null"), None),
        (None, Some("cross-site")),
        (Some("http://gateway.test:8080"), Some("same-site")),
    ] {
        let refused = send(Method::POST, origin, site).await;
        assert_management_error(&refused, StatusCode::FORBIDDEN, "cross_origin_request");
    }
    let (_, listed) = app.call(Method::GET, &app.tokens, None).await;
    assert_eq!(listed["tokens"], json!([]), "nothing was created");
    let (status, body) = send(
        Method::POST,
        Some("http://gateway.test:8080"),
        Some("same-origin"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = send(Method::GET, Some("http://evil.example"), Some("cross-site")).await;
    assert_eq!(status, StatusCode::OK, "reads are answered: {body}");
}

#[tokio::test]
async fn tokens_are_created_changed_and_deleted_with_202() {
    let app = app().await;
    let body = r#"{"name": "ci runner", "description": "CI: build 7", "ttlDuration": "1h",
                   "labels": {"env": "prod", "team": "ml"}}"#;
    let (status, created) = app.call(Method::POST, &app.tokens, Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let token = &created["token"];
    assert!(token["content"].as_str().unwrap().starts_with("sk-"));
    assert_eq!(token["labels"], json!({"env": "prod", "team": "ml"}));
    assert_eq!(token["state"], "active");
    assert_ne!(token["validUntil"], NEVER_EXPIRES);
    let one = format!("{}/{}", app.tokens, token["id"].as_str().unwrap());

    let (status, forever) = app
        .call(Method::POST, &app.tokens, Some(r#"{"name": "forever"}"#))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(forever["token"]["validUntil"], NEVER_EXPIRES);
    assert!(forever["token"].get("labels").is_none());

    let (status, listed) = app.call(Method::GET, &app.tokens, None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci runner", "forever"]);
    for (query, expected) in [
        ("label_selector=env%3Dprod", json!(["ci runner"])),
        ("label_selector=%21env", json!(["forever"])),
        ("labelSelector=team%3Dops", json!([])),
    ] {
        let (status, listed) = app
            .call(Method::GET, &format!("{}?{query}", app.tokens), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let names: Vec<_> = listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].clone())
            .collect();
        assert_eq!(Value::from(names), expected, "{query}");
    }

    let patch = r#"{"name": "renamed", "labels": {"team": null, "tier": "gold"}}"#;
    let (status, updated) = app.call(Method::PATCH, &one, Some(patch)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{updated}");
    assert_eq!(updated["token"]["name"], "renamed");
    assert_eq!(
        updated["token"]["labels"],
        json!({"env": "prod", "tier": "gold"})
    );
    let (status, got) = app.call(Method::GET, &one, None).await;
    assert_eq!((status, &got["token"]), (StatusCode::OK, &updated["token"]));

    let (status, deleted) = app.call(Method::DELETE, &one, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(deleted, json!({"message": "token deleted"}));
    let gone = app.call(Method::GET, &one, None).await;
    assert_management_error(&gone, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn refusals_have_the_management_body_naming_the_rule() {
    let app = app().await;
    let post = |body: &'static str| app.call(Method::POST, &app.tokens, Some(body));
    let answer = post(r#"{"name": "ci.runner"}"#).await;
    assert_management_error(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        answer.1["message"],
        r"invalid name: must match ^[0-9a-zA-Z\s_-]+$: only letters a-z and A-Z, digits, whitespace and the characters _-"
    );
    let answer = post(r#"{"name": "a", "description": "100%"}"#).await;
    assert_management_error(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(answer.1["message"]
        .as_str()
        .unwrap()
        .starts_with(r"invalid description: must match ^[0-9a-zA-Z\s.:/-]+$"));
    let answer = post(r#"{"name": "a", "labels": {"stackit-x": "1"}}"#).await;
    assert_management_error(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(answer.1["message"].as_str().unwrap().contains("reserved"));
    let answer = post(r#"{"name": 5}"#).await;
    assert_management_error(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(answer.1["message"].as_str().unwrap().contains("'name'"));
    assert_management_error(
        &post(r#"{"name":"#).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let selector = format!("{}?label_selector=env+in+(a)", app.tokens);
    let answer = app.call(Method::GET, &selector, None).await;
    assert_management_error(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(answer.1["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid label_selector:"));

    let unauthenticated = app.call_as(None, Method::GET, &app.tokens, None).await;
    assert_management_error(
        &unauthenticated,
        StatusCode::UNAUTHORIZED,
        "invalid_management_token",
    );
    let other_project = "/v1/projects/00000000-0000-4000-8000-000000000000/regions/eu01/tokens";
    let answer = app.call(Method::GET, other_project, None).await;
    assert_management_error(&answer, StatusCode::NOT_FOUND, "not_found");
    let answer = app.call(Method::PUT, &app.tokens, None).await;
    assert_management_error(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let path = format!("{}/nothing/here", app.tokens);
    assert_management_error(
        &app.call(Method::GET, &path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let audit = app
        .tokens
        .replace("/regions/eu01/tokens", "/audit-log?limit=0");
    assert_management_error(
        &app.call(Method::GET, &audit, None).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn the_model_api_keeps_the_openai_shape() {
    let app = app().await;
    for credential in [None, Some(app.token.as_str())] {
        let (status, body) = app
            .call_as(credential, Method::GET, "/v1/models", None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
        assert_eq!(body["error"]["type"], "authentication_error");
    }
}

#[tokio::test]
async fn server_faults_are_masked_in_the_management_shape() {
    let app = app().await;
    app.store.pool().close().await;
    let answer = app.call(Method::GET, &app.tokens, None).await;
    assert_management_error(&answer, StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert_eq!(
        answer.1["message"],
        "The server had an error while processing your request (request id req_test)."
    );
}

#[tokio::test]
async fn failed_authentications_are_limited_before_they_reach_the_audit_log() {
    let app = app().await;
    for _ in 0..5 {
        let answer = app
            .call_as(Some("gmt-wrong-token"), Method::GET, &app.tokens, None)
            .await;
        assert_management_error(
            &answer,
            StatusCode::UNAUTHORIZED,
            "invalid_management_token",
        );
    }
    let answer = app
        .call_as(Some("gmt-wrong-token"), Method::GET, &app.tokens, None)
        .await;
    assert_management_error(&answer, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    let (status, _) = app.call(Method::GET, &app.tokens, None).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a valid token from the same address waits too: the check comes first"
    );
    let project = app.tokens.split('/').nth(3).unwrap().parse().unwrap();
    let owner = gateway_auth::Actor {
        subject: "owner".to_owned(),
        email: "owner@example.com".to_owned(),
    };
    let refusals = Management::new(Arc::new(app.store.clone()))
        .export_audit(
            &owner,
            project,
            &gateway_auth::AuditQuery::default(),
            &gateway_auth::RequestContext::default(),
        )
        .await
        .unwrap()
        .all()
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.record.action == gateway_auth::AuditAction::Authenticate)
        .count();
    assert_eq!(
        refusals, 5,
        "the refused attempts beyond the limit write nothing"
    );
}

#[tokio::test]
async fn the_audit_export_streams_every_page() {
    use gateway_auth::Store;
    let app = app().await;
    let project = app.tokens.split('/').nth(3).unwrap().parse().unwrap();
    let ctx = gateway_auth::RequestContext::default();
    let written = 2_500;
    for _ in 0..written {
        let event = gateway_auth::AuditRecord::success(
            chrono::Utc::now(),
            project,
            None,
            gateway_auth::AuditAction::TokenRead,
            &ctx,
        );
        app.store.append_audit(&event).await.unwrap();
    }
    let request = Request::builder()
        .uri(format!("/v1/projects/{project}/audit-log/export"))
        .header("authorization", format!("Bearer {}", app.token))
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut body = response.into_body();
    let mut frames = 0;
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        frames += 1;
        text.extend_from_slice(frame.unwrap().data_ref().unwrap());
    }
    let sequences: Vec<i64> = String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["sequence"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(sequences.len() >= written, "{} events", sequences.len());
    assert!(sequences.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(
        frames >= 3,
        "one frame per page of 1,000 events, got {frames}"
    );
}
