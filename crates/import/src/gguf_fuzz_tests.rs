//! Property-based fuzz of the GGUF reader (issue 25): [`GgufFile::open`] and the tensor reads
//! on arbitrary bytes, on valid files built from random metadata and tensors (which must read
//! back exactly), and on valid files with one byte changed or cut short. Nothing panics, every
//! failure is a typed [`ImportError`] of the kind the damage calls for, and no open or read
//! allocates more than the file's size justifies (a counting allocator measures each thread's
//! peak of live bytes).

#![allow(clippy::unwrap_used, clippy::panic)]

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::gguf::tests::{gstr, save, write_gguf, TestTensor};
use super::gguf::{GgmlType, GgufValue, GgufValueType, QuantizedBlocks, DEFAULT_ALIGNMENT};
use super::{GgufFile, ImportError};

/// The test binary's allocator: the system allocator, counting per thread the bytes live and
/// their peak, so that [`peak_during`] can bound what one call allocates.
#[allow(unsafe_code)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        /// Bytes allocated minus bytes freed on this thread (frees of other threads' blocks
        /// can make it drop below what this thread holds, never rise above).
        static LIVE: Cell<isize> = const { Cell::new(0) };
        /// The highest `LIVE` since the last [`reset_peak`].
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    /// Adds `delta` bytes to this thread's live count and raises its peak.
    fn count(delta: isize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get().wrapping_add(delta);
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    /// The system allocator with per-thread counts.
    struct Counting;

    // SAFETY: every call is forwarded unchanged to `System`; the counts touch only
    // thread-local cells that never allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                count(layout.size() as isize);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as for `alloc`.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                count(layout.size() as isize);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` was allocated by `System` with `layout` (through this allocator).
            unsafe { System.dealloc(ptr, layout) };
            count(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                count(new_size as isize - layout.size() as isize);
            }
            new
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Runs `f` and returns its result with the most bytes it held allocated at once on this
    /// thread (what it returns included, until it is dropped by the caller).
    pub(super) fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let start = LIVE.with(Cell::get);
        PEAK.with(|peak| peak.set(start));
        let out = f();
        let peak = PEAK.with(Cell::get);
        (out, usize::try_from(peak - start).unwrap_or(0))
    }
}

use counting::peak_during;

/// The counting allocator sees the most a call holds at once, whether it frees it or
/// returns it, and nothing for a call that allocates nothing.
#[test]
fn peaks_are_measured() {
    let (len, peak) = peak_during(|| vec![7u8; 1 << 20].len());
    assert_eq!(len, 1 << 20);
    assert!((1 << 20..(1 << 20) + 4096).contains(&peak), "{peak}");
    let (kept, peak) = peak_during(|| vec![0u64; 1000]);
    assert!(peak >= 8000, "{peak}");
    drop(kept);
    let ((), peak) = peak_during(|| ());
    assert_eq!(peak, 0);
}

/// `cases` cases per property, without regression files (found bugs become plain tests).
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The most bytes the reader may hold at once for a file of `len` bytes: its 64 KiB read
/// buffer and tables, and per byte of the file at most 64 bytes of parsed values (a `u8`
/// array element takes one byte in the file and a [`GgufValue`] in memory).
fn justified(len: usize) -> usize {
    (256 << 10) + 64 * len
}

/// The scalar value types of GGUF metadata.
const SCALAR_TYPES: [GgufValueType; 12] = [
    GgufValueType::U8,
    GgufValueType::I8,
    GgufValueType::U16,
    GgufValueType::I16,
    GgufValueType::U32,
    GgufValueType::I32,
    GgufValueType::F32,
    GgufValueType::Bool,
    GgufValueType::String,
    GgufValueType::U64,
    GgufValueType::I64,
    GgufValueType::F64,
];

/// A random value of the scalar type `ty` (floats include NaNs and infinities).
fn scalar_of(ty: GgufValueType) -> BoxedStrategy<GgufValue> {
    match ty {
        GgufValueType::U8 => any::<u8>().prop_map(GgufValue::U8).boxed(),
        GgufValueType::I8 => any::<i8>().prop_map(GgufValue::I8).boxed(),
        GgufValueType::U16 => any::<u16>().prop_map(GgufValue::U16).boxed(),
        GgufValueType::I16 => any::<i16>().prop_map(GgufValue::I16).boxed(),
        GgufValueType::U32 => any::<u32>().prop_map(GgufValue::U32).boxed(),
        GgufValueType::I32 => any::<i32>().prop_map(GgufValue::I32).boxed(),
        GgufValueType::F32 => any::<f32>().prop_map(GgufValue::F32).boxed(),
        GgufValueType::Bool => any::<bool>().prop_map(GgufValue::Bool).boxed(),
        GgufValueType::String => any::<String>().prop_map(GgufValue::String).boxed(),
        GgufValueType::U64 => any::<u64>().prop_map(GgufValue::U64).boxed(),
        GgufValueType::I64 => any::<i64>().prop_map(GgufValue::I64).boxed(),
        GgufValueType::F64 => any::<f64>().prop_map(GgufValue::F64).boxed(),
        GgufValueType::Array => panic!("arrays are not scalars"),
    }
}

