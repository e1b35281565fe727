//! `sin` and `cos` in CLIF, branch-free and lane-generic like the rest of the math library (the algorithm and its
//! measured error are in the table of the parent module's doc).
//!
//! - Reduction: `n = round(x·2/π)` by adding `1.5·2^p` (as `exp` does; with FMA, corrected by the fraction that 2/π's
//!   rounding moves, so that `n` is the nearest integer to the exact `x·2/π`), then `r = x - n·π/2` with π/2 split in
//!   Cody–Waite parts, one `mul_add` each. With FMA every product `n·cᵢ` is exact inside the fma, so the parts are
//!   π/2 rounded to the type and its remainders (3 parts, tail ≈ 2^-76 for f32, 2^-163 for f64) and `x - n·c₁` is
//!   exact while `|n·c₂|` stays small. Without FMA the products themselves must be exact, so the parts have few
//!   bits: fdlibm's four 33-bit parts for f64 (exact for `|n| < 2^20`) and, for f32, four 11-bit pieces of π/2 and
//!   the rest (exact for `|n| < 2^13`). Five pieces, not Cephes' three (8 + 11 + 24 bits): each difference
//!   `rᵢ = rᵢ₋₁ - n·cᵢ` is then exact whenever it is small (a multiple of cᵢ's last bit below 2^24 of them), so next
//!   to a multiple of π/2, where `r` is tiny, nothing is rounded until the terms are as small as `r`; Cephes' split
//!   rounds `n·c₃` there and was measured at 478 ulp. f32 stays in f32 lanes, not promoted to f64 as `pow` is: four
//!   lanes per f32x4 instead of two halves.
//! - Accurate domain: `n` must be the nearest integer, so `|x·2/π| < 2^(p-1)` (the shifter's range: 6.5e6 for f32,
//!   7e15 for f64), and the split must stay exact (above); the stated bounds (`|x| < 2^22`, `2^50` with FMA; 8192,
//!   `2^20` without) are powers of two inside those, which the tests and the sweep check. Beyond it `n` and `r` are
//!   still finite: `r` is clamped to `[-1, 1]` so that the polynomials never see a huge argument, and the result is
//!   some value in `[-1, 1]`, never NaN for a finite `x` (an inaccurate one: a correct reduction of huge arguments needs Payne–Hanek's 2/π to
//!   hundreds of bits, which no backend here does; neither do GPU `sin`s).
//! - Polynomials on `|r| ≤ π/4`: `sin r = r + r·z·S(z)`, `cos r = 1 - z/2 + z²·C(z)` with `z = r²` (Cephes' `sinf`/
//!   `cosf` coefficients for f32, fdlibm's `__kernel_sin`/`__kernel_cos` for f64); `1 - z/2` is formed as
//!   `w + ((1 - w) - z/2)` with `w = round(1 - z/2)`, fdlibm's trick, so its rounding error is carried to the end.
//! - Quadrant: `sin x = ±sin r or ±cos r` by `q = m mod 4` with `m = n` for `sin` and `m = n + 1` for `cos`
//!   (`cos x = sin(x + π/2)`), computed in floats as `m - 4·⌊m/4⌋` (exact; lane-generic where an integer
//!   conversion of f64x2 lanes is not): odd `q` takes the cosine polynomial, `q ≥ 2` negates.
//! - Edge cases: `sin(±0) = ±0` (selected: `r + r·z·S` would give +0 for -0), `cos(±0) = 1`; `±inf` gives
//!   `r = inf - inf = NaN`, and NaN stays NaN.

// fdlibm's coefficients as published (21 significant digits), so that they can be checked against `k_sin.c` and
// `k_cos.c`; each parses to the double fdlibm lists in hex.
#![allow(clippy::excessive_precision)]

use super::{Lanes, MathEmitter};
use cranelift_codegen::ir::{condcodes::FloatCC, InstBuilder, Value};
use cranelift_frontend::FunctionBuilder;

