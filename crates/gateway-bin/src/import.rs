//! `gateway models import`: converts a checkpoint into an ONNX model directory and prints its
//! model card as JSON.

use anyhow::Context;
use gateway_engine::import::{import_model, ImportOptions};

use crate::cli::ImportArgs;

/// Imports `args.source` into `args.out` and prints the model card on stdout.
pub fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let options = ImportOptions {
        id: args.id.clone(),
        license: args.license.clone(),
        source: args.source_url.clone(),
    };
    let card = import_model(&args.source, &args.out, &options)
        .with_context(|| format!("cannot import {}", args.source.display()))?;
    println!("{}", serde_json::to_string_pretty(&card)?);
    Ok(())
}
