//! Serves the gateway's real router over scripted backends (see
//! `tests/support/scripted_backend.rs`) on a loopback port: the HTTP layer used as a library
//! with backends written outside the engine, and the server the end-to-end test of failures
//! in the middle of a stream drives with the official `openai` SDK
//! (`tests/python/test_stream_failure_e2e.py`).
//!
//! It serves `scripted` (answers chat turns with "Hello world", takes no text prompts),
//! `failing` (releases two pieces, then fails), `busy` (always overloaded) and `vectors`
//! (4-dimensional embeddings), keeps its keys and usage in a temporary SQLite file, and
//! prints one JSON line, `{"base_url": …, "api_key": …}`, once it listens. It stops on Ctrl-C
//! or when its standard input closes.
//!
//! Usage: `scripted_server [ADDR]` (default `127.0.0.1:0`, a free port).

#[path = "../tests/support/accounting.rs"]
mod accounting;
#[path = "../tests/support/scripted_backend.rs"]
mod scripted_backend;

use std::sync::Arc;
use std::time::Duration;

use accounting::{accounting, test_policy, GENEROUS};
use gateway_api::{AppState, ConnectionLimits, Limits, ModelRegistry, ServedModel};
use gateway_auth::{CreateToken, Management};
use scripted_backend::{Script, ScriptedBackend};
use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("gateway.db").display()
    );
    let store = gateway_auth::store::open(&url).await?;
    let management = Management::new(Arc::clone(&store));
    let project = management.create_project("scripted").await?;
    let request = CreateToken {
        name: "scripted".into(),
        ..CreateToken::default()
    };
    let key = management.create_key(project.id, "eu01", request).await?;

    let pause = Duration::from_millis(50);
    let mut models = ModelRegistry::default();
    let answer = Script::Answer(vec!["Hel", "lo", " world"]);
    let scripted = ScriptedBackend::chat("scripted", answer).chat_only();
    let serve = |backend: ScriptedBackend| ServedModel::from_card(Arc::new(backend));
    models.insert("scripted", serve(scripted));
    let overloaded = Script::Refuse(gateway_backend::BackendError::Overloaded);
    models.insert("busy", serve(ScriptedBackend::chat("busy", overloaded)));
    let failing = ScriptedBackend::chat("failing", Script::FailAfter(vec!["Par", "tial"]));
    models.insert("failing", serve(failing.pausing(pause)));
    models.insert("vectors", serve(ScriptedBackend::embedding("vectors", 4)));
    let limits = Limits {
        max_body_bytes: 1 << 20,
        request_timeout_secs: 30,
        body_read_timeout_secs: 10,
        failed_authentications_per_minute: 30,
        unknown_fields: gateway_core::openai::UnknownFields::Refuse,
    };
    let accounting = accounting(&url, dir.path(), test_policy(GENEROUS)).await?;
    let state = Arc::new(AppState::new(models, limits, store, accounting));

    let listener = tokio::net::TcpListener::bind(&address).await?;
    let local = listener.local_addr()?;
    let ready = serde_json::json!({
        "base_url": format!("http://{local}/v1"),
        "api_key": key.content.expose(),
    });
    println!("{ready}");
    let router = gateway_api::router(state);
    gateway_api::serve(listener, router, ConnectionLimits::default(), stopped()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or when standard input closes (the test that started us is gone).
async fn stopped() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    let closed = async move { while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {} };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = closed => {}
    }
}
