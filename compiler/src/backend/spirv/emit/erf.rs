//! `erf` for f32 and f64. GLSL.std.450 has no `Erf`, so it is emitted as fdlibm's `s_erf.c` (Sun, 1993; the
//! algorithm of the `libm` crate's `erf` / `erff`), the same piecewise rational approximations at either width
//! (the coefficients rounded to f32 for f32, evaluated in the dtype), on `a = |x|`:
//!
//! - `a < 2^-28`: `x + (2/√π − 1)·x`, as `(8x + EFX8·x) / 8` so that a subnormal `x` keeps its bits;
//! - `a < 0.84375`: `x + x·P(x²)/Q(x²)` (odd, so `erf(±0) = ±0`);
//! - `a < 1.25`: `erx + P(a − 1)/Q(a − 1)` around `erf(1) ≈ erx`, with the sign of `x`;
//! - `a < 6`: `1 − erfc(a)`, `erfc(a) = exp(−z² − 0.5625)·exp((z − a)(z + a) + R(1/a²)/S(1/a²)) / a`, where `z` is
//!   `a` with its low mantissa bits cleared (12 of f32's, 32 of f64's) so that `z²` is exact, and `R/S` has one
//!   coefficient set below `1/0.35` and another above; `exp` is GLSL.std.450's in f32 and
//!   [`Emitter::exp_f64`] in f64. `erfc(a)` is at most 0.16 here, so an `exp` error of a few ulp moves the
//!   result by well under one ulp;
//! - `a ≥ 6` (and ±inf): ±1 — in f32 `erf` already rounds to 1 from 3.92 on; NaN is returned as it is.
//!
//! Every piece is computed and the right one selected (no branches: the pieces are cheap next to the two `exp`s,
//! and selects keep the control flow uniform). Measured on lavapipe (LLVM 15) against the `libm` crate's f64 `erf`
//! (rounded to f32 for f32) over 22,652 inputs — a dense grid of `[-8, 8]`, log-spaced magnitudes down to the
//! smallest subnormal, ±8 ulp around each threshold above, and the edge cases (`compiler/tests/vulkan/spirv_backend.rs`,
//! which allows 2): at most **1 ulp** in f32 and **1 ulp** in f64; `±0`, `±inf` and NaN exact, `erf(-x) = -erf(x)`
//! bit for bit (a subnormal input may be flushed to ±0 by the device, which then returns ±0).

// The coefficients are fdlibm's as published (21 significant digits), so that they can be checked against
// `s_erf.c` and the `libm` crate; each parses to the double fdlibm lists in hex.
#![allow(clippy::excessive_precision)]

use super::{Emitter, Result};
use kiln_ir::DType;
use rspirv::spirv::{GlslStd450Op as GLOp, Op, Word};

/// `erx`: `erf(1)` to about 24 bits (fdlibm), the constant term of the `[0.84375, 1.25)` piece.
const ERX: f64 = 8.45062911510467529297e-01;
/// `8·(2/√π − 1)`, for the tiny piece.
const EFX8: f64 = 1.02703333676410069053e+00;
/// `erf(x) = x + x·PP(x²)/QQ(x²)` on `[0, 0.84375)`.
const PP: [f64; 5] = [
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
];
const QQ: [f64; 6] = [
    1.0,
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
];
/// `erf(x) = erx + PA(s)/QA(s)`, `s = x − 1`, on `[0.84375, 1.25)`.
const PA: [f64; 7] = [
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
];
const QA: [f64; 7] = [
    1.0,
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
];
/// `R/S` of `erfc` on `[1.25, 1/0.35)`.
const RA: [f64; 8] = [
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e+01,
    -6.23753324503260060396e+01,
    -1.62396669462573470355e+02,
    -1.84605092906711035994e+02,
    -8.12874355063065934246e+01,
    -9.81432934416914548592e+00,
];
const SA: [f64; 9] = [
    1.0,
    1.96512716674392571292e+01,
    1.37657754143519042600e+02,
    4.34565877475229228821e+02,
    6.45387271733267880336e+02,
    4.29008140027567833386e+02,
    1.08635005541779435134e+02,
    6.57024977031928170135e+00,
    -6.04244152148580987438e-02,
];
/// `R/S` of `erfc` on `[1/0.35, 6)`.
const RB: [f64; 7] = [
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e+01,
    -1.60636384855821916062e+02,
    -6.37566443368389627722e+02,
    -1.02509513161107724954e+03,
    -4.83519191608651397019e+02,
];
const SB: [f64; 8] = [
    1.0,
    3.03380607434824582924e+01,
    3.25792512996573918826e+02,
    1.53672958608443695994e+03,
    3.19985821950859553908e+03,
    2.55305040643316442583e+03,
    4.74528541206955367215e+02,
    -2.24409524465858183362e+01,
];

