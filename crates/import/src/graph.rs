//! A small ONNX graph builder: inputs and outputs with symbolic dimensions, nodes with
//! attributes (in the default or the `com.microsoft` domain), small constant initializers kept
//! in memory, and large weights (f32, or uint8 / int8 for quantized weights) that are
//! *deferred*: their bytes are fetched one tensor at a time while the model is written, so a
//! model is never held twice in memory (source weights plus encoded protobuf).
//!
//! Protobuf lets the fields of a message come in any order and a length-delimited field only
//! needs its length up front. [`GraphBuilder::write`] therefore encodes the model header and
//! the graph skeleton (nodes, inputs, outputs, constants) with `prost`, computes the graph's
//! total length from the weights' shapes, then appends each weight as one more
//! `GraphProto.initializer` field.

use std::io::{self, Write};

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

use super::onnx_proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// ONNX IR version written (ONNX Runtime 1.31 reads up to 11).
pub(crate) const IR_VERSION: i64 = 10;
/// Version of the default (`ai.onnx`) operator set a graph uses unless
/// [`GraphBuilder::with_opset`] says otherwise.
pub(crate) const OPSET_VERSION: i64 = 17;
/// Domain of ONNX Runtime's contrib operators (`MatMulNBits`, `GroupQueryAttention`, …).
pub(crate) const MS_DOMAIN: &str = "com.microsoft";

/// Values converted to bytes per write.
const WRITE_BLOCK: usize = 1 << 16;
/// Field number of `ModelProto.graph`.
const MODEL_GRAPH_FIELD: u32 = 7;
/// Field number of `GraphProto.initializer`.
const GRAPH_INITIALIZER_FIELD: u32 = 5;
/// Field number of `TensorProto.raw_data`.
const TENSOR_RAW_DATA_FIELD: u32 = 9;

/// One dimension of a graph input or output.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dim {
    /// A dimension whose size is known when the graph is built.
    Fixed(i64),
    /// A dimension named by a symbol (e.g. `batch`), sized at run time.
    Symbolic(&'static str),
}

/// A node attribute value.
#[derive(Debug, Clone)]
pub(crate) enum Attr {
    /// A single integer.
    Int(i64),
    /// A single float.
    Float(f32),
    /// A list of integers.
    Ints(Vec<i64>),
}

/// A large initializer whose data is supplied when the model is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WeightSpec {
    /// Initializer name, as nodes refer to it.
    pub name: String,
    /// Shape of the tensor.
    pub dims: Vec<i64>,
    /// Element type: `Float`, `Float16`, `Uint8` or `Int8`.
    pub elem: DataType,
}

/// The data of one deferred weight, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WeightData {
    /// f32 values.
    F32(Vec<f32>),
    /// f16 values.
    F16(Vec<half::f16>),
    /// Bytes (uint8 tensors).
    U8(Vec<u8>),
    /// Signed bytes (int8 tensors).
    I8(Vec<i8>),
}

impl WeightData {
    /// The data as element type `elem`: f32 values rounded to f16 for a `Float16` weight,
    /// anything else as it is.
    pub fn into_elem(self, elem: DataType) -> Self {
        match (self, elem) {
            (Self::F32(values), DataType::Float16) => {
                Self::F16(values.into_iter().map(half::f16::from_f32).collect())
            }
            (data, _) => data,
        }
    }

    /// Number of elements.
    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
        }
    }
}

impl WeightSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .product()
    }

    /// Bytes per element.
    fn elem_bytes(&self) -> usize {
        match self.elem {
            DataType::Uint8 | DataType::Int8 => 1,
            DataType::Float16 => 2,
            _ => 4,
        }
    }

    /// The tensor's header (everything but `raw_data`).
    fn header(&self) -> TensorProto {
        TensorProto {
            dims: self.dims.clone(),
            data_type: Some(self.elem as i32),
            name: Some(self.name.clone()),
            ..TensorProto::default()
        }
    }

    /// Encoded length of the whole `TensorProto`, raw data included.
    fn encoded_len(&self) -> usize {
        let raw = self.numel() * self.elem_bytes();
        self.header().encoded_len()
            + key_len(TENSOR_RAW_DATA_FIELD)
            + encoded_len_varint(raw as u64)
            + raw
    }
}

/// Why [`GraphBuilder::write`] failed.
#[derive(Debug)]
pub(crate) enum WriteError<E> {
    /// Writing to the sink failed.
    Io(io::Error),
    /// The weight callback failed.
    Fetch(E),
    /// The weight callback returned the wrong number of values (or values of the wrong type).
    WrongLength {
        /// The weight's name.
        name: String,
        /// Values its shape holds.
        expected: usize,
        /// Values returned.
        found: usize,
    },
}

