//! Tests of the streaming ONNX graph writer.

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

#[test]
fn uint8_weights_and_contrib_nodes_are_written() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DataType::Float, &[Dim::Fixed(1), Dim::Fixed(32)]);
    let b = g.typed_weight("b", &[2, 1, 16], DataType::Uint8);
    let s = g.weight("s", &[2, 1]);
    g.node_in(MS_DOMAIN, "MatMulNBits", &["y", ""], &[&x, &b, &s], &[]);
    let mut buf = Vec::new();
    g.write_data("t", &mut buf, |spec| -> Result<WeightData, io::Error> {
        Ok(match spec.elem {
            DataType::Uint8 => WeightData::U8(vec![7; spec.numel()]),
            _ => WeightData::F32(vec![0.5; spec.numel()]),
        })
    })
    .unwrap();
    let model = ModelProto::decode(buf.as_slice()).unwrap();
    assert!(model
        .opset_import
        .iter()
        .any(|o| o.domain.as_deref() == Some(MS_DOMAIN) && o.version == Some(1)));
    let graph = model.graph.unwrap();
    assert_eq!(graph.node[0].domain.as_deref(), Some(MS_DOMAIN));
    assert_eq!(graph.node[0].output, vec!["y".to_owned(), String::new()]);
    let b = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some("b"))
        .unwrap();
    assert_eq!(b.data_type, Some(DataType::Uint8 as i32));
    assert_eq!(b.raw_data.as_deref(), Some(&[7u8; 32][..]));
}

#[test]
fn weight_data_of_the_wrong_type_is_an_error() {
    let mut g = GraphBuilder::new();
    g.typed_weight("b", &[4], DataType::Uint8);
    let err = g.write_data("t", Vec::new(), |_| -> Result<WeightData, io::Error> {
        Ok(WeightData::F32(vec![0.0; 4]))
    });
    assert!(matches!(err, Err(WriteError::WrongLength { .. })));
}
