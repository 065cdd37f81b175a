//! Reading the files of a model directory written by `gateway models import`: the model
//! card (checked against the kind of backend that loads it) and the tokenizer.

use std::path::Path;

use gateway_core::{ModelCard, ModelKind, MODEL_CARD_FILE};
use tokenizers::Tokenizer;

use crate::EngineError;

/// Reads `model-card.json` of `dir` and checks that the model is of `kind`.
pub(crate) fn read_card(dir: &Path, kind: ModelKind) -> Result<ModelCard, EngineError> {
    let card = read_model_card(dir)?;
    if card.kind != kind {
        let kind = match kind {
            ModelKind::Chat => "a chat",
            ModelKind::Embedding => "an embedding",
        };
        return Err(EngineError::InvalidModel {
            path: dir.join(MODEL_CARD_FILE),
            message: format!("model {} is not {kind} model", card.id),
        });
    }
    Ok(card)
}

/// Reads `model-card.json` of the model directory `dir`, to tell which backend loads it.
pub fn read_model_card(dir: &Path) -> Result<ModelCard, EngineError> {
    let path = dir.join(MODEL_CARD_FILE);
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
