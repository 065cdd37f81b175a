//! Embeds texts with an imported embedding model, using `gateway-engine` as a library the way
//! another Rust service would: load ONNX Runtime, open the model directory, call
//! [`Backend::embed`]. Prints one JSON line per text (its dimensions, norm and first values),
//! then one line with the request's usage.
//!
//! Usage: `ORT_DYLIB_PATH=…/libonnxruntime.so embed MODEL_DIR TEXT…`, e.g.
//! `embed data/models/all-minilm-l6-v2 "A man is eating food." "A man is riding a horse."`.

use std::path::PathBuf;

use gateway_backend::{Backend, EmbeddingInputs};
use gateway_engine::{EmbedderConfig, OnnxEmbedder, OnnxRuntime};
use serde_json::json;

/// Values of each vector printed.
const SHOWN: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: embed MODEL_DIR TEXT…")?);
    let texts: Vec<String> = args.collect();
    let library = std::env::var_os("ORT_DYLIB_PATH")
        .ok_or("set ORT_DYLIB_PATH to the ONNX Runtime library (libonnxruntime.so)")?;

    let runtime = OnnxRuntime::load(library.as_ref())?;
    let model = OnnxEmbedder::load(&runtime, &dir, EmbedderConfig::default())?;
    // `embed` tokenizes on tokio's blocking pool, so it needs a runtime that has one.
    let embeddings = tokio::runtime::Builder::new_multi_thread()
        .build()?
        .block_on(model.embed(EmbeddingInputs::Texts(texts.clone())))?;

    for (text, vector) in texts.iter().zip(&embeddings.vectors) {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        let first = &vector[..vector.len().min(SHOWN)];
        let line = json!({"text": text, "dimensions": vector.len(), "norm": norm, "first": first});
        println!("{line}");
    }
    println!("{}", json!({ "usage": embeddings.usage }));
    Ok(())
}
