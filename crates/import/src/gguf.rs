//! A reader of GGUF files (versions 2 and 3), the format of llama.cpp checkpoints: parses the
//! header (metadata and tensor infos) up front, checks every tensor's byte range against the
//! file, then reads one tensor at a time from disk, either dequantized to `f32` or, for
//! Q4_0 / Q4_1 / Q8_0, as typed blocks the graph writer repacks for `MatMulNBits`.

mod header;
mod quant;
mod types;
mod value;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QK, QK_K};
pub use types::GgmlType;
pub use value::{GgufValue, GgufValueType};

use super::error::ImportError;
use header::{parse_header, Header};
use value::HeaderReader;

/// The file magic, `GGUF` as bytes.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// One tensor's entry in the GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the contiguous one (a weight matrix of PyTorch
    /// shape `[out, in]` has `dims == [in, out]`).
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Bytes of data, where the type's layout is known.
    pub n_bytes: Option<u64>,
}

impl GgufTensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The shape in row-major (PyTorch, ONNX) order: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Length of one row (`dims[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
}

/// The blocks of a Q4_0, Q4_1 or Q8_0 tensor, row after row (each row has
/// [`GgufTensorInfo::row_len`] / [`QK`] blocks).
#[derive(Debug, Clone, PartialEq)]
pub enum QuantizedBlocks {
    /// Q4_0 blocks.
    Q4_0(Vec<BlockQ4_0>),
    /// Q4_1 blocks.
    Q4_1(Vec<BlockQ4_1>),
    /// Q8_0 blocks.
    Q8_0(Vec<BlockQ8_0>),
}

/// An open GGUF file whose header has been read.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    file: File,
    version: u32,
    alignment: u64,
    metadata: Vec<(String, GgufValue)>,
    index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl GgufFile {
    /// Opens `path`, parses its header and checks every tensor's byte range.
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(ImportError::io(path))?;
        let len = file.metadata().map_err(ImportError::io(path))?.len();
        let mut reader = HeaderReader::new(BufReader::with_capacity(1 << 16, &file), path, len);
        let Header {
            version,
            alignment,
            metadata,
            tensors,
        } = parse_header(&mut reader)?;
        let index = metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            path: path.to_owned(),
            file,
            version,
            alignment,
            metadata,
            index,
            tensors,
            tensor_index,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// The metadata value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The metadata value of `key`, or [`ImportError::GgufMetadata`] if it is missing.
    pub fn require(&self, key: &str) -> Result<&GgufValue, ImportError> {
        self.get(key).ok_or_else(|| metadata_error(key, "missing"))
    }

    /// The non-negative integer at `key`.
    pub fn require_u64(&self, key: &str) -> Result<u64, ImportError> {
        self.require(key)?
            .as_u64()
            .ok_or_else(|| metadata_error(key, "not a non-negative integer"))
    }

    /// The number at `key`.
    pub fn require_f64(&self, key: &str) -> Result<f64, ImportError> {
        self.require(key)?
            .as_f64()
            .ok_or_else(|| metadata_error(key, "not a number"))
    }

    /// The string at `key`.
    pub fn require_str(&self, key: &str) -> Result<&str, ImportError> {
        self.require(key)?
            .as_str()
            .ok_or_else(|| metadata_error(key, "not a string"))
    }

    /// The array at `key`.
    pub fn require_array(&self, key: &str) -> Result<&[GgufValue], ImportError> {
        self.require(key)?
            .as_array()
            .ok_or_else(|| metadata_error(key, "not an array"))
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The info of tensor `name`, or [`ImportError::MissingTensor`].
    fn require_tensor(&self, name: &str) -> Result<GgufTensorInfo, ImportError> {
        self.tensor(name)
            .cloned()
            .ok_or_else(|| ImportError::MissingTensor {
                name: name.to_owned(),
            })
    }

    /// The raw bytes of tensor `name` as stored in the file.
    pub fn read_raw(&mut self, name: &str) -> Result<Vec<u8>, ImportError> {
        let info = self.require_tensor(name)?;
        let n_bytes = info.n_bytes.ok_or_else(|| unsupported(&info))?;
        let mut buf = vec![0u8; n_bytes as usize];
        self.file
            .seek(SeekFrom::Start(info.offset))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(ImportError::io(&self.path))?;
        Ok(buf)
    }

    /// Tensor `name` converted to `f32`, in row-major order of [`GgufTensorInfo::shape`].
    pub fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, ImportError> {
        let info = self.require_tensor(name)?;
        if !info.ggml_type.dequantizes() {
            return Err(unsupported(&info));
        }
        let raw = self.read_raw(name)?;
        let mut out = Vec::with_capacity(info.n_elements() as usize);
        if !quant::dequantize_into(info.ggml_type, &raw, &mut out) {
            return Err(unsupported(&info));
        }
        Ok(out)
    }

    /// The blocks of tensor `name`, which must be stored as Q4_0, Q4_1 or Q8_0 (the graph
    /// writer repacks them for `MatMulNBits` without converting to `f32`).
    pub fn read_quantized(&mut self, name: &str) -> Result<QuantizedBlocks, ImportError> {
        let info = self.require_tensor(name)?;
        let parse = match info.ggml_type {
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => info.ggml_type,
            _ => return Err(unsupported(&info)),
        };
        let raw = self.read_raw(name)?;
        Ok(match parse {
            GgmlType::Q4_0 => {
                QuantizedBlocks::Q4_0(quant::parse_blocks(&raw, BlockQ4_0::from_bytes))
            }
            GgmlType::Q4_1 => {
                QuantizedBlocks::Q4_1(quant::parse_blocks(&raw, BlockQ4_1::from_bytes))
            }
            _ => QuantizedBlocks::Q8_0(quant::parse_blocks(&raw, BlockQ8_0::from_bytes)),
        })
    }
}

/// An [`ImportError::GgufMetadata`] for `key`.
fn metadata_error(key: &str, reason: &str) -> ImportError {
    ImportError::GgufMetadata {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

/// An [`ImportError::UnsupportedTensorType`] for `info`.
fn unsupported(info: &GgufTensorInfo) -> ImportError {
    ImportError::UnsupportedTensorType {
        name: info.name.clone(),
        ggml_type: info.ggml_type.name(),
    }
}
