//! Rebuilds a Hugging Face `tokenizer.json` from the tokenizer metadata of a GGUF file, for
//! byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`): vocabulary, merges, added
//! and special tokens from the token types, the pre-tokenizer regexes llama.cpp uses for
//! the named `tokenizer.ggml.pre`, and the byte-level decoder; plus the
//! `tokenizer_config.json`-like facts (special tokens, chat template).

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::error::ImportError;
use super::gguf::GgufFile;

/// GPT-2's split regex (llama.cpp's, plus HF's trailing `\s+`, which only matters for
/// whitespace at the end of the text and matches what llama.cpp does with unmatched text).
const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// LLaMA 3's split regex (numbers in groups of up to three).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex (single digits).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Single digits, split off before the GPT-2 regex by the StarCoder-style pre-tokenizers.
const DIGIT_REGEX: &str = r"\p{N}";

/// `tokenizer.ggml.token_type` values.
const TOKEN_NORMAL: i64 = 1;
/// An unknown-token entry.
const TOKEN_UNKNOWN: i64 = 2;
/// A control (special) token.
const TOKEN_CONTROL: i64 = 3;
/// A user-defined added token.
const TOKEN_USER_DEFINED: i64 = 4;

/// The special tokens and chat template of a tokenizer, as `tokenizer_config.json` states
/// them; the importer writes them to `tokenizer_config.json` and `chat_template.jinja`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenizerFacts {
    /// Beginning-of-sequence token, e.g. `<|im_start|>`.
    pub bos_token: Option<String>,
    /// Its id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token (generation stops there).
    pub eos_token: Option<String>,
    /// Its id.
    pub eos_token_id: Option<u32>,
    /// Padding token.
    pub pad_token: Option<String>,
    /// Its id.
    pub pad_token_id: Option<u32>,
    /// Unknown token.
    pub unk_token: Option<String>,
    /// Its id.
    pub unk_token_id: Option<u32>,
    /// Whether encoding adds the BOS token in front (`tokenizer.ggml.add_bos_token`).
    pub add_bos_token: bool,
    /// Whether encoding adds the EOS token at the end (`tokenizer.ggml.add_eos_token`).
    pub add_eos_token: bool,
    /// The Jinja chat template (`tokenizer.chat_template`).
    pub chat_template: Option<String>,
}

/// A tokenizer rebuilt from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTokenizer {
    /// The Hugging Face `tokenizer.json` document.
    pub tokenizer_json: Value,
    /// Special tokens and chat template.
    pub facts: TokenizerFacts,
}

/// Rebuilds the tokenizer of `gguf`, which must be a byte-level BPE one
/// (`tokenizer.ggml.model = gpt2`) with a `tokenizer.ggml.pre` this module knows.
pub fn tokenizer_from_gguf(gguf: &GgufFile) -> Result<GgufTokenizer, ImportError> {
    let model = gguf.require_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(ImportError::UnsupportedTokenizer {
            what: format!("tokenizer.ggml.model = {model}"),
        });
    }
    let pre = match gguf.get("tokenizer.ggml.pre") {
        Some(_) => gguf.require_str("tokenizer.ggml.pre")?,
        None => "default",
    };
    let regexes = pre_tokenizer_regexes(pre).ok_or_else(|| ImportError::UnsupportedTokenizer {
        what: format!("tokenizer.ggml.pre = {pre}"),
    })?;
    let tokens = string_array(gguf, "tokenizer.ggml.tokens")?;
    let types = token_types(gguf, tokens.len())?;
    let merges = string_array(gguf, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| json!([a, b]))
                .ok_or_else(|| {
                    metadata_error("tokenizer.ggml.merges", format!("merge `{m}` has no space"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut vocab = Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, (token, ty)) in tokens.iter().zip(&types).enumerate() {
        // The first id of a duplicated token string wins, as in llama.cpp's text-to-id map.
        vocab.entry(token.clone()).or_insert(json!(id));
        if matches!(*ty, TOKEN_UNKNOWN | TOKEN_CONTROL | TOKEN_USER_DEFINED) {
            added.push(json!({
                "id": id,
                "content": token,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": *ty != TOKEN_USER_DEFINED,
            }));
        }
    }

    let facts = facts(gguf, &tokens)?;
    let mut pretokenizers: Vec<Value> = regexes
        .iter()
        .map(|r| {
            json!({
                "type": "Split",
                "pattern": {"Regex": r},
                "behavior": "Isolated",
                "invert": false,
            })
        })
        .collect();
    pretokenizers.push(json!({
        "type": "ByteLevel",
        "add_prefix_space": false,
        "trim_offsets": true,
        "use_regex": false,
    }));
    let tokenizer_json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pretokenizers},
        "post_processor": post_processor(&facts),
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": true,
            "trim_offsets": true,
            "use_regex": true,
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": facts.unk_token,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges,
        },
    });
    Ok(GgufTokenizer {
        tokenizer_json,
        facts,
    })
}