/// A metadata value: a scalar, an array of one scalar type, or arrays of arrays (each inner
/// array with its own element type) nested up to 4 deep, the reader's limit.
fn value() -> impl Strategy<Value = GgufValue> {
    let scalar = prop::sample::select(SCALAR_TYPES.to_vec()).prop_flat_map(scalar_of);
    let flat = prop::sample::select(SCALAR_TYPES.to_vec()).prop_flat_map(|ty| {
        prop::collection::vec(scalar_of(ty), 0..12).prop_map(move |values| GgufValue::Array {
            element_type: ty,
            values,
        })
    });
    let nested = flat.prop_recursive(3, 24, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(|values| GgufValue::Array {
            element_type: GgufValueType::Array,
            values,
        })
    });
    prop_oneof![scalar, nested]
}

/// The GGUF number of a value type.
fn type_id(ty: GgufValueType) -> u32 {
    (0..13)
        .find(|&id| GgufValueType::from_id(id) == Some(ty))
        .unwrap()
}

/// The type of `value`.
fn type_of(value: &GgufValue) -> GgufValueType {
    match value {
        GgufValue::U8(_) => GgufValueType::U8,
        GgufValue::I8(_) => GgufValueType::I8,
        GgufValue::U16(_) => GgufValueType::U16,
        GgufValue::I16(_) => GgufValueType::I16,
        GgufValue::U32(_) => GgufValueType::U32,
        GgufValue::I32(_) => GgufValueType::I32,
        GgufValue::F32(_) => GgufValueType::F32,
        GgufValue::Bool(_) => GgufValueType::Bool,
        GgufValue::String(_) => GgufValueType::String,
        GgufValue::Array { .. } => GgufValueType::Array,
        GgufValue::U64(_) => GgufValueType::U64,
        GgufValue::I64(_) => GgufValueType::I64,
        GgufValue::F64(_) => GgufValueType::F64,
    }
}

/// `value` as GGUF writes it after its type id. Comparing encodings compares floats by their
/// bits, NaN payloads included.
fn encode(value: &GgufValue) -> Vec<u8> {
    match value {
        GgufValue::U8(v) => v.to_le_bytes().to_vec(),
        GgufValue::I8(v) => v.to_le_bytes().to_vec(),
        GgufValue::U16(v) => v.to_le_bytes().to_vec(),
        GgufValue::I16(v) => v.to_le_bytes().to_vec(),
        GgufValue::U32(v) => v.to_le_bytes().to_vec(),
        GgufValue::I32(v) => v.to_le_bytes().to_vec(),
        GgufValue::F32(v) => v.to_le_bytes().to_vec(),
        GgufValue::Bool(v) => vec![u8::from(*v)],
        GgufValue::String(s) => gstr(s),
        GgufValue::U64(v) => v.to_le_bytes().to_vec(),
        GgufValue::I64(v) => v.to_le_bytes().to_vec(),
        GgufValue::F64(v) => v.to_le_bytes().to_vec(),
        GgufValue::Array {
            element_type,
            values,
        } => {
            let mut out = type_id(*element_type).to_le_bytes().to_vec();
            out.extend((values.len() as u64).to_le_bytes());
            for value in values {
                out.extend(encode(value));
            }
            out
        }
    }
}

/// Tensor type numbers written: every converted type, some sized but not converted ones
/// (Q5_0, Q5_K, I8, I32, F64) and one the reader has no layout for (19).
const TENSOR_TYPES: [u32; 14] = [0, 1, 2, 3, 8, 12, 14, 30, 6, 13, 24, 26, 28, 19];

/// One tensor as written.
#[derive(Debug, Clone)]
struct Tensor {
    name: String,
    dims: Vec<u64>,
    ty: u32,
    data: Vec<u8>,
}

