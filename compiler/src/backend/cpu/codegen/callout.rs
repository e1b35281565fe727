//! The scalar functions generated code calls back into Rust for: i32 `pow`, `(x as f64).powf(y as f64) as i32`,
//! exactly the interpreter's (`kernel::scalar`). Float transcendentals are inline CLIF (`super::super::math`).

use crate::kernel::scalar::{self, Scalar};
use cranelift_codegen::ir::{types, Type};
use kiln_ir::{BinaryOp, DType};

extern "C" fn pow_i32(x: i32, y: i32) -> i32 {
    match scalar::binary(BinaryOp::Pow, Scalar::I32(x), Scalar::I32(y)) {
        Scalar::I32(v) => v,
        _ => 0,
    }
}

/// A function's address and the CLIF type of its parameters and result.
pub(super) struct Callout {
    /// For the CLIF text: `kiln dump --stage clif` calls it by this name instead of its address.
    pub name: &'static str,
    pub address: usize,
    pub ty: Type,
    pub arity: usize,
}

/// `pow` on `dtype`, for the dtypes the math library does not cover (i32).
pub(super) fn pow(dtype: DType) -> Option<Callout> {
    match dtype {
        DType::I32 => Some(Callout {
            name: "pow_i32",
            address: pow_i32 as extern "C" fn(i32, i32) -> i32 as usize,
            ty: types::I32,
            arity: 2,
        }),
        DType::F32 | DType::F64 | DType::Bool => None,
    }
}
