//! Parsing of a GGUF header: magic, version, metadata key/values, tensor infos, alignment,
//! and the checks that place every tensor's bytes inside the file.

use std::collections::HashSet;
use std::io::Read;

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

/// Parses the header of a file of `len` bytes: `Err(reason)` if it is malformed,
/// `Ok(Err(version))` if its version is not 2 or 3.
pub(super) fn parse_header<R: Read>(
    r: &mut HeaderReader<R>,
    len: u64,
) -> Result<Result<Header, u32>, String> {
    let magic: [u8; 4] = r.array("magic")?;
    if magic != GGUF_MAGIC {
        return Err(format!("bad magic {magic:02x?}, expected \"GGUF\""));
    }
    let version = r.u32("version")?;
    if version != 2 && version != 3 {
        return Ok(Err(version));
    }
    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.u64("metadata count")?;
    // A key-value pair takes at least 12 bytes, a tensor info at least 24.
    if n_kv
        .saturating_mul(12)
        .saturating_add(n_tensors.saturating_mul(24))
        > r.remaining()
    {
        return Err(format!(
            "truncated: {n_kv} metadata entries and {n_tensors} tensors cannot fit in {len} bytes"
        ));
    }
    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut seen = HashSet::new();
    for _ in 0..n_kv {
        let key = r.string("metadata key")?;
        let id = r.u32(&key)?;
        let ty = GgufValueType::from_id(id)
            .ok_or_else(|| format!("metadata `{key}`: unknown value type {id}"))?;
        let value = r.value(ty, &key)?;
        if !seen.insert(key.clone()) {
            return Err(format!("duplicate metadata key `{key}`"));
        }
        metadata.push((key, value));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => return Err(format!("general.alignment {v:?} is not a power of two")),
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
                return Err(format!("duplicate tensor `{name}`"));
            }
            place_tensor(name, dims, ggml_type, rel, data_start, alignment, len)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ok(Header {
        version,
        alignment,
        metadata,
        tensors,
    }))
}

/// One raw tensor info: name, dims, type, offset relative to the data section.
fn tensor_info<R: Read>(
    r: &mut HeaderReader<R>,
) -> Result<(String, Vec<u64>, GgmlType, u64), String> {
    let name = r.string("tensor name")?;
    let n_dims = r.u32(&name)?;
    if n_dims > MAX_DIMS {
        return Err(format!(
            "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})"
        ));
    }
    let dims = (0..n_dims)
        .map(|_| r.u64(&name))
        .collect::<Result<Vec<_>, _>>()?;
    let ggml_type = GgmlType::from_id(r.u32(&name)?);
    let offset = r.u64(&name)?;
    Ok((name, dims, ggml_type, offset))
}

/// Checks a tensor's size and byte range and makes its info.
fn place_tensor(
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    rel: u64,
    data_start: u64,
    alignment: u64,
    len: u64,
) -> Result<GgufTensorInfo, String> {
    if !rel.is_multiple_of(alignment) {
        return Err(format!(
            "tensor `{name}`: offset {rel} is not a multiple of {alignment}"
        ));
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("tensor `{name}`: dimensions {dims:?} overflow"))?;
    let offset = data_start
        .checked_add(rel)
        .ok_or_else(|| format!("tensor `{name}`: offset {rel} overflows"))?;
    let n_bytes = match ggml_type.block_layout() {
        None => None,
        Some((block, bytes)) => {
            let row = dims.first().copied().unwrap_or(1);
            if !row.is_multiple_of(block) {
                return Err(format!(
                    "tensor `{name}`: row length {row} is not a multiple of the {ggml_type} \
                     block size {block}"
                ));
            }
            Some((n_elements / block).saturating_mul(bytes))
        }
    };
    let end = offset.saturating_add(n_bytes.unwrap_or(0));
    if end > len {
        return Err(format!(
            "tensor `{name}`: data {offset}..{end} runs past the end of the file ({len} bytes)"
        ));
    }
    Ok(GgufTensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_bytes,
    })
}
