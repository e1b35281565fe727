//! Kiln values → ONNX protobuf values: dtypes, `TensorProto`s (little-endian `raw_data`), `ValueInfoProto`s and
//! node attributes.

use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::tensor_shape_proto::{dimension, Dimension};
use crate::onnx::proto::type_proto::{self, Value as TypeValue};
use crate::onnx::proto::{
    AttributeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use kiln_ir::{DType, Tensor, TensorData, TensorType};

/// The ONNX element type of a Kiln dtype (`f32` → FLOAT, `f64` → DOUBLE, `i32` → INT32, `bool` → BOOL).
pub fn onnx_dtype(dtype: DType) -> DataType {
    match dtype {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::I32 => DataType::Int32,
        DType::Bool => DataType::Bool,
    }
}

fn dims_i64(dims: &[usize]) -> Vec<i64> {
    // Every dim is at most 2^40 (SPEC §1), so it fits i64.
    dims.iter().map(|&d| d as i64).collect()
}

/// `t` as a named `TensorProto`, its elements as little-endian `raw_data` (bool: one byte each).
pub fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
    let raw: Vec<u8> = match t.data() {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
    };
    TensorProto {
        name: Some(name.to_string()),
        dims: dims_i64(t.dims()),
        data_type: Some(onnx_dtype(t.dtype()) as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// A 1-D int64 `TensorProto` (shapes, axes, pads, indices: ONNX's operand type for them).
pub fn int64_proto(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims_i64(dims),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(values.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A graph input or output: its name and static tensor type.
pub fn value_info(name: &str, ty: &TensorType) -> ValueInfoProto {
    let dim = ty
        .dims()
        .iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d as i64)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(type_proto::Tensor {
                elem_type: Some(onnx_dtype(ty.dtype) as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Ints as i32),
        ints: dims_i64(values),
        ..Default::default()
    }
}
