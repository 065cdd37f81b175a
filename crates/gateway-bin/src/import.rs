//! `gateway models import`: converts a checkpoint into an ONNX model directory with
//! `gateway_import` and prints its manifest (`model-card.json`) as JSON.

use anyhow::Context;
use gateway_import::{import_model, ImportOptions, WeightFormat};

use crate::cli::{ImportArgs, WeightsArg};

/// Imports `args.source` into `args.out` and prints the manifest on stdout.
pub fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let options = ImportOptions {
        id: args.id.clone(),
        license: args.license.clone(),
        source: args.source_url.clone(),
        weights: match args.weights {
            WeightsArg::Auto => WeightFormat::Auto,
            WeightsArg::Int8 => WeightFormat::Int8,
            WeightsArg::Q4 => WeightFormat::Q4,
            WeightsArg::F32 => WeightFormat::F32,
        },
        execution_provider: args.execution_provider,
    };
    let manifest = import_model(&args.source, &args.out, &options)
        .with_context(|| format!("cannot import {}", args.source.display()))?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(())
}