impl Emitter<'_> {
    /// `erf x` in f32 or f64 (see the module doc).
    pub(super) fn erf(&mut self, dtype: DType, x: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        let f32 = dtype == DType::F32;
        // fdlibm's thresholds are on the high word; these are the same numbers. 1/0.35 is rounded down as there.
        let below_1_over_035 = if f32 {
            f32::from_bits(0x4036_db6d) as f64
        } else {
            f64::from_bits(0x4006_db6d_0000_0000)
        };
        let c = |e: &mut Self, v: f64| e.float_const(dtype, v);
        let ax = self.glsl(GLOp::FAbs, ty, &[x])?;
        let one = c(self, 1.0);

        // |x| < 2^-28: (8x + EFX8·x) / 8.
        let (eight, efx8, eighth) = (c(self, 8.0), c(self, EFX8), c(self, 0.125));
        let x8 = self.op(Op::FMul, ty, &[x, eight])?;
        let xe = self.op(Op::FMul, ty, &[x, efx8])?;
        let sum = self.op(Op::FAdd, ty, &[x8, xe])?;
        let tiny = self.op(Op::FMul, ty, &[sum, eighth])?;

        // |x| < 0.84375: x + x·P(x²)/Q(x²).
        let z = self.op(Op::FMul, ty, &[x, x])?;
        let p = self.horner(dtype, z, &PP)?;
        let q = self.horner(dtype, z, &QQ)?;
        let y = self.op(Op::FDiv, ty, &[p, q])?;
        let xy = self.op(Op::FMul, ty, &[x, y])?;
        let small = self.op(Op::FAdd, ty, &[x, xy])?;

        // |x| < 1.25: erx + P(s)/Q(s), s = |x| − 1.
        let s = self.op(Op::FSub, ty, &[ax, one])?;
        let p = self.horner(dtype, s, &PA)?;
        let q = self.horner(dtype, s, &QA)?;
        let pq = self.op(Op::FDiv, ty, &[p, q])?;
        let erx = c(self, ERX);
        let near_one = self.op(Op::FAdd, ty, &[erx, pq])?;

        // |x| < 6: 1 − erfc(|x|).
        let a2 = self.op(Op::FMul, ty, &[ax, ax])?;
        let s = self.op(Op::FDiv, ty, &[one, a2])?;
        let (ra, sa) = (self.horner(dtype, s, &RA)?, self.horner(dtype, s, &SA)?);
        let (rb, sb) = (self.horner(dtype, s, &RB)?, self.horner(dtype, s, &SB)?);
        let split = c(self, below_1_over_035);
        let first = self.bool_op(Op::FOrdLessThan, &[ax, split])?;
        let r = self.select(ty, first, ra, rb)?;
        let big_s = self.select(ty, first, sa, sb)?;
        let z = self.clear_low_bits(dtype, ax)?;
        let zz = self.op(Op::FMul, ty, &[z, z])?;
        let nzz = self.op(Op::FNegate, ty, &[zz])?;
        let k = c(self, 0.5625);
        let e1 = self.op(Op::FSub, ty, &[nzz, k])?;
        let e1 = self.exp(dtype, e1)?;
        let zm = self.op(Op::FSub, ty, &[z, ax])?;
        let zp = self.op(Op::FAdd, ty, &[z, ax])?;
        let d = self.op(Op::FMul, ty, &[zm, zp])?;
        let rs = self.op(Op::FDiv, ty, &[r, big_s])?;
        let e2 = self.op(Op::FAdd, ty, &[d, rs])?;
        let e2 = self.exp(dtype, e2)?;
        let e = self.op(Op::FMul, ty, &[e1, e2])?;
        let erfc = self.op(Op::FDiv, ty, &[e, ax])?;
        let tail = self.op(Op::FSub, ty, &[one, erfc])?;

        // Put together on |x|, then the sign of x; the small pieces are odd in x already.
        let t = c(self, 1.25);
        let lt = self.bool_op(Op::FOrdLessThan, &[ax, t])?;
        let r = self.select(ty, lt, near_one, tail)?;
        let six = c(self, 6.0);
        let sat = self.bool_op(Op::FOrdGreaterThanEqual, &[ax, six])?;
        let r = self.select(ty, sat, one, r)?;
        let zero = c(self, 0.0);
        let neg = self.bool_op(Op::FOrdLessThan, &[x, zero])?;
        let nr = self.op(Op::FNegate, ty, &[r])?;
        let r = self.select(ty, neg, nr, r)?;
        let t = c(self, 0.84375);
        let lt = self.bool_op(Op::FOrdLessThan, &[ax, t])?;
        let t = c(self, 2f64.powi(-28));
        let lt_tiny = self.bool_op(Op::FOrdLessThan, &[ax, t])?;
        let s = self.select(ty, lt_tiny, tiny, small)?;
        let r = self.select(ty, lt, s, r)?;
        let nan = self.bool_op(Op::IsNan, &[x])?;
        self.select(ty, nan, x, r)
    }

    /// `a` (≥ 0, finite where it matters) with the low 12 (f32) or 32 (f64) bits of its mantissa cleared, so that
    /// its square is exact.
    fn clear_low_bits(&mut self, dtype: DType, a: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        let u = self.t_u32;
        if dtype == DType::F32 {
            let bits = self.op(Op::Bitcast, u, &[a])?;
            let mask = self.u32_const(0xffff_e000);
            let high = self.op(Op::BitwiseAnd, u, &[bits, mask])?;
            self.op(Op::Bitcast, ty, &[high])
        } else {
            // Two u32 words, low first (a 64-bit integer type would need the Int64 capability).
            let words_ty = self.b.type_vector(u, 2);
            let words = self.op(Op::Bitcast, words_ty, &[a])?;
            let zero = self.u32_const(0);
            let cleared = self
                .b
                .composite_insert(words_ty, None, zero, words, [0])
                .map_err(|e| self.build_err(e))?;
            self.op(Op::Bitcast, ty, &[cleared])
        }
    }
}
