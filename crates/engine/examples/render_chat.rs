//! Renders a conversation with a chat template, as the engine does, and prints the prompt
//! (no trailing newline added). Used by `tests/python/test_chat_template.py` to compare with
//! Python `jinja2`.
//!
//! Usage: `render_chat TEMPLATE_FILE < request.json`, where the request is
//! `{"messages": [...], "add_generation_prompt": bool, "bos_token": str, "eos_token": str}`
//! (all but `messages` optional).

use std::io::{Read, Write};
use std::process::ExitCode;

use gateway_engine::chat_template::{ChatTemplate, RenderOptions};
use serde::Deserialize;
use serde_json::Value;

/// The JSON read from stdin.
#[derive(Debug, Deserialize)]
struct Request {
    messages: Value,
    #[serde(default)]
    add_generation_prompt: bool,
    #[serde(default)]
    bos_token: String,
    #[serde(default)]
    eos_token: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("render_chat: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the template and the request, renders, prints.
fn run() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: render_chat TEMPLATE_FILE < request.json")?;
    let source = std::fs::read_to_string(&path)?;
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let request: Request = serde_json::from_str(&input)?;
    let template = ChatTemplate::new(&source)?;
    let options = RenderOptions {
        add_generation_prompt: request.add_generation_prompt,
        bos_token: request.bos_token,
        eos_token: request.eos_token,
    };
    let prompt = template.render(&request.messages, &options)?;
    std::io::stdout().write_all(prompt.as_bytes())?;
    Ok(())
}
