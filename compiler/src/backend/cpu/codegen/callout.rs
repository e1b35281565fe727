//! The scalar functions generated code can call back into Rust for: the interpreter's own `exp`, `log`, `tanh`,
//! `logistic` and `pow` (`kernel::scalar`), bit-identical to the reference. Compiled kernels use the CLIF math library
//! for the float functions and call here only for i32 `pow` (`(x as f64).powf(y as f64) as i32`); the float ones
//! stay as the reference a kernel can be switched to when chasing a difference.

use crate::kernel::scalar::{self, Scalar};
use cranelift_codegen::ir::{types, Type};
use kiln_ir::{BinaryOp, DType, UnaryOp};

macro_rules! unary_f32 {
    ($name:ident, $op:expr) => {
        extern "C" fn $name(x: f32) -> f32 {
            match scalar::unary($op, Scalar::F32(x)) {
                Scalar::F32(y) => y,
                _ => f32::NAN,
            }
        }
    };
}

macro_rules! unary_f64 {
    ($name:ident, $op:expr) => {
        extern "C" fn $name(x: f64) -> f64 {
            match scalar::unary($op, Scalar::F64(x)) {
                Scalar::F64(y) => y,
                _ => f64::NAN,
            }
        }
    };
}

unary_f32!(exp_f32, UnaryOp::Exp);
unary_f32!(log_f32, UnaryOp::Log);
unary_f32!(tanh_f32, UnaryOp::Tanh);
unary_f32!(logistic_f32, UnaryOp::Logistic);
unary_f64!(exp_f64, UnaryOp::Exp);
unary_f64!(log_f64, UnaryOp::Log);
unary_f64!(tanh_f64, UnaryOp::Tanh);
unary_f64!(logistic_f64, UnaryOp::Logistic);

extern "C" fn pow_f32(x: f32, y: f32) -> f32 {
    match scalar::binary(BinaryOp::Pow, Scalar::F32(x), Scalar::F32(y)) {
        Scalar::F32(v) => v,
        _ => f32::NAN,
    }
}

extern "C" fn pow_f64(x: f64, y: f64) -> f64 {
    match scalar::binary(BinaryOp::Pow, Scalar::F64(x), Scalar::F64(y)) {
        Scalar::F64(v) => v,
        _ => f64::NAN,
    }
}

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

pub(super) fn unary(op: UnaryOp, dtype: DType) -> Option<Callout> {
    let (name, address, ty) = match (op, dtype) {
        (UnaryOp::Exp, DType::F32) => (
            "exp_f32",
            exp_f32 as extern "C" fn(f32) -> f32 as usize,
            types::F32,
        ),
        (UnaryOp::Log, DType::F32) => (
            "log_f32",
            log_f32 as extern "C" fn(f32) -> f32 as usize,
            types::F32,
        ),
        (UnaryOp::Tanh, DType::F32) => (
            "tanh_f32",
            tanh_f32 as extern "C" fn(f32) -> f32 as usize,
            types::F32,
        ),
        (UnaryOp::Logistic, DType::F32) => (
            "logistic_f32",
            logistic_f32 as extern "C" fn(f32) -> f32 as usize,
            types::F32,
        ),
        (UnaryOp::Exp, DType::F64) => (
            "exp_f64",
            exp_f64 as extern "C" fn(f64) -> f64 as usize,
            types::F64,
        ),
        (UnaryOp::Log, DType::F64) => (
            "log_f64",
            log_f64 as extern "C" fn(f64) -> f64 as usize,
            types::F64,
        ),
        (UnaryOp::Tanh, DType::F64) => (
            "tanh_f64",
            tanh_f64 as extern "C" fn(f64) -> f64 as usize,
            types::F64,
        ),
        (UnaryOp::Logistic, DType::F64) => (
            "logistic_f64",
            logistic_f64 as extern "C" fn(f64) -> f64 as usize,
            types::F64,
        ),
        _ => return None,
    };
    Some(Callout {
        name,
        address,
        ty,
        arity: 1,
    })
}

pub(super) fn pow(dtype: DType) -> Option<Callout> {
    let (name, address, ty) = match dtype {
        DType::F32 => (
            "pow_f32",
            pow_f32 as extern "C" fn(f32, f32) -> f32 as usize,
            types::F32,
        ),
        DType::F64 => (
            "pow_f64",
            pow_f64 as extern "C" fn(f64, f64) -> f64 as usize,
            types::F64,
        ),
        DType::I32 => (
            "pow_i32",
            pow_i32 as extern "C" fn(i32, i32) -> i32 as usize,
            types::I32,
        ),
        DType::Bool => return None,
    };
    Some(Callout {
        name,
        address,
        ty,
        arity: 2,
    })
}
