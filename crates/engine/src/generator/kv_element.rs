//! The element types a key/value cache may hold: those of the graph's `past_key_values.*`
//! inputs and `present.*` outputs, `f32` for a float32 graph and `half::f16` for a float16
//! one (`docs/model-format.md`).

use std::path::Path;

use half::f16;
use half::vec::HalfBitsVecExt;
use ort::session::Session;
use ort::sys::ONNXTensorElementDataType;
use ort::value::{TensorElementType, ValueType};

use crate::EngineError;

/// The cache input whose element type every cache tensor of the graph shares.
const FIRST_PAST: &str = "past_key_values.0.key";

mod sealed {
    /// Keeps [`super::KvElement`] to the types listed in this module.
    pub trait Sealed {}

    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// An element of the cache tensors. Every implementation reads all-zero bytes as zero, so
/// memory given back to the operating system ([`super::pages`]) stays a valid, empty cache.
pub(crate) trait KvElement:
    sealed::Sealed + Copy + PartialEq + std::fmt::Debug + Send + Sync + 'static
{
    /// The ONNX element type of tensors of this element.
    const ONNX_TYPE: ONNXTensorElementDataType;

    /// `len` zeros, allocated as zeroed memory: a large buffer comes as fresh zero pages that
    /// become resident only when written (filling it element by element would touch them all).
    fn zeroed(len: usize) -> Vec<Self>;
}

impl KvElement for f32 {
    const ONNX_TYPE: ONNXTensorElementDataType =
        ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;

    fn zeroed(len: usize) -> Vec<Self> {
        vec![0.0; len]
    }
}

impl KvElement for f16 {
    const ONNX_TYPE: ONNXTensorElementDataType =
        ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;

    fn zeroed(len: usize) -> Vec<Self> {
        // Zero bits are +0.0; `vec!` of an integer zero takes the zeroed allocation.
        vec![0u16; len].reinterpret_into()
    }
}

/// The element type of a graph's cache tensors, as read from its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheElement {
    /// `tensor(float)`: `f32`.
    F32,
    /// `tensor(float16)`: `half::f16`.
    F16,
}

impl CacheElement {
    /// The element type of the cache tensors of `session`, opened from the graph at `path`:
    /// that of its input `past_key_values.0.key` (`F32` for a graph without it, which binds no
    /// cache). Any type but float32 and float16 is an [`EngineError::InvalidModel`].
    pub(crate) fn of_graph(session: &Session, path: &Path) -> Result<Self, EngineError> {
        let Some(input) = session
            .inputs()
            .iter()
            .find(|input| input.name() == FIRST_PAST)
        else {
            return Ok(Self::F32);
        };
        match input.dtype() {
            ValueType::Tensor {
                ty: TensorElementType::Float32,
                ..
            } => Ok(Self::F32),
            ValueType::Tensor {
                ty: TensorElementType::Float16,
                ..
            } => Ok(Self::F16),
            other => Err(EngineError::InvalidModel {
                path: path.to_path_buf(),
                message: format!(
                    "the input {FIRST_PAST} is {other}; the KV cache supports float32 and float16"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_read_as_zero() {
        assert_eq!(f32::zeroed(3), [0.0; 3]);
        assert_eq!(f16::zeroed(3), [f16::ZERO; 3]);
        assert!(f16::zeroed(0).is_empty());
    }
}
