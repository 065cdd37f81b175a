//! A small ONNX graph builder: inputs and outputs with symbolic dimensions, nodes with
//! attributes, small constant initializers kept in memory, and large f32 weights that are
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
/// Version of the default (`ai.onnx`) operator set the graphs use.
pub(crate) const OPSET_VERSION: i64 = 17;

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

/// A large f32 initializer whose data is supplied when the model is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WeightSpec {
    /// Initializer name, as nodes refer to it.
    pub name: String,
    /// Shape of the tensor.
    pub dims: Vec<i64>,
}

impl WeightSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .product()
    }

    /// The tensor's header (everything but `raw_data`).
    fn header(&self) -> TensorProto {
        TensorProto {
            dims: self.dims.clone(),
            data_type: Some(DataType::Float as i32),
            name: Some(self.name.clone()),
            ..TensorProto::default()
        }
    }

    /// Encoded length of the whole `TensorProto`, raw data included.
    fn encoded_len(&self) -> usize {
        let raw = self.numel() * 4;
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
    /// The weight callback returned the wrong number of values.
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
#[derive(Debug, Default)]
pub(crate) struct GraphBuilder {
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    constants: Vec<TensorProto>,
    weights: Vec<WeightSpec>,
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
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
        let dims = dims.iter().map(|&d| d as i64).collect();
        self.weights.push(WeightSpec {
            name: name.to_owned(),
            dims,
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
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.to_owned()],
            name: Some(output.to_owned()),
            op_type: Some(op.to_owned()),
            attribute: attrs.iter().map(|(n, a)| attribute(n, a)).collect(),
            ..NodeProto::default()
        });
        output.to_owned()
    }

    /// Serializes the model into `w`, calling `fetch` once per deferred weight (in the
    /// order they were declared) for its row-major data. Returns the bytes written.
    pub fn write<W, E, F>(
        self,
        graph_name: &str,
        mut w: W,
        mut fetch: F,
    ) -> Result<u64, WriteError<E>>
    where
        W: Write,
        F: FnMut(&WeightSpec) -> Result<Vec<f32>, E>,
    {
        let header = ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET_VERSION),
            }],
            producer_name: Some("gateway-engine".to_owned()),
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
            if data.len() != spec.numel() {
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
            encode_varint((data.len() * 4) as u64, &mut head);
            w.write_all(&head)?;
            // Little-endian bytes, a block at a time, so no second full copy is made.
            let mut block = Vec::with_capacity(WRITE_BLOCK * 4);
            for chunk in data.chunks(WRITE_BLOCK) {
                block.clear();
                block.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                w.write_all(&block)?;
            }
            written += (head.len() + data.len() * 4) as u64;
        }
        w.flush()?;
        Ok(written)
    }
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
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn written_model_decodes_with_weights_in_place() {
        let mut g = GraphBuilder::new();
        let x = g.input(
            "x",
            DataType::Float,
            &[Dim::Symbolic("batch"), Dim::Fixed(3)],
        );
        let w = g.weight("w", &[3, 2]);
        let y = g.node("MatMul", "y", &[&x, &w], &[]);
        g.const_i64("shape", &[1], &[2]);
        g.output(
            &y,
            DataType::Float,
            &[Dim::Symbolic("batch"), Dim::Fixed(2)],
        );
        let mut buf = Vec::new();
        let n = g
            .write("test", &mut buf, |spec| -> Result<Vec<f32>, io::Error> {
                Ok((0..spec.numel()).map(|i| i as f32).collect())
            })
            .unwrap();
        assert_eq!(n as usize, buf.len());
        let model = ModelProto::decode(buf.as_slice()).unwrap();
        assert_eq!(model.ir_version, Some(IR_VERSION));
        let graph = model.graph.unwrap();
        assert_eq!(graph.node.len(), 1);
        assert_eq!(graph.initializer.len(), 2);
        let weight = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some("w"))
            .unwrap();
        assert_eq!(weight.dims, vec![3, 2]);
        let raw = weight.raw_data.as_ref().unwrap();
        let values: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(values, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn wrong_weight_length_is_an_error() {
        let mut g = GraphBuilder::new();
        g.weight("w", &[2, 2]);
        let err = g.write("t", Vec::new(), |_| -> Result<Vec<f32>, io::Error> {
            Ok(vec![1.0])
        });
        assert!(matches!(
            err,
            Err(WriteError::WrongLength {
                expected: 4,
                found: 1,
                ..
            })
        ));
    }
}
