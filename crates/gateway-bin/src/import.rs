//! `gateway models import`: converts a checkpoint into an ONNX model directory with
//! `gateway_import` (the chat template checked by the engine first) and prints its manifest
//! (`model-card.json`) as JSON.

use anyhow::Context;
use gateway_engine::chat_template::{ChatTemplate, RenderOptions};
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
            WeightsArg::F16 => WeightFormat::F16,
        },
        execution_provider: args.execution_provider,
        chat_template_check: Some(check_chat_template),
    };
    let manifest = import_model(&args.source, &args.out, &options)
        .with_context(|| format!("cannot import {}", args.source.display()))?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(())
}

/// The engine's check of a model's chat template, run before the import writes anything: the
/// template compiles and renders a probe chat within its work limit, as the engine checks it
/// again when it loads the model (then with the tokenizer's special tokens).
fn check_chat_template(source: &str) -> Result<(), String> {
    let options = RenderOptions {
        add_generation_prompt: true,
        bos_token: String::new(),
        eos_token: String::new(),
    };
    ChatTemplate::new(source)
        .and_then(|template| template.check_fuel(&options))
        .map_err(|error| error.to_string())
}
