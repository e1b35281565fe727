//! The algorithms of the wide routines, one lane at a time: the CLIF math library's f32 code with FMA
//! (`compiler/src/backend/cpu/math.rs` and `math/trig.rs`, `MathEmitter::with_fma(true)`), transcribed operation for
//! operation. Each CLIF `fma` is an `f32::mul_add`, each `fadd`/`fsub`/`fmul`/`fdiv` the same Rust operator on the same
//! operands in the same order, each `bitcast` a `to_bits`/`from_bits`, each `select` an `if` on both computed values.
//! Rust never reassociates or contracts floating-point operations, so every lane gets the CLIF code's bits whatever
//! vector width LLVM picks (`compiler/tests/cpu/cpu_wide.rs` checks it; NaN payloads aside, as in CLIF).
//!
//! The constants are the CLIF library's, written as the same f64 literals and rounded to f32 the same way
//! (`as f32`), so that they cannot differ by a double rounding; the algorithms, their error and their special
//! cases are documented there, not repeated here.
//!
//! `exp` and `exp(-|x|)` (in `tanh` and `logistic`) branch once per vector in CLIF: the short path where every lane
//! has `|x| ≤ 86`, the full one otherwise, which give the same bits where both apply (argued at CLIF's
//! `Lanes::exp_scaled`). Here they branch once per chunk of `W` lanes (the caller's vector width), so the results
//! do not depend on `W` either.

// The CLIF library's coefficients, digit for digit.
#![allow(clippy::excessive_precision)]

/// Rounds one of the CLIF library's f64 constants to f32 as its `Lanes::f` does.
const fn c(value: f64) -> f32 {
    value as f32
}

const SIGN: u32 = 0x8000_0000;
const MANTISSA_BITS: u32 = 23;
const BIAS: i32 = 127;
/// `1.5·2^23`: adding it rounds to an integer, which then sits in the low mantissa bits.
const ROUND_SHIFTER: f32 = c(12582912.0);
const EXP_LO: f32 = c(-110.0);
const EXP_HI: f32 = c(100.0);
const EXP_ZERO_BELOW: f32 = c(-104.0);
const EXP_FAST_BOUND: f32 = c(86.0);
const LN2_HI: f32 = c(0.693359375);
const LN2_LO: f32 = c(-2.12194440e-4);
const LOG2_E: f32 = c(std::f64::consts::LOG2_E);
const EXP_POLY: [f32; 5] = [
    c(5.00000e-01),
    c(1.6666576e-01),
    c(4.1666556e-02),
    c(8.363179e-03),
    c(1.3926184e-03),
];
const LOG_POLY: [f32; 9] = [
    c(3.333333e-01),
    c(-2.4999997e-01),
    c(2.0000716e-01),
    c(-1.6667803e-01),
    c(1.4249058e-01),
    c(-1.2425687e-01),
    c(1.168542e-01),
    c(-1.1479734e-01),
    c(6.971612e-02),
];
const TANH_POLY_BOUND: f32 = c(0.625);
const TANH_POLY: [f32; 6] = [
    c(-3.3333334e-01),
    c(1.3333304e-01),
    c(-5.3959258e-02),
    c(2.1768918e-02),
    c(-8.343945e-03),
    c(2.2927448e-03),
];
const ERF_SPLIT: f32 = c(1.0);
const ERF_SMALL: [f32; 7] = [
    c(1.2837917e-01),
    c(-3.7612626e-01),
    c(1.1283594e-01),
    c(-2.6854211e-02),
    c(5.1890872e-03),
    c(-8.0168643e-04),
    c(7.875875e-05),
];
const ERF_MID: f32 = c(2.5);
const ERF_ONE: f32 = c(3.919206);
const ERF_LARGE: [f32; 9] = [
    c(2.108076e-01),
    c(-7.4342184e-02),
    c(2.4914645e-02),
    c(-8.132207e-03),
    c(2.3025442e-03),
    c(-6.611102e-04),
    c(5.433151e-04),
    c(2.2506063e-04),
    c(1.0684327e-04),
];
// sin/cos (`math/trig.rs`'s `F32_TRIG`, the FMA parts).
const TWO_OVER_PI: f32 = c(std::f64::consts::FRAC_2_PI);
const TWO_OVER_PI_LO: f32 = c(2.5682552973194106e-08);
const PIO2_FMA: [f32; 3] = [
    c(1.5707963705062866),
    c(-4.371138828673793e-08),
    c(-1.7151245100058819e-15),
];
const SIN_POLY: [f32; 3] = [c(-1.6666654611e-1), c(8.3321608736e-3), c(-1.9515295891e-4)];
const COS_POLY: [f32; 3] = [
    c(4.166664568298827e-2),
    c(-1.388731625493765e-3),
    c(2.443315711809948e-5),
];