/// A random small tensor: whole blocks per row, 0 to 4 dimensions, random bytes of exactly
/// the size its type and dims give (a few bytes for the type without a layout).
fn tensor() -> impl Strategy<Value = (Vec<u64>, u32, Vec<u8>)> {
    let shape = (0u64..3, prop::collection::vec(0u64..4, 0..4), any::<bool>());
    (prop::sample::select(TENSOR_TYPES.to_vec()), shape).prop_flat_map(
        |(ty, (rows, rest, none))| {
            let (dims, len) = match GgmlType::from_id(ty).block_layout() {
                Some((1, bytes)) if none => (Vec::new(), bytes),
                Some((block, bytes)) => {
                    let dims: Vec<u64> = std::iter::once(block * rows).chain(rest).collect();
                    let blocks = dims.iter().product::<u64>() / block;
                    (dims, blocks * bytes)
                }
                None => (std::iter::once(rows).chain(rest).collect(), rows * 5),
            };
            prop::collection::vec(any::<u8>(), len as usize)
                .prop_map(move |data| (dims.clone(), ty, data))
        },
    )
}

/// A valid GGUF file built from random parts, and what the reader must give back.
#[derive(Debug, Clone)]
struct Built {
    bytes: Vec<u8>,
    version: u32,
    alignment: u64,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<Tensor>,
    /// Bytes of the header (before the padding to the data section).
    header_len: usize,
}

/// A metadata key or tensor name: dotted ASCII like real keys, or any text.
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_.0-9]{0,24}", any::<String>()]
        .prop_filter("the alignment key is set apart", |k| {
            k != "general.alignment"
        })
}

/// Valid GGUF files: version 2 or 3, 0 to 7 metadata entries in random order, an alignment
/// of 1 to 256 (`general.alignment` of a random integer type, absent for the default 32),
/// and 0 to 4 tensors.
fn built() -> impl Strategy<Value = Built> {
    let metadata = prop::collection::btree_map(name(), value(), 0..8)
        .prop_map(|map| map.into_iter().collect::<Vec<_>>())
        .prop_shuffle();
    let alignment = (
        prop::sample::select(vec![1u64, 2, 4, 8, 16, 32, 64, 128, 256]),
        prop::sample::select(vec![
            GgufValueType::U32,
            GgufValueType::U64,
            GgufValueType::I32,
            GgufValueType::U16,
        ]),
    );
    let tensors = prop::collection::btree_map(name(), tensor(), 0..5);
    (
        prop_oneof![Just(2u32), Just(3)],
        metadata,
        alignment,
        tensors,
    )
        .prop_map(|(version, mut metadata, (alignment, ty), tensors)| {
            if alignment != DEFAULT_ALIGNMENT {
                let value = match ty {
                    GgufValueType::U64 => GgufValue::U64(alignment),
                    GgufValueType::I32 => GgufValue::I32(alignment as i32),
                    GgufValueType::U16 => GgufValue::U16(alignment as u16),
                    _ => GgufValue::U32(alignment as u32),
                };
                metadata.push(("general.alignment".to_owned(), value));
            }
            let tensors: Vec<Tensor> = tensors
                .into_iter()
                .map(|(name, (dims, ty, data))| Tensor {
                    name,
                    dims,
                    ty,
                    data,
                })
                .collect();
            build(version, alignment, metadata, tensors)
        })
}

/// Writes the file of [`built`] with the test writer of `gguf::tests`.
fn build(
    version: u32,
    alignment: u64,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<Tensor>,
) -> Built {
    let kvs: Vec<(&str, u32, Vec<u8>)> = metadata
        .iter()
        .map(|(key, value)| (key.as_str(), type_id(type_of(value)), encode(value)))
        .collect();
    let test_tensors: Vec<TestTensor<'_>> = tensors
        .iter()
        .map(|t| TestTensor {
            name: &t.name,
            dims: t.dims.clone(),
            ty: t.ty,
            data: t.data.clone(),
        })
        .collect();
    let bytes = write_gguf(version, &kvs, &test_tensors, alignment);
    let kv_bytes: usize = kvs.iter().map(|(k, _, v)| 8 + k.len() + 4 + v.len()).sum();
    let info_bytes: usize = tensors
        .iter()
        .map(|t| 8 + t.name.len() + 4 + 8 * t.dims.len() + 4 + 8)
        .sum();
    Built {
        bytes,
        version,
        alignment,
        metadata,
        tensors,
        header_len: 24 + kv_bytes + info_bytes,
    }
}

