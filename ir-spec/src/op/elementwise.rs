//! The elementwise ops, one table entry each: mnemonic, cost class, the scalar meaning per dtype, and the gradient.
//!
//! This is the only place an elementwise op's meaning is written. The graph interpreter (`interp`), the kernel
//! interpreter and constant folding (crate `kiln`) evaluate through [`UnaryOp::float_fn`], [`UnaryOp::i32_fn`] and
//! friends (also as [`crate::op::Scalar`]); the typing rule reads the domain (an op with no `i32` meaning is
//! float-only, a binary op with no float meaning is int-only); `vjp.rs` calls the `vjp` of the entry. Backends lower
//! each op with an exhaustive `match`, so a new entry makes the compiler list every lowering still missing.
//!
//! Floats follow IEEE 754 in their own precision (f32 in f32, f64 in f64); transcendental functions are those of
//! Rust's `std` (`erf` from `libm`, which `std` itself uses; `sin`/`cos` those of f64, rounded for f32), which the
//! backends' polynomials are measured against.
//! `max`/`min` propagate NaN (IEEE 754-2019 `maximum`/`minimum`, like `torch.maximum`), which Rust's `f32::max` does
//! not. i32 arithmetic wraps; division truncates toward zero with `x / 0 = 0` and `i32::MIN / -1 = i32::MIN`. The
//! bitwise ops read an i32 as its 32-bit pattern; shift amounts are taken mod 32.

use crate::builder::{Builder, Value};
use crate::error::IrError;
use crate::types::DType;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// How much an op costs per element, which fusion's recomputation and the kernel passes ask about.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Cost {
    /// A few machine instructions (`add`, `neg`, `max`, a comparison).
    Cheap,
    /// A division or square root: one slow instruction.
    Divide,
    /// A polynomial with range reduction on every backend (`exp`, `log`, `tanh`, `logistic`, `erf`, `sin`,
    /// `cos`, `pow`).
    Transcendental,
}

/// A float type, for writing each op's float meaning once for f32 and f64.
pub trait Float:
    Copy
    + PartialOrd
    + Neg<Output = Self>
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NAN: Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    /// To the nearest integer, ties to even (IEEE 754 `roundTiesToEven`).
    fn round_ties_even(self) -> Self;
    fn trunc(self) -> Self;
    fn erf(self) -> Self;
    /// The sine, the host's f64 `sin` rounded to the type (the reference the backends are measured against).
    fn sin(self) -> Self;
    /// The cosine, the host's f64 `cos` rounded to the type.
    fn cos(self) -> Self;
    fn powf(self, y: Self) -> Self;
    fn is_nan(self) -> bool;
    fn is_sign_positive(self) -> bool;
    fn is_sign_negative(self) -> bool;
}

macro_rules! impl_float {
    ($t:ident, $erf:path) => {
        impl Float for $t {
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            const NAN: $t = $t::NAN;
            fn exp(self) -> $t {
                $t::exp(self)
            }
            fn ln(self) -> $t {
                $t::ln(self)
            }
            fn sqrt(self) -> $t {
                $t::sqrt(self)
            }
            fn tanh(self) -> $t {
                $t::tanh(self)
            }
            fn abs(self) -> $t {
                $t::abs(self)
            }
            fn floor(self) -> $t {
                $t::floor(self)
            }
            fn ceil(self) -> $t {
                $t::ceil(self)
            }
            fn round_ties_even(self) -> $t {
                $t::round_ties_even(self)
            }
            fn trunc(self) -> $t {
                $t::trunc(self)
            }
            fn erf(self) -> $t {
                $erf(self)
            }
            // Through f64 for f32 as well: f64's `sin` rounded to f32 is correctly rounded for all but a handful of
            // arguments, while `f32::sin` is whatever the platform's `sinf` happens to be. A no-op cast for f64.
            #[allow(clippy::unnecessary_cast)]
            fn sin(self) -> $t {
                (self as f64).sin() as $t
            }
            #[allow(clippy::unnecessary_cast)]
            fn cos(self) -> $t {
                (self as f64).cos() as $t
            }
            fn powf(self, y: $t) -> $t {
                $t::powf(self, y)
            }
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
            fn is_sign_positive(self) -> bool {
                $t::is_sign_positive(self)
            }
            fn is_sign_negative(self) -> bool {
                $t::is_sign_negative(self)
            }
        }
    };
}

