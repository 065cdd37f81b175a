//! The gateway's model importer as a library: Hugging Face checkpoints and GGUF files in, ONNX
//! model directories out. It writes the ONNX protobuf itself (types generated at build time
//! from the vendored `proto/onnx.proto`) and does not depend on ONNX Runtime; the graphs it
//! writes follow the contract in `docs/model-format.md`.
//!
//! - [`import_model`] is the entry point, with [`ImportOptions`] (model id, license, source,
//!   [`WeightFormat`] and the [`gateway_core::ExecutionProvider`] the import targets). It
//!   dispatches on the source: a `.gguf` file, or a checkpoint directory whose `config.json`
//!   names a LLaMA-family `model_type` (llama, mistral, qwen2), becomes a decoder with a KV
//!   cache; any other directory is read as a BERT-family encoder checkpoint (`config.json`,
//!   `model.safetensors`, `tokenizer.json`, and the sentence-transformers files
//!   `sentence_bert_config.json`, `modules.json`, `1_Pooling/config.json` when present).
//! - [`gguf`] reads GGUF files ([`GgufFile`]: metadata, tensor table, dequantization to f32),
//!   and [`LlamaConfig`] takes a decoder's hyper-parameters from GGUF metadata or a Hugging
//!   Face `config.json`.
//! - [`gguf_tokenizer`] rebuilds a Hugging Face `tokenizer.json` and the special-token facts
//!   from a GGUF file's embedded tokenizer ([`tokenizer_from_gguf`]).
//!
//! The model directory it writes has the layout of [`gateway_core::model_dir`]: the graph
//! ([`ONNX_FILE`]), the tokenizer ([`TOKENIZER_FILE`]), for decoders the special tokens
//! ([`TOKENIZER_CONFIG_FILE`]) and the chat template when the source has one
//! ([`CHAT_TEMPLATE_FILE`]), and the manifest ([`MANIFEST_FILE`], an [`OnnxManifest`]: the
//! catalog card and the facts ONNX Runtime needs), which [`import_model`] also returns.
//!
//! [`ONNX_FILE`]: gateway_core::model_dir::ONNX_FILE
//! [`TOKENIZER_FILE`]: gateway_core::model_dir::TOKENIZER_FILE
//! [`TOKENIZER_CONFIG_FILE`]: gateway_core::model_dir::TOKENIZER_CONFIG_FILE
//! [`CHAT_TEMPLATE_FILE`]: gateway_core::model_dir::CHAT_TEMPLATE_FILE
//! [`MANIFEST_FILE`]: gateway_core::model_dir::MANIFEST_FILE
//! [`OnnxManifest`]: gateway_core::model_dir::OnnxManifest

mod bert;
mod config;
mod decoder;
mod error;
pub mod gguf;
pub mod gguf_tokenizer;
mod graph;
mod limits;
mod llama;
pub mod llama_config;
mod output;
mod weights;

#[cfg(test)]
mod gguf_fuzz_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use gateway_core::model_dir::{OnnxManifest, Pooling, MANIFEST_FILE, ONNX_FILE, TOKENIZER_FILE};
use gateway_core::{ExecutionProvider, ModelCard, ModelKind, ServicePlan};
use serde_json::Value;

pub use error::ImportError;
pub use gguf::GgufFile;
pub use gguf_tokenizer::{tokenizer_from_gguf, GgufTokenizer, TokenizerFacts};
pub use llama::WeightFormat;
pub use llama_config::LlamaConfig;

/// The ONNX protobuf types, generated at build time from `proto/onnx.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub(crate) mod onnx_proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// A check of a chat template's text by whoever serves the model (the importer has no
/// template engine): `Err` with the reason refuses the import.
pub type ChatTemplateCheck = fn(&str) -> Result<(), String>;

/// Choices the caller makes about an import; every field has a default.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Model id; defaults to the source directory's name, lowercased.
    pub id: Option<String>,
    /// SPDX license id; defaults to the `license:` of the source's README.md front matter,
    /// else `unknown`.
    pub license: Option<String>,
    /// Where the weights come from (e.g. a Hugging Face URL); defaults to empty.
    pub source: Option<String>,
    /// How a decoder's projection weights are stored (encoders are always f32); `Auto`
    /// resolves for `execution_provider`.
    pub weights: WeightFormat,
    /// The execution provider the model is imported for (what `WeightFormat::Auto` picks).
    pub execution_provider: ExecutionProvider,
    /// Run on the chat template before anything is written (the gateway compiles it and
    /// renders a probe within its work limit); a refusal is
    /// [`ImportError::InvalidChatTemplate`].
    pub chat_template_check: Option<ChatTemplateCheck>,
}

