//! Tests of the GGUF reader: each block format against hand-computed blocks, parsing of a
//! small GGUF written here, and the errors of corrupt files.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use half::{bf16, f16};

use super::super::limits::MAX_ARRAY_LEN;
use super::quant::dequantize_into;
use super::*;

/// Little-endian f16 bytes of `v`.
fn h(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// A GGUF string.
pub(crate) fn gstr(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend(s.as_bytes());
    out
}

/// One tensor to write: name, ggml dims, type id, data.
pub(crate) struct TestTensor<'a> {
    pub name: &'a str,
    pub dims: Vec<u64>,
    pub ty: u32,
    pub data: Vec<u8>,
}

/// Writes a GGUF file: `kvs` are `(key, value type id, encoded value)`.
pub(crate) fn write_gguf(
    version: u32,
    kvs: &[(&str, u32, Vec<u8>)],
    tensors: &[TestTensor<'_>],
    alignment: u64,
) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(version.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kvs.len() as u64).to_le_bytes());
    for (k, ty, v) in kvs {
        out.extend(gstr(k));
        out.extend(ty.to_le_bytes());
        out.extend(v);
    }
    let mut offset = 0u64;
    let mut offsets = Vec::new();
    for t in tensors {
        out.extend(gstr(t.name));
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + t.data.len() as u64).div_ceil(alignment) * alignment;
    }
    let pad = |out: &mut Vec<u8>| {
        while !(out.len() as u64).is_multiple_of(alignment) {
            out.push(0);
        }
    };
    pad(&mut out);
    for t in tensors {
        out.extend(&t.data);
        pad(&mut out);
    }
    out
}

/// Encoded metadata values.
pub(crate) fn kv_u32(v: u32) -> (u32, Vec<u8>) {
    (4, v.to_le_bytes().to_vec())
}
/// An encoded `float32`.
pub(crate) fn kv_f32(v: f32) -> (u32, Vec<u8>) {
    (6, v.to_le_bytes().to_vec())
}
/// An encoded string.
pub(crate) fn kv_str(s: &str) -> (u32, Vec<u8>) {
    (8, gstr(s))
}
/// An encoded array of strings.
pub(crate) fn kv_str_array(items: &[&str]) -> (u32, Vec<u8>) {
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    for s in items {
        v.extend(gstr(s));
    }
    (9, v)
}
/// An encoded array of `int32`.
pub(crate) fn kv_i32_array(items: &[i32]) -> (u32, Vec<u8>) {
    let mut v = 5u32.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    for i in items {
        v.extend(i.to_le_bytes());
    }
    (9, v)
}