/// The constants of `sin`/`cos` in one format (the SPIR-V backend emits the same algorithm with them).
pub(crate) struct Trig {
    /// `2/π - round(2/π)` in the type: with FMA, `n` is corrected by the fraction `x·2/π - n` computed with it.
    pub(crate) two_over_pi_lo: f64,
    /// π/2 in parts for `r = x - n·π/2` with FMA (each part π/2's remainder rounded to the type).
    pub(crate) pio2_fma: &'static [f64],
    /// π/2 in parts with few enough bits that `n·cᵢ` is exact without FMA.
    pub(crate) pio2_plain: &'static [f64],
    /// `sin r = r + r·z·S(z)`, `z = r²`, on `|r| ≤ π/4`.
    pub(crate) sin_poly: &'static [f64],
    /// `cos r = 1 - z/2 + z²·C(z)` on `|r| ≤ π/4`.
    pub(crate) cos_poly: &'static [f64],
}

static F32_TRIG: Trig = Trig {
    two_over_pi_lo: 2.5682552973194106e-08,
    pio2_fma: &[
        1.5707963705062866,
        -4.371138828673793e-08,
        -1.7151245100058819e-15,
    ],
    // π/2 cut into 11-bit pieces (the first is 8 bits, zeros follow), then the rest rounded to f32: with `|n| < 2^13`
    // every product but the last is exact, and each difference is exact while it is small (see the module doc).
    pio2_plain: &[
        1.5703125,
        4.837512969970703e-4,
        7.549533620476723e-08,
        2.5632829192545614e-12,
        6.123234262925839e-17,
    ],
    sin_poly: &[-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4],
    cos_poly: &[
        4.166664568298827e-2,
        -1.388731625493765e-3,
        2.443315711809948e-5,
    ],
};

static F64_TRIG: Trig = Trig {
    two_over_pi_lo: -3.935735335036497e-17,
    pio2_fma: &[
        std::f64::consts::FRAC_PI_2,
        6.123233995736766e-17,
        -1.4973849048591698e-33,
    ],
    // fdlibm's pio2_1, pio2_2, pio2_3 (33 bits each) and pio2_3t.
    pio2_plain: &[
        1.5707963267341256,
        6.077100506303966e-11,
        2.0222662487111665e-21,
        8.4784276603689e-32,
    ],
    sin_poly: &[
        -1.66666666666666324348e-01,
        8.33333333332248946124e-03,
        -1.98412698298579493134e-04,
        2.75573137070700676789e-06,
        -2.50507602534068634195e-08,
        1.58969099521155010221e-10,
    ],
    cos_poly: &[
        4.16666666666666019037e-02,
        -1.38888888888741095749e-03,
        2.48015872894767294178e-05,
        -2.75573143513906633035e-07,
        2.08757232129817482790e-09,
        -1.13596475577881948265e-11,
    ],
};

/// The constants for f32 (`f32 = true`) or f64.
pub(crate) fn constants(f32: bool) -> &'static Trig {
    if f32 {
        &F32_TRIG
    } else {
        &F64_TRIG
    }
}

impl MathEmitter {
    /// `sin x` (radians; accurate for `|x| < 2^22` in f32 with FMA, see the module doc of `math` for the domains and
    /// the measured error).
    pub fn sin(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        self.lanes(b, x).sin_or_cos(x, false)
    }

    /// `cos x` (radians; reduced as [`MathEmitter::sin`]).
    pub fn cos(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        self.lanes(b, x).sin_or_cos(x, true)
    }
}