/// `config.json` model types imported as LLaMA-family decoders.
const DECODER_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2"];

/// Imports the checkpoint in `src` into the model directory `out` and returns the manifest
/// written there. Every size the source declares is checked against the file and the
/// importer's limits before anything is allocated for it, and the output is atomic: the
/// directory is written under a temporary name beside `out` and renamed to `out` (replacing
/// an existing directory) only when complete; a failed import leaves no directory behind.
pub fn import_model(
    src: &Path,
    out: &Path,
    options: &ImportOptions,
) -> Result<OnnxManifest, ImportError> {
    output::write_atomically(out, |dir| import_into(src, dir, options))
}

/// Imports the checkpoint in `src` into the existing, empty directory `out`.
fn import_into(
    src: &Path,
    out: &Path,
    options: &ImportOptions,
) -> Result<OnnxManifest, ImportError> {
    if src.is_file()
        && src
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return decoder::import_gguf(src, out, options);
    }
    let config = read_json(&src.join("config.json"))?;
    let model_type = config.get("model_type").and_then(Value::as_str);
    if model_type.is_some_and(|t| DECODER_MODEL_TYPES.contains(&t)) {
        return decoder::import_safetensors(src, &config, out, options);
    }
    let cfg = config::BertConfig::from_json(&config)?;
    let weights_path = require(src.join("model.safetensors"))?;
    let tokenizer_path = require(src.join(TOKENIZER_FILE))?;
    let mut weights = weights::SafetensorsFile::open(&weights_path)?;

    let manifest = OnnxManifest {
        card: ModelCard {
            id: options.id.clone().unwrap_or_else(|| default_id(src)),
            kind: ModelKind::Embedding,
            plan: ServicePlan::default(),
            context_length: context_length(src, &cfg)?,
            dimensions: Some(cfg.hidden_size),
            quantization: "f32".to_owned(),
            license: match &options.license {
                Some(l) => l.clone(),
                None => readme_license(src)?.unwrap_or_else(|| "unknown".to_owned()),
            },
            source: options.source.clone().unwrap_or_default(),
        },
        architecture: "bert".to_owned(),
        hidden_size: cfg.hidden_size,
        num_layers: cfg.num_hidden_layers,
        num_heads: cfg.num_attention_heads,
        vocab_size: cfg.vocab_size,
        pooling: Some(pooling(src)?),
        normalize: normalizes(src)?,
        onnx_file: ONNX_FILE.to_owned(),
        tokenizer_file: TOKENIZER_FILE.to_owned(),
        num_kv_heads: None,
        head_dim: None,
        chat_template: false,
    };

    let onnx_path = out.join(ONNX_FILE);
    let file = fs::File::create(&onnx_path).map_err(ImportError::io(&onnx_path))?;
    bert::write_onnx(
        &cfg,
        &mut weights,
        BufWriter::with_capacity(1 << 20, file),
        &onnx_path,
    )?;
    let tokenizer_out = out.join(TOKENIZER_FILE);
    fs::copy(&tokenizer_path, &tokenizer_out).map_err(ImportError::io(&tokenizer_out))?;
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// Writes the manifest ([`MANIFEST_FILE`]) into the model directory `out`.
fn write_manifest(out: &Path, manifest: &OnnxManifest) -> Result<(), ImportError> {
    let path = out.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(manifest).map_err(|source| ImportError::Json {
        file: path.clone(),
        source,
    })?;
    fs::write(&path, json).map_err(ImportError::io(&path))
}

/// `path` if it exists, else [`ImportError::MissingFile`].
fn require(path: PathBuf) -> Result<PathBuf, ImportError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ImportError::MissingFile { path })
    }
}

/// Parses a JSON file.
fn read_json(path: &Path) -> Result<Value, ImportError> {
    let bytes = fs::read(require(path.to_owned())?).map_err(ImportError::io(path))?;
    serde_json::from_slice(&bytes).map_err(|source| ImportError::Json {
        file: path.to_owned(),
        source,
    })
}

