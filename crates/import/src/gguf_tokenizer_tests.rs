//! Tests of the GGUF tokenizer rebuild: a small byte-level BPE vocabulary written as GGUF
//! metadata, rebuilt, loaded with the `tokenizers` crate and used to encode and decode.

#![allow(clippy::unwrap_used)]

use super::super::gguf::tests::{kv_i32_array, kv_str, kv_str_array, kv_u32, save, write_gguf};
use super::*;

/// GPT-2's byte-to-character table.
fn byte_chars() -> Vec<String> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

const MERGES: &[&str] = &[
    "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "1 2",
];

/// A GGUF file with a tokenizer: 3 control tokens, 256 bytes, one token per merge.
fn tokenizer_gguf(dir: &std::path::Path, model: &str, pre: &str, add_bos: bool) -> GgufFile {
    let kvs = tokenizer_kvs(model, pre, add_bos);
    GgufFile::open(&save(dir, &write_gguf(3, &kvs, &[], 32))).unwrap()
}

/// The metadata of [`tokenizer_gguf`]'s tokenizer, chat template included.
pub(crate) fn tokenizer_kvs(
    model: &str,
    pre: &str,
    add_bos: bool,
) -> Vec<(&'static str, u32, Vec<u8>)> {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    tokens.extend(byte_chars());
    tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    tokens.push("<tool>".to_owned());
    let mut types = vec![3, 3, 3];
    types.extend(std::iter::repeat_n(1, tokens.len() - 4));
    types.push(4);
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let kvs = [
        ("tokenizer.ggml.model", kv_str(model)),
        ("tokenizer.ggml.pre", kv_str(pre)),
        ("tokenizer.ggml.tokens", kv_str_array(&refs)),
        ("tokenizer.ggml.token_type", kv_i32_array(&types)),
        ("tokenizer.ggml.merges", kv_str_array(MERGES)),
        ("tokenizer.ggml.bos_token_id", kv_u32(1)),
        ("tokenizer.ggml.eos_token_id", kv_u32(2)),
        ("tokenizer.ggml.padding_token_id", kv_u32(2)),
        ("tokenizer.ggml.add_bos_token", (7, vec![u8::from(add_bos)])),
        ("tokenizer.chat_template", kv_str("{{ messages }}")),
    ];
    kvs.into_iter().map(|(k, (t, v))| (k, t, v)).collect()
}

fn load(t: &GgufTokenizer) -> tokenizers::Tokenizer {
    let text = serde_json::to_string(&t.tokenizer_json).unwrap();
    tokenizers::Tokenizer::from_bytes(text.as_bytes()).unwrap()
}

fn id_of(tok: &tokenizers::Tokenizer, s: &str) -> u32 {
    tok.token_to_id(s).unwrap()
}

#[test]
fn rebuilds_a_byte_level_bpe() {
    let dir = tempfile::tempdir().unwrap();
    let t = tokenizer_from_gguf(&tokenizer_gguf(dir.path(), "gpt2", "smollm", false)).unwrap();
    assert_eq!(t.facts.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(
        (t.facts.eos_token_id, t.facts.pad_token.as_deref()),
        (Some(2), Some("<|im_end|>"))
    );
    assert_eq!(t.facts.chat_template.as_deref(), Some("{{ messages }}"));
    assert!(!t.facts.add_bos_token);
    let tok = load(&t);
    let text = "hello world<|im_end|> 123<tool>";
    let enc = tok.encode(text, false).unwrap();
    let expected = [
        id_of(&tok, "hello"),
        id_of(&tok, "Ġworld"),
        2,
        id_of(&tok, "Ġ"),
        id_of(&tok, "1"), // smollm splits digits, so the merge "1 2" never applies
        id_of(&tok, "2"),
        id_of(&tok, "3"),
        id_of(&tok, "<tool>"),
    ];
    assert_eq!(enc.get_ids(), expected);
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
    assert_eq!(
        tok.decode(enc.get_ids(), true).unwrap(),
        "hello world 123<tool>"
    );
    let unicode = "Grüße, 東京 🚀\n\n\tend  ";
    let ids = tok.encode(unicode, false).unwrap().get_ids().to_vec();
    assert_eq!(tok.decode(&ids, false).unwrap(), unicode);

    // The GPT-2 pre-tokenizer keeps digits together, so the merge applies.
    let t = tokenizer_from_gguf(&tokenizer_gguf(dir.path(), "gpt2", "gpt2", false)).unwrap();
    let tok = load(&t);
    let enc = tok.encode("12", false).unwrap();
    assert_eq!(enc.get_ids(), [id_of(&tok, "12")]);
}

#[test]
fn adds_bos_when_the_metadata_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let t = tokenizer_from_gguf(&tokenizer_gguf(dir.path(), "gpt2", "llama-bpe", true)).unwrap();
    assert!(t.facts.add_bos_token);
    let tok = load(&t);
    let enc = tok.encode("hello", true).unwrap();
    assert_eq!(enc.get_ids(), [1, id_of(&tok, "hello")]);
}

#[test]
fn every_known_pre_tokenizer_loads_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Hello world's 12345 东京\n\n  🚀 x";
    for pre in [
        "default",
        "gpt2",
        "smollm",
        "llama-bpe",
        "llama3",
        "qwen2",
        "starcoder",
    ] {
        let t = tokenizer_from_gguf(&tokenizer_gguf(dir.path(), "gpt2", pre, false)).unwrap();
        let tok = load(&t);
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(tok.decode(&ids, false).unwrap(), text, "{pre}");
    }
}

#[test]
fn rejects_other_tokenizers() {
    let dir = tempfile::tempdir().unwrap();
    for (model, pre) in [("llama", "default"), ("gpt2", "falcon")] {
        let err = tokenizer_from_gguf(&tokenizer_gguf(dir.path(), model, pre, false)).unwrap_err();
        assert!(
            matches!(err, ImportError::UnsupportedTokenizer { .. }),
            "{err}"
        );
    }
}