impl Lanes<'_, '_> {
    fn sin_or_cos(&mut self, x: Value, cos: bool) -> Value {
        let trig = constants(self.format.mantissa_bits == 23);
        // n = round(x·2/π), an integer-valued float (t - shifter is exact).
        let two_over_pi = self.f(std::f64::consts::FRAC_2_PI);
        let shifter = self.f(self.format.round_shifter);
        let t = self.mul_add(x, two_over_pi, shifter);
        let n = self.b.ins().fsub(t, shifter);
        let n = if self.fma {
            // 2/π rounded to the type is off by 2^-25 (f32) relatively, which moves x·2/π by 0.1 at |x| = 4e6 and
            // so can pick the integer next to the nearest one: r would leave [-π/4, π/4], where the polynomials are
            // not fitted. d = (x·hi - n) + x·lo is the fraction x·2/π - n (the first fma exact but for one
            // rounding of a number below 1); n moves by round(d) ∈ {-1, 0, 1}.
            let minus_n = self.b.ins().fneg(n);
            let fraction = self.b.ins().fma(x, two_over_pi, minus_n);
            let two_over_pi_lo = self.f(trig.two_over_pi_lo);
            let d = self.b.ins().fma(x, two_over_pi_lo, fraction);
            let d_shifted = self.b.ins().fadd(d, shifter);
            let step = self.b.ins().fsub(d_shifted, shifter);
            self.b.ins().fadd(n, step)
        } else {
            // Without FMA the domain (|n| < 2^13 for f32, 2^20 for f64) keeps that error below 2^-11 of π/2.
            n
        };
        // r = x - n·π/2, part by part, largest first.
        let parts = if self.fma {
            trig.pio2_fma
        } else {
            trig.pio2_plain
        };
        let r = self.reduce(x, n, parts);
        // In the accurate domain |r| ≤ π/4 (plus rounding); beyond it r can be as large as ulp(x), whose powers
        // would overflow into inf - inf. A NaN (from ±inf) passes.
        let r = self.clamp(r, -1.0, 1.0);
        let z = self.b.ins().fmul(r, r);
        // sin r = r + (r·z)·S(z)
        let s = self.poly(z, trig.sin_poly);
        let rz = self.b.ins().fmul(r, z);
        let sin_r = self.mul_add(rz, s, r);
        // cos r = w + (((1 - w) - z/2) + z²·C(z)), w = 1 - z/2 rounded.
        let half = self.f(0.5);
        let hz = self.b.ins().fmul(half, z);
        let one = self.f(1.0);
        let w = self.b.ins().fsub(one, hz);
        let lost = self.b.ins().fsub(one, w);
        let lost = self.b.ins().fsub(lost, hz);
        let c = self.poly(z, trig.cos_poly);
        let z2 = self.b.ins().fmul(z, z);
        let tail = self.mul_add(z2, c, lost);
        let cos_r = self.b.ins().fadd(w, tail);
        // q = m mod 4 ∈ {0, 1, 2, 3}: m·¼ and its floor are exact, and so is m - 4·⌊m/4⌋.
        let m = if cos { self.b.ins().fadd(n, one) } else { n };
        let quarter = self.f(0.25);
        let m_quarter = self.b.ins().fmul(m, quarter);
        let whole = self.b.ins().floor(m_quarter);
        let minus_four = self.f(-4.0);
        let q = self.mul_add(whole, minus_four, m);
        let q_half = self.b.ins().fmul(q, half);
        let q_half_floor = self.b.ins().floor(q_half);
        let odd = self.b.ins().fcmp(FloatCC::NotEqual, q_half_floor, q_half);
        let value = self.select(odd, cos_r, sin_r);
        let two = self.f(2.0);
        let negative = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, q, two);
        let negated = self.b.ins().fneg(value);
        let value = self.select(negative, negated, value);
        if cos {
            value
        } else {
            // sin(±0) = ±0: the polynomial's r + (+0) loses the sign of -0.
            let zero = self.f(0.0);
            let is_zero = self.b.ins().fcmp(FloatCC::Equal, x, zero);
            self.select(is_zero, x, value)
        }
    }

    /// `x - n·(parts[0] + parts[1] + ..)`, largest part first.
    fn reduce(&mut self, x: Value, n: Value, parts: &[f64]) -> Value {
        let mut r = x;
        for &part in parts {
            let minus_part = self.f(-part);
            r = self.mul_add(n, minus_part, r);
        }
        r
    }
}