impl_float!(f32, libm::erff);
impl_float!(f64, libm::erf);

/// `maximum`: NaN if either is NaN; `max(-0, +0) = +0`.
pub fn float_max<F: Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::NAN
    } else if a > b || (a == b && a.is_sign_positive()) {
        a
    } else {
        b
    }
}

/// `minimum`: NaN if either is NaN; `min(-0, +0) = -0`.
pub fn float_min<F: Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::NAN
    } else if a < b || (a == b && a.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// The cotangents of a binary op's two operands.
pub type BinaryGrads = [Option<Value>; 2];

macro_rules! unary_int {
    (none) => {
        None
    };
    ((|$x:ident| $e:expr)) => {
        Some((|$x: i32| -> i32 { $e }) as fn(i32) -> i32)
    };
}

macro_rules! binary_float {
    (none) => {
        None
    };
    ((|$a:ident, $b:ident| $e:expr)) => {
        Some((|$a: F, $b: F| -> F { $e }) as fn(F, F) -> F)
    };
}

macro_rules! binary_int {
    (none) => {
        None
    };
    ((|$a:ident, $b:ident| $e:expr)) => {
        Some((|$a: i32, $b: i32| -> i32 { $e }) as fn(i32, i32) -> i32)
    };
}

macro_rules! unary_ops {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident $name:literal, $cost:ident,
            float: |$x:ident| $float:expr,
            i32: $int:tt,
            vjp: |$b:ident, $g:ident, $x0:ident, $y:ident| $vjp:block
    )*) => {
        /// Elementwise ops of one operand.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum UnaryOp {
            $($(#[doc = $doc])* $variant,)*
        }

        impl UnaryOp {
            pub const ALL: [UnaryOp; [$(stringify!($variant)),*].len()] = [$(UnaryOp::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(UnaryOp::$variant => $name,)*
                }
            }

            pub fn cost(self) -> Cost {
                match self {
                    $(UnaryOp::$variant => Cost::$cost,)*
                }
            }

            /// The op's meaning on a float type.
            pub fn float_fn<F: Float>(self) -> fn(F) -> F {
                match self {
                    $(UnaryOp::$variant => |$x: F| -> F { $float },)*
                }
            }

            /// The op's meaning on i32, or `None` where the op is float-only.
            pub fn i32_fn(self) -> Option<fn(i32) -> i32> {
                match self {
                    $(UnaryOp::$variant => unary_int!($int),)*
                }
            }

            /// The cotangent of the operand `x` given that of the result `y`.
            pub fn vjp(self, b: &mut Builder, g: Value, x: Value, y: Value) -> Result<Value, IrError> {
                match self {
                    $(UnaryOp::$variant => {
                        let ($b, $g, $x0, $y) = (b, g, x, y);
                        let _ = (&$b, &$x0, &$y);
                        $vjp
                    })*
                }
            }
        }
    };
}

