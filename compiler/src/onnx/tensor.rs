//! `TensorProto` → values known at import ([`Constant`]), and ONNX element types → Kiln dtypes.
//!
//! A constant keeps ONNX's integers as i64 until it becomes a tensor of the graph ([`Constant::to_tensor`]): static
//! operands such as `Slice`'s `ends = INT64_MAX` are read as i64 and never need to fit Kiln's i32.

use super::proto::tensor_proto::DataType;
use super::proto::TensorProto;
use super::ImportError;
use kiln_ir::{DType, Tensor, TensorType};

/// The elements of a constant, widened: floats to f64 (exact for f32), integers to i64.
#[derive(Clone, Debug, PartialEq)]
pub enum Elements {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
}

/// A tensor whose value is known at import.
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub elements: Elements,
}

/// The Kiln dtype of an ONNX element type, or `None` where Kiln has none (float16, strings, complex, ...).
pub fn kiln_dtype(onnx_type: i32) -> Option<DType> {
    let t = DataType::try_from(onnx_type).ok()?;
    match t {
        DataType::Float => Some(DType::F32),
        DataType::Double => Some(DType::F64),
        DataType::Bool => Some(DType::Bool),
        DataType::Int8
        | DataType::Uint8
        | DataType::Int16
        | DataType::Uint16
        | DataType::Int32
        | DataType::Int64
        | DataType::Uint32
        | DataType::Uint64 => Some(DType::I32),
        _ => None,
    }
}

/// The ONNX name of an element type, for messages.
pub fn type_name(onnx_type: i32) -> String {
    DataType::try_from(onnx_type)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("type {onnx_type}"))
}

/// Dims of a tensor as sizes, checked non-negative and within Kiln's element limit.
pub fn dims_of(dims: &[i64], what: &str) -> Result<Vec<usize>, ImportError> {
    let mut numel: u64 = 1;
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        let d = usize::try_from(d)
            .map_err(|_| ImportError::Invalid(format!("{what}: negative dim {d}")))?;
        if d != 0 {
            numel = numel.saturating_mul(d as u64);
        }
        out.push(d);
    }
    if numel > 1 << 40 || dims.len() > kiln_ir::types::MAX_RANK {
        return Err(ImportError::Invalid(format!(
            "{what}: dims {dims:?} exceed Kiln's limits (rank {}, 2^40 elements)",
            kiln_ir::types::MAX_RANK
        )));
    }
    Ok(out)
}

impl Constant {
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn from_ints(dims: Vec<usize>, values: Vec<i64>) -> Constant {
        Constant {
            dtype: DType::I32,
            dims,
            elements: Elements::Int(values),
        }
    }

