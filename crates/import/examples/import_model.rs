//! The importer as a library: converts a Hugging Face checkpoint directory (BERT-family
//! encoder, or LLaMA-family decoder) or a LLaMA-family `.gguf` file into an ONNX model
//! directory with [`gateway_import::import_model`], and prints the manifest it wrote
//! (`model-card.json`) as JSON.
//!
//! Usage:
//!
//! ```text
//! cargo run --release -p gateway-import --example import_model -- SRC OUT [--id ID]
//!     [--license SPDX] [--source URL] [--weights auto|int8|q4|f32|f16]
//!     [--execution-provider cpu|cuda]
//! ```
//!
//! For example `… -- SmolLM2-135M-Instruct-Q4_1.gguf models/smollm2 --id smollm2-135m-instruct`
//! or `… -- all-MiniLM-L6-v2/ models/all-minilm-l6-v2`. `--weights` (how a decoder's
//! projections are stored) and `--execution-provider` (what `auto` resolves for) default to
//! `auto` and `cpu`, as for `gateway models import`.

use std::path::PathBuf;
use std::process::ExitCode;

use gateway_core::ExecutionProvider;
use gateway_import::{import_model, ImportOptions, WeightFormat};

/// The usage line printed on a malformed command line.
const USAGE: &str = "usage: import_model SRC OUT [--id ID] [--license SPDX] [--source URL] \
                     [--weights auto|int8|q4|f32|f16] [--execution-provider cpu|cuda]";

/// The weight format named `name` on the command line.
fn weight_format(name: &str) -> Result<WeightFormat, String> {
    match name {
        "auto" => Ok(WeightFormat::Auto),
        "int8" => Ok(WeightFormat::Int8),
        "q4" => Ok(WeightFormat::Q4),
        "f32" => Ok(WeightFormat::F32),
        "f16" => Ok(WeightFormat::F16),
        other => Err(format!(
            "unknown weight format {other:?}: expected auto, int8, q4, f32 or f16"
        )),
    }
}

/// The source and output paths and the import options of the command line.
fn parse_args() -> Result<(PathBuf, PathBuf, ImportOptions), String> {
    let mut positional = Vec::new();
    let mut options = ImportOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if !arg.starts_with("--") {
            positional.push(PathBuf::from(arg));
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--id" => options.id = Some(value),
            "--license" => options.license = Some(value),
            "--source" => options.source = Some(value),
            "--weights" => options.weights = weight_format(&value)?,
            "--execution-provider" => {
                options.execution_provider = value
                    .parse::<ExecutionProvider>()
                    .map_err(|e| e.to_string())?;
            }
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    match <[PathBuf; 2]>::try_from(positional) {
        Ok([src, out]) => Ok((src, out, options)),
        Err(_) => Err("expected SRC and OUT".to_owned()),
    }
}

fn main() -> ExitCode {
    let (src, out, options) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match import_model(&src, &out, &options) {
        Ok(manifest) => {
            match serde_json::to_string_pretty(&manifest) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("cannot print the manifest: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("import failed: {e}");
            ExitCode::FAILURE
        }
    }
}
