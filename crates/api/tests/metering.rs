//! Metering through the router in process: the `x-ratelimit-*` headers on every answer to a
//! key, 429 over a request or token budget, and the usage record each request that reached a
//! model leaves, with its exact cost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gateway_auth::Role;
use gateway_metering::PerMinute;
use serde_json::json;

use support::app::{app, app_with_limits, assert_error, chat, hello, Answer};
use support::scripted_backend::{Script, ScriptedBackend};

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

const THREE_A_MINUTE: PerMinute = PerMinute {
    requests: 3,
    tokens: 1_000_000,
};

#[tokio::test]
async fn the_limits_view_shows_what_is_left_of_each_budget() {
    let app = app_with_limits(vec![hello()], THREE_A_MINUTE).await;
    let management = &app.state.management;
    management
        .add_principal(app.project, "viewer", "viewer@example.com", Role::Viewer)
        .await
        .unwrap();
    let token = management
        .create_management_token("viewer", None)
        .await
        .unwrap();
    let ok = app.post("/v1/chat/completions", chat(json!({}))).await;
    assert_eq!(ok.status, StatusCode::OK);
    let request = |project: uuid::Uuid| {
        Request::get(format!("/v1/projects/{project}/limits"))
            .header(
                "authorization",
                format!("Bearer {}", token.content.expose()),
            )
            .body(Body::empty())
            .unwrap()
    };
    let answer = app.call(request(app.project)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let view = answer.json();
    assert_eq!(view["available"], true);
    let limits = view["limits"].as_array().unwrap();
    assert_eq!(limits.len(), 1, "{view}");
    let line = &limits[0];
    assert_eq!(line["model"], "scripted");
    assert_eq!(line["plan"], "base");
    assert_eq!(line["requestsPerMinute"], 3);
    assert_eq!(
        line["requestsRemaining"].to_string(),
        rate_headers(&ok)[0].1,
        "the view and the headers of the last answer agree"
    );
    assert!(line["requestsResetMs"].as_u64().unwrap() > 0);
    assert_eq!(line["tokensPerMinute"], 1_000_000);
    let elsewhere = app.call(request(uuid::Uuid::new_v4())).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
}

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
        app.records().await.len(),
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
    let records = app.records().await;
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
    let records = app.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, gateway_metering::Outcome::Failed);
    assert_eq!(records[0].output_tokens, 2);
}
