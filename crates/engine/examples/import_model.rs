//! Imports a Hugging Face BERT-family checkpoint into an ONNX model directory.
//!
//! Usage: `cargo run -p gateway-engine --example import_model -- SRC OUT [--id ID]
//! [--license SPDX] [--source URL]`. Prints the model card as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use gateway_engine::import::{import_model, ImportOptions};

fn main() -> ExitCode {
    let mut positional = Vec::new();
    let mut options = ImportOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--id" => &mut options.id,
            "--license" => &mut options.license,
            "--source" => &mut options.source,
            _ => {
                positional.push(PathBuf::from(arg));
                continue;
            }
        };
        match args.next() {
            Some(value) => *slot = Some(value),
            None => {
                eprintln!("{arg} needs a value");
                return ExitCode::from(2);
            }
        }
    }
    let [src, out] = positional.as_slice() else {
        eprintln!("usage: import_model SRC OUT [--id ID] [--license SPDX] [--source URL]");
        return ExitCode::from(2);
    };
    match import_model(src, out, &options) {
        Ok(card) => {
            match serde_json::to_string_pretty(&card) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("cannot print the model card: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("import failed: {e}");
            ExitCode::FAILURE
        }
    }
}
