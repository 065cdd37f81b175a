//! Tests of [`import_model`] on a tiny random BERT written as safetensors into a temp dir.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use safetensors::tensor::{serialize_to_file, TensorView};
use safetensors::Dtype;

use super::onnx_proto::ModelProto;
use super::*;

const HIDDEN: usize = 32;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const VOCAB: usize = 100;
const INTER: usize = 64;
const POSITIONS: usize = 64;

/// Tensor names and shapes of the tiny BERT (without prefix).
fn tiny_shapes() -> Vec<(String, Vec<usize>)> {
    let mut t = vec![
        (
            "embeddings.word_embeddings.weight".to_owned(),
            vec![VOCAB, HIDDEN],
        ),
        (
            "embeddings.position_embeddings.weight".to_owned(),
            vec![POSITIONS, HIDDEN],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_owned(),
            vec![2, HIDDEN],
        ),
        ("embeddings.LayerNorm.weight".to_owned(), vec![HIDDEN]),
        ("embeddings.LayerNorm.bias".to_owned(), vec![HIDDEN]),
    ];
    for i in 0..LAYERS {
        let p = format!("encoder.layer.{i}");
        for (name, out, inp) in [
            ("attention.self.query", HIDDEN, HIDDEN),
            ("attention.self.key", HIDDEN, HIDDEN),
            ("attention.self.value", HIDDEN, HIDDEN),
            ("attention.output.dense", HIDDEN, HIDDEN),
            ("intermediate.dense", INTER, HIDDEN),
            ("output.dense", HIDDEN, INTER),
        ] {
            t.push((format!("{p}.{name}.weight"), vec![out, inp]));
            t.push((format!("{p}.{name}.bias"), vec![out]));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            t.push((format!("{p}.{ln}.weight"), vec![HIDDEN]));
            t.push((format!("{p}.{ln}.bias"), vec![HIDDEN]));
        }
    }
    t
}

/// Deterministic pseudo-random values in [-0.1, 0.1).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

