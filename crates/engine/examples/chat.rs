//! Answers one chat turn with an imported chat model, using `gateway-engine` as a library the
//! way another Rust service would: load ONNX Runtime, open the model directory, call
//! [`Backend::generate`] with greedy sampling and print the text as it streams in. The finish
//! reason and the usage go to stderr as one JSON line.
//!
//! Usage: `ORT_DYLIB_PATH=…/libonnxruntime.so chat MODEL_DIR MESSAGE [MAX_TOKENS]` (default
//! 32 tokens), e.g. `chat data/models/smollm2-135m-instruct "What is the capital of France?"`.

use std::io::Write;
use std::path::PathBuf;

use gateway_backend::{
    Backend, ChatTurn, GenerationEvent, GenerationRequest, Prompt, SamplingParams,
};
use gateway_engine::{GeneratorConfig, OnnxGenerator, OnnxRuntime};
use serde_json::json;

/// Tokens generated when no third argument is given.
const DEFAULT_MAX_TOKENS: usize = 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: chat MODEL_DIR MESSAGE [MAX_TOKENS]";
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or(usage)?);
    let message = args.next().ok_or(usage)?;
    let max_tokens = match args.next() {
        Some(text) => text.parse()?,
        None => DEFAULT_MAX_TOKENS,
    };
    let library = std::env::var_os("ORT_DYLIB_PATH")
        .ok_or("set ORT_DYLIB_PATH to the ONNX Runtime library (libonnxruntime.so)")?;

    let runtime = OnnxRuntime::load(library.as_ref())?;
    let model = OnnxGenerator::load(&runtime, &dir, GeneratorConfig::default())?;
    let request = GenerationRequest {
        max_tokens: Some(max_tokens),
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ..GenerationRequest::new(Prompt::Chat(vec![ChatTurn::new("user", message)]))
    };
    // The engine tokenizes on tokio's blocking pool, so it needs a runtime that has one.
    tokio::runtime::Builder::new_multi_thread()
        .build()?
        .block_on(stream_answer(&model, request))
}

/// Runs `request` on `model`, writing the text to stdout as it arrives and the finish reason
/// and usage to stderr at the end.
async fn stream_answer(
    model: &dyn Backend,
    request: GenerationRequest,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut stream = model.generate(request).await?;
    let mut stdout = std::io::stdout();
    let mut finish_reason = None;
    while let Some(event) = stream.next().await {
        match event {
            GenerationEvent::Token { text, .. } => {
                stdout.write_all(text.as_bytes())?;
                stdout.flush()?;
            }
            GenerationEvent::Finished { reason, tail, .. } => {
                writeln!(stdout, "{tail}")?;
                finish_reason = Some(format!("{reason:?}").to_lowercase());
            }
            GenerationEvent::Done { usage } => {
                let summary = json!({"finish_reason": finish_reason, "usage": usage});
                eprintln!("{summary}");
            }
            GenerationEvent::Failed { error, .. } => return Err(error.into()),
            // The request asks for no echo.
            GenerationEvent::Prompt { .. } => {}
        }
    }
    Ok(())
}