macro_rules! binary_ops {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident $name:literal, $cost:ident,
            float: $float:tt,
            i32: $int:tt,
            vjp: |$b:ident, $g:ident, $l:ident, $r:ident, $y:ident, $want:ident| $vjp:block
    )*) => {
        /// Elementwise ops of two operands of equal type.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum BinaryOp {
            $($(#[doc = $doc])* $variant,)*
        }

        impl BinaryOp {
            pub const ALL: [BinaryOp; [$(stringify!($variant)),*].len()] = [$(BinaryOp::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $(BinaryOp::$variant => $name,)*
                }
            }

            pub fn cost(self) -> Cost {
                match self {
                    $(BinaryOp::$variant => Cost::$cost,)*
                }
            }

            /// The op's meaning on a float type, or `None` where the op is int-only (the bitwise ops).
            pub fn float_fn<F: Float>(self) -> Option<fn(F, F) -> F> {
                match self {
                    $(BinaryOp::$variant => binary_float!($float),)*
                }
            }

            /// The op's meaning on i32, or `None` where the op is float-only.
            pub fn i32_fn(self) -> Option<fn(i32, i32) -> i32> {
                match self {
                    $(BinaryOp::$variant => binary_int!($int),)*
                }
            }

            /// The cotangents of the operands `l` and `r` given that of the result `y`; `want[i]` says whether
            /// operand `i`'s is needed (the others are `None`).
            pub fn vjp(
                self,
                b: &mut Builder,
                g: Value,
                (l, r): (Value, Value),
                y: Value,
                want: [bool; 2],
            ) -> Result<BinaryGrads, IrError> {
                match self {
                    $(BinaryOp::$variant => {
                        let ($b, $g, $l, $r, $y, $want) = (b, g, l, r, y, want);
                        let _ = (&$b, &$g, &$l, &$r, &$y, &$want);
                        $vjp
                    })*
                }
            }
        }
    };
}

unary_ops! {
    Neg "neg", Cheap,
        float: |x| -x,
        i32: (|x| x.wrapping_neg()),
        // d/dx -x = -1
        vjp: |b, g, x, y| { b.neg(g) }
    Exp "exp", Transcendental,
        float: |x| x.exp(),
        i32: none,
        // d/dx exp(x) = exp(x) = y
        vjp: |b, g, x, y| { b.mul(g, y) }
    Log "log", Transcendental,
        float: |x| x.ln(),
        i32: none,
        // d/dx log(x) = 1/x
        vjp: |b, g, x, y| { b.div(g, x) }
    Sqrt "sqrt", Divide,
        float: |x| x.sqrt(),
        i32: none,
        // d/dx sqrt(x) = 1 / (2 sqrt(x)) = 0.5 / y
        vjp: |b, g, x, y| {
            let half_g = b.mul_scalar(g, 0.5)?;
            b.div(half_g, y)
        }
    Recip "recip", Divide,
        float: |x| F::ONE / x,
        i32: none,
        // d/dx 1/x = -1/x² = -y²
        vjp: |b, g, x, y| {
            let y2 = b.mul(y, y)?;
            let gy2 = b.mul(g, y2)?;
            b.neg(gy2)
        }
    Tanh "tanh", Transcendental,
        float: |x| x.tanh(),
        i32: none,
        // d/dx tanh(x) = 1 - tanh(x)² = 1 - y²
        vjp: |b, g, x, y| {
            let y2 = b.mul(y, y)?;
            let d = b.rsub_scalar(1.0, y2)?;
            b.mul(g, d)
        }
    /// The logistic sigmoid `1 / (1 + exp(-x))`.
    Logistic "logistic", Transcendental,
        // Evaluated so that exp never overflows: exp of a non-positive number only.
        float: |x| if x >= F::ZERO {
            F::ONE / (F::ONE + (-x).exp())
        } else {
            let e = x.exp();
            e / (F::ONE + e)
        },
        i32: none,
        // d/dx σ(x) = σ(x)(1 - σ(x)) = y (1 - y)
        vjp: |b, g, x, y| {
            let one_minus = b.rsub_scalar(1.0, y)?;
            let d = b.mul(y, one_minus)?;
            b.mul(g, d)
        }
    Abs "abs", Cheap,
        float: |x| x.abs(),
        i32: (|x| x.wrapping_abs()),
        // d/dx |x| = sign(x), with sign(0) = 0
        vjp: |b, g, x, y| {
            let zero = b.zeros_like(g)?;
            let neg_g = b.neg(g)?;
            let is_neg = b.compare_scalar(crate::op::CmpDir::Lt, x, 0.0)?;
            let below = b.select(is_neg, neg_g, zero)?;
            let is_pos = b.compare_scalar(crate::op::CmpDir::Gt, x, 0.0)?;
            b.select(is_pos, g, below)
        }
    /// The Gauss error function `2/√π ∫₀ˣ e^(-t²) dt` (the exact GELU and ONNX's `Erf` need it).
    Erf "erf", Transcendental,
        float: |x| x.erf(),
        i32: none,
        // d/dx erf(x) = 2/√π · exp(-x²)
        vjp: |b, g, x, y| {
            let x2 = b.mul(x, x)?;
            let minus_x2 = b.neg(x2)?;
            let e = b.exp(minus_x2)?;
            let d = b.mul_scalar(e, std::f64::consts::FRAC_2_SQRT_PI)?;
            b.mul(g, d)
        }
    /// The sine (radians). Backends reduce the argument by π/2 with a Cody–Waite split of π/2, accurate for
    /// moderate arguments only (SPEC §3.2 states the range); never NaN for a finite argument.
    Sin "sin", Transcendental,
        float: |x| x.sin(),
        i32: none,
        // d/dx sin(x) = cos(x); written as IR so that grad-of-grad differentiates it in turn.
        vjp: |b, g, x, y| {
            let c = b.cos(x)?;
            b.mul(g, c)
        }
    /// The cosine (radians), reduced like `sin`.
    Cos "cos", Transcendental,
        float: |x| x.cos(),
        i32: none,
        // d/dx cos(x) = -sin(x)
        vjp: |b, g, x, y| {
            let s = b.sin(x)?;
            let gs = b.mul(g, s)?;
            b.neg(gs)
        }
    /// Rounding to an integer value (float to float): toward −∞, toward +∞, to nearest with ties to even, and
    /// toward 0. Piecewise constant, so the gradient is 0 everywhere (PyTorch's choice at the jumps too).
    Floor "floor", Cheap,
        float: |x| x.floor(),
        i32: none,
        vjp: |b, g, x, y| { b.zeros_like(g) }
    Ceil "ceil", Cheap,
        float: |x| x.ceil(),
        i32: none,
        vjp: |b, g, x, y| { b.zeros_like(g) }
    Round "round", Cheap,
        float: |x| x.round_ties_even(),
        i32: none,
        vjp: |b, g, x, y| { b.zeros_like(g) }
    Trunc "trunc", Cheap,
        float: |x| x.trunc(),
        i32: none,
        vjp: |b, g, x, y| { b.zeros_like(g) }
}

