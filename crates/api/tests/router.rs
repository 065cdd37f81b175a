//! The HTTP layer's behaviour in process: the real router over a [`ScriptedBackend`] and a
//! real SQLite key store, driven through `tower::ServiceExt::oneshot` — status codes, error
//! shapes, headers and stream framing, in milliseconds. The end-to-end tests under
//! `tests/python` drive the real binary and real models.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use gateway_api::{AppState, Limits, ModelRegistry, ServedModel};
use gateway_auth::{CreateToken, Management};
use gateway_backend::{Backend, BackendError};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use gateway_metering::PerMinute;
use support::accounting::{accounting, test_policy, GENEROUS};
use support::scripted_backend::{Script, ScriptedBackend};

/// A router serving `models`, its key store in `_dir`, and a key of a project.
struct App {
    router: Router,
    state: Arc<AppState>,
    project: uuid::Uuid,
    key: String,
    _dir: tempfile::TempDir,
}

async fn app(models: Vec<ScriptedBackend>) -> App {
    app_with_limits(models, GENEROUS).await
}

async fn app_with_limits(models: Vec<ScriptedBackend>, limits: PerMinute) -> App {
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
    let mut registry = ModelRegistry::default();
    for model in models {
        let id = model.card().id.clone();
        registry.insert(id, ServedModel::from_card(Arc::new(model)));
    }
    let accounting = accounting(&url, dir.path(), test_policy(limits))
        .await
        .unwrap();
    let limits = Limits {
        max_body_bytes: 1 << 20,
        request_timeout_secs: 10,
        body_read_timeout_secs: 10,
    };
    let state = Arc::new(AppState::new(registry, limits, store, accounting));
    App {
        router: gateway_api::router(Arc::clone(&state)),
        state,
        project: project.id,
        key: created.content.expose().to_owned(),
        _dir: dir,
    }
}

/// One answered request: status, headers and the body as bytes.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// The `data:` payloads of a server-sent event stream.
    fn events(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }
}

