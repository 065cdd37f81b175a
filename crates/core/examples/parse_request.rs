//! Parses an OpenAI chat completion request, using `gateway-core` as a library the way another
//! Rust service would: [`from_json_slice`] either gives the typed request, summarised here as
//! one JSON line on stdout, or an error that names the field at fault, printed as the OpenAI
//! error body a server would answer with (HTTP 400), on stdout, with exit status 1.
//!
//! Usage: `parse_request [FILE]` (stdin when no file is given).

use std::io::Read;
use std::process::ExitCode;

use gateway_core::openai::{from_json_slice, ChatCompletionRequest};
use serde_json::json;

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let body = match std::env::args().nth(1) {
        Some(path) => std::fs::read(path)?,
        None => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body)?;
            body
        }
    };
    match from_json_slice::<ChatCompletionRequest>(&body) {
        Ok(request) => {
            let summary = json!({
                "model": request.model,
                "messages": request.messages.len(),
                "stream": request.is_stream(),
                "max_tokens": request.effective_max_tokens(),
            });
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("{}", serde_json::to_string(&error.to_error_body())?);
            Ok(ExitCode::FAILURE)
        }
    }
}
