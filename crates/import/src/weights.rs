//! A streaming reader of `.safetensors` files: parses only the JSON header up front, then reads
//! one tensor at a time from disk and converts it (F32, F16 or BF16) to `f32`, so importing a
//! model never holds the whole checkpoint in memory. The header's length and every tensor's
//! byte range are checked against the file before anything is allocated for them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ImportError;
use super::limits::{fit_in_file, in_range};

/// Largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER_LEN: u64 = 100_000_000;
/// Bytes read from disk at a time.
const READ_BLOCK: usize = 1 << 20;

/// One tensor's entry in the safetensors header.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TensorInfo {
    /// Stored data type, e.g. `F32`.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Byte range within the data section.
    pub data_offsets: (u64, u64),
}

/// An open safetensors file whose header has been read.
#[derive(Debug)]
pub(crate) struct SafetensorsFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    tensors: HashMap<String, TensorInfo>,
}

impl SafetensorsFile {
    /// Opens `path` and parses its header.
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let invalid = |reason: String| ImportError::InvalidSafetensors {
            path: path.to_owned(),
            reason,
        };
        let mut file = File::open(path).map_err(ImportError::io(path))?;
        let file_len = file.metadata().map_err(ImportError::io(path))?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes)
            .map_err(ImportError::io(path))?;
        let header_len = in_range(
            "safetensors header length",
            u64::from_le_bytes(len_bytes),
            0,
            MAX_HEADER_LEN,
        )?;
        fit_in_file("the header", header_len, 1, file_len - 8)
            .map_err(|o| o.into_error("safetensors", path))?;
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)
            .map_err(ImportError::io(path))?;
        let raw: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|source| ImportError::Json {
                file: path.to_owned(),
                source,
            })?;
        let data_len = file_len - 8 - header_len;
        let mut tensors = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            if name == "__metadata__" {
                continue;
            }
            let info: TensorInfo =
                serde_json::from_value(value).map_err(|source| ImportError::Json {
                    file: path.to_owned(),
                    source,
                })?;
            let (start, end) = info.data_offsets;
            if start > end {
                return Err(invalid(format!(
                    "tensor {name}: data offsets {start}..{end} out of range"
                )));
            }
            fit_in_file(&format!("tensor {name}"), end, 1, data_len)
                .map_err(|o| o.into_error("safetensors", path))?;
            tensors.insert(name, info);
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            data_start: 8 + header_len,
            tensors,
        })
    }

    /// The header entry of `name`, if the file has that tensor.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Names of all tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Reads tensor `name` and converts it to `f32`.
    pub fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, ImportError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| ImportError::MissingTensor {
                name: name.to_owned(),
            })?;
        let elem_size = dtype_size(name, &info.dtype)?;
        let n_bytes = info
            .shape
            .iter()
            .try_fold(elem_size, |n, &d| n.checked_mul(d));
        let (start, end) = info.data_offsets;
        if n_bytes != Some((end - start) as usize) {
            return Err(ImportError::InvalidSafetensors {
                path: self.path.clone(),
                reason: format!(
                    "tensor {name}: {} bytes for {} values of shape {:?}",
                    end - start,
                    info.dtype,
                    info.shape
                ),
            });
        }
        let numel = (end - start) as usize / elem_size;
        let dtype = info.dtype.clone();
        let io_err = ImportError::io(&self.path);
        // Read and convert a block at a time: only the f32 result is held in full.
        let mut out = Vec::with_capacity(numel);
        let mut block = vec![0u8; READ_BLOCK - READ_BLOCK % elem_size];
        let mut left = numel * elem_size;
        let read = (|| {
            self.file.seek(SeekFrom::Start(self.data_start + start))?;
            while left > 0 {
                let n = left.min(block.len());
                self.file.read_exact(&mut block[..n])?;
                convert_into(&dtype, &block[..n], &mut out);
                left -= n;
            }
            Ok(())
        })();
        read.map_err(io_err)?;
        Ok(out)
    }
}

/// Bytes per element of a supported dtype.
fn dtype_size(name: &str, dtype: &str) -> Result<usize, ImportError> {
    match dtype {
        "F32" => Ok(4),
        "F16" | "BF16" => Ok(2),
        other => Err(ImportError::UnsupportedDtype {
            name: name.to_owned(),
            dtype: other.to_owned(),
        }),
    }
}

/// Whether `dtype` is one [`SafetensorsFile::read_f32`] converts.
pub(crate) fn check_dtype(name: &str, dtype: &str) -> Result<(), ImportError> {
    dtype_size(name, dtype).map(|_| ())
}

/// Appends little-endian bytes of a supported dtype to `out` as `f32`.
fn convert_into(dtype: &str, bytes: &[u8], out: &mut Vec<f32>) {
    match dtype {
        "F16" => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        "BF16" => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        _ => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use safetensors::tensor::{serialize_to_file, TensorView};
    use safetensors::Dtype;

    #[test]
    fn reads_f32_f16_and_bf16() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let values = [1.5f32, -2.0, 0.25];
        let f32b: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16b: Vec<u8> = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16b: Vec<u8> = values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        let i8b = vec![1u8, 2, 3];
        let tensors = vec![
            ("a", TensorView::new(Dtype::F32, vec![3], &f32b).unwrap()),
            ("b", TensorView::new(Dtype::F16, vec![3], &f16b).unwrap()),
            ("c", TensorView::new(Dtype::BF16, vec![3], &bf16b).unwrap()),
            ("d", TensorView::new(Dtype::I8, vec![3], &i8b).unwrap()),
        ];
        serialize_to_file(tensors, None, &path).unwrap();
        let mut st = SafetensorsFile::open(&path).unwrap();
        for name in ["a", "b", "c"] {
            assert_eq!(st.read_f32(name).unwrap(), values.to_vec(), "{name}");
        }
        assert!(matches!(
            st.read_f32("d"),
            Err(ImportError::UnsupportedDtype { name, dtype }) if name == "d" && dtype == "I8"
        ));
        assert!(matches!(
            st.read_f32("zz"),
            Err(ImportError::MissingTensor { .. })
        ));
    }

    #[test]
    fn truncated_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, 1000u64.to_le_bytes()).unwrap();
        assert!(matches!(
            SafetensorsFile::open(&path),
            Err(ImportError::ExceedsFile {
                claimed: 1000,
                left: 0,
                ..
            })
        ));
        std::fs::write(&path, u64::MAX.to_le_bytes()).unwrap();
        assert!(matches!(
            SafetensorsFile::open(&path),
            Err(ImportError::OutOfRange { .. })
        ));
    }
}