impl App {
    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(path, Some(&self.key), body).await
    }

    async fn send(&self, path: &str, key: Option<&str>, body: Value) -> Answer {
        let mut request = Request::post(path).header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.call(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn get(&self, path: &str) -> Answer {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {}", self.key))
            .body(Body::empty())
            .unwrap();
        self.call(request).await
    }

    async fn call(&self, request: Request<Body>) -> Answer {
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

fn hello() -> ScriptedBackend {
    ScriptedBackend::chat("scripted", Script::Answer(vec!["Hel", "lo", " world"]))
}

fn chat(extra: Value) -> Value {
    let mut body = json!({
        "model": "scripted",
        "messages": [{"role": "user", "content": "say hello to me"}],
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

fn assert_error(answer: &Answer, status: u16, param: Option<&str>) -> Value {
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

#[tokio::test]
async fn a_whole_chat_answer_carries_the_backends_usage() {
    let app = app(vec![hello()]).await;
    let answer = app
        .post("/v1/chat/completions", chat(json!({"n": 2})))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(answer.headers.contains_key("x-request-id"));
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    for (index, choice) in body["choices"].as_array().unwrap().iter().enumerate() {
        assert_eq!(choice["index"], index);
        assert_eq!(choice["message"]["content"], "Hello world");
        assert_eq!(choice["finish_reason"], "stop");
    }
    assert_eq!(
        body["usage"]["prompt_tokens"], 4,
        "the prompt is counted once"
    );
    assert_eq!(body["usage"]["completion_tokens"], 6);
    assert_eq!(body["usage"]["total_tokens"], 10);
}

#[tokio::test]
async fn a_stream_is_framed_as_the_sdks_read_it() {
    let app = app(vec![hello()]).await;
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let answer = app.post("/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    let events = answer.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello world");
    let (usage_chunk, content_chunks) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 3);
    assert!(content_chunks.iter().all(|c| c["usage"].is_null()));
    let last = content_chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn a_failure_in_the_middle_of_a_stream_is_an_error_event_and_no_done() {
    let failing = ScriptedBackend::chat("scripted", Script::FailAfter(vec!["Par", "tial"]));
    let app = app(vec![failing]).await;
    let answer = app
        .post("/v1/chat/completions", chat(json!({"stream": true})))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let events = answer.events();
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{last}");
    let request_id = answer.headers["x-request-id"].to_str().unwrap();
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.contains(request_id), "{message}");
    assert!(
        !message.contains("on purpose"),
        "internal details stay in the log"
    );
    let metrics = app.state.metrics.render();
    assert!(
        metrics.contains(r#"gateway_tokens_total{model="scripted",kind="completion"} 2"#),
        "the tokens generated before the failure are metered: {metrics}"
    );
}

#[tokio::test]
async fn a_failure_before_any_output_of_a_whole_answer_is_a_masked_500() {
    let failing = ScriptedBackend::chat("scripted", Script::FailAfter(vec![]));
    let app = app(vec![failing]).await;
    let answer = app.post("/v1/chat/completions", chat(json!({}))).await;
    let error = assert_error(&answer, 500, None);
    assert!(error["message"].as_str().unwrap().contains("request id"));
}

#[tokio::test]
async fn an_overloaded_backend_is_a_503_with_retry_after() {
    let busy = ScriptedBackend::chat("scripted", Script::Refuse(BackendError::Overloaded));
    let app = app(vec![busy]).await;
    let answer = app.post("/v1/chat/completions", chat(json!({}))).await;
    assert_error(&answer, 503, None);
    assert_eq!(answer.headers["retry-after"], "1");
}

#[tokio::test]
async fn each_refused_parameter_is_named() {
    let app = app(vec![hello()]).await;
    let cases = [
        (json!({"n": 0}), "n"),
        (json!({"n": 9}), "n"),
        (json!({"temperature": 3}), "temperature"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools",
        ),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (json!({"logit_bias": {"1": 5}}), "logit_bias"),
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}),
            "messages[0].role",
        ),
    ];
    for (extra, param) in cases {
        let answer = app.post("/v1/chat/completions", chat(extra.clone())).await;
        assert_error(&answer, 400, Some(param));
    }
}

#[tokio::test]
async fn a_prompt_over_the_context_names_the_prompt_field() {
    let app = app(vec![hello()]).await;
    let answer = app
        .post("/v1/chat/completions", chat(json!({"max_tokens": 500})))
        .await;
    let error = assert_error(&answer, 400, Some("messages"));
    assert_eq!(error["code"], "context_length_exceeded");
    let body = json!({"model": "scripted", "prompt": "hi", "max_tokens": 500});
    let answer = app.post("/v1/completions", body).await;
    let error = assert_error(&answer, 400, Some("prompt"));
    assert_eq!(error["code"], "context_length_exceeded");
}

#[tokio::test]
async fn what_a_backend_cannot_do_is_refused_before_it_is_called() {
    let app = app(vec![
        hello().chat_only(),
        ScriptedBackend::embedding("vectors", 4),
    ])
    .await;
    let body = json!({"model": "scripted", "prompt": "hi"});
    let answer = app.post("/v1/completions", body).await;
    let error = assert_error(&answer, 400, Some("model"));
    assert!(error["message"].as_str().unwrap().contains("completions"));
    let body = json!({"model": "scripted", "input": "hi"});
    assert_error(&app.post("/v1/embeddings", body).await, 400, Some("model"));
    let body = json!({"model": "vectors", "messages": [{"role": "user", "content": "hi"}]});
    assert_error(
        &app.post("/v1/chat/completions", body).await,
        400,
        Some("model"),
    );
    let body = json!({"model": "scripted", "prompt": "hi"});
    assert_error(&app.post("/v1/tokenize", body).await, 400, Some("model"));
}

#[tokio::test]
async fn completion_choices_are_prompt_major_and_usage_sums_the_prompts() {
    let app = app(vec![hello()]).await;
    let body =
        json!({"model": "scripted", "prompt": ["one two", "three"], "n": 2, "max_tokens": 2});
    let answer = app.post("/v1/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (index, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], index);
        assert_eq!(choice["text"], "Hello");
        assert_eq!(choice["finish_reason"], "length");
    }
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    assert_eq!(body["usage"]["completion_tokens"], 8);
}

#[tokio::test]
async fn generations_started_before_a_later_prompt_is_refused_are_metered() {
    let app = app(vec![hello()]).await;
    let long = "word ".repeat(70);
    let body = json!({"model": "scripted", "prompt": ["one two", long], "max_tokens": 2});
    let answer = app.post("/v1/completions", body).await;
    let error = assert_error(&answer, 400, Some("prompt"));
    assert_eq!(error["code"], "context_length_exceeded");
    let metrics = app.state.metrics.render();
    assert!(
        metrics.contains(r#"gateway_tokens_total{model="scripted",kind="prompt"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn keys_and_models_are_checked_first() {
    let app = app(vec![hello()]).await;
    let answer = app
        .send("/v1/chat/completions", None, chat(json!({})))
        .await;
    assert_eq!(assert_error(&answer, 401, None)["code"], "invalid_api_key");
    let answer = app
        .post("/v1/chat/completions", chat(json!({"model": "nope"})))
        .await;
    assert_eq!(
        assert_error(&answer, 404, Some("model"))["code"],
        "model_not_found"
    );
    let answer = app.post("/v1/chat/completions", json!({"model": 5})).await;
    assert_error(&answer, 400, Some("model"));
}

#[tokio::test]
async fn embeddings_carry_the_backends_usage_and_dimensions() {
    let app = app(vec![ScriptedBackend::embedding("vectors", 4)]).await;
    let body = json!({"model": "vectors", "input": ["a b", "c"]});
    let answer = app.post("/v1/embeddings", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["data"][0]["embedding"], json!([3.0, 0.0, 0.0, 0.0]));
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    let body = json!({"model": "vectors", "input": "a", "dimensions": 2});
    assert_error(
        &app.post("/v1/embeddings", body).await,
        400,
        Some("dimensions"),
    );
    let models = app.get("/v1/models/vectors").await.json();
    assert_eq!(models["dimensions"], 4);
}

#[tokio::test]
async fn request_ids_are_kept_only_when_short_and_plain() {
    let app = app(vec![hello()]).await;
    let with_id = |id: &str| {
        Request::get("/healthz")
            .header("x-request-id", id)
            .body(Body::empty())
            .unwrap()
    };
    let kept = app.call(with_id("client-id-1")).await;
    assert_eq!(kept.headers["x-request-id"], "client-id-1");
    for refused in ["x".repeat(129), "has space".to_owned()] {
        let answer = app.call(with_id(&refused)).await;
        let id = answer.headers["x-request-id"].to_str().unwrap();
        assert!(id.starts_with("req_"), "{id}");
    }
}

#[tokio::test]
async fn backend_figures_reach_the_metrics() {
    let app = app(vec![hello()]).await;
    app.post("/v1/chat/completions", chat(json!({}))).await;
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"gateway_engine_scripted_generations{model="scripted"} 1"#),
        "{metrics}"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_goes_away_mid_stream_is_still_metered() {
    let slow = hello().pausing(std::time::Duration::from_millis(20));
    let app = app(vec![slow]).await;
    let request = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", app.key))
        .body(Body::from(chat(json!({"stream": true})).to_string()))
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    let metrics = app.state.metrics.render();
    assert!(
        metrics.contains(r#"gateway_tokens_total{model="scripted",kind="prompt"} 4"#),
        "{metrics}"
    );
}

/// The rate-limit headers of an answer: (limit, remaining, reset) for requests and tokens.
fn rate_headers(answer: &Answer) -> [(String, String, String); 2] {
    ["requests", "tokens"].map(|budget| {
        let header = |what: &str| {
            let name = format!("x-ratelimit-{what}-{budget}");
            let value = answer.headers.get(&name);
            value
                .unwrap_or_else(|| panic!("{name} missing on {}", answer.status))
                .to_str()
                .unwrap()
                .to_owned()
        };
        (header("limit"), header("remaining"), header("reset"))
    })
}

/// The usage records of the app's project, once the journal is flushed.
async fn records(app: &App) -> Vec<gateway_metering::UsageRecord> {
    let accounting = &app.state.accounting;
    accounting.journal.flush().await.unwrap();
    let query = gateway_metering::UsageQuery {
        project_id: app.project,
        from: None,
        to: None,
    };
    accounting.usage.records(&query).await.unwrap()
}

const THREE_A_MINUTE: PerMinute = PerMinute {
    requests: 3,
    tokens: 1_000_000,
};

#[tokio::test]
async fn every_answer_to_a_key_carries_the_rate_limit_headers() {
    let app = app_with_limits(vec![hello()], THREE_A_MINUTE).await;
    let ok = app.post("/v1/chat/completions", chat(json!({}))).await;
    assert_eq!(ok.status, StatusCode::OK);
    let [(limit, remaining, reset), (token_limit, _, _)] = rate_headers(&ok);
    assert_eq!((limit.as_str(), remaining.as_str()), ("3", "2"));
    assert!(reset.ends_with('s'), "{reset}");
    assert_eq!(token_limit, "1000000");
    let bad = app
        .post("/v1/chat/completions", chat(json!({"temperature": 9})))
        .await;
    assert_error(&bad, 400, Some("temperature"));
    assert_eq!(
        rate_headers(&bad)[0].1,
        "2",
        "a refused request takes nothing"
    );
    let unknown = app
        .post(
            "/v1/chat/completions",
            json!({"model": "nope", "messages": []}),
        )
        .await;
    assert_error(&unknown, 404, Some("model"));
    rate_headers(&unknown);
    let streamed = app
        .post("/v1/chat/completions", chat(json!({"stream": true})))
        .await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert_eq!(rate_headers(&streamed)[0].1, "1");
    let unauthenticated = app
        .send("/v1/chat/completions", None, chat(json!({})))
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert!(!unauthenticated
        .headers
        .contains_key("x-ratelimit-limit-requests"));
}

#[tokio::test]
async fn over_the_request_budget_is_429_with_retry_after() {
    let app = app_with_limits(vec![hello()], THREE_A_MINUTE).await;
    for remaining in ["2", "1", "0"] {
        let answer = app.post("/v1/chat/completions", chat(json!({}))).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(rate_headers(&answer)[0].1, remaining);
    }
    let refused = app.post("/v1/chat/completions", chat(json!({}))).await;
    let error = assert_error(&refused, 429, None);
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "requests");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&retry),
        "one request comes back in 20 s: {retry}"
    );
    assert!(refused.headers.contains_key("retry-after-ms"));
    assert_eq!(rate_headers(&refused)[0].1, "0");
    assert_eq!(
        records(&app).await.len(),
        3,
        "a refused request leaves no record"
    );
}

#[tokio::test]
async fn over_the_token_budget_is_429_naming_tokens() {
    let limits = PerMinute {
        requests: 100,
        tokens: 100,
    };
    let app = app_with_limits(vec![hello()], limits).await;
    let first = app
        .post("/v1/chat/completions", chat(json!({"max_tokens": 10})))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let tokens_left: u64 = rate_headers(&first)[1].1.parse().unwrap();
    assert!(
        tokens_left < 110 - 50,
        "it reserved 5 x max_tokens: {tokens_left}"
    );
    let second = app
        .post("/v1/chat/completions", chat(json!({"max_tokens": 12})))
        .await;
    let error = assert_error(&second, 429, None);
    assert_eq!(error["type"], "tokens");
}

#[tokio::test]
async fn each_request_that_reached_a_model_leaves_one_exact_record() {
    let app = app(vec![hello(), ScriptedBackend::embedding("vectors", 4)]).await;
    let answer = app
        .post("/v1/chat/completions", chat(json!({"n": 2})))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let cost = answer.headers[gateway_api::COST_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    let embedded = app
        .post(
            "/v1/embeddings",
            json!({"model": "vectors", "input": ["a b", "c"]}),
        )
        .await;
    assert_eq!(embedded.status, StatusCode::OK);
    let records = records(&app).await;
    assert_eq!(records.len(), 2);
    let chat = records.iter().find(|r| r.model == "scripted").unwrap();
    assert_eq!((chat.input_tokens, chat.output_tokens), (4, 6));
    assert_eq!(chat.outcome, gateway_metering::Outcome::Complete);
    assert_eq!(
        chat.cost.to_string(),
        "0.0000057",
        "4 x 0.45 + 6 x 0.65 per million"
    );
    assert_eq!(chat.cost.to_string(), cost);
    let embedding = records.iter().find(|r| r.model == "vectors").unwrap();
    assert_eq!(
        embedding.output_tokens, 0,
        "embeddings bill input tokens only"
    );
    assert_eq!(
        embedding.input_tokens,
        embedded.json()["usage"]["prompt_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn a_stream_that_fails_midway_is_recorded_as_failed() {
    let failing = ScriptedBackend::chat("scripted", Script::FailAfter(vec!["Par", "tial"]));
    let app = app(vec![failing]).await;
    let answer = app
        .post("/v1/chat/completions", chat(json!({"stream": true})))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let records = records(&app).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, gateway_metering::Outcome::Failed);
    assert_eq!(records[0].output_tokens, 2);
}