    /// Reads a `TensorProto` (typed fields or `raw_data`, little-endian); external data is an error.
    pub fn from_proto(t: &TensorProto) -> Result<Constant, ImportError> {
        let name = t.name();
        let what = format!("tensor `{name}`");
        if t.data_location() == super::proto::tensor_proto::DataLocation::External {
            return Err(ImportError::Invalid(format!(
                "{what}: external data is not supported; save the model with its weights inside"
            )));
        }
        let ty = t.data_type();
        let dtype = kiln_dtype(ty).ok_or_else(|| {
            ImportError::Invalid(format!(
                "{what}: element type {} has no Kiln dtype",
                type_name(ty)
            ))
        })?;
        let dims = dims_of(&t.dims, &what)?;
        let n: usize = dims.iter().product();
        let raw = t.raw_data();
        let data_type = DataType::try_from(ty).map_err(|_| ImportError::Invalid(what.clone()))?;
        let size = match data_type {
            DataType::Double | DataType::Int64 | DataType::Uint64 => 8,
            DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
            DataType::Int16 | DataType::Uint16 => 2,
            _ => 1,
        };
        let count_error = |got: usize| {
            ImportError::Invalid(format!(
                "{what}: {got} elements stored for dims {dims:?} ({n} expected)"
            ))
        };
        let use_raw = t.raw_data.is_some();
        if use_raw && raw.len() != n.saturating_mul(size) {
            return Err(count_error(raw.len() / size));
        }
        let chunks = |k: usize| raw.chunks_exact(k);
        let elements = match data_type {
            DataType::Float if use_raw => Elements::Float(
                chunks(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                    .collect(),
            ),
            DataType::Float => Elements::Float(t.float_data.iter().map(|&v| v as f64).collect()),
            DataType::Double if use_raw => Elements::Float(
                chunks(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            ),
            DataType::Double => Elements::Float(t.double_data.clone()),
            DataType::Int64 if use_raw => Elements::Int(
                chunks(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            ),
            DataType::Int64 => Elements::Int(t.int64_data.clone()),
            DataType::Uint64 if use_raw => Elements::Int(
                chunks(8)
                    .map(|c| {
                        let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                        i64::try_from(v).unwrap_or(i64::MAX)
                    })
                    .collect(),
            ),
            DataType::Uint64 | DataType::Uint32 if !use_raw => Elements::Int(
                t.uint64_data
                    .iter()
                    .map(|&v| i64::try_from(v).unwrap_or(i64::MAX))
                    .collect(),
            ),
            DataType::Uint32 => Elements::Int(
                chunks(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            DataType::Int32 if use_raw => Elements::Int(
                chunks(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            DataType::Int16 if use_raw => Elements::Int(
                chunks(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
            ),
            DataType::Uint16 if use_raw => Elements::Int(
                chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
            ),
            DataType::Int8 if use_raw => {
                Elements::Int(raw.iter().map(|&b| b as i8 as i64).collect())
            }
            DataType::Uint8 if use_raw => Elements::Int(raw.iter().map(|&b| b as i64).collect()),
            DataType::Bool if use_raw => Elements::Bool(raw.iter().map(|&b| b != 0).collect()),
            DataType::Bool => Elements::Bool(t.int32_data.iter().map(|&b| b != 0).collect()),
            // int8/16, uint8/16 and int32 share `int32_data`.
            _ => Elements::Int(t.int32_data.iter().map(|&v| v as i64).collect()),
        };
        let got = match &elements {
            Elements::Float(v) => v.len(),
            Elements::Int(v) => v.len(),
            Elements::Bool(v) => v.len(),
        };
        if got != n {
            return Err(count_error(got));
        }
        Ok(Constant {
            dtype,
            dims,
            elements,
        })
    }

    /// The integer elements (floats truncated, bools as 0/1): shapes, axes and indices.
    pub fn ints(&self) -> Vec<i64> {
        match &self.elements {
            Elements::Int(v) => v.clone(),
            Elements::Float(v) => v.iter().map(|&x| x as i64).collect(),
            Elements::Bool(v) => v.iter().map(|&b| b as i64).collect(),
        }
    }

    /// The elements as f64 (i64 values beyond 2^53 rounded): attribute-like float operands (`Clip`'s bounds).
    pub fn floats(&self) -> Vec<f64> {
        match &self.elements {
            Elements::Float(v) => v.clone(),
            Elements::Int(v) => v.iter().map(|&x| x as f64).collect(),
            Elements::Bool(v) => v.iter().map(|&b| b as u8 as f64).collect(),
        }
    }

    /// The Kiln tensor; an integer outside i32 is an [`ImportError::IntRange`] naming `name`.
    pub fn to_tensor(&self, name: &str) -> Result<Tensor, ImportError> {
        let ty = TensorType::new(self.dtype, self.dims.as_slice());
        let invalid = |e: kiln_ir::IrError| ImportError::Invalid(format!("tensor `{name}`: {e}"));
        match &self.elements {
            Elements::Float(v) if self.dtype == DType::F32 => {
                Tensor::from_f32(&self.dims, v.iter().map(|&x| x as f32).collect()).map_err(invalid)
            }
            Elements::Float(v) => Tensor::from_f64_values(ty, v).map_err(invalid),
            Elements::Int(v) => {
                let mut out = Vec::with_capacity(v.len());
                for &x in v {
                    out.push(i32::try_from(x).map_err(|_| ImportError::IntRange {
                        tensor: name.to_string(),
                        value: x,
                    })?);
                }
                Tensor::from_i32(&self.dims, out).map_err(invalid)
            }
            Elements::Bool(v) => Tensor::from_bool(&self.dims, v.clone()).map_err(invalid),
        }
    }
}