binary_ops! {
    Add "add", Cheap,
        float: (|a, b| a + b),
        i32: (|a, b| a.wrapping_add(b)),
        // d(a + b) = da + db
        vjp: |b, g, l, r, y, want| { Ok([want[0].then_some(g), want[1].then_some(g)]) }
    Sub "sub", Cheap,
        float: (|a, b| a - b),
        i32: (|a, b| a.wrapping_sub(b)),
        // d(a - b) = da - db
        vjp: |b, g, l, r, y, want| {
            let dr = if want[1] { Some(b.neg(g)?) } else { None };
            Ok([want[0].then_some(g), dr])
        }
    Mul "mul", Cheap,
        float: (|a, b| a * b),
        i32: (|a, b| a.wrapping_mul(b)),
        // d(a b) = b da + a db
        vjp: |b, g, l, r, y, want| {
            let dl = if want[0] { Some(b.mul(g, r)?) } else { None };
            let dr = if want[1] { Some(b.mul(g, l)?) } else { None };
            Ok([dl, dr])
        }
    Div "div", Divide,
        float: (|a, b| a / b),
        // Truncates toward zero; x / 0 = 0; i32::MIN / -1 wraps to i32::MIN.
        i32: (|a, b| if b == 0 { 0 } else { a.wrapping_div(b) }),
        // d(a / b) = da / b - a / b² db = da / b - y / b db
        vjp: |b, g, l, r, y, want| {
            let dl = if want[0] { Some(b.div(g, r)?) } else { None };
            let dr = if want[1] {
                let gy = b.mul(g, y)?;
                let q = b.div(gy, r)?;
                Some(b.neg(q)?)
            } else {
                None
            };
            Ok([dl, dr])
        }
    Max "max", Cheap,
        float: (|a, b| float_max(a, b)),
        i32: (|a, b| Ord::max(a, b)),
        // The larger operand gets g, a tie gives each g/2 (torch.maximum).
        vjp: |b, g, l, r, y, want| { min_max_vjp(b, g, (l, r), want, crate::op::CmpDir::Gt) }
    Min "min", Cheap,
        float: (|a, b| float_min(a, b)),
        i32: (|a, b| Ord::min(a, b)),
        // Mirrors max.
        vjp: |b, g, l, r, y, want| { min_max_vjp(b, g, (l, r), want, crate::op::CmpDir::Lt) }
    Pow "pow", Transcendental,
        float: (|a, b| a.powf(b)),
        i32: none,
        // d(a^b) = b a^(b-1) da + a^b log(a) db; PyTorch defines the first term as 0 where b = 0 and the second as
        // 0 where a = 0 and b >= 0.
        vjp: |b, g, l, r, y, want| {
            use crate::op::CmpDir;
            let zero = b.zeros_like(g)?;
            let dl = if want[0] {
                let b_minus_1 = b.add_scalar(r, -1.0)?;
                let p = b.pow(l, b_minus_1)?;
                let bp = b.mul(r, p)?;
                let full = b.mul(g, bp)?;
                let b_is_zero = b.compare_scalar(CmpDir::Eq, r, 0.0)?;
                Some(b.select(b_is_zero, zero, full)?)
            } else {
                None
            };
            let dr = if want[1] {
                let log_a = b.log(l)?;
                let ylog = b.mul(y, log_a)?;
                let full = b.mul(g, ylog)?;
                let b_nonneg = b.compare_scalar(CmpDir::Ge, r, 0.0)?;
                let at_zero = b.select(b_nonneg, zero, full)?;
                let a_is_zero = b.compare_scalar(CmpDir::Eq, l, 0.0)?;
                Some(b.select(a_is_zero, at_zero, full)?)
            } else {
                None
            };
            Ok([dl, dr])
        }
    // The bitwise ops below are int-only: they act on the 32-bit two's-complement pattern and have no float meaning.
    // They exist for counter-based random numbers (Philox, `composite/random.rs`), which need every backend to
    // produce the same bits. Integers carry no gradient (autodiff never asks an i32 node), so their rules are empty.
    /// Bitwise and of the 32-bit patterns.
    And "and", Cheap,
        float: none,
        i32: (|a, b| a & b),
        vjp: |b, g, l, r, y, want| { Ok([None, None]) }
    /// Bitwise or of the 32-bit patterns.
    Or "or", Cheap,
        float: none,
        i32: (|a, b| a | b),
        vjp: |b, g, l, r, y, want| { Ok([None, None]) }
    /// Bitwise exclusive or of the 32-bit patterns.
    Xor "xor", Cheap,
        float: none,
        i32: (|a, b| a ^ b),
        vjp: |b, g, l, r, y, want| { Ok([None, None]) }
    /// `a` shifted left by `b mod 32` bits (zeros shifted in).
    Shl "shl", Cheap,
        // The amount is taken mod 32 (its low 5 bits), as x86, Cranelift, Java and JavaScript do, so no amount is
        // undefined; SPIR-V leaves amounts ≥ 32 undefined, so its lowering masks them first.
        float: none,
        i32: (|a, b| a.wrapping_shl(b as u32)),
        vjp: |b, g, l, r, y, want| { Ok([None, None]) }
    /// The 32-bit pattern of `a` shifted right by `b mod 32` bits, zeros shifted in (a logical shift).
    Shr "shr", Cheap,
        float: none,
        i32: (|a, b| (a as u32).wrapping_shr(b as u32) as i32),
        vjp: |b, g, l, r, y, want| { Ok([None, None]) }
    /// The high 32 bits of the 64-bit product of the operands' patterns read as unsigned (Philox's multiply).
    MulHi "mul_hi", Cheap,
        float: none,
        i32: (|a, b| ((a as u32 as u64 * b as u32 as u64) >> 32) as u32 as i32),
        vjp: |b, g, l, r, y, want| { Ok([None, None]) }
}

