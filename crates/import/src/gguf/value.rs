//! GGUF metadata values (every value type of the format, arrays included) and the bounded
//! reader that parses them from a file header: every length is checked against the bytes
//! left in the file before anything is allocated, and arrays against [`MAX_ARRAY_LEN`] and
//! the header's metadata values together against [`MAX_METADATA_VALUES`], so a corrupt or
//! hostile file gives an error, not an out-of-memory abort.

use std::io::Read;
use std::path::Path;

use super::super::error::ImportError;
use super::super::limits::{fit_in_file, in_range, MAX_ARRAY_LEN, MAX_METADATA_VALUES};

/// A metadata value type, as numbered in the GGUF format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufValueType {
    /// `uint8`.
    U8,
    /// `int8`.
    I8,
    /// `uint16`.
    U16,
    /// `int16`.
    I16,
    /// `uint32`.
    U32,
    /// `int32`.
    I32,
    /// `float32`.
    F32,
    /// `bool` (one byte).
    Bool,
    /// UTF-8 string with a `u64` length.
    String,
    /// Array: element type, `u64` count, elements.
    Array,
    /// `uint64`.
    U64,
    /// `int64`.
    I64,
    /// `float64`.
    F64,
}

impl GgufValueType {
    /// The type with GGUF number `id`, if there is one.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The fewest bytes one value of this type takes in the file.
    fn min_size(self) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 12,
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// String.
    String(String),
    /// Array of values of one type.
    Array {
        /// The declared element type (known even when the array is empty).
        element_type: GgufValueType,
        /// The elements.
        values: Vec<GgufValue>,
    },
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl GgufValue {
    /// The value as an unsigned integer, for any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, for any integer type that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, for float and integer types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array { values, .. } => Some(values),
            _ => None,
        }
    }

    /// A JSON rendering of the value (arrays in full).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Self::Bool(v) => Value::Bool(*v),
            Self::String(s) => Value::String(s.clone()),
            Self::F32(v) => serde_json::json!(v),
            Self::F64(v) => serde_json::json!(v),
            Self::Array { values, .. } => Value::Array(values.iter().map(Self::to_json).collect()),
            other => other
                .as_i64()
                .map(Value::from)
                .or_else(|| other.as_u64().map(Value::from))
                .unwrap_or(Value::Null),
        }
    }
}

/// Deepest nesting of arrays accepted.
const MAX_ARRAY_DEPTH: usize = 4;

/// A reader over a GGUF header that knows how many bytes the file has left, and how many
/// metadata values it has read (against [`MAX_METADATA_VALUES`]).
pub(super) struct HeaderReader<'a, R> {
    inner: R,
    path: &'a Path,
    /// Bytes consumed so far.
    pub pos: u64,
    len: u64,
    values: u64,
}

impl<'a, R: Read> HeaderReader<'a, R> {
    /// Wraps `inner`, positioned at the start of the file at `path` of `len` bytes.
    pub fn new(inner: R, path: &'a Path, len: u64) -> Self {
        Self {
            inner,
            path,
            pos: 0,
            len,
            values: 0,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &'a Path {
        self.path
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Bytes left in the file.
    pub fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// An [`ImportError::InvalidGguf`] for this file.
    pub fn invalid(&self, reason: String) -> ImportError {
        ImportError::InvalidGguf {
            path: self.path.to_owned(),
            reason,
        }
    }

    /// Checks that `count` items of at least `unit` bytes each, claimed by `what`, fit in
    /// the bytes left, and returns the bytes they take at least.
    pub fn claim(&self, what: &str, count: u64, unit: u64) -> Result<u64, ImportError> {
        self.fits(what, count, unit, self.remaining())
    }

    /// Checks that `count` items of `unit` bytes each, claimed by `what`, fit in `left`
    /// bytes of this file ([`fit_in_file`]), and returns the bytes they take.
    pub fn fits(&self, what: &str, count: u64, unit: u64, left: u64) -> Result<u64, ImportError> {
        fit_in_file(what, count, unit, left).map_err(|o| o.into_error("GGUF", self.path))
    }

    /// Counts `count` more metadata values, refusing a header with more than
    /// [`MAX_METADATA_VALUES`] in all.
    pub fn count_values(&mut self, count: u64) -> Result<(), ImportError> {
        let total = self.values.saturating_add(count);
        in_range(
            "GGUF metadata values in total",
            total,
            0,
            MAX_METADATA_VALUES,
        )?;
        self.values = total;
        Ok(())
    }

    /// Reads exactly `N` bytes.
    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ImportError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    /// Fills `buf`, or says that the file ends inside `what`.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), ImportError> {
        self.claim(what, buf.len() as u64, 1)?;
        self.inner
            .read_exact(buf)
            .map_err(ImportError::io(self.path))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, ImportError> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, ImportError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads a GGUF string (`u64` length, UTF-8 bytes).
    pub fn string(&mut self, what: &str) -> Result<String, ImportError> {
        let len = self.u64(what)?;
        let mut buf = vec![0u8; self.claim(what, len, 1)? as usize];
        self.fill(&mut buf, what)?;
        String::from_utf8(buf)
            .map_err(|_| self.invalid(format!("{what} at byte {} is not UTF-8", self.pos)))
    }

    /// Reads a value of type `ty`.
    pub fn value(&mut self, ty: GgufValueType, what: &str) -> Result<GgufValue, ImportError> {
        self.value_at_depth(ty, what, 0)
    }

    /// Reads a value of type `ty` nested inside `depth` arrays.
    fn value_at_depth(
        &mut self,
        ty: GgufValueType,
        what: &str,
        depth: usize,
    ) -> Result<GgufValue, ImportError> {
        Ok(match ty {
            GgufValueType::U8 => GgufValue::U8(u8::from_le_bytes(self.array(what)?)),
            GgufValueType::I8 => GgufValue::I8(i8::from_le_bytes(self.array(what)?)),
            GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            GgufValueType::U32 => GgufValue::U32(self.u32(what)?),
            GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            GgufValueType::U64 => GgufValue::U64(self.u64(what)?),
            GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            GgufValueType::Bool => match self.array::<1>(what)? {
                [0] => GgufValue::Bool(false),
                [1] => GgufValue::Bool(true),
                [b] => {
                    return Err(self.invalid(format!("{what}: bool byte {b} is neither 0 nor 1")))
                }
            },
            GgufValueType::String => GgufValue::String(self.string(what)?),
            GgufValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.invalid(format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let id = self.u32(what)?;
                let element_type = GgufValueType::from_id(id).ok_or_else(|| {
                    self.invalid(format!("{what}: unknown array element type {id}"))
                })?;
                let count = self.u64(what)?;
                in_range(what, count, 0, MAX_ARRAY_LEN)?;
                self.claim(what, count, element_type.min_size())?;
                self.count_values(count)?;
                let mut values = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    values.push(self.value_at_depth(element_type, what, depth + 1)?);
                }
                GgufValue::Array {
                    element_type,
                    values,
                }
            }
        })
    }
}