/// Parses a JSON file if it exists.
fn read_optional_json(path: &Path) -> Result<Option<Value>, ImportError> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// The source directory's name, lowercased.
fn default_id(src: &Path) -> String {
    let canonical = src.canonicalize().unwrap_or_else(|_| src.to_owned());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "model".to_owned())
}

/// `max_seq_length` of `sentence_bert_config.json`, else the position table's length.
fn context_length(src: &Path, cfg: &config::BertConfig) -> Result<usize, ImportError> {
    let st = read_optional_json(&src.join("sentence_bert_config.json"))?;
    let max_seq = st
        .as_ref()
        .and_then(|v| v.get("max_seq_length"))
        .and_then(Value::as_u64);
    Ok(max_seq.map_or(cfg.max_sequence(), |n| (n as usize).min(cfg.max_sequence())))
}

/// The sentence-transformers `modules.json`, as a list of module objects.
fn modules(src: &Path) -> Result<Vec<Value>, ImportError> {
    let modules = read_optional_json(&src.join("modules.json"))?;
    Ok(modules
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default())
}

/// Whether `module`'s `type` names the sentence-transformers class `class`.
fn is_module(module: &Value, class: &str) -> bool {
    module
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.rsplit('.').next() == Some(class))
}

/// The pooling configured by the checkpoint's Pooling module; mean when there is none.
fn pooling(src: &Path) -> Result<Pooling, ImportError> {
    let dir = modules(src)?
        .iter()
        .find(|m| is_module(m, "Pooling"))
        .and_then(|m| m.get("path").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "1_Pooling".to_owned());
    let Some(config) = read_optional_json(&src.join(dir).join("config.json"))? else {
        return Ok(Pooling::Mean);
    };
    if let Some(mode) = config.get("pooling_mode").and_then(Value::as_str) {
        return match mode {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            other => Err(ImportError::UnsupportedPooling {
                mode: other.to_owned(),
            }),
        };
    }
    let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
    let modes = [
        "cls_token",
        "mean_tokens",
        "max_tokens",
        "mean_sqrt_len_tokens",
        "weightedmean_tokens",
        "lasttoken",
    ];
    let on: Vec<&str> = modes
        .iter()
        .copied()
        .filter(|m| flag(&format!("pooling_mode_{m}")))
        .collect();
    match on.as_slice() {
        ["cls_token"] => Ok(Pooling::Cls),
        ["mean_tokens"] | [] => Ok(Pooling::Mean),
        other => Err(ImportError::UnsupportedPooling {
            mode: other.join("+"),
        }),
    }
}

/// Whether `modules.json` ends the pipeline with a Normalize module.
fn normalizes(src: &Path) -> Result<bool, ImportError> {
    Ok(modules(src)?.iter().any(|m| is_module(m, "Normalize")))
}

/// The `license:` of README.md's YAML front matter, as an SPDX id where it is a known one.
fn readme_license(src: &Path) -> Result<Option<String>, ImportError> {
    let path = src.join("README.md");
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).map_err(ImportError::io(&path))?;
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("---") {
        return Ok(None);
    }
    let license = lines
        .take_while(|l| l.trim() != "---")
        .find_map(|l| l.strip_prefix("license:"))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
        .filter(|v| !v.is_empty());
    Ok(license.map(|l| spdx(&l)))
}

/// Hugging Face's lowercase license tags to SPDX ids (others are kept as written).
fn spdx(tag: &str) -> String {
    let known = [
        ("apache-2.0", "Apache-2.0"),
        ("mit", "MIT"),
        ("bsd-2-clause", "BSD-2-Clause"),
        ("bsd-3-clause", "BSD-3-Clause"),
        ("cc-by-4.0", "CC-BY-4.0"),
        ("cc-by-sa-4.0", "CC-BY-SA-4.0"),
        ("cc-by-nc-4.0", "CC-BY-NC-4.0"),
        ("gpl-3.0", "GPL-3.0-only"),
        ("mpl-2.0", "MPL-2.0"),
    ];
    known
        .iter()
        .find(|(hf, _)| hf.eq_ignore_ascii_case(tag))
        .map_or_else(|| tag.to_owned(), |(_, id)| (*id).to_owned())
}
