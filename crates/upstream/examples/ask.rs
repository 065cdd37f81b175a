//! Asks one chat question of a model on an OpenAI-compatible server through the upstream
//! backend alone (no HTTP layer of ours), printing the answer as its chunks arrive and then
//! the usage, as the server reported it or as estimated.
//!
//! Usage: `ask BASE_URL MODEL QUESTION` with the server's key, if it needs one, in
//! `UPSTREAM_API_KEY`; e.g. `ask http://127.0.0.1:8080/v1 smollm2-135m-instruct "Hello!"`
//! against a running `gateway serve`.

use std::io::Write;

use gateway_backend::{Backend, ChatTurn, GenerationEvent, GenerationRequest, Prompt};
use gateway_core::{ModelCard, ModelKind, ServicePlan};
use gateway_upstream::{Endpoint, Settings, TokenCounter, UpstreamBackend};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(base_url), Some(model), Some(question)) = (args.next(), args.next(), args.next())
    else {
        return Err("usage: ask BASE_URL MODEL QUESTION".into());
    };
    let key = std::env::var("UPSTREAM_API_KEY").ok();
    let card = ModelCard {
        id: model.clone(),
        kind: ModelKind::Chat,
        plan: ServicePlan::Base,
        context_length: 2048,
        dimensions: None,
        quantization: "upstream".into(),
        license: "unknown".into(),
        source: String::new(),
    };
    let endpoint = Endpoint::new(&base_url, model, key)?;
    let settings = Settings {
        health_check_interval: std::time::Duration::ZERO,
        ..Settings::default()
    };
    let backend = UpstreamBackend::new(card, vec![endpoint], settings, TokenCounter::tiktoken()?)?;
    let mut request = GenerationRequest::new(Prompt::Chat(vec![ChatTurn::new("user", question)]));
    request.max_tokens = Some(64);
    let mut stream = backend.generate(request).await?;
    while let Some(event) = stream.next().await {
        match event {
            GenerationEvent::Token { text, .. } => print!("{text}"),
            GenerationEvent::Finished { reason, .. } => println!("\n[{reason:?}]"),
            GenerationEvent::Failed { error, .. } => return Err(error.into()),
            GenerationEvent::Prompt { .. } | GenerationEvent::Done { .. } => {}
        }
        std::io::stdout().flush()?;
    }
    let usage = stream.usage();
    println!(
        "prompt tokens {}, completion tokens {} ({:?})",
        usage.prompt_tokens, usage.completion_tokens, usage.accuracy
    );
    Ok(())
}
