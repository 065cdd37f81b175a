//! The upstream backend against real HTTP servers on loopback (small axum apps that answer as
//! told): retries on another server before the first byte, refusals that are the client's
//! answer, circuits that open, streams that break off, and embeddings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use gateway_backend::{
    Accuracy, Backend, BackendError, ChatTurn, EmbeddingInputs, GenerationEvent, GenerationRequest,
    Prompt,
};
use gateway_core::{ModelCard, ModelKind, ServicePlan};
use gateway_upstream::{Endpoint, Settings, TokenCounter, UpstreamBackend};

/// How a test server answers every request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// A streamed answer "Hello" with usage 7/1.
    Streams,
    /// 500.
    Fails,
    /// 400 naming the upstream's model.
    Refuses,
    /// One chunk, then the body ends without `[DONE]`.
    BreaksOff,
    /// Two vectors, the second first, without usage.
    Embeds,
}

const STREAM: &str = concat!(
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1}}\n\n",
    "data: [DONE]\n\n",
);

/// Starts a server behaving as told; returns its base URL and its request count.
async fn server(behaviour: Behaviour) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let answer = move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            match behaviour {
                Behaviour::Streams => STREAM.into_response(),
                Behaviour::Fails => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                Behaviour::Refuses => (
                    StatusCode::BAD_REQUEST,
                    r#"{"error":{"message":"upstream-name cannot take 'stop' here"}}"#,
                )
                    .into_response(),
                Behaviour::BreaksOff => STREAM[..STREAM.find("\n\n").unwrap() + 2].into_response(),
                Behaviour::Embeds => r#"{"data":[{"index":1,"embedding":[0.5,0.5]},{"index":0,"embedding":[1.0,0.0]}]}"#
                    .into_response(),
            }
        }
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(answer.clone()))
        .route("/v1/embeddings", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/v1"), calls)
}

fn backend(kind: ModelKind, urls: &[String], failures_to_open: u32) -> UpstreamBackend {
    let card = ModelCard {
        id: "catalog-id".into(),
        kind,
        plan: ServicePlan::Base,
        context_length: 1024,
        dimensions: None,
        quantization: "upstream".into(),
        license: "MIT".into(),
        source: String::new(),
    };
    let endpoints = urls
        .iter()
        .map(|url| Endpoint::new(url, "upstream-name", Some("sk-upstream".into())).unwrap())
        .collect();
    let settings = Settings {
        health_check_interval: Duration::ZERO,
        failures_to_open,
        open_for: Duration::from_secs(60),
        first_byte_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        ..Settings::default()
    };
    UpstreamBackend::new(card, endpoints, settings, TokenCounter::tiktoken().unwrap()).unwrap()
}

fn chat() -> GenerationRequest {
    GenerationRequest::new(Prompt::Chat(vec![ChatTurn::new("user", "Hi")]))
}

/// The generation's text and its last event.
async fn run(backend: &UpstreamBackend) -> Result<(String, GenerationEvent), BackendError> {
    let mut stream = backend.generate(chat()).await?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event {
            GenerationEvent::Token { text: piece, .. } => text.push_str(&piece),
            last @ (GenerationEvent::Done { .. } | GenerationEvent::Failed { .. }) => {
                return Ok((text, last))
            }
            _ => {}
        }
    }
    panic!("the stream ended without its last event")
}

fn figure(backend: &UpstreamBackend, name: &str) -> f64 {
    let figures = backend.figures();
    figures.iter().find(|f| f.name == name).unwrap().value
}

#[tokio::test]
async fn a_failing_server_is_retried_on_another_and_its_circuit_opens() {
    let (failing, failed_calls) = server(Behaviour::Fails).await;
    let (working, _) = server(Behaviour::Streams).await;
    let backend = backend(ModelKind::Chat, &[failing, working], 2);
    for _ in 0..6 {
        let (text, last) = run(&backend).await.unwrap();
        assert_eq!(text, "Hello");
        let GenerationEvent::Done { usage } = last else {
            panic!("{last:?}")
        };
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 1));
        assert_eq!(usage.accuracy, Accuracy::Exact);
    }
    assert_eq!(
        failed_calls.load(Ordering::SeqCst),
        2,
        "open after two failures"
    );
    assert_eq!(figure(&backend, "upstream_circuits_open"), 1.0);
    assert_eq!(figure(&backend, "upstream_retries"), 2.0);
    assert_eq!(figure(&backend, "upstream_servers_available"), 1.0);
}

#[tokio::test]
async fn a_refusal_is_the_clients_answer_in_the_catalogs_words_and_not_retried() {
    let (refusing, refused_calls) = server(Behaviour::Refuses).await;
    let (working, working_calls) = server(Behaviour::Streams).await;
    let backend = backend(ModelKind::Chat, &[refusing.clone(), refusing, working], 5);
    let mut refusals = 0;
    for _ in 0..3 {
        match run(&backend).await {
            Err(BackendError::InvalidInput { message }) => {
                assert_eq!(message, "catalog-id cannot take 'stop' here");
                refusals += 1;
            }
            Ok(_) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(refusals, refused_calls.load(Ordering::SeqCst));
    assert_eq!(
        refusals + working_calls.load(Ordering::SeqCst),
        3,
        "no retries"
    );
    assert_eq!(figure(&backend, "upstream_failures"), 0.0);
}

#[tokio::test]
async fn no_server_left_is_unavailable_and_a_broken_stream_fails_the_generation() {
    let (failing, _) = server(Behaviour::Fails).await;
    let all_fail = backend(ModelKind::Chat, &[failing], 5);
    assert!(matches!(
        run(&all_fail).await,
        Err(BackendError::Unavailable { .. })
    ));
    let (breaking, _) = server(Behaviour::BreaksOff).await;
    let breaks = backend(ModelKind::Chat, &[breaking], 5);
    let (text, last) = run(&breaks).await.unwrap();
    assert_eq!(text, "Hello");
    assert!(matches!(last, GenerationEvent::Failed { .. }), "{last:?}");
}

#[tokio::test]
async fn embeddings_come_back_in_input_order_with_estimated_usage() {
    let (embedding, _) = server(Behaviour::Embeds).await;
    let backend = backend(ModelKind::Embedding, &[embedding], 5);
    let inputs = EmbeddingInputs::Texts(vec!["first".into(), "second one".into()]);
    let embeddings = backend.embed(inputs).await.unwrap();
    assert_eq!(embeddings.vectors, vec![vec![1.0, 0.0], vec![0.5, 0.5]]);
    assert_eq!(embeddings.usage.accuracy, Accuracy::Estimated);
    assert_eq!(embeddings.usage.prompt_tokens, 3);
}
