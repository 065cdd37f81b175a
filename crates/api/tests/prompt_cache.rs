//! Prompt tokens a backend took from its prompt cache, through the router in process: in the
//! `usage` of whole chat and completion answers, of the streamed usage chunk and of the
//! Responses API (whole and streamed), in the usage record (billed at the cached input price)
//! and in the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};

use support::app::{app, chat, hello, App};

/// A chat model whose backend reports 2 of each prompt's tokens as cached.
async fn caching_app() -> App {
    app(vec![hello().caching(2)]).await
}

/// The `data:` payload of the Responses stream's event `kind`.
fn response_event(text: &str, kind: &str) -> Value {
    let data = text
        .split("\n\n")
        .find(|event| event.starts_with(&format!("event: {kind}\n")))
        .and_then(|event| event.lines().find_map(|line| line.strip_prefix("data: ")))
        .unwrap_or_else(|| panic!("no {kind} event in {text}"));
    serde_json::from_str(data).unwrap()
}

#[tokio::test]
async fn whole_answers_say_how_many_prompt_tokens_were_cached() {
    let app = caching_app().await;
    let answer = app.post("/v1/chat/completions", chat(json!({}))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let usage = &answer.json()["usage"];
    assert_eq!(usage["prompt_tokens"], 4, "{usage}");
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], 2,
        "{usage}"
    );
    assert_eq!(
        usage["total_tokens"], 7,
        "cached tokens count as prompt tokens"
    );

    let body = json!({"model": "scripted", "prompt": "one two three", "max_tokens": 3});
    let answer = app.post("/v1/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let usage = &answer.json()["usage"];
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], 2,
        "{usage}"
    );

    let uncached = support::app::app(vec![hello()]).await;
    let answer = uncached.post("/v1/chat/completions", chat(json!({}))).await;
    let usage = &answer.json()["usage"];
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], 0,
        "{usage}"
    );
}

#[tokio::test]
async fn the_streamed_usage_chunk_says_how_many_prompt_tokens_were_cached() {
    let app = caching_app().await;
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let answer = app.post("/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let usage = answer
        .events()
        .iter()
        .filter(|event| *event != "[DONE]")
        .map(|event| serde_json::from_str::<Value>(event).unwrap())
        .find(|chunk| chunk["usage"].is_object())
        .expect("a usage chunk")["usage"]
        .clone();
    assert_eq!(usage["prompt_tokens"], 4, "{usage}");
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], 2,
        "{usage}"
    );
}

#[tokio::test]
async fn the_responses_api_says_how_many_input_tokens_were_cached() {
    let app = caching_app().await;
    let body = json!({"model": "scripted", "input": "say hello to me"});
    let answer = app.post("/v1/responses", body.clone()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let usage = &answer.json()["usage"];
    assert_eq!(usage["input_tokens"], 4, "{usage}");
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 2, "{usage}");

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let answer = app.post("/v1/responses", streamed).await;
    assert_eq!(answer.status, StatusCode::OK);
    let completed = response_event(&answer.text(), "response.completed");
    let usage = &completed["response"]["usage"];
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 2, "{usage}");
}

#[tokio::test]
async fn cached_tokens_are_recorded_billed_at_their_price_and_counted() {
    let app = caching_app().await;
    let answer = app.post("/v1/chat/completions", chat(json!({}))).await;
    assert_eq!(answer.status, StatusCode::OK);
    let cost = answer.headers[gateway_api::COST_HEADER].to_str().unwrap();
    let records = app.records().await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(
        (record.input_tokens, record.cached_input_tokens),
        (4, 2),
        "{record:?}"
    );
    assert_eq!(record.cached_input_price.to_string(), "0.045");
    assert_eq!(
        record.cost.to_string(),
        "0.00000294",
        "2 x 0.45 + 2 x 0.045 + 3 x 0.65 per million"
    );
    assert_eq!(record.cost.to_string(), cost);
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"gateway_cached_prompt_tokens_total{model="scripted",kind="prompt"} 2"#),
        "{metrics}"
    );
}