/// Writes a tiny BERT checkpoint into `dir`: tensors under `prefix`, stored as `dtype`,
/// leaving out `skip`.
fn write_checkpoint(dir: &Path, prefix: &str, dtype: Dtype, skip: Option<&str>) {
    let mut data: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (i, (name, shape)) in tiny_shapes().into_iter().enumerate() {
        if Some(name.as_str()) == skip {
            continue;
        }
        let v = values(i as u64, shape.iter().product());
        let bytes: Vec<u8> = match dtype {
            Dtype::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            Dtype::BF16 => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        data.insert(format!("{prefix}{name}"), (shape, bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(k, (shape, bytes))| {
            (
                k.clone(),
                TensorView::new(dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "model_type": "bert", "hidden_act": "gelu", "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": INTER,
        "layer_norm_eps": 1e-12, "max_position_embeddings": POSITIONS, "vocab_size": VOCAB,
        "type_vocab_size": 2,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{\"version\": \"1.0\"}").unwrap();
}

/// Adds the sentence-transformers files (mean pooling, Normalize, max_seq_length 48, MIT).
fn write_sentence_transformers(dir: &Path) {
    let modules = serde_json::json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]);
    std::fs::write(dir.join("modules.json"), modules.to_string()).unwrap();
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    let pooling =
        serde_json::json!({"pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true});
    std::fs::write(dir.join("1_Pooling/config.json"), pooling.to_string()).unwrap();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        "{\"max_seq_length\": 48}",
    )
    .unwrap();
    std::fs::write(
        dir.join("README.md"),
        "---\nlanguage: en\nlicense: mit\n---\n# Tiny\n",
    )
    .unwrap();
}

fn decode(out: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(out.join(ONNX_FILE)).unwrap().as_slice()).unwrap()
}

fn initializer_f32(model: &ModelProto, name: &str) -> Vec<f32> {
    let t = model
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap();
    let raw = t.raw_data.as_ref().unwrap();
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn imports_tiny_bert_with_sentence_transformers_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("Tiny-BERT");
    std::fs::create_dir_all(&src).unwrap();
    write_checkpoint(&src, "bert.", Dtype::F32, None);
    write_sentence_transformers(&src);
    let out = tmp.path().join("out");
    let options = ImportOptions {
        source: Some("https://example.invalid/tiny".into()),
        ..Default::default()
    };
    let manifest = import_model(&src, &out, &options).unwrap();
    let card = &manifest.card;

    assert_eq!(card.id, "tiny-bert");
    assert_eq!(card.kind, ModelKind::Embedding);
    assert_eq!(card.plan, ServicePlan::Base);
    assert_eq!(card.context_length, 48);
    assert_eq!(card.dimensions, Some(HIDDEN));
    assert_eq!(card.license, "MIT");
    assert_eq!(card.source, "https://example.invalid/tiny");
    assert_eq!(card.quantization, "f32");
    assert_eq!(manifest.architecture, "bert");
    assert_eq!(
        (
            manifest.hidden_size,
            manifest.num_layers,
            manifest.num_heads,
            manifest.vocab_size
        ),
        (HIDDEN, LAYERS, HEADS, VOCAB)
    );
    assert_eq!(manifest.pooling, Some(Pooling::Mean));
    assert!(manifest.normalize);
    assert_eq!(manifest.onnx_file, "model.onnx");
    assert_eq!(manifest.tokenizer_file, "tokenizer.json");

    let written = std::fs::read(out.join(MANIFEST_FILE)).unwrap();
    let on_disk: OnnxManifest = serde_json::from_slice(&written).unwrap();
    assert_eq!(on_disk, manifest);
    // The card's fields sit at the top level of `model-card.json`.
    let json: serde_json::Value = serde_json::from_slice(&written).unwrap();
    assert_eq!(
        (&json["id"], &json["plan"], &json["dimensions"]),
        (
            &serde_json::json!("tiny-bert"),
            &serde_json::json!("base"),
            &serde_json::json!(HIDDEN)
        )
    );
    assert!(out.join(TOKENIZER_FILE).is_file());
    assert!(!out.join("model.onnx.partial").exists());

    let model = decode(&out);
    assert_eq!(model.ir_version, Some(10));
    assert_eq!(model.opset_import[0].version, Some(17));
    let graph = model.graph.as_ref().unwrap();
    let names = |v: &[super::onnx_proto::ValueInfoProto]| -> Vec<String> {
        v.iter().map(|i| i.name.clone().unwrap()).collect()
    };
    assert_eq!(
        names(&graph.input),
        ["input_ids", "attention_mask", "token_type_ids"]
    );
    assert_eq!(names(&graph.output), ["last_hidden_state"]);
    // 5 embedding tensors + 16 per layer, plus 10 small constants.
    assert_eq!(graph.initializer.len(), 5 + 16 * LAYERS + 10);
    let weights = graph
        .initializer
        .iter()
        .filter(|t| t.raw_data.is_some())
        .count();
    assert_eq!(weights, 5 + 16 * LAYERS);

    // Linear weights are stored transposed: [in, out].
    let shapes = tiny_shapes();
    let idx = shapes
        .iter()
        .position(|(n, _)| n == "encoder.layer.0.intermediate.dense.weight")
        .unwrap();
    let original = values(idx as u64, INTER * HIDDEN);
    let stored = initializer_f32(&model, "encoder.layer.0.intermediate.dense.weight.T");
    assert_eq!(stored[3 * INTER + 5], original[5 * HIDDEN + 3]);
}

#[test]
fn half_precision_tensors_are_converted() {
    for dtype in [Dtype::F16, Dtype::BF16] {
        let tmp = tempfile::tempdir().unwrap();
        write_checkpoint(tmp.path(), "", dtype, None);
        let out = tmp.path().join("out");
        let manifest = import_model(
            tmp.path(),
            &out,
            &ImportOptions {
                id: Some("t".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(manifest.card.id, "t");
        assert_eq!(manifest.card.license, "unknown");
        assert_eq!(manifest.card.context_length, POSITIONS);
        assert!(!manifest.normalize);
        let stored = initializer_f32(&decode(&out), "embeddings.LayerNorm.weight");
        let expected: Vec<f32> = values(3, HIDDEN)
            .iter()
            .map(|x| match dtype {
                Dtype::F16 => half::f16::from_f32(*x).to_f32(),
                _ => half::bf16::from_f32(*x).to_f32(),
            })
            .collect();
        assert_eq!(stored, expected, "{dtype:?}");
    }
}

#[test]
fn missing_tensor_is_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_checkpoint(
        &src,
        "bert.",
        Dtype::F32,
        Some("encoder.layer.1.output.dense.bias"),
    );
    let out = tmp.path().join("out");
    let err = import_model(&src, &out, &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&err, ImportError::MissingTensor { name } if name == "encoder.layer.1.output.dense.bias"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["src"], "no output and no temporary directory");
}

#[test]
fn an_existing_output_is_replaced_only_by_a_complete_import() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, bad) = (tmp.path().join("good"), tmp.path().join("bad"));
    std::fs::create_dir_all(&good).unwrap();
    std::fs::create_dir_all(&bad).unwrap();
    write_checkpoint(&good, "bert.", Dtype::F32, None);
    write_checkpoint(
        &bad,
        "bert.",
        Dtype::F32,
        Some("encoder.layer.1.output.dense.bias"),
    );
    let models = tmp.path().join("models");
    let out = models.join("m");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("old.txt"), "previous model").unwrap();

    assert!(import_model(&bad, &out, &ImportOptions::default()).is_err());
    assert_eq!(
        std::fs::read_to_string(out.join("old.txt")).unwrap(),
        "previous model"
    );

    import_model(&good, &out, &ImportOptions::default()).unwrap();
    assert!(out.join(ONNX_FILE).is_file() && !out.join("old.txt").exists());
    let left: Vec<_> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["m"], "no temporary or previous directory left");
}

#[test]
fn wrong_model_type_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(tmp.path(), "", Dtype::F32, None);
    std::fs::write(tmp.path().join("config.json"), "{\"model_type\": \"gpt2\"}").unwrap();
    let err = import_model(
        tmp.path(),
        &tmp.path().join("out"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ImportError::UnsupportedArchitecture { model_type } if model_type == "gpt2")
    );
    assert!(err.to_string().contains("gpt2"));
}

#[test]
fn shape_mismatch_and_unsupported_dtype_are_typed() {
    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(tmp.path(), "", Dtype::F32, None);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("config.json")).unwrap()).unwrap();
    config["vocab_size"] = serde_json::json!(101);
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    let err = import_model(
        tmp.path(),
        &tmp.path().join("out"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(
        &err,
        ImportError::ShapeMismatch { name, expected, found }
            if name == "embeddings.word_embeddings.weight" && expected == &[101, HIDDEN] && found == &[VOCAB, HIDDEN]
    ));

    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(tmp.path(), "", Dtype::I32, None);
    let err = import_model(
        tmp.path(),
        &tmp.path().join("out"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ImportError::UnsupportedDtype { dtype, .. } if dtype == "I32"),
        "{err}"
    );
}

#[test]
fn cls_pooling_and_missing_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(tmp.path(), "", Dtype::F32, None);
    std::fs::create_dir_all(tmp.path().join("1_Pooling")).unwrap();
    std::fs::write(
        tmp.path().join("1_Pooling/config.json"),
        "{\"pooling_mode_cls_token\": true}",
    )
    .unwrap();
    let manifest = import_model(
        tmp.path(),
        &tmp.path().join("out"),
        &ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(manifest.pooling, Some(Pooling::Cls));

    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    let err = import_model(
        tmp.path(),
        &tmp.path().join("out2"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ImportError::MissingFile { .. }));
}
