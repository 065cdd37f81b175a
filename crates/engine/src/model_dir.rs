//! Reading a model directory written by `gateway-import` (its layout is
//! [`gateway_core::model_dir`]): the manifest, checked against the kind of backend that loads
//! it, and the tokenizer; and [`load_backend`], which opens a directory as the backend its
//! manifest's kind asks for.

use std::path::Path;
use std::sync::Arc;

use gateway_backend::Backend;
use gateway_core::model_dir::{OnnxManifest, MANIFEST_FILE};
use gateway_core::ModelKind;
use tokenizers::Tokenizer;

use crate::{
    EmbedderConfig, EngineError, GeneratorConfig, OnnxEmbedder, OnnxGenerator, OnnxRuntime,
};

/// How a model directory is served: the settings of both kinds, of which the manifest's kind
/// picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSettings {
    /// Used when the directory holds an embedding model.
    pub embedder: EmbedderConfig,
    /// Used when the directory holds a chat model.
    pub generator: GeneratorConfig,
}

/// Loads the model in `dir` as the backend its manifest's kind asks for. Blocks while ONNX
/// Runtime opens the model.
pub fn load_backend(
    runtime: &OnnxRuntime,
    dir: &Path,
    settings: &ModelSettings,
) -> Result<Arc<dyn Backend>, EngineError> {
    Ok(match read_manifest(dir)?.card.kind {
        ModelKind::Embedding => Arc::new(OnnxEmbedder::load(runtime, dir, settings.embedder)?),
        ModelKind::Chat => Arc::new(OnnxGenerator::load(runtime, dir, settings.generator)?),
    })
}

/// Reads the manifest of `dir` and checks that the model is of `kind`.
pub(crate) fn read_manifest_of_kind(
    dir: &Path,
    kind: ModelKind,
) -> Result<OnnxManifest, EngineError> {
    let manifest = read_manifest(dir)?;
    if manifest.card.kind != kind {
        let kind = match kind {
            ModelKind::Chat => "a chat",
            ModelKind::Embedding => "an embedding",
        };
        return Err(EngineError::InvalidModel {
            path: dir.join(MANIFEST_FILE),
            message: format!("model {} is not {kind} model", manifest.card.id),
        });
    }
    Ok(manifest)
}

/// Reads the manifest (`model-card.json`) of the model directory `dir`.
pub fn read_manifest(dir: &Path) -> Result<OnnxManifest, EngineError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| EngineError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|error| EngineError::InvalidModel {
        path,
        message: error.to_string(),
    })
}

/// Loads a Hugging Face `tokenizer.json` with its own padding setting dropped.
pub(crate) fn read_tokenizer(path: &Path) -> Result<Tokenizer, EngineError> {
    let mut tokenizer = Tokenizer::from_file(path).map_err(|error| EngineError::InvalidModel {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}
