//! The arithmetic of each numeric element type: what every elementwise op, reduction and matmul means on one
//! element, written once per dtype as a table of plain functions.
//!
//! Floats follow IEEE 754 in their own precision (f32 in f32, f64 in f64), except that `max`/`min` propagate NaN
//! (IEEE 754-2019 `maximum`/`minimum`, like `torch.maximum`), which Rust's `f32::max` does not. i32 arithmetic wraps;
//! division truncates toward zero with `x / 0 = 0` and `i32::MIN / -1 = i32::MIN`.

use crate::op::{BinaryOp, UnaryOp};

/// A numeric element type (f32, f64, i32). `bool` is not one: it only moves, compares and selects.
pub(super) trait Number: Copy + PartialOrd {
    /// What an empty sum is.
    const ZERO: Self;
    /// What an empty max is: -inf for floats, `i32::MIN` for i32.
    const MAX_IDENTITY: Self;

    /// Addition as `add` defines it (wrapping for i32); the accumulation step of `reduce_sum` and `matmul`.
    fn add(self, rhs: Self) -> Self;
    /// Multiplication as `mul` defines it (wrapping for i32).
    fn mul(self, rhs: Self) -> Self;
    /// `max` as the op defines it (NaN-propagating for floats); the accumulation step of `reduce_max`.
    fn max(self, rhs: Self) -> Self;

    /// The function a unary op computes on this type, or `None` where the typing rule excludes it.
    fn unary(op: UnaryOp) -> Option<fn(Self) -> Self>;
    /// The function a binary op computes on this type, or `None` where the typing rule excludes it.
    fn binary(op: BinaryOp) -> Option<fn(Self, Self) -> Self>;
}

macro_rules! float_number {
    ($t:ident) => {
        impl Number for $t {
            const ZERO: $t = 0.0;
            const MAX_IDENTITY: $t = $t::NEG_INFINITY;

            fn add(self, rhs: $t) -> $t {
                self + rhs
            }

            fn mul(self, rhs: $t) -> $t {
                self * rhs
            }

            /// NaN if either is NaN; `max(-0, +0) = +0`.
            fn max(self, rhs: $t) -> $t {
                if self.is_nan() || rhs.is_nan() {
                    $t::NAN
                } else if self > rhs || (self == rhs && self.is_sign_positive()) {
                    self
                } else {
                    rhs
                }
            }

            fn unary(op: UnaryOp) -> Option<fn($t) -> $t> {
                let f: fn($t) -> $t = match op {
                    UnaryOp::Neg => |x| -x,
                    UnaryOp::Exp => $t::exp,
                    UnaryOp::Log => $t::ln,
                    UnaryOp::Sqrt => $t::sqrt,
                    UnaryOp::Recip => |x| 1.0 / x,
                    UnaryOp::Tanh => $t::tanh,
                    // 1 / (1 + exp(-x)), evaluated so that exp never overflows: exp of a non-positive number only.
                    UnaryOp::Logistic => |x| {
                        if x >= 0.0 {
                            1.0 / (1.0 + (-x).exp())
                        } else {
                            let e = x.exp();
                            e / (1.0 + e)
                        }
                    },
                    UnaryOp::Abs => $t::abs,
                };
                Some(f)
            }

            fn binary(op: BinaryOp) -> Option<fn($t, $t) -> $t> {
                let f: fn($t, $t) -> $t = match op {
                    BinaryOp::Add => |a, b| a + b,
                    BinaryOp::Sub => |a, b| a - b,
                    BinaryOp::Mul => |a, b| a * b,
                    BinaryOp::Div => |a, b| a / b,
                    BinaryOp::Max => <$t as Number>::max,
                    // NaN if either is NaN; `min(-0, +0) = -0`.
                    BinaryOp::Min => |a, b| {
                        if a.is_nan() || b.is_nan() {
                            $t::NAN
                        } else if a < b || (a == b && a.is_sign_negative()) {
                            a
                        } else {
                            b
                        }
                    },
                    BinaryOp::Pow => $t::powf,
                };
                Some(f)
            }
        }
    };
}

float_number!(f32);
float_number!(f64);

impl Number for i32 {
    const ZERO: i32 = 0;
    const MAX_IDENTITY: i32 = i32::MIN;

    fn add(self, rhs: i32) -> i32 {
        self.wrapping_add(rhs)
    }

    fn mul(self, rhs: i32) -> i32 {
        self.wrapping_mul(rhs)
    }

    fn max(self, rhs: i32) -> i32 {
        Ord::max(self, rhs)
    }

    fn unary(op: UnaryOp) -> Option<fn(i32) -> i32> {
        match op {
            UnaryOp::Neg => Some(i32::wrapping_neg),
            UnaryOp::Abs => Some(i32::wrapping_abs),
            UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Sqrt
            | UnaryOp::Recip
            | UnaryOp::Tanh
            | UnaryOp::Logistic => None,
        }
    }

    fn binary(op: BinaryOp) -> Option<fn(i32, i32) -> i32> {
        let f: fn(i32, i32) -> i32 = match op {
            BinaryOp::Add => i32::wrapping_add,
            BinaryOp::Sub => i32::wrapping_sub,
            BinaryOp::Mul => i32::wrapping_mul,
            // Truncates toward zero; x / 0 = 0; i32::MIN / -1 wraps to i32::MIN.
            BinaryOp::Div => |a, b| if b == 0 { 0 } else { a.wrapping_div(b) },
            BinaryOp::Max => <i32 as Ord>::max,
            BinaryOp::Min => <i32 as Ord>::min,
            BinaryOp::Pow => return None,
        };
        Some(f)
    }
}