/// `c[0] + x·(c[1] + x·(..))` by Horner's rule, one fma per step (CLIF's `Lanes::poly`).
#[inline(always)]
fn poly<const N: usize>(x: f32, coefficients: &[f32; N]) -> f32 {
    let mut acc = coefficients[N - 1];
    for &c in coefficients[..N - 1].iter().rev() {
        acc = acc.mul_add(x, c);
    }
    acc
}

/// `magnitude` with the sign bit of `sign` or-ed in (CLIF's `copy_sign_bit`).
#[inline(always)]
fn copy_sign_bit(magnitude: f32, sign: f32) -> f32 {
    f32::from_bits(magnitude.to_bits() | (sign.to_bits() & SIGN))
}

/// `x` clamped to `[lo, hi]`; a NaN stays NaN (CLIF's `clamp`: two compare-and-selects).
#[inline(always)]
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if hi < x {
        hi
    } else {
        x
    }
}

/// `(t, em1)` with `t = shifter + round(x·log2 e)` and `em1 = e^r - 1` (CLIF's `exp_reduced`).
#[inline(always)]
fn exp_reduced(x: f32, shifter: f32) -> (f32, f32) {
    let t = x.mul_add(LOG2_E, shifter);
    let n = t - shifter;
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let p = poly(r, &EXP_POLY);
    let r2 = r * r;
    (t, r2.mul_add(p, r))
}

/// `e^x` for `|x| ≤ 86` or NaN, scaled once (CLIF's `exp_short` with FMA: the shifter carries the bias).
#[inline(always)]
pub(super) fn exp_short(x: f32) -> f32 {
    let (t, em1) = exp_reduced(x, ROUND_SHIFTER + BIAS as f32);
    let two_n = f32::from_bits(t.to_bits() << MANTISSA_BITS);
    em1.mul_add(two_n, two_n)
}

/// `e^x` for every `x`: clamped, scaled by `2^n` in two factors (CLIF's `exp_full`).
#[inline(always)]
pub(super) fn exp_full(x: f32) -> f32 {
    let x = clamp(x, EXP_LO, EXP_HI);
    let (t, em1) = exp_reduced(x, ROUND_SHIFTER);
    let p = em1 + 1.0;
    let u = t.to_bits() << MANTISSA_BITS;
    let u_even = u & (u32::MAX << (MANTISSA_BITS + 1));
    let v = ((u_even as i32) >> 1) as u32;
    let bias = (BIAS as u32) << MANTISSA_BITS;
    let s1 = v.wrapping_add(bias);
    let s2 = u.wrapping_add(bias).wrapping_sub(v);
    let scaled = p * f32::from_bits(s1);
    scaled * f32::from_bits(s2)
}

/// Whether `x` sends its chunk down the full path of `exp` (CLIF's `outside`; a NaN does not).
#[inline(always)]
pub(super) fn exp_outside(x: f32) -> bool {
    x.abs() > EXP_FAST_BOUND
}

/// `exp`'s argument after its underflow check: lanes whose result rounds to +0 compute `e^0` (and are set to 0 by
/// [`exp_finish`]).
#[inline(always)]
pub(super) fn exp_prepare(x: f32) -> f32 {
    if x < EXP_ZERO_BELOW {
        0.0
    } else {
        x
    }
}

/// `exp`'s result from `e` = e^[`exp_prepare`]`(x)`.
#[inline(always)]
pub(super) fn exp_finish(x: f32, e: f32) -> f32 {
    if x < EXP_ZERO_BELOW {
        0.0
    } else {
        e
    }
}

/// `-|x|` for the short path of `exp(-|x|)`.
#[inline(always)]
pub(super) fn minus_abs(x: f32) -> f32 {
    -x.abs()
}

/// `-|x|` for the full path, computed as CLIF's `exp_minus_abs` computes it there (`|x|·-1`: the same value, a
/// NaN aside, which is kept apart from the short path's negation in CLIF so that it is not merged into it).
#[allow(clippy::neg_multiply)] // one for one with the CLIF
#[inline(always)]
pub(super) fn minus_abs_full(x: f32) -> f32 {
    x.abs() * -1.0
}

/// `tanh x` from `z = e^-|x|` (CLIF's `tanh` after `exp_minus_abs`).
#[inline(always)]
pub(super) fn tanh_finish(x: f32, z: f32) -> f32 {
    let a = x.abs();
    let a2 = a * a;
    let az = a * a2;
    let p = poly(a2, &TANH_POLY);
    let small_value = az.mul_add(p, a);
    let q = z * z;
    let large_value = (1.0 - q) / (1.0 + q);
    let magnitude = if a < TANH_POLY_BOUND {
        small_value
    } else {
        large_value
    };
    copy_sign_bit(magnitude, x)
}

