//! One element of one dtype, and every elementwise op applied to it through the op table.
//!
//! The kernel interpreter (crate `kiln`), constant folding and [`crate::tensor::Tensor::cast`] compute with these;
//! the graph interpreter takes the same functions per tensor ([`UnaryOp::float_fn`] and friends), so there is one
//! meaning of each op. A `None` is an op the typing rule excludes for the operands' dtype (i32 `pow`, `exp` of an
//! i32, f32 `xor`, arithmetic on bools, mixed dtypes): the verifiers reject those before anything is evaluated.

use super::{BinaryOp, CmpDir, UnaryOp};
use crate::types::DType;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Scalar {
    F32(f32),
    F64(f64),
    I32(i32),
    Bool(bool),
}

impl Scalar {
    pub fn dtype(self) -> DType {
        match self {
            Scalar::F32(_) => DType::F32,
            Scalar::F64(_) => DType::F64,
            Scalar::I32(_) => DType::I32,
            Scalar::Bool(_) => DType::Bool,
        }
    }

    /// Widened to f64 (exact; bool is 0 or 1).
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::F32(v) => v as f64,
            Scalar::F64(v) => v,
            Scalar::I32(v) => v as f64,
            Scalar::Bool(v) => v as u8 as f64,
        }
    }

    /// A constant or literal value of `dtype` (already representable, as the typing rule checks).
    pub fn from_f64(value: f64, dtype: DType) -> Scalar {
        match dtype {
            DType::F32 => Scalar::F32(value as f32),
            DType::F64 => Scalar::F64(value),
            DType::I32 => Scalar::I32(value as i32),
            DType::Bool => Scalar::Bool(value != 0.0),
        }
    }

    /// An index converted to `dtype` (what `iota` produces; f32 rounds to nearest beyond 2^24).
    pub fn from_index(i: usize, dtype: DType) -> Scalar {
        match dtype {
            DType::F32 => Scalar::F32(i as f32),
            DType::F64 => Scalar::F64(i as f64),
            DType::I32 => Scalar::I32(i as i32),
            DType::Bool => Scalar::Bool(i != 0),
        }
    }

    /// What an empty sum is.
    pub fn zero(dtype: DType) -> Scalar {
        Scalar::from_f64(0.0, dtype)
    }

    /// The identity of `max` (what an empty max is): -inf for floats, `i32::MIN` for i32.
    pub fn lowest(dtype: DType) -> Scalar {
        match dtype {
            DType::F32 => Scalar::F32(f32::NEG_INFINITY),
            DType::F64 => Scalar::F64(f64::NEG_INFINITY),
            DType::I32 => Scalar::I32(i32::MIN),
            DType::Bool => Scalar::Bool(false),
        }
    }

    pub fn as_bool(self) -> bool {
        match self {
            Scalar::Bool(b) => b,
            other => other.to_f64() != 0.0,
        }
    }

    /// SPEC.md §3.3: float → int truncates toward zero and saturates, NaN → 0 (Rust's `as`); x → bool is `x != 0`;
    /// to float rounds to nearest.
    pub fn cast(self, to: DType) -> Scalar {
        match to {
            DType::F32 => Scalar::F32(self.cast_f32()),
            DType::F64 => Scalar::F64(self.to_f64()),
            DType::I32 => Scalar::I32(self.cast_i32()),
            DType::Bool => Scalar::Bool(self.as_bool()),
        }
    }

    /// `cast` to f32: rounds to nearest (once: i32 → f64 is exact).
    pub fn cast_f32(self) -> f32 {
        match self {
            Scalar::F32(v) => v,
            other => other.to_f64() as f32,
        }
    }

    /// `cast` to i32: truncates toward zero and saturates, NaN → 0.
    pub fn cast_i32(self) -> i32 {
        match self {
            Scalar::I32(v) => v,
            other => other.to_f64() as i32,
        }
    }

    /// `op(self)`, or `None` where the op is not defined on the dtype.
    pub fn unary(self, op: UnaryOp) -> Option<Scalar> {
        Some(match self {
            Scalar::F32(v) => Scalar::F32(op.float_fn::<f32>()(v)),
            Scalar::F64(v) => Scalar::F64(op.float_fn::<f64>()(v)),
            Scalar::I32(v) => Scalar::I32(op.i32_fn()?(v)),
            Scalar::Bool(_) => return None,
        })
    }

    /// `op(self, rhs)`, or `None` where the op is not defined on the operands' dtype (or they differ).
    pub fn binary(self, op: BinaryOp, rhs: Scalar) -> Option<Scalar> {
        Some(match (self, rhs) {
            (Scalar::F32(a), Scalar::F32(b)) => Scalar::F32(op.float_fn::<f32>()?(a, b)),
            (Scalar::F64(a), Scalar::F64(b)) => Scalar::F64(op.float_fn::<f64>()?(a, b)),
            (Scalar::I32(a), Scalar::I32(b)) => Scalar::I32(op.i32_fn()?(a, b)),
            _ => return None,
        })
    }

    /// `self dir rhs`: IEEE comparisons (every comparison with NaN is false except `ne`); bools only `eq`/`ne`.
    pub fn compare(self, dir: CmpDir, rhs: Scalar) -> Option<bool> {
        match (self, rhs) {
            (Scalar::F32(a), Scalar::F32(b)) => Some(dir.eval(&a, &b)),
            (Scalar::F64(a), Scalar::F64(b)) => Some(dir.eval(&a, &b)),
            (Scalar::I32(a), Scalar::I32(b)) => Some(dir.eval(&a, &b)),
            (Scalar::Bool(a), Scalar::Bool(b)) if !dir.is_ordering() => Some(dir.eval(&a, &b)),
            _ => None,
        }
    }
}