/// Writes `bytes` to a temporary file and opens it, checking that the open allocates no
/// more than [`justified`] and that a failure is one of the reader's header errors.
fn open(dir: &tempfile::TempDir, bytes: &[u8]) -> Result<GgufFile, ImportError> {
    let path = save(dir.path(), bytes);
    let (opened, peak) = peak_during(|| GgufFile::open(&path));
    assert!(
        peak <= justified(bytes.len()),
        "open of {} bytes held {peak} bytes",
        bytes.len()
    );
    if let Err(error) = &opened {
        assert!(!error.to_string().is_empty());
        assert!(
            matches!(
                error,
                ImportError::InvalidGguf { .. }
                    | ImportError::UnsupportedGgufVersion { .. }
                    | ImportError::ExceedsFile { .. }
                    | ImportError::OutOfRange { .. }
            ),
            "{error:?}"
        );
    }
    opened
}

/// Whether `result` is the refusal of a tensor type the read does not handle.
fn unsupported<T>(result: &Result<T, ImportError>) -> bool {
    matches!(result, Err(ImportError::UnsupportedTensorType { .. }))
}

/// Reads every tensor of an open file in every way: each read succeeds with the size the
/// tensor's info gives, or is refused as an unsupported type, within [`justified`] bytes.
fn read_everything(file: &mut GgufFile, len: usize) {
    for info in file.tensors().to_vec() {
        let (raw, peak) = peak_during(|| file.read_raw(&info.name));
        assert!(peak <= justified(len), "read_raw held {peak} bytes");
        match &raw {
            Ok(raw) => assert_eq!(Some(raw.len() as u64), info.n_bytes),
            Err(_) => assert!(unsupported(&raw) && info.n_bytes.is_none(), "{raw:?}"),
        }
        let (floats, peak) = peak_during(|| file.read_f32(&info.name));
        assert!(peak <= justified(len), "read_f32 held {peak} bytes");
        match &floats {
            Ok(floats) => assert_eq!(floats.len() as u64, info.n_elements()),
            Err(_) => assert!(unsupported(&floats), "{floats:?}"),
        }
        let (blocks, peak) = peak_during(|| file.read_quantized(&info.name));
        assert!(peak <= justified(len), "read_quantized held {peak} bytes");
        let count = match &blocks {
            Ok(QuantizedBlocks::Q4_0(b)) => b.len(),
            Ok(QuantizedBlocks::Q4_1(b)) => b.len(),
            Ok(QuantizedBlocks::Q8_0(b)) => b.len(),
            Err(_) => {
                assert!(unsupported(&blocks), "{blocks:?}");
                continue;
            }
        };
        let (_, block_bytes) = info.ggml_type.block_layout().unwrap();
        assert_eq!(Some(count as u64 * block_bytes), info.n_bytes);
    }
}

