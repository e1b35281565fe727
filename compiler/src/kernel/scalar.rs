//! One element of one dtype, and the scalar semantics of SPEC.md §3.2–3.7 on it.
//!
//! The kernel interpreter computes with these; f32 is computed in f32, i32 wraps.

use kiln_ir::{BinaryOp, CmpDir, DType, UnaryOp};

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

    pub fn zero(dtype: DType) -> Scalar {
        Scalar::from_f64(0.0, dtype)
    }

    /// The identity of `max`: -inf for floats, `i32::MIN` for i32.
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

    /// SPEC.md §3.3.
    pub fn cast(self, to: DType) -> Scalar {
        match (self, to) {
            (Scalar::F32(v), DType::I32) => Scalar::I32(v as i32),
            (Scalar::F64(v), DType::I32) => Scalar::I32(v as i32),
            (Scalar::F64(v), DType::F32) => Scalar::F32(v as f32),
            (Scalar::I32(v), DType::F32) => Scalar::F32(v as f32),
            (s, DType::Bool) => Scalar::Bool(s.to_f64() != 0.0),
            (s, DType::F32) => Scalar::F32(s.to_f64() as f32),
            (s, DType::F64) => Scalar::F64(s.to_f64()),
            (s, DType::I32) => Scalar::I32(s.to_f64() as i32),
        }
    }
}

macro_rules! float_unary {
    ($op:expr, $x:expr) => {{
        let x = $x;
        match $op {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Recip => 1.0 / x,
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Logistic => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            UnaryOp::Abs => x.abs(),
        }
    }};
}

pub fn unary(op: UnaryOp, x: Scalar) -> Scalar {
    match x {
        Scalar::F32(v) => Scalar::F32(float_unary!(op, v)),
        Scalar::F64(v) => Scalar::F64(float_unary!(op, v)),
        Scalar::I32(v) => Scalar::I32(match op {
            UnaryOp::Neg => v.wrapping_neg(),
            UnaryOp::Abs => v.wrapping_abs(),
            _ => v,
        }),
        Scalar::Bool(v) => Scalar::Bool(v),
    }
}

macro_rules! float_binary {
    ($op:expr, $a:expr, $b:expr) => {{
        let (a, b) = ($a, $b);
        match $op {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            // NaN-propagating, like torch.maximum (not IEEE maxNum); max(-0, +0) = +0, min(-0, +0) = -0.
            BinaryOp::Max => {
                if a.is_nan() || b.is_nan() {
                    a + b
                } else if a > b || (a == b && a.is_sign_positive()) {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Min => {
                if a.is_nan() || b.is_nan() {
                    a + b
                } else if a < b || (a == b && a.is_sign_negative()) {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Pow => a.powf(b),
        }
    }};
}

/// Panics if the operands' dtypes differ: the kernel IR is typed, so that is a fusion bug.
pub fn binary(op: BinaryOp, a: Scalar, b: Scalar) -> Scalar {
    match (a, b) {
        (Scalar::F32(x), Scalar::F32(y)) => Scalar::F32(float_binary!(op, x, y)),
        (Scalar::F64(x), Scalar::F64(y)) => Scalar::F64(float_binary!(op, x, y)),
        (Scalar::I32(x), Scalar::I32(y)) => Scalar::I32(match op {
            BinaryOp::Add => x.wrapping_add(y),
            BinaryOp::Sub => x.wrapping_sub(y),
            BinaryOp::Mul => x.wrapping_mul(y),
            BinaryOp::Div => {
                if y == 0 {
                    0
                } else {
                    x.wrapping_div(y)
                }
            }
            BinaryOp::Max => x.max(y),
            BinaryOp::Min => x.min(y),
            BinaryOp::Pow => (x as f64).powf(y as f64) as i32,
        }),
        (a, b) => panic!("kernel IR: {} on {a:?} and {b:?}", op.name()),
    }
}

pub fn compare(dir: CmpDir, a: Scalar, b: Scalar) -> bool {
    match (a, b) {
        (Scalar::Bool(x), Scalar::Bool(y)) => match dir {
            CmpDir::Eq => x == y,
            CmpDir::Ne => x != y,
            _ => panic!("kernel IR: ordering comparison on bool"),
        },
        (Scalar::I32(x), Scalar::I32(y)) => cmp(dir, x, y),
        (a, b) => cmp(dir, a.to_f64(), b.to_f64()),
    }
}

fn cmp<T: PartialOrd>(dir: CmpDir, a: T, b: T) -> bool {
    match dir {
        CmpDir::Lt => a < b,
        CmpDir::Le => a <= b,
        CmpDir::Gt => a > b,
        CmpDir::Ge => a >= b,
        CmpDir::Eq => a == b,
        CmpDir::Ne => a != b,
    }
}