/// `1/(1 + e^-x)` from `z = e^-|x|` (CLIF's `logistic` after `exp_minus_abs`).
#[inline(always)]
pub(super) fn logistic_finish(x: f32, z: f32) -> f32 {
    let denominator = 1.0 + z;
    let numerator = if x < 0.0 { z } else { 1.0 };
    numerator / denominator
}

/// `ln x` (CLIF's `log`, the f32 `LogPoly::InF` form).
#[inline(always)]
pub(super) fn log(x: f32) -> f32 {
    const P: u32 = MANTISSA_BITS;
    let tiny = x < f32::MIN_POSITIVE;
    let x_scaled = x * c(8388608.0);
    let xs = if tiny { x_scaled } else { x };
    let e_adjust = if tiny { -(P as f32) } else { 0.0 };
    let sqrt_half_bits = c(std::f64::consts::FRAC_1_SQRT_2).to_bits();
    let ix = xs
        .to_bits()
        .wrapping_add(1.0f32.to_bits().wrapping_sub(sqrt_half_bits));
    let two_p = c(8388608.0);
    let e_magic = f32::from_bits((ix >> P) | two_p.to_bits());
    let e = e_magic - c(8388608.0 + BIAS as f64);
    let e = e + e_adjust;
    let m = f32::from_bits((ix & ((1 << P) - 1)).wrapping_add(sqrt_half_bits));
    let f = m - 1.0;
    // f - f²/2 + f³·P(f) + e·ln2, small terms first.
    let z = f * f;
    let fz = f * z;
    let p = poly(f, &LOG_POLY);
    let y = fz * p;
    let y = e.mul_add(LN2_LO, y);
    let y = z.mul_add(-0.5, y);
    let y = f + y;
    let log = e.mul_add(LN2_HI, y);
    let log = if x == f32::INFINITY {
        f32::INFINITY
    } else {
        log
    };
    let log = if x == 0.0 { f32::NEG_INFINITY } else { log };
    // UnorderedOrLessThan: x < 0 or NaN.
    if x < 0.0 || x.is_nan() {
        f32::NAN
    } else {
        log
    }
}

/// `erf x` (CLIF's `erf`; `e^(-a²)` by the short path alone, as `a` is clamped to its range).
#[inline(always)]
pub(super) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let z = a * a;
    let q = poly(z, &ERF_SMALL);
    let small_value = a.mul_add(q, a);
    let saturated = ERF_ONE <= a;
    let a_clamped = if saturated { ERF_ONE } else { a };
    let a2 = a_clamped * a_clamped;
    let gauss = exp_short(-a2);
    let v = a_clamped - ERF_MID;
    let r = poly(v, &ERF_LARGE);
    let large_value = (-gauss).mul_add(r, 1.0);
    let large_value = if saturated { 1.0 } else { large_value };
    let magnitude = if a < ERF_SPLIT {
        small_value
    } else {
        large_value
    };
    copy_sign_bit(magnitude, x)
}

/// `sin x` (`cos = false`) or `cos x` (CLIF's `sin_or_cos` with FMA).
#[inline(always)]
pub(super) fn sin_or_cos(x: f32, cos: bool) -> f32 {
    let t = x.mul_add(TWO_OVER_PI, ROUND_SHIFTER);
    let n = t - ROUND_SHIFTER;
    // n corrected by round(d), d = x·2/π - n with 2/π's rounding error.
    let fraction = x.mul_add(TWO_OVER_PI, -n);
    let d = x.mul_add(TWO_OVER_PI_LO, fraction);
    let step = (d + ROUND_SHIFTER) - ROUND_SHIFTER;
    let n = n + step;
    let mut r = x;
    for part in PIO2_FMA {
        r = n.mul_add(-part, r);
    }
    let r = clamp(r, -1.0, 1.0);
    let z = r * r;
    let s = poly(z, &SIN_POLY);
    let rz = r * z;
    let sin_r = rz.mul_add(s, r);
    let hz = 0.5 * z;
    let w = 1.0 - hz;
    let lost = (1.0 - w) - hz;
    let cp = poly(z, &COS_POLY);
    let z2 = z * z;
    let tail = z2.mul_add(cp, lost);
    let cos_r = w + tail;
    let m = if cos { n + 1.0 } else { n };
    // q = m mod 4, exactly: m - 4·⌊m/4⌋.
    let whole = (m * 0.25).floor();
    let q = whole.mul_add(-4.0, m);
    let q_half = q * 0.5;
    let odd = q_half.floor() != q_half;
    let value = if odd { cos_r } else { sin_r };
    let value = if q >= 2.0 { -value } else { value };
    if !cos && x == 0.0 {
        x
    } else {
        value
    }
}