/// The split regexes llama.cpp applies, in order, for pre-tokenizer `pre`.
fn pre_tokenizer_regexes(pre: &str) -> Option<Vec<&'static str>> {
    Some(match pre {
        "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" | "phi-2" => vec![GPT2_REGEX],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            vec![DIGIT_REGEX, GPT2_REGEX]
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => vec![LLAMA3_REGEX],
        "qwen2" | "stablelm2" | "deepseek-r1-qwen" | "megrez" => vec![QWEN2_REGEX],
        _ => return None,
    })
}

/// A post-processor adding BOS/EOS when the facts say so; null otherwise.
fn post_processor(facts: &TokenizerFacts) -> Value {
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut special = Map::new();
    let bos = facts.bos_token.as_ref().zip(facts.bos_token_id);
    let eos = facts.eos_token.as_ref().zip(facts.eos_token_id);
    let bos = bos.filter(|_| facts.add_bos_token);
    let eos = eos.filter(|_| facts.add_eos_token);
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    for (seq, type_id) in [("A", 0), ("B", 1)] {
        let items = if seq == "A" { &mut single } else { &mut pair };
        if let Some((token, _)) = bos {
            items.push(json!({"SpecialToken": {"id": token, "type_id": type_id}}));
        }
        items.push(json!({"Sequence": {"id": seq, "type_id": type_id}}));
        if let Some((token, _)) = eos {
            items.push(json!({"SpecialToken": {"id": token, "type_id": type_id}}));
        }
    }
    let pair: Vec<Value> = single.iter().cloned().chain(pair).collect();
    for (token, id) in bos.into_iter().chain(eos) {
        special.insert(
            token.clone(),
            json!({"id": token, "ids": [id], "tokens": [token]}),
        );
    }
    json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": special,
    })
}

/// Special tokens, their ids, BOS/EOS flags and the chat template.
fn facts(gguf: &GgufFile, tokens: &[String]) -> Result<TokenizerFacts, ImportError> {
    let id = |key: &str| -> Result<Option<(String, u32)>, ImportError> {
        if gguf.get(key).is_none() {
            return Ok(None);
        }
        let id = gguf.require_u64(key)?;
        let token = usize::try_from(id)
            .ok()
            .and_then(|i| tokens.get(i))
            .ok_or_else(|| metadata_error(key, format!("token id {id} is past the vocabulary")))?;
        Ok(Some((token.clone(), id as u32)))
    };
    let flag = |key: &str| -> Result<bool, ImportError> {
        gguf.get(key).map_or(Ok(false), |v| {
            v.as_bool()
                .ok_or_else(|| metadata_error(key, "not a bool".to_owned()))
        })
    };
    let (bos, eos) = (
        id("tokenizer.ggml.bos_token_id")?,
        id("tokenizer.ggml.eos_token_id")?,
    );
    let pad = id("tokenizer.ggml.padding_token_id")?;
    let unk = id("tokenizer.ggml.unknown_token_id")?;
    let split = |t: Option<(String, u32)>| t.map_or((None, None), |(s, i)| (Some(s), Some(i)));
    let ((bos_token, bos_token_id), (eos_token, eos_token_id)) = (split(bos), split(eos));
    let ((pad_token, pad_token_id), (unk_token, unk_token_id)) = (split(pad), split(unk));
    let chat_template = match gguf.get("tokenizer.chat_template") {
        Some(_) => Some(gguf.require_str("tokenizer.chat_template")?.to_owned()),
        None => None,
    };
    Ok(TokenizerFacts {
        bos_token,
        bos_token_id,
        eos_token,
        eos_token_id,
        pad_token,
        pad_token_id,
        unk_token,
        unk_token_id,
        add_bos_token: flag("tokenizer.ggml.add_bos_token")?,
        add_eos_token: flag("tokenizer.ggml.add_eos_token")?,
        chat_template,
    })
}

/// The array of strings at `key`.
fn string_array(gguf: &GgufFile, key: &str) -> Result<Vec<String>, ImportError> {
    gguf.require_array(key)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| metadata_error(key, "not an array of strings".to_owned()))
        })
        .collect()
}

/// `tokenizer.ggml.token_type`, or all-normal when absent; its length must be `n`.
fn token_types(gguf: &GgufFile, n: usize) -> Result<Vec<i64>, ImportError> {
    const KEY: &str = "tokenizer.ggml.token_type";
    if gguf.get(KEY).is_none() {
        return Ok(vec![TOKEN_NORMAL; n]);
    }
    let types = gguf
        .require_array(KEY)?
        .iter()
        .map(|v| {
            v.as_i64()
                .ok_or_else(|| metadata_error(KEY, "not an array of integers".to_owned()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if types.len() != n {
        return Err(metadata_error(
            KEY,
            format!("{} entries for {n} tokens", types.len()),
        ));
    }
    Ok(types)
}

/// An [`ImportError::GgufMetadata`] for `key`.
fn metadata_error(key: &str, reason: String) -> ImportError {
    ImportError::GgufMetadata {
        key: key.to_owned(),
        reason,
    }
}

#[cfg(test)]
#[path = "gguf_tokenizer_tests.rs"]
pub(crate) mod tests;