/// Random bytes, some after a `GGUF` magic with a version (2, 3 or any) and tensor and
/// metadata counts (small or any), so that they reach the metadata and tensor tables.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let count = prop_oneof![0u64..4, any::<u64>()];
    let header = (
        prop_oneof![Just(2u32), Just(3), any::<u32>()],
        count.clone(),
        count,
    )
        .prop_map(|(version, tensors, kvs)| {
            let mut out = b"GGUF".to_vec();
            out.extend(version.to_le_bytes());
            out.extend(tensors.to_le_bytes());
            out.extend(kvs.to_le_bytes());
            out
        });
    let tail = prop::collection::vec(any::<u8>(), 0..512);
    prop_oneof![
        tail.clone(),
        (header, tail).prop_map(|(mut head, tail)| {
            head.extend(tail);
            head
        }),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    /// Property (a): arbitrary bytes open or are refused with a header error, within the
    /// bytes the file justifies; a wrong magic or version is named as such.
    #[test]
    fn arbitrary_bytes_open_or_are_refused(bytes in hostile_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        match open(&dir, &bytes) {
            Ok(mut file) => {
                prop_assert_eq!(&bytes[..4], b"GGUF");
                read_everything(&mut file, bytes.len());
            }
            Err(error) if bytes.len() >= 4 && bytes[..4] != *b"GGUF" => {
                prop_assert!(error.to_string().contains("bad magic"), "{}", error);
            }
            Err(error) if bytes.len() >= 8 => {
                let version = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
                let unsupported = matches!(
                    error,
                    ImportError::UnsupportedGgufVersion { version: v, .. } if v == version
                );
                prop_assert_eq!(unsupported, version != 2 && version != 3, "{}", error);
            }
            Err(_) => {}
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Property (b): a valid file gives back its version, alignment, metadata (keys in
    /// order, values bit for bit), and tensors (names, dims, types, aligned offsets, bytes).
    #[test]
    fn valid_files_read_back(built in built()) {
        let dir = tempfile::tempdir().unwrap();
        let mut file = open(&dir, &built.bytes).unwrap();
        prop_assert_eq!(file.version(), built.version);
        prop_assert_eq!(file.alignment(), built.alignment);
        let keys: Vec<&str> = file.metadata().iter().map(|(k, _)| k.as_str()).collect();
        let sent: Vec<&str> = built.metadata.iter().map(|(k, _)| k.as_str()).collect();
        prop_assert_eq!(keys, sent);
        for (key, value) in &built.metadata {
            let read = file.get(key).unwrap();
            prop_assert_eq!(type_of(read), type_of(value));
            prop_assert_eq!(encode(read), encode(value), "{}", key);
        }
        prop_assert_eq!(file.tensors().len(), built.tensors.len());
        for (info, tensor) in file.tensors().to_vec().iter().zip(&built.tensors) {
            let ty = GgmlType::from_id(tensor.ty);
            prop_assert_eq!(&info.name, &tensor.name);
            prop_assert_eq!(&info.dims, &tensor.dims);
            prop_assert_eq!(info.ggml_type, ty);
            prop_assert_eq!(info.offset % built.alignment, 0);
            let shape: Vec<usize> = tensor.dims.iter().rev().map(|&d| d as usize).collect();
            prop_assert_eq!(info.shape(), shape);
            match ty.block_layout() {
                Some(_) => {
                    prop_assert_eq!(info.n_bytes, Some(tensor.data.len() as u64));
                    prop_assert_eq!(&file.read_raw(&tensor.name).unwrap(), &tensor.data);
                }
                None => {
                    prop_assert_eq!(info.n_bytes, None);
                    let raw = file.read_raw(&tensor.name);
                    prop_assert!(unsupported(&raw), "{:?}", raw);
                }
            }
            if ty == GgmlType::F32 {
                let floats = file.read_f32(&tensor.name).unwrap();
                let bits: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
                prop_assert_eq!(bits, tensor.data.clone());
            }
        }
        read_everything(&mut file, built.bytes.len());
    }

    /// Property (c): a valid file cut short opens exactly when the cut leaves its header and
    /// every tensor's bytes whole; else it is refused with a header error.
    #[test]
    fn cut_files_open_exactly_when_whole(
        built in built(),
        at in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let whole = open(&dir, &built.bytes).unwrap();
        let cut = at.index(built.bytes.len());
        let whole_up_to_cut = cut >= built.header_len
            && whole
                .tensors()
                .iter()
                .all(|t| t.offset + t.n_bytes.unwrap_or(0) <= cut as u64);
        drop(whole);
        match open(&dir, &built.bytes[..cut]) {
            Ok(mut file) => {
                prop_assert!(whole_up_to_cut, "cut at {cut} of {} opened", built.bytes.len());
                prop_assert_eq!(file.metadata().len(), built.metadata.len());
                read_everything(&mut file, cut);
            }
            Err(error) => prop_assert!(!whole_up_to_cut, "cut at {cut}: {error}"),
        }
    }

    /// Property (c): a valid file with one byte changed opens or is refused with a header
    /// error; a change past the header leaves the metadata alone and shows in the tensor
    /// whose bytes it hit.
    #[test]
    fn changed_bytes_open_or_are_refused(
        built in built(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let at = at.index(built.bytes.len());
        let mut bytes = built.bytes.clone();
        bytes[at] = byte;
        let opened = open(&dir, &bytes);
        if at < built.header_len {
            if let Ok(mut file) = opened {
                read_everything(&mut file, bytes.len());
            }
            return Ok(());
        }
        let mut file = opened.unwrap();
        prop_assert_eq!(file.metadata().len(), built.metadata.len());
        for info in file.tensors().to_vec() {
            let Some(n_bytes) = info.n_bytes else { continue };
            let raw = file.read_raw(&info.name).unwrap();
            let range = info.offset as usize..(info.offset + n_bytes) as usize;
            let mut expected = built.bytes[range.clone()].to_vec();
            if range.contains(&at) {
                expected[at - range.start] = byte;
            }
            prop_assert_eq!(raw, expected);
        }
        read_everything(&mut file, bytes.len());
    }
}
