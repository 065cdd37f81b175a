//! The HTTP layer's behaviour in process: the real router over a [`ScriptedBackend`] and a
//! real SQLite key store, driven through `tower::ServiceExt::oneshot` — status codes, error
//! shapes, headers and stream framing, in milliseconds. The end-to-end tests under
//! `tests/python` drive the real binary and real models.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gateway_backend::BackendError;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use support::app::{app, assert_error, chat, hello};
use support::scripted_backend::{Script, ScriptedBackend};

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
    let error = assert_error(&answer, 503, None);
    assert_eq!(answer.headers["retry-after"], "1");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("queue is full") && message.contains("Retry-After"),
        "a 503 says what happened and when to retry: {message}"
    );
}

#[tokio::test]
async fn an_unavailable_model_says_so_without_its_reason() {
    let reason = "worker thread stopped";
    let stopped = ScriptedBackend::chat(
        "scripted",
        Script::Refuse(BackendError::Unavailable {
            reason: reason.to_owned(),
        }),
    );
    let app = app(vec![stopped]).await;
    let answer = app.post("/v1/chat/completions", chat(json!({}))).await;
    let error = assert_error(&answer, 503, None);
    assert_eq!(answer.headers["retry-after"], "1");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("unavailable right now"), "{message}");
    assert!(!message.contains(reason), "{message}");
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
        (json!({"guided_choice": ["a", "b"]}), "guided_choice"),
        (json!({"frequency": 1}), "frequency"),
        (
            json!({"messages": [{"role": "user", "content": "x", "mood": "y"}]}),
            "messages[0].mood",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (json!({"logit_bias": {"1": 5}}), "logit_bias"),
        (json!({"min_p": 1.5}), "min_p"),
        (json!({"repetition_penalty": 0}), "repetition_penalty"),
        (json!({"repetition_penalty": 2.5}), "repetition_penalty"),
        (json!({"stop_token_ids": vec![1; 65]}), "stop_token_ids"),
        (json!({"max_tokens": 4, "min_tokens": 5}), "min_tokens"),
        (json!({"ignore_eos": "yes"}), "ignore_eos"),
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
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
async fn a_body_parsed_off_the_worker_is_answered_like_a_small_one() {
    let app = app(vec![hello()]).await;
    let filler = "x".repeat(gateway_api::PARSE_ON_WORKER_BYTES);
    let large = chat(json!({"user": filler}));
    let answer = app.post("/v1/chat/completions", large).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "Hello world"
    );
    let wrong_type = chat(json!({"user": filler, "temperature": "hot"}));
    let answer = app.post("/v1/chat/completions", wrong_type).await;
    assert_error(&answer, 400, Some("temperature"));
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
async fn a_database_that_failed_its_write_check_is_not_ready() {
    let app = app(vec![hello()]).await;
    assert!(
        app.state.set_database_writable(false),
        "writable until a check fails"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["database_writable"], false);
    assert_eq!(ready.json()["models_ready"], true);
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    app.state.set_database_writable(true);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
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
