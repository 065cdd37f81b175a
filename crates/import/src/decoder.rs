//! Import of LLaMA-family decoders into a model directory, from a GGUF file or a Hugging Face
//! checkpoint directory: `model.onnx` (see [`super::llama`]), `tokenizer.json`,
//! `tokenizer_config.json` (special tokens, `add_bos_token`, chat template),
//! `chat_template.jinja` when the source has one, and the manifest `model-card.json`
//! ([`OnnxManifest`]).

use std::fs;
use std::io::BufWriter;
use std::path::Path;

use gateway_core::model_dir::{
    OnnxManifest, CHAT_TEMPLATE_FILE, ONNX_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
};
use gateway_core::{ModelCard, ModelKind, ServicePlan};
use serde_json::{json, Value};

use super::error::ImportError;
use super::gguf::GgufFile;
use super::gguf_tokenizer::tokenizer_from_gguf;
use super::limits;
use super::llama::{self, TensorSource};
use super::llama_config::LlamaConfig;
use super::weights::SafetensorsFile;
use super::{
    default_id, read_optional_json, readme_license, require, spdx, write_manifest, ImportOptions,
};

/// Imports the GGUF file `src` into the model directory `out`.
pub(crate) fn import_gguf(
    src: &Path,
    out: &Path,
    options: &ImportOptions,
) -> Result<OnnxManifest, ImportError> {
    let gguf = GgufFile::open(src)?;
    let cfg = LlamaConfig::from_gguf(&gguf)?;
    let tokenizer = tokenizer_from_gguf(&gguf)?;
    let template = tokenizer
        .facts
        .chat_template
        .clone()
        .map(|t| limits::chat_template(t.into_bytes(), options.chat_template_check))
        .transpose()?;
    let license = match &options.license {
        Some(l) => l.clone(),
        None => gguf
            .get("general.license")
            .and_then(|v| v.as_str())
            .map_or_else(|| "unknown".to_owned(), spdx),
    };
    let id = options.id.clone().unwrap_or_else(|| {
        src.file_stem().map_or_else(
            || "model".to_owned(),
            |s| s.to_string_lossy().to_lowercase(),
        )
    });
    let facts = &tokenizer.facts;
    let tokenizer_config = json!({
        "bos_token": facts.bos_token,
        "eos_token": facts.eos_token,
        "pad_token": facts.pad_token,
        "unk_token": facts.unk_token,
        "bos_token_id": facts.bos_token_id,
        "eos_token_id": facts.eos_token_id,
        "pad_token_id": facts.pad_token_id,
        "add_bos_token": facts.add_bos_token,
        "add_eos_token": facts.add_eos_token,
        "chat_template": template,
        "model_max_length": cfg.context_length,
    });
    let tokenizer_path = out.join(TOKENIZER_FILE);
    write_json(&tokenizer_path, &tokenizer.tokenizer_json, false)?;
    write_json(&out.join(TOKENIZER_CONFIG_FILE), &tokenizer_config, true)?;
    let chat_template = write_template(out, template.as_deref())?;
    let mut source = TensorSource::Gguf(gguf);
    let quantization = write_model(&cfg, &mut source, options, out)?;
    let manifest = manifest(&cfg, id, quantization, license, options, chat_template);
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// Imports the Hugging Face checkpoint directory `src` (whose parsed `config.json` is
/// `config`) into the model directory `out`.
pub(crate) fn import_safetensors(
    src: &Path,
    config: &Value,
    out: &Path,
    options: &ImportOptions,
) -> Result<OnnxManifest, ImportError> {
    let cfg = LlamaConfig::from_hf_config(config)?;
    let weights = SafetensorsFile::open(&require(src.join("model.safetensors"))?)?;
    let tokenizer = require(src.join(TOKENIZER_FILE))?;
    let tokenizer_config = read_optional_json(&src.join(TOKENIZER_CONFIG_FILE))?;
    let template_file = src.join(CHAT_TEMPLATE_FILE);
    let template = if template_file.is_file() {
        Some(fs::read(&template_file).map_err(ImportError::io(&template_file))?)
    } else {
        tokenizer_config
            .as_ref()
            .and_then(|c| c.get("chat_template"))
            .and_then(template_of)
            .map(String::into_bytes)
    };
    let template = template
        .map(|t| limits::chat_template(t, options.chat_template_check))
        .transpose()?;
    let license = match &options.license {
        Some(l) => l.clone(),
        None => readme_license(src)?.unwrap_or_else(|| "unknown".to_owned()),
    };
    let id = options.id.clone().unwrap_or_else(|| default_id(src));

    let tokenizer_out = out.join(TOKENIZER_FILE);
    fs::copy(&tokenizer, &tokenizer_out).map_err(ImportError::io(&tokenizer_out))?;
    if let Some(mut tc) = tokenizer_config {
        if let (Some(obj), Some(t)) = (tc.as_object_mut(), &template) {
            obj.insert("chat_template".to_owned(), Value::String(t.clone()));
        }
        write_json(&out.join(TOKENIZER_CONFIG_FILE), &tc, true)?;
    }
    let chat_template = write_template(out, template.as_deref())?;
    let mut source = TensorSource::Safetensors(weights);
    let quantization = write_model(&cfg, &mut source, options, out)?;
    let manifest = manifest(&cfg, id, quantization, license, options, chat_template);
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// A `chat_template` value of `tokenizer_config.json`: a string, or a list of named templates
/// of which the one named `default` (else the first) is taken.
fn template_of(value: &Value) -> Option<String> {
    if let Some(s) = value.as_str() {
        return Some(s.to_owned());
    }
    let list = value.as_array()?;
    let named = |n: &Value| n.get("template").and_then(Value::as_str).map(str::to_owned);
    list.iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
        .or_else(|| list.first())
        .and_then(named)
}

/// Writes `model.onnx` with the weight format `options` resolve to, and returns that
/// format's quantization label.
fn write_model(
    cfg: &LlamaConfig,
    source: &mut TensorSource,
    options: &ImportOptions,
    out: &Path,
) -> Result<&'static str, ImportError> {
    let format = options.weights.resolve(options.execution_provider);
    let onnx_path = out.join(ONNX_FILE);
    let file = fs::File::create(&onnx_path).map_err(ImportError::io(&onnx_path))?;
    let sink = BufWriter::with_capacity(1 << 20, file);
    llama::write_onnx(cfg, source, format, sink, &onnx_path)?;
    Ok(format.label())
}

/// Writes `chat_template.jinja` when there is a template; returns whether it did.
fn write_template(out: &Path, template: Option<&str>) -> Result<bool, ImportError> {
    let Some(template) = template else {
        return Ok(false);
    };
    let path = out.join(CHAT_TEMPLATE_FILE);
    fs::write(&path, template).map_err(ImportError::io(&path))?;
    Ok(true)
}

/// Writes `value` as JSON to `path`.
fn write_json(path: &Path, value: &Value, pretty: bool) -> Result<(), ImportError> {
    let bytes = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    let bytes = bytes.map_err(|source| ImportError::Json {
        file: path.to_owned(),
        source,
    })?;
    fs::write(path, bytes).map_err(ImportError::io(path))
}

/// The manifest of a decoder.
fn manifest(
    cfg: &LlamaConfig,
    id: String,
    quantization: &str,
    license: String,
    options: &ImportOptions,
    chat_template: bool,
) -> OnnxManifest {
    OnnxManifest {
        card: ModelCard {
            id,
            kind: ModelKind::Chat,
            plan: ServicePlan::default(),
            context_length: cfg.context_length,
            dimensions: None,
            quantization: quantization.to_owned(),
            license,
            source: options.source.clone().unwrap_or_default(),
        },
        architecture: cfg.architecture.clone(),
        hidden_size: cfg.hidden_size,
        num_layers: cfg.num_layers,
        num_heads: cfg.num_heads,
        vocab_size: cfg.vocab_size,
        pooling: None,
        normalize: false,
        onnx_file: ONNX_FILE.to_owned(),
        tokenizer_file: TOKENIZER_FILE.to_owned(),
        num_kv_heads: Some(cfg.num_kv_heads),
        head_dim: Some(cfg.head_dim),
        chat_template,
    }
}
