//! The numeric element types (f32, f64, i32) as the interpreter's per-tensor loops see them: each op's function is
//! fetched once per tensor from the op table (`crate::op::elementwise`), which is the only place its meaning is
//! written.

use crate::op::{BinaryOp, UnaryOp};

/// A numeric element type (f32, f64, i32). `bool` is not one: it only moves, compares and selects.
pub(super) trait Number: Copy + PartialOrd {
    /// What an empty sum is.
    const ZERO: Self;
    /// What an empty max is: -inf for floats, `i32::MIN` for i32.
    const MAX_IDENTITY: Self;

    /// The function a unary op computes on this type, or `None` where the typing rule excludes it.
    fn unary(op: UnaryOp) -> Option<fn(Self) -> Self>;
    /// The function a binary op computes on this type, or `None` where the typing rule excludes it.
    fn binary(op: BinaryOp) -> Option<fn(Self, Self) -> Self>;

    /// A binary op defined on every numeric type (`add`, `mul`, `max`: the steps of reductions and `matmul`),
    /// fetched once per tensor.
    fn step(op: BinaryOp) -> fn(Self, Self) -> Self {
        Self::binary(op).unwrap_or_else(|| panic!("{} is defined on every numeric type", op.name()))
    }
}

macro_rules! float_number {
    ($t:ident) => {
        impl Number for $t {
            const ZERO: $t = 0.0;
            const MAX_IDENTITY: $t = $t::NEG_INFINITY;

            fn unary(op: UnaryOp) -> Option<fn($t) -> $t> {
                Some(op.float_fn::<$t>())
            }

            fn binary(op: BinaryOp) -> Option<fn($t, $t) -> $t> {
                op.float_fn::<$t>()
            }
        }
    };
}

float_number!(f32);
float_number!(f64);

impl Number for i32 {
    const ZERO: i32 = 0;
    const MAX_IDENTITY: i32 = i32::MIN;

    fn unary(op: UnaryOp) -> Option<fn(i32) -> i32> {
        op.i32_fn()
    }

    fn binary(op: BinaryOp) -> Option<fn(i32, i32) -> i32> {
        op.i32_fn()
    }
}
