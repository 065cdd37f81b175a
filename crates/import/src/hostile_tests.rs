//! Tests of [`import_model`] on hostile sources: GGUF files whose metadata declares sizes
//! beyond the importer's limits or beyond the file, non-finite floats, broken chat templates,
//! and an import that fails midway; each is refused with its typed error, quickly and without
//! large allocations, and leaves no output or temporary directory behind.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use super::gguf::tests::{kv_f32, kv_str, kv_u32, write_gguf, TestTensor};
use super::gguf_tokenizer::tests::tokenizer_kvs;
use super::limits::{MAX_ARRAY_LEN, MAX_BLOCK_COUNT, MAX_CONTEXT_LENGTH, MAX_HEAD_DIM};
use super::*;

/// An encoded `uint64`.
fn kv_u64(v: u64) -> (u32, Vec<u8>) {
    (10, v.to_le_bytes().to_vec())
}

/// The metadata of a valid one-layer LLaMA (with tokenizer and chat template), with the
/// entries of `overrides` replacing or adding to it.
fn llama_kvs(overrides: &[(&'static str, (u32, Vec<u8>))]) -> Vec<(&'static str, u32, Vec<u8>)> {
    let base = [
        ("general.architecture", kv_str("llama")),
        ("llama.embedding_length", kv_u32(64)),
        ("llama.feed_forward_length", kv_u32(96)),
        ("llama.block_count", kv_u32(1)),
        ("llama.attention.head_count", kv_u32(4)),
        ("llama.attention.head_count_kv", kv_u32(2)),
        ("llama.context_length", kv_u32(32)),
        ("llama.attention.layer_norm_rms_epsilon", kv_f32(1e-5)),
    ];
    let mut kvs: Vec<_> = base.into_iter().map(|(k, (t, v))| (k, t, v)).collect();
    kvs.extend(tokenizer_kvs("gpt2", "gpt2", false));
    for (key, (ty, value)) in overrides {
        kvs.retain(|(k, ..)| k != key);
        kvs.push((key, *ty, value.clone()));
    }
    kvs
}

/// Imports the GGUF `bytes` into `<tmp>/out/model` and returns the error, checking that the
/// import was quick and left nothing in the output's parent.
fn import_err(bytes: &[u8]) -> ImportError {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("hostile.gguf");
    std::fs::write(&src, bytes).unwrap();
    let parent = tmp.path().join("out");
    std::fs::create_dir(&parent).unwrap();
    let started = Instant::now();
    let err = import_model(&src, &parent.join("model"), &ImportOptions::default()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert_no_leftovers(&parent);
    err
}

/// `dir` is empty: no output directory, no temporary directory.
fn assert_no_leftovers(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Asserts that `err` is [`ImportError::OutOfRange`] for `field` with upper bound `max`.
fn assert_out_of_range(err: &ImportError, field: &str, max: u64) {
    match err {
        ImportError::OutOfRange {
            field: f, max: m, ..
        } if f == field && *m == max => {}
        other => panic!("expected {field} out of range (max {max}), got {other:?}"),
    }
}

#[test]
fn huge_architecture_sizes_are_refused() {
    let huge = 1u64 << 46;
    let cases = [
        ("llama.context_length", MAX_CONTEXT_LENGTH),
        ("llama.attention.key_length", MAX_HEAD_DIM),
        ("llama.block_count", MAX_BLOCK_COUNT),
    ];
    for (key, max) in cases {
        let err = import_err(&write_gguf(3, &llama_kvs(&[(key, kv_u64(huge))]), &[], 32));
        assert_out_of_range(&err, key, max);
    }
    // Within each limit alone, but rotary tables of 2^20 positions × 1024 would be 4 GiB.
    let both = [
        ("llama.context_length", kv_u64(MAX_CONTEXT_LENGTH)),
        ("llama.attention.key_length", kv_u64(MAX_HEAD_DIM)),
    ];
    let err = import_err(&write_gguf(3, &llama_kvs(&both), &[], 32));
    assert_out_of_range(&err, "llama.context_length", (1 << 27) / MAX_HEAD_DIM);
}

#[test]
fn zero_context_and_non_finite_floats_are_refused() {
    let err = import_err(&write_gguf(
        3,
        &llama_kvs(&[("llama.context_length", kv_u32(0))]),
        &[],
        32,
    ));
    assert!(
        matches!(err, ImportError::OutOfRange { ref field, value: 0, min: 1, .. }
            if field == "llama.context_length"),
        "{err:?}"
    );
    for (key, value) in [
        ("llama.rope.freq_base", f32::INFINITY),
        ("llama.rope.freq_base", -1.0),
        ("llama.attention.layer_norm_rms_epsilon", f32::NAN),
    ] {
        let err = import_err(&write_gguf(3, &llama_kvs(&[(key, kv_f32(value))]), &[], 32));
        assert!(
            matches!(err, ImportError::NotPositiveFinite { ref field, .. } if field == key),
            "{key}: {err:?}"
        );
    }
    // An f64 too large for f32 becomes infinite and is refused too.
    let big = (12, 1e300f64.to_le_bytes().to_vec());
    let err = import_err(&write_gguf(
        3,
        &llama_kvs(&[("llama.rope.freq_base", big)]),
        &[],
        32,
    ));
    assert!(
        matches!(err, ImportError::NotPositiveFinite { .. }),
        "{err:?}"
    );
}

#[test]
fn arrays_and_tensors_larger_than_the_file_are_refused() {
    // A small file declaring a 60 MB array of u8: refused by the array limit.
    let mut array = 0u32.to_le_bytes().to_vec();
    array.extend(60_000_000u64.to_le_bytes());
    let err = import_err(&write_gguf(3, &[("big", 9, array)], &[], 32));
    assert_out_of_range(&err, "big", MAX_ARRAY_LEN);

    // Within the limit, but more elements than the file has bytes.
    let mut array = 0u32.to_le_bytes().to_vec();
    array.extend(1_000_000u64.to_le_bytes());
    array.extend([0; 16]);
    let err = import_err(&write_gguf(3, &[("big", 9, array)], &[], 32));
    assert!(
        matches!(err, ImportError::ExceedsFile { ref what, claimed: 1_000_000, .. }
            if what == "big"),
        "{err:?}"
    );

    // A string longer than the bytes left.
    let mut string = (1u64 << 40).to_le_bytes().to_vec();
    string.extend(b"abc");
    let err = import_err(&write_gguf(3, &[("s", 8, string)], &[], 32));
    assert!(matches!(err, ImportError::ExceedsFile { .. }), "{err:?}");

    // More metadata entries than the header limit.
    let mut header = b"GGUF".to_vec();
    header.extend(3u32.to_le_bytes());
    header.extend(0u64.to_le_bytes());
    header.extend((1u64 << 40).to_le_bytes());
    let err = import_err(&header);
    assert!(matches!(err, ImportError::OutOfRange { .. }), "{err:?}");

    // A 4 GiB F32 tensor declared in a file of a few kilobytes.
    let tensor = TestTensor {
        name: "token_embd.weight",
        dims: vec![1 << 20, 1 << 10],
        ty: 0,
        data: vec![0; 64],
    };
    let err = import_err(&write_gguf(3, &llama_kvs(&[]), &[tensor], 32));
    assert!(
        matches!(err, ImportError::ExceedsFile { ref what, claimed, .. }
            if what == "tensor `token_embd.weight`" && claimed == 1 << 32),
        "{err:?}"
    );
}

#[test]
fn broken_chat_templates_are_refused() {
    let err = import_err(&write_gguf(
        3,
        &llama_kvs(&[("tokenizer.chat_template", kv_str(" \n"))]),
        &[],
        32,
    ));
    assert!(
        matches!(err, ImportError::InvalidChatTemplate { .. }),
        "{err:?}"
    );

    // Invalid UTF-8 in a GGUF string is refused by the reader, naming the key.
    let mut bytes = 2u64.to_le_bytes().to_vec();
    bytes.extend([0xff, 0xfe]);
    let err = import_err(&write_gguf(
        3,
        &llama_kvs(&[("tokenizer.chat_template", (8, bytes))]),
        &[],
        32,
    ));
    assert!(
        matches!(err, ImportError::InvalidGguf { ref reason, .. }
            if reason.contains("tokenizer.chat_template") && reason.contains("UTF-8")),
        "{err:?}"
    );

    // A checkpoint directory whose chat_template.jinja is not UTF-8.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 40, "max_position_embeddings": 32
    });
    std::fs::write(src.join("config.json"), config.to_string()).unwrap();
    let mut empty = 2u64.to_le_bytes().to_vec();
    empty.extend(b"{}");
    std::fs::write(src.join("model.safetensors"), empty).unwrap();
    std::fs::write(src.join(TOKENIZER_FILE), "{}").unwrap();
    std::fs::write(src.join("chat_template.jinja"), [0xc3, 0x28]).unwrap();
    let parent = tmp.path().join("out");
    let err = import_model(&src, &parent.join("m"), &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(err, ImportError::InvalidChatTemplate { .. }),
        "{err:?}"
    );
    assert_no_leftovers(&parent);
}

#[test]
fn an_import_failing_midway_leaves_no_directory() {
    // Valid metadata and tokenizer, so the tokenizer files are written before the weights
    // are converted; the file has no tensors, so the conversion fails.
    let err = import_err(&write_gguf(3, &llama_kvs(&[]), &[], 32));
    assert!(matches!(err, ImportError::MissingTensor { .. }), "{err:?}");
}
