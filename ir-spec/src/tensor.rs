//! Host tensors: a tensor type and a dense row-major buffer of that dtype.
//!
//! This is what the reference interpreter computes on and what every backend's results are compared against.

use crate::error::IrError;
use crate::op::Scalar;
use crate::types::{DType, Shape, TensorType};

/// Dense row-major elements of one dtype.
#[derive(Clone, PartialEq, Debug)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::I32(_) => DType::I32,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` widened to f64 (exact for every dtype; bool is 0 or 1).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            TensorData::F32(v) => v[i] as f64,
            TensorData::F64(v) => v[i],
            TensorData::I32(v) => v[i] as f64,
            TensorData::Bool(v) => v[i] as u8 as f64,
        }
    }
}

#[derive(Clone, PartialEq, Debug)]
pub struct Tensor {
    ty: TensorType,
    data: TensorData,
}

impl Tensor {
    /// A tensor of type `ty`; fails if the type is beyond SPEC §1's limits or the data's dtype or length does not
    /// match.
    pub fn new(ty: TensorType, data: TensorData) -> Result<Tensor, IrError> {
        if !ty.within_limits() {
            // `numel` saturates beyond the limits, and an empty type like `f32[0,2^63]` would take empty data.
            return Err(IrError::Invalid(format!(
                "tensor type {ty} is beyond the limits: rank <= 8 and at most 2^40 elements (the product of the \
                 nonzero dims)"
            )));
        }
        if data.dtype() != ty.dtype || data.len() != ty.numel() {
            return Err(IrError::Invalid(format!(
                "tensor data of {} {} element(s) does not fit type {ty}",
                data.len(),
                data.dtype()
            )));
        }
        Ok(Tensor { ty, data })
    }

    pub fn from_f32(shape: &[usize], values: Vec<f32>) -> Result<Tensor, IrError> {
        Tensor::new(TensorType::new(DType::F32, shape), TensorData::F32(values))
    }

    pub fn from_f64(shape: &[usize], values: Vec<f64>) -> Result<Tensor, IrError> {
        Tensor::new(TensorType::new(DType::F64, shape), TensorData::F64(values))
    }

    pub fn from_i32(shape: &[usize], values: Vec<i32>) -> Result<Tensor, IrError> {
        Tensor::new(TensorType::new(DType::I32, shape), TensorData::I32(values))
    }

    pub fn from_bool(shape: &[usize], values: Vec<bool>) -> Result<Tensor, IrError> {
        Tensor::new(
            TensorType::new(DType::Bool, shape),
            TensorData::Bool(values),
        )
    }

    /// A tensor of type `ty` whose element `i` is `values[i]` converted to the dtype (as `cast` does).
    pub fn from_f64_values(ty: TensorType, values: &[f64]) -> Result<Tensor, IrError> {
        let data = match ty.dtype {
            DType::F32 => TensorData::F32(values.iter().map(|&v| v as f32).collect()),
            DType::F64 => TensorData::F64(values.to_vec()),
            DType::I32 => TensorData::I32(values.iter().map(|&v| v as i32).collect()),
            DType::Bool => TensorData::Bool(values.iter().map(|&v| v != 0.0).collect()),
        };
        Tensor::new(ty, data)
    }

    /// A scalar of `dtype`.
    pub fn scalar(dtype: DType, value: f64) -> Tensor {
        Tensor::from_f64_values(TensorType::scalar(dtype), &[value])
            .expect("one value fits a scalar")
    }

    pub fn zeros(ty: TensorType) -> Tensor {
        let n = ty.numel();
        let data = match ty.dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::F64 => TensorData::F64(vec![0.0; n]),
            DType::I32 => TensorData::I32(vec![0; n]),
            DType::Bool => TensorData::Bool(vec![false; n]),
        };
        Tensor { ty, data }
    }

    pub fn ty(&self) -> &TensorType {
        &self.ty
    }

    pub fn dtype(&self) -> DType {
        self.ty.dtype
    }

    pub fn shape(&self) -> &Shape {
        &self.ty.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.ty.dims()
    }

    pub fn numel(&self) -> usize {
        self.ty.numel()
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<&[f64]> {
        match &self.data {
            TensorData::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i32(&self) -> Option<&[i32]> {
        match &self.data {
            TensorData::I32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<&[bool]> {
        match &self.data {
            TensorData::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// Every element widened to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.numel()).map(|i| self.data.get_f64(i)).collect()
    }

    /// The single element of a one-element tensor, as f64.
    pub fn scalar_value(&self) -> Option<f64> {
        (self.numel() == 1).then(|| self.data.get_f64(0))
    }

    /// The same elements under a new dtype, converted as the `cast` op does.
    /// Element `i` (row-major) as a [`Scalar`].
    pub fn element(&self, i: usize) -> Scalar {
        match &self.data {
            TensorData::F32(v) => Scalar::F32(v[i]),
            TensorData::F64(v) => Scalar::F64(v[i]),
            TensorData::I32(v) => Scalar::I32(v[i]),
            TensorData::Bool(v) => Scalar::Bool(v[i]),
        }
    }

    pub fn cast(&self, to: DType) -> Tensor {
        let ty = self.ty.with_dtype(to);
        if to == self.dtype() {
            return self.clone();
        }
        // Element by element through the one meaning of `cast` (SPEC.md §3.3).
        let n = self.numel();
        let data = match to {
            DType::F32 => TensorData::F32((0..n).map(|i| self.element(i).cast_f32()).collect()),
            DType::F64 => TensorData::F64((0..n).map(|i| self.element(i).to_f64()).collect()),
            DType::I32 => TensorData::I32((0..n).map(|i| self.element(i).cast_i32()).collect()),
            DType::Bool => TensorData::Bool((0..n).map(|i| self.element(i).as_bool()).collect()),
        };
        Tensor { ty, data }
    }

    /// Same elements, new shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor, IrError> {
        Tensor::new(self.ty.with_shape(shape), self.data.clone())
    }
}