impl<E> From<io::Error> for WriteError<E> {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Builds one ONNX graph; see the module documentation.
#[derive(Debug)]
pub(crate) struct GraphBuilder {
    opset: i64,
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    constants: Vec<TensorProto>,
    weights: Vec<WeightSpec>,
}

impl Default for GraphBuilder {
    fn default() -> Self {
        Self {
            opset: OPSET_VERSION,
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            constants: Vec::new(),
            weights: Vec::new(),
        }
    }
}

impl GraphBuilder {
    /// An empty graph of the default operator set ([`OPSET_VERSION`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty graph of `ai.onnx` operator set `opset`.
    pub fn with_opset(opset: i64) -> Self {
        Self {
            opset,
            ..Self::default()
        }
    }

    /// Declares a graph input and returns its name.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, elem, dims));
        name.to_owned()
    }

    /// Declares a graph output (a value some node produces).
    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem, dims));
    }

    /// Declares a deferred f32 weight and returns its name.
    pub fn weight(&mut self, name: &str, dims: &[usize]) -> String {
        self.typed_weight(name, dims, DataType::Float)
    }

    /// Declares a deferred weight of element type `elem` (`Float`, `Uint8` or `Int8`) and
    /// returns its name.
    pub fn typed_weight(&mut self, name: &str, dims: &[usize], elem: DataType) -> String {
        let dims = dims.iter().map(|&d| d as i64).collect();
        self.weights.push(WeightSpec {
            name: name.to_owned(),
            dims,
            elem,
        });
        name.to_owned()
    }

    /// Adds a small f32 constant initializer and returns its name.
    pub fn const_f32(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        self.constants.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(DataType::Float as i32),
            name: Some(name.to_owned()),
            float_data: values.to_vec(),
            ..TensorProto::default()
        });
        name.to_owned()
    }

    /// Adds a small constant initializer of float type `elem` (`Float` or `Float16`, whose
    /// values are rounded to f16) and returns its name.
    pub fn const_float(
        &mut self,
        name: &str,
        dims: &[i64],
        values: &[f32],
        elem: DataType,
    ) -> String {
        if elem != DataType::Float16 {
            return self.const_f32(name, dims, values);
        }
        let raw = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        self.constants.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(DataType::Float16 as i32),
            name: Some(name.to_owned()),
            raw_data: Some(raw),
            ..TensorProto::default()
        });
        name.to_owned()
    }

    /// Adds a small uint8 constant initializer and returns its name.
    pub fn const_u8(&mut self, name: &str, dims: &[i64], values: &[u8]) -> String {
        self.constants.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(DataType::Uint8 as i32),
            name: Some(name.to_owned()),
            raw_data: Some(values.to_vec()),
            ..TensorProto::default()
        });
        name.to_owned()
    }

    /// Adds a small int64 constant initializer and returns its name.
    pub fn const_i64(&mut self, name: &str, dims: &[i64], values: &[i64]) -> String {
        self.constants.push(TensorProto {
            dims: dims.to_vec(),
            data_type: Some(DataType::Int64 as i32),
            name: Some(name.to_owned()),
            int64_data: values.to_vec(),
            ..TensorProto::default()
        });
        name.to_owned()
    }

    /// Adds a node with one output named `output` and returns that name.
    pub fn node(
        &mut self,
        op: &str,
        output: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
    ) -> String {
        self.node_in("", op, &[output], inputs, attrs);
        output.to_owned()
    }

    /// Adds a node of operator domain `domain` (`""` or [`MS_DOMAIN`]) with the given outputs
    /// (an empty name skips an optional output; the first output also names the node).
    pub fn node_in(
        &mut self,
        domain: &str,
        op: &str,
        outputs: &[&str],
        inputs: &[&str],
        attrs: &[(&str, Attr)],
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            name: outputs.first().map(|s| (*s).to_owned()),
            op_type: Some(op.to_owned()),
            domain: (!domain.is_empty()).then(|| domain.to_owned()),
            attribute: attrs.iter().map(|(n, a)| attribute(n, a)).collect(),
            ..NodeProto::default()
        });
    }

    /// Serializes the model into `w`, calling `fetch` once per deferred f32 weight (in the
    /// order they were declared) for its row-major data. Returns the bytes written.
    pub fn write<W, E, F>(self, graph_name: &str, w: W, mut fetch: F) -> Result<u64, WriteError<E>>
    where
        W: Write,
        F: FnMut(&WeightSpec) -> Result<Vec<f32>, E>,
    {
        self.write_data(graph_name, w, |spec| fetch(spec).map(WeightData::F32))
    }

    /// Like [`Self::write`], for weights of any element type: `fetch` returns each weight's
    /// data as [`WeightData`] matching its declared type.
    pub fn write_data<W, E, F>(
        self,
        graph_name: &str,
        mut w: W,
        mut fetch: F,
    ) -> Result<u64, WriteError<E>>
    where
        W: Write,
        F: FnMut(&WeightSpec) -> Result<WeightData, E>,
    {
        let header = ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![
                OperatorSetIdProto {
                    domain: Some(String::new()),
                    version: Some(self.opset),
                },
                OperatorSetIdProto {
                    domain: Some(MS_DOMAIN.to_owned()),
                    version: Some(1),
                },
            ],
            producer_name: Some("gateway-import".to_owned()),
            producer_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            ..ModelProto::default()
        };
        let skeleton = GraphProto {
            node: self.nodes,
            name: Some(graph_name.to_owned()),
            initializer: self.constants,
            input: self.inputs,
            output: self.outputs,
            ..GraphProto::default()
        };
        let weights_len: usize = self
            .weights
            .iter()
            .map(|spec| {
                let len = spec.encoded_len();
                key_len(GRAPH_INITIALIZER_FIELD) + encoded_len_varint(len as u64) + len
            })
            .sum();
        let graph_len = skeleton.encoded_len() + weights_len;

        let mut buf = header.encode_to_vec();
        encode_key(MODEL_GRAPH_FIELD, WireType::LengthDelimited, &mut buf);
        encode_varint(graph_len as u64, &mut buf);
        skeleton
            .encode(&mut buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        w.write_all(&buf)?;
        let mut written = buf.len() as u64;

        for spec in &self.weights {
            let data = fetch(spec).map_err(WriteError::Fetch)?;
            let matches_type = matches!(
                (&data, spec.elem),
                (WeightData::F32(_), DataType::Float)
                    | (WeightData::F16(_), DataType::Float16)
                    | (WeightData::U8(_), DataType::Uint8)
                    | (WeightData::I8(_), DataType::Int8)
            );
            if data.len() != spec.numel() || !matches_type {
                return Err(WriteError::WrongLength {
                    name: spec.name.clone(),
                    expected: spec.numel(),
                    found: data.len(),
                });
            }
            let mut head = Vec::with_capacity(128);
            encode_key(
                GRAPH_INITIALIZER_FIELD,
                WireType::LengthDelimited,
                &mut head,
            );
            encode_varint(spec.encoded_len() as u64, &mut head);
            spec.header()
                .encode(&mut head)
                .map_err(|e| io::Error::other(e.to_string()))?;
            encode_key(TENSOR_RAW_DATA_FIELD, WireType::LengthDelimited, &mut head);
            let raw_len = data.len() * spec.elem_bytes();
            encode_varint(raw_len as u64, &mut head);
            w.write_all(&head)?;
            match &data {
                WeightData::U8(bytes) => w.write_all(bytes)?,
                WeightData::I8(values) => {
                    let bytes: Vec<u8> = values.iter().map(|v| v.to_le_bytes()[0]).collect();
                    w.write_all(&bytes)?;
                }
                WeightData::F32(values) => write_blocks(&mut w, values, |v| v.to_le_bytes())?,
                WeightData::F16(values) => write_blocks(&mut w, values, |v| v.to_le_bytes())?,
            }
            written += (head.len() + raw_len) as u64;
        }
        w.flush()?;
        Ok(written)
    }
}