/// `max`/`min`: the operand that `wins` the comparison gets g, a tie gives each g/2.
fn min_max_vjp(
    b: &mut Builder,
    g: Value,
    (l, r): (Value, Value),
    want: [bool; 2],
    wins: crate::op::CmpDir,
) -> Result<BinaryGrads, IrError> {
    use crate::op::CmpDir;
    let zero = b.zeros_like(g)?;
    let half = b.mul_scalar(g, 0.5)?;
    let tie = b.compare(CmpDir::Eq, l, r)?;
    let on_tie = b.select(tie, half, zero)?;
    let mut grads = [None, None];
    if want[0] {
        let l_wins = b.compare(wins, l, r)?;
        grads[0] = Some(b.select(l_wins, g, on_tie)?);
    }
    if want[1] {
        let r_wins = b.compare(wins, r, l)?;
        grads[1] = Some(b.select(r_wins, g, on_tie)?);
    }
    Ok(grads)
}

impl UnaryOp {
    /// Transcendental ops are defined on floats only; `neg` and `abs` also on i32 (wrapping).
    pub fn float_only(self) -> bool {
        self.i32_fn().is_none()
    }
}

impl BinaryOp {
    /// `pow` is defined on floats only.
    pub fn float_only(self) -> bool {
        self.i32_fn().is_none()
    }