/// Writes `bytes` to a file in `dir` and returns its path.
pub(crate) fn save(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn dequant(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    assert!(dequantize_into(ty, bytes, &mut out));
    out
}

/// 16 packed nibble bytes: weight `j` is `j`, weight `j + 16` is `15 − j`.
fn nibbles() -> Vec<u8> {
    (0..16u8).map(|j| j | ((15 - j) << 4)).collect()
}

#[test]
fn q4_0_block() {
    let mut block = h(0.5).to_vec();
    block.extend(nibbles());
    let w = dequant(GgmlType::Q4_0, &block);
    for j in 0..16 {
        assert_eq!(w[j], (j as f32 - 8.0) * 0.5);
        assert_eq!(w[j + 16], (7.0 - j as f32) * 0.5);
    }
    let b = BlockQ4_0::from_bytes(&block.try_into().unwrap());
    assert_eq!(b.quants()[17], 14);
}

#[test]
fn q4_1_block() {
    let mut block = h(0.25).to_vec();
    block.extend(h(-1.0));
    block.extend(nibbles());
    let w = dequant(GgmlType::Q4_1, &block);
    for j in 0..16 {
        assert_eq!(w[j], j as f32 * 0.25 - 1.0);
        assert_eq!(w[j + 16], (15 - j) as f32 * 0.25 - 1.0);
    }
}

#[test]
fn q8_0_block() {
    let mut block = h(2.0).to_vec();
    block.extend((0..32).map(|i| (i as i8 - 16) as u8));
    let w = dequant(GgmlType::Q8_0, &block);
    let expected: Vec<f32> = (0..32).map(|i| 2.0 * (i as f32 - 16.0)).collect();
    assert_eq!(w, expected);
}

#[test]
fn float_types() {
    let values = [1.5f32, -2.25, 0.0, 65504.0];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16_bytes: Vec<u8> = values.iter().flat_map(|v| h(*v)).collect();
    let bf16_bytes: Vec<u8> = values
        .iter()
        .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
        .collect();
    assert_eq!(dequant(GgmlType::F32, &f32_bytes), values);
    assert_eq!(dequant(GgmlType::F16, &f16_bytes), values);
    assert_eq!(dequant(GgmlType::BF16, &bf16_bytes)[..3], values[..3]);
}

/// Packs 8 six-bit scales and minimums the way Q4_K stores them.
fn pack_q4_k_scales(sc: [u8; 8], m: [u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    s
}

#[test]
fn q4_k_block() {
    let sc = [1, 2, 63, 4, 21, 37, 50, 8];
    let m = [0, 5, 9, 63, 17, 33, 1, 48];
    let mut block = h(0.5).to_vec();
    block.extend(h(0.25));
    block.extend(pack_q4_k_scales(sc, m));
    for _chunk in 0..4 {
        block.extend((0..32u8).map(|i| (i % 16) | ((15 - i % 16) << 4)));
    }
    assert_eq!(block.len(), 144);
    let w = dequant(GgmlType::Q4K, &block);
    assert_eq!(w.len(), 256);
    for (i, w) in w.iter().enumerate() {
        let sub = i / 32;
        let l = (i % 32) as u8;
        let q = if sub % 2 == 0 { l % 16 } else { 15 - l % 16 };
        let expected = 0.5 * f32::from(sc[sub]) * f32::from(q) - 0.25 * f32::from(m[sub]);
        assert_eq!(*w, expected, "weight {i}");
    }
}

#[test]
fn q6_k_block() {
    let q = |i: usize| ((i * 7) % 64) as u8;
    let scales: Vec<i8> = (0..16).map(|i| i as i8 * 3 - 20).collect();
    let (mut ql, mut qh) = (vec![0u8; 128], vec![0u8; 64]);
    for n in 0..2 {
        for l in 0..32 {
            let qk: Vec<u8> = (0..4).map(|k| q(128 * n + l + 32 * k)).collect();
            ql[64 * n + l] = (qk[0] & 0x0F) | ((qk[2] & 0x0F) << 4);
            ql[64 * n + l + 32] = (qk[1] & 0x0F) | ((qk[3] & 0x0F) << 4);
            qh[32 * n + l] =
                (qk[0] >> 4) | ((qk[1] >> 4) << 2) | ((qk[2] >> 4) << 4) | ((qk[3] >> 4) << 6);
        }
    }
    let mut block = ql;
    block.extend(qh);
    block.extend(scales.iter().map(|s| *s as u8));
    block.extend(h(0.5));
    assert_eq!(block.len(), 210);
    let w = dequant(GgmlType::Q6K, &block);
    for (i, w) in w.iter().enumerate() {
        let expected = 0.5 * f32::from(scales[i / 16]) * (f32::from(q(i)) - 32.0);
        assert_eq!(*w, expected, "weight {i}");
    }
}

/// A small valid GGUF: metadata of several types and three tensors.
fn sample(version: u32, alignment: u64) -> Vec<u8> {
    let mut q8 = h(1.0).to_vec();
    q8.extend((0..32).map(|i| i as u8));
    let mut kvs = vec![
        ("general.architecture", kv_str("llama").0, kv_str("llama").1),
        ("llama.block_count", kv_u32(2).0, kv_u32(2).1),
        ("llama.rope.freq_base", kv_f32(1e5).0, kv_f32(1e5).1),
        (
            "tokenizer.ggml.tokens",
            9,
            kv_str_array(&["a", "b", "ab"]).1,
        ),
        ("tokenizer.ggml.token_type", 9, kv_i32_array(&[1, 1, 3]).1),
        ("flag", 7, vec![1]),
        ("big", 12, 2.5f64.to_le_bytes().to_vec()),
        ("neg", 11, (-3i64).to_le_bytes().to_vec()),
    ];
    if alignment != DEFAULT_ALIGNMENT {
        kvs.push((
            "general.alignment",
            kv_u32(alignment as u32).0,
            kv_u32(alignment as u32).1,
        ));
    }
    let tensors = [
        TestTensor {
            name: "a",
            dims: vec![3],
            ty: 0,
            data: [1.0f32, 2.0, 3.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        },
        TestTensor {
            name: "q",
            dims: vec![32, 1],
            ty: 8,
            data: q8,
        },
        TestTensor {
            name: "odd",
            dims: vec![256],
            ty: 13, // Q5_K: size known, not converted
            data: vec![0; 176],
        },
    ];
    write_gguf(version, &kvs, &tensors, alignment)
}

#[test]
fn parses_a_small_file() {
    for (version, alignment) in [(3, 32), (2, 32), (3, 64)] {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GgufFile::open(&save(dir.path(), &sample(version, alignment))).unwrap();
        assert_eq!(g.version(), version);
        assert_eq!(g.alignment(), alignment);
        assert_eq!(g.require_str("general.architecture").unwrap(), "llama");
        assert_eq!(g.require_u64("llama.block_count").unwrap(), 2);
        assert_eq!(g.require_f64("llama.rope.freq_base").unwrap(), 1e5);
        assert_eq!(g.get("flag"), Some(&GgufValue::Bool(true)));
        assert_eq!(g.get("big").and_then(GgufValue::as_f64), Some(2.5));
        assert_eq!(g.get("neg").and_then(GgufValue::as_i64), Some(-3));
        assert_eq!(g.get("neg").and_then(GgufValue::as_u64), None);
        assert_eq!(
            g.require_array("tokenizer.ggml.tokens").unwrap()[2].as_str(),
            Some("ab")
        );
        assert!(matches!(
            g.require_u64("general.architecture"),
            Err(ImportError::GgufMetadata { .. })
        ));
        assert_eq!(g.read_f32("a").unwrap(), [1.0, 2.0, 3.0]);
        let q = g.tensor("q").unwrap();
        assert_eq!(q.shape(), [1, 32]);
        assert_eq!(q.offset % alignment, 0);
        let w = g.read_f32("q").unwrap();
        assert_eq!(w[31], 31.0);
        let QuantizedBlocks::Q8_0(blocks) = g.read_quantized("q").unwrap() else {
            panic!("expected Q8_0 blocks");
        };
        assert_eq!(blocks[0].qs[5], 5);
        match g.read_f32("odd") {
            Err(ImportError::UnsupportedTensorType { ggml_type, .. }) => {
                assert_eq!(ggml_type, "Q5_K")
            }
            other => panic!("expected UnsupportedTensorType, got {other:?}"),
        }
        assert!(matches!(
            g.read_quantized("a"),
            Err(ImportError::UnsupportedTensorType { .. })
        ));
        assert!(matches!(
            g.read_f32("nope"),
            Err(ImportError::MissingTensor { .. })
        ));
    }
}

fn open_err(bytes: &[u8]) -> ImportError {
    let dir = tempfile::tempdir().unwrap();
    GgufFile::open(&save(dir.path(), bytes)).unwrap_err()
}

#[test]
fn every_truncation_is_an_error() {
    let full = sample(3, 32);
    // The last tensor's data is followed by padding only; cut before it ends.
    let data_end = full.len() - (full.len() % 32) - 16;
    for cut in (0..data_end).step_by(3) {
        let err = open_err(&full[..cut]);
        assert!(
            matches!(
                err,
                ImportError::InvalidGguf { .. } | ImportError::ExceedsFile { .. }
            ),
            "cut {cut}: {err:?}"
        );
    }
}

#[test]
fn corrupt_files_give_typed_errors() {
    let mut bad_magic = sample(3, 32);
    bad_magic[0] = b'X';
    assert!(open_err(&bad_magic).to_string().contains("bad magic"));

    assert!(matches!(
        open_err(&sample(1, 32)),
        ImportError::UnsupportedGgufVersion { version: 1, .. }
    ));

    // A string that claims more bytes than the file has.
    let huge = write_gguf(3, &[("k", 8, u64::MAX.to_le_bytes().to_vec())], &[], 32);
    assert!(matches!(
        open_err(&huge),
        ImportError::ExceedsFile { ref what, claimed: u64::MAX, .. } if what == "k"
    ));

    // An array that claims more elements than the limit.
    let mut arr = 4u32.to_le_bytes().to_vec();
    arr.extend((1u64 << 60).to_le_bytes());
    assert!(matches!(
        open_err(&write_gguf(3, &[("k", 9, arr)], &[], 32)),
        ImportError::OutOfRange { ref field, max, .. } if field == "k" && max == MAX_ARRAY_LEN
    ));

    let unknown_type = write_gguf(3, &[("k", 99, vec![0; 8])], &[], 32);
    assert!(open_err(&unknown_type)
        .to_string()
        .contains("unknown value type"));

    let bad_bool = write_gguf(3, &[("k", 7, vec![2])], &[], 32);
    assert!(open_err(&bad_bool).to_string().contains("bool"));

    let bad_align = write_gguf(
        3,
        &[("general.alignment", 4, 3u32.to_le_bytes().to_vec())],
        &[],
        32,
    );
    assert!(open_err(&bad_align).to_string().contains("power of two"));

    // Tensor data past the end of the file.
    let mut past_end = write_gguf(
        3,
        &[],
        &[TestTensor {
            name: "t",
            dims: vec![1024],
            ty: 0,
            data: vec![0; 4096],
        }],
        32,
    );
    past_end.truncate(past_end.len() - 100);
    assert!(matches!(
        open_err(&past_end),
        ImportError::ExceedsFile { ref what, claimed: 4096, .. } if what == "tensor `t`"
    ));

    // Row length not a multiple of the block size.
    let ragged = write_gguf(
        3,
        &[],
        &[TestTensor {
            name: "t",
            dims: vec![33],
            ty: 8,
            data: vec![0; 68],
        }],
        32,
    );
    assert!(open_err(&ragged).to_string().contains("block size"));

    // Dimensions whose product overflows.
    let overflow = write_gguf(
        3,
        &[],
        &[TestTensor {
            name: "t",
            dims: vec![1 << 40, 1 << 40],
            ty: 0,
            data: vec![],
        }],
        32,
    );
    assert!(open_err(&overflow).to_string().contains("overflow"));

    let dup = write_gguf(3, &[("k", 4, vec![0; 4]), ("k", 4, vec![0; 4])], &[], 32);
    assert!(open_err(&dup).to_string().contains("duplicate"));
}