/// Writes `values` as their little-endian bytes `le`, a block at a time, so no second full
/// copy is made.
fn write_blocks<W: Write, T: Copy, const N: usize>(
    w: &mut W,
    values: &[T],
    le: impl Fn(T) -> [u8; N],
) -> io::Result<()> {
    let mut block = Vec::with_capacity(WRITE_BLOCK * N);
    for chunk in values.chunks(WRITE_BLOCK) {
        block.clear();
        block.extend(chunk.iter().flat_map(|&v| le(v)));
        w.write_all(&block)?;
    }
    Ok(())
}

/// A typed tensor value (graph input or output).
fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n),
                Dim::Symbolic(s) => tensor_shape_proto::dimension::Value::DimParam((*s).to_owned()),
            }),
            ..tensor_shape_proto::Dimension::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

/// A node attribute.
fn attribute(name: &str, value: &Attr) -> AttributeProto {
    let mut attr = AttributeProto {
        name: Some(name.to_owned()),
        ..AttributeProto::default()
    };
    match value {
        Attr::Int(i) => {
            attr.r#type = Some(AttributeType::Int as i32);
            attr.i = Some(*i);
        }
        Attr::Float(f) => {
            attr.r#type = Some(AttributeType::Float as i32);
            attr.f = Some(*f);
        }
        Attr::Ints(v) => {
            attr.r#type = Some(AttributeType::Ints as i32);
            attr.ints = v.clone();
        }
    }
    attr
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
