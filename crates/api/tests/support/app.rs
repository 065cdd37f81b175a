//! The router tests' harness: the real router over scripted backends, a real SQLite key
//! store and metering, a key of one project, and requests sent through
//! `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use gateway_api::{AppState, Fairness, Limits, ModelRegistry, ServedModel};
use gateway_auth::{CreateToken, Management};
use gateway_backend::Backend;
use gateway_metering::PerMinute;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::accounting::{accounting, test_policy, GENEROUS};
use super::scripted_backend::{Script, ScriptedBackend};

/// A router serving `models`, its key store in `_dir`, and a key of a project.
pub struct App {
    pub router: Router,
    pub state: Arc<AppState>,
    pub project: uuid::Uuid,
    pub key: String,
    pub _dir: tempfile::TempDir,
}

pub async fn app(models: Vec<ScriptedBackend>) -> App {
    app_with_limits(models, GENEROUS).await
}

pub async fn app_with_limits(models: Vec<ScriptedBackend>, limits: PerMinute) -> App {
    app_with(registry_of(models), limits).await
}

/// A registry serving each scripted backend under its card's id.
pub fn registry_of(models: Vec<ScriptedBackend>) -> ModelRegistry {
    let mut registry = ModelRegistry::default();
    for model in models {
        let id = model.card().id.clone();
        registry.insert(id, ServedModel::from_card(Arc::new(model)));
    }
    registry
}

/// A router serving `registry` with every plan limited to `limits`.
pub async fn app_with(registry: ModelRegistry, limits: PerMinute) -> App {
    app_with_fairness(registry, limits, Fairness::default()).await
}

/// A router serving `registry` with every plan limited to `limits` and `fairness`.
pub async fn app_with_fairness(
    registry: ModelRegistry,
    limits: PerMinute,
    fairness: Fairness,
) -> App {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("gateway.db").display()
    );
    let store = gateway_auth::store::open(&url).await.unwrap();
    let management = Management::new(Arc::clone(&store));
    let project = management.create_project("router-tests").await.unwrap();
    let request = CreateToken {
        name: "tests".into(),
        ..CreateToken::default()
    };
    let created = management
        .create_key(project.id, "eu01", request)
        .await
        .unwrap();
    let accounting = accounting(&url, dir.path(), test_policy(limits))
        .await
        .unwrap();
    let limits = Limits {
        max_body_bytes: 1 << 20,
        request_timeout_secs: 10,
        body_read_timeout_secs: 10,
        failed_authentications_per_minute: 5,
        unknown_fields: gateway_core::openai::UnknownFields::Refuse,
    };
    let state =
        Arc::new(AppState::new(registry, limits, store, accounting).with_fairness(fairness));
    App {
        router: gateway_api::router(Arc::clone(&state)),
        state,
        project: project.id,
        key: created.content.expose().to_owned(),
        _dir: dir,
    }
}

/// One answered request: status, headers and the body as bytes.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// The `data:` payloads of a server-sent event stream.
    pub fn events(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }
}

impl App {
    /// The usage records of the app's project, once the journal is flushed.
    pub async fn records(&self) -> Vec<gateway_metering::UsageRecord> {
        let accounting = &self.state.accounting;
        accounting.journal.flush().await.unwrap();
        let query = gateway_metering::UsageQuery {
            project_id: self.project,
            from: None,
            to: None,
        };
        accounting.usage.records(&query).await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(path, Some(&self.key), body).await
    }

    pub async fn send(&self, path: &str, key: Option<&str>, body: Value) -> Answer {
        let mut request = Request::post(path).header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.call(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {}", self.key))
            .body(Body::empty())
            .unwrap();
        self.call(request).await
    }

    pub async fn call(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }
}

pub fn hello() -> ScriptedBackend {
    ScriptedBackend::chat("scripted", Script::Answer(vec!["Hel", "lo", " world"]))
}

pub fn chat(extra: Value) -> Value {
    let mut body = json!({
        "model": "scripted",
        "messages": [{"role": "user", "content": "say hello to me"}],
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

pub fn assert_error(answer: &Answer, status: u16, param: Option<&str>) -> Value {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.text());
    let body = answer.json();
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    if let Some(param) = param {
        assert_eq!(error["param"], param, "{body}");
    }
    error.clone()
}
