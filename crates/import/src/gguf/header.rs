//! Parsing of a GGUF header: magic, version, metadata key/values, tensor infos, alignment,
//! and the checks that place every tensor's bytes inside the file.

use std::collections::HashSet;
use std::io::Read;

use super::super::error::ImportError;
use super::super::limits::{in_range, MAX_TENSORS};
use super::value::{GgufValue, GgufValueType, HeaderReader};
use super::{GgmlType, GgufTensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC};

/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;

/// What the header holds.
pub(super) struct Header {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<GgufTensorInfo>,
}

/// Parses the header of a GGUF file.
pub(super) fn parse_header<R: Read>(r: &mut HeaderReader<'_, R>) -> Result<Header, ImportError> {
    let magic: [u8; 4] = r.array("magic")?;
    if magic != GGUF_MAGIC {
        return Err(r.invalid(format!("bad magic {magic:02x?}, expected \"GGUF\"")));
    }
    let version = r.u32("version")?;
    if version != 2 && version != 3 {
        return Err(ImportError::UnsupportedGgufVersion {
            path: r.path().to_owned(),
            version,
        });
    }
    let n_tensors = in_range("GGUF tensor count", r.u64("tensor count")?, 0, MAX_TENSORS)?;
    let n_kv = r.u64("metadata count")?;
    r.count_values(n_kv)?;
    // A key-value pair takes at least 12 bytes, a tensor info at least 24 (both counts are
    // bounded above, so this cannot overflow).
    r.claim(
        "metadata entries and tensor infos",
        n_kv * 12 + n_tensors * 24,
        1,
    )?;
    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut seen = HashSet::new();
    for _ in 0..n_kv {
        let key = r.string("metadata key")?;
        let id = r.u32(&key)?;
        let ty = GgufValueType::from_id(id)
            .ok_or_else(|| r.invalid(format!("metadata `{key}`: unknown value type {id}")))?;
        let value = r.value(ty, &key)?;
        if !seen.insert(key.clone()) {
            return Err(r.invalid(format!("duplicate metadata key `{key}`")));
        }
        metadata.push((key, value));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => return Err(r.invalid(format!("general.alignment {v:?} is not a power of two"))),
        },
    };
    let mut infos = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        infos.push(tensor_info(r)?);
    }
    let data_start = r.pos.div_ceil(alignment) * alignment;
    let mut names = HashSet::new();
    let tensors = infos
        .into_iter()
        .map(|(name, dims, ggml_type, rel)| {
            if !names.insert(name.clone()) {
                return Err(r.invalid(format!("duplicate tensor `{name}`")));
            }
            place_tensor(r, name, dims, ggml_type, rel, data_start, alignment)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Header {
        version,
        alignment,
        metadata,
        tensors,
    })
}

/// One raw tensor info: name, dims, type, offset relative to the data section.
fn tensor_info<R: Read>(
    r: &mut HeaderReader<'_, R>,
) -> Result<(String, Vec<u64>, GgmlType, u64), ImportError> {
    let name = r.string("tensor name")?;
    let n_dims = r.u32(&name)?;
    if n_dims > MAX_DIMS {
        return Err(r.invalid(format!(
            "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})"
        )));
    }
    let dims = (0..n_dims)
        .map(|_| r.u64(&name))
        .collect::<Result<Vec<_>, _>>()?;
    let ggml_type = GgmlType::from_id(r.u32(&name)?);
    let offset = r.u64(&name)?;
    Ok((name, dims, ggml_type, offset))
}

/// Checks a tensor's size and byte range (its data must lie inside the file) and makes its
/// info.
fn place_tensor<R: Read>(
    r: &HeaderReader<'_, R>,
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    rel: u64,
    data_start: u64,
    alignment: u64,
) -> Result<GgufTensorInfo, ImportError> {
    if !rel.is_multiple_of(alignment) {
        return Err(r.invalid(format!(
            "tensor `{name}`: offset {rel} is not a multiple of {alignment}"
        )));
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| r.invalid(format!("tensor `{name}`: dimensions {dims:?} overflow")))?;
    let offset = data_start
        .checked_add(rel)
        .ok_or_else(|| r.invalid(format!("tensor `{name}`: offset {rel} overflows")))?;
    let what = format!("tensor `{name}`");
    r.fits(&what, offset, 1, r.len())?;
    let n_bytes = match ggml_type.block_layout() {
        None => None,
        Some((block, bytes)) => {
            let row = dims.first().copied().unwrap_or(1);
            if !row.is_multiple_of(block) {
                return Err(r.invalid(format!(
                    "tensor `{name}`: row length {row} is not a multiple of the {ggml_type} \
                     block size {block}"
                )));
            }
            Some(r.fits(&what, n_elements / block, bytes, r.len() - offset)?)
        }
    };
    Ok(GgufTensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_bytes,
    })
}