    /// The bitwise ops (`and`, `or`, `xor`, `shl`, `shr`, `mul_hi`) are defined on i32 only.
    pub fn int_only(self) -> bool {
        self.float_fn::<f32>().is_none()
    }

    /// Whether the typing rule admits operands of `dtype` (never bool).
    pub fn defined_on(self, dtype: DType) -> bool {
        match dtype {
            DType::F32 | DType::F64 => !self.int_only(),
            DType::I32 => !self.float_only(),
            DType::Bool => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BinaryOp;
    use crate::types::DType;

    fn int(op: BinaryOp, a: i32, b: i32) -> i32 {
        op.i32_fn().expect("defined on i32")(a, b)
    }

    #[test]
    fn shift_amounts_are_taken_mod_32() {
        assert_eq!(int(BinaryOp::Shl, 1, 31), i32::MIN);
        assert_eq!(int(BinaryOp::Shl, 5, 32), 5);
        assert_eq!(int(BinaryOp::Shl, 1, -1), i32::MIN);
        assert_eq!(int(BinaryOp::Shr, -1, 1), i32::MAX);
        assert_eq!(int(BinaryOp::Shr, i32::MIN, 31), 1);
        assert_eq!(int(BinaryOp::Shr, -8, 32), -8);
        assert_eq!(int(BinaryOp::Shr, -1, 33), i32::MAX);
    }

    #[test]
    fn mul_hi_is_the_high_word_of_the_unsigned_product() {
        assert_eq!(int(BinaryOp::MulHi, -1, -1), -2);
        assert_eq!(int(BinaryOp::MulHi, -1, 1), 0);
        assert_eq!(int(BinaryOp::MulHi, i32::MIN, 2), 1);
        assert_eq!(int(BinaryOp::MulHi, 0x1_0000, 0x1_0000), 1);
        // mul gives the low word: together the 64-bit product.
        let (a, b) = (0xD251_1F53u32 as i32, 0x8765_4321u32 as i32);
        let wide = (int(BinaryOp::MulHi, a, b) as u32 as u64) << 32
            | int(BinaryOp::Mul, a, b) as u32 as u64;
        assert_eq!(wide, 0xD251_1F53u64 * 0x8765_4321u64);
    }

    #[test]
    fn bitwise_ops_are_int_only_and_pow_float_only() {
        for op in BinaryOp::ALL {
            let bitwise = matches!(
                op,
                BinaryOp::And
                    | BinaryOp::Or
                    | BinaryOp::Xor
                    | BinaryOp::Shl
                    | BinaryOp::Shr
                    | BinaryOp::MulHi
            );
            assert_eq!(op.int_only(), bitwise, "{}", op.name());
            assert_eq!(op.defined_on(DType::F32), !bitwise, "{}", op.name());
            assert_eq!(
                op.defined_on(DType::I32),
                op != BinaryOp::Pow,
                "{}",
                op.name()
            );
            assert!(!op.defined_on(DType::Bool));
        }
    }
}
