//! The f64 math library: GLSL.std.450's `Exp`, `Log`, `Tanh` and `Pow` are 32-bit only, so f64 `exp`, `log` and
//! `tanh` are emitted here as range reduction and polynomials (`pow` and `logistic` are composed from them in
//! [`super::scalar`]). Accuracy as measured on lavapipe is in "Scalars" of the parent module doc.

use super::{Emitter, Result};
use kiln_ir::DType;
use rspirv::spirv::{GlslStd450Op as GLOp, Op, Word};

impl Emitter<'_> {
    /// f64 `e^x` (GLSL.std.450's `Exp` is 32-bit only): `n = round(x / ln 2)`, `r = x − n·ln 2` in two parts
    /// (Cody–Waite, fdlibm's split: `n·ln2_hi` is exact), `e^r` by its Taylor polynomial of degree 13 (`|r| ≤ 0.347`:
    /// truncation below 5e-18), then `· 2^n` by two `Ldexp`s (so `2^n` itself never overflows). `x` is clamped to
    /// `[-746, 710]` first, beyond which the result is 0 or +inf anyway; NaN is passed through.
    pub(super) fn exp_f64(&mut self, x: Word) -> Result<Word> {
        let d = DType::F64;
        let ty = self.ty(d);
        let (hi, lo) = (self.float_const(d, 710.0), self.float_const(d, -746.0));
        let above = self.bool_op(Op::FOrdGreaterThan, &[x, hi])?;
        let xc = self.select(ty, above, hi, x)?;
        let below = self.bool_op(Op::FOrdLessThan, &[xc, lo])?;
        let xc = self.select(ty, below, lo, xc)?;
        let nan = self.bool_op(Op::IsNan, &[x])?;
        let zero = self.float_const(d, 0.0);
        let xc = self.select(ty, nan, zero, xc)?;
        let inv_ln2 = self.float_const(d, std::f64::consts::LOG2_E);
        let t = self.op(Op::FMul, ty, &[xc, inv_ln2])?;
        let n = self.glsl(GLOp::RoundEven, ty, &[t])?;
        let (c_hi, c_lo) = (self.float_const(d, LN2_HI), self.float_const(d, LN2_LO));
        let nh = self.op(Op::FMul, ty, &[n, c_hi])?;
        let r = self.op(Op::FSub, ty, &[xc, nh])?;
        let nl = self.op(Op::FMul, ty, &[n, c_lo])?;
        let r = self.op(Op::FSub, ty, &[r, nl])?;
        let mut coefficients = [1.0f64; 14];
        for k in 1..14 {
            coefficients[k] = coefficients[k - 1] / k as f64;
        }
        let p = self.horner(d, r, &coefficients)?;
        let ni = self.op(Op::ConvertFToS, self.t_i32, &[n])?;
        let two = self.i32_const(2);
        let h = self.op(Op::SDiv, self.t_i32, &[ni, two])?;
        let rest = self.op(Op::ISub, self.t_i32, &[ni, h])?;
        let scaled = self.glsl(GLOp::Ldexp, ty, &[p, h])?;
        let scaled = self.glsl(GLOp::Ldexp, ty, &[scaled, rest])?;
        self.select(ty, nan, x, scaled)
    }

    /// f64 `ln x`: `x = m·2^e` (`Frexp` — of `x·2^54` for a subnormal `x` —, `m` moved into `[√½, √2)`), `ln m = 2·atanh(s)` with `s = (m−1)/(m+1)`
    /// (`|s| ≤ 0.172`) by its odd series to `s^21` (truncation below 1e-18), plus `e·ln 2` in two parts. `x < 0` and
    /// NaN give NaN, `±0` gives -inf, +inf gives +inf.
    pub(super) fn log_f64(&mut self, x: Word) -> Result<Word> {
        let d = DType::F64;
        let ty = self.ty(d);
        let one = self.float_const(d, 1.0);
        // Frexp is undefined on 0, inf and NaN: give it 1 there; the selects below fix the result.
        let zero = self.float_const(d, 0.0);
        let pos = self.bool_op(Op::FOrdGreaterThan, &[x, zero])?;
        let inf = self.float_const(d, f64::INFINITY);
        let finite = self.bool_op(Op::FOrdLessThan, &[x, inf])?;
        let ordinary = self.bool_op(Op::LogicalAnd, &[pos, finite])?;
        let xs = self.select(ty, ordinary, x, one)?;
        // A subnormal `x` is scaled by 2^54 into the normal range first (devices' `Frexp` may not handle
        // subnormals).
        let min_normal = self.float_const(d, f64::MIN_POSITIVE);
        let tiny = self.bool_op(Op::FOrdLessThan, &[xs, min_normal])?;
        let two54 = self.float_const(d, 18_014_398_509_481_984.0);
        let scaled = self.op(Op::FMul, ty, &[xs, two54])?;
        let xs = self.select(ty, tiny, scaled, xs)?;
        let e_var = self.function_var(self.t_i32);
        let m = self.glsl(GLOp::Frexp, ty, &[xs, e_var])?;
        let e = self.load_var(self.t_i32, e_var)?;
        let (i54, i0) = (self.i32_const(54), self.i32_const(0));
        let shift = self.select(self.t_i32, tiny, i54, i0)?;
        let e = self.op(Op::ISub, self.t_i32, &[e, shift])?;
        let sqrt_half = self.float_const(d, std::f64::consts::FRAC_1_SQRT_2);
        let small = self.bool_op(Op::FOrdLessThan, &[m, sqrt_half])?;
        let two = self.float_const(d, 2.0);
        let m2 = self.op(Op::FMul, ty, &[m, two])?;
        let m = self.select(ty, small, m2, m)?;
        let ione = self.i32_const(1);
        let e1 = self.op(Op::ISub, self.t_i32, &[e, ione])?;
        let e = self.select(self.t_i32, small, e1, e)?;
        let f = self.op(Op::FSub, ty, &[m, one])?;
        let den = self.op(Op::FAdd, ty, &[f, two])?;
        let s = self.op(Op::FDiv, ty, &[f, den])?;
        let z = self.op(Op::FMul, ty, &[s, s])?;
        // 2s·(1 + z/3 + z²/5 + … + z^10/21) = 2s + 2s·z·q(z).
        let q: Vec<f64> = (1..=10).map(|k| 1.0 / (2 * k + 1) as f64).collect();
        let q = self.horner(d, z, &q)?;
        let two_s = self.op(Op::FMul, ty, &[s, two])?;
        let sz = self.op(Op::FMul, ty, &[two_s, z])?;
        let tail = self.op(Op::FMul, ty, &[sz, q])?;
        let ln_m = self.op(Op::FAdd, ty, &[two_s, tail])?;
        let ef = self.op(Op::ConvertSToF, ty, &[e])?;
        let (c_hi, c_lo) = (self.float_const(d, LN2_HI), self.float_const(d, LN2_LO));
        let lo = self.op(Op::FMul, ty, &[ef, c_lo])?;
        let small_part = self.op(Op::FAdd, ty, &[ln_m, lo])?;
        let hi = self.op(Op::FMul, ty, &[ef, c_hi])?;
        let r = self.op(Op::FAdd, ty, &[hi, small_part])?;
        // Edge cases: +inf → +inf, ±0 → -inf, negative or NaN → NaN.
        let is_inf = self.bool_op(Op::FOrdEqual, &[x, inf])?;
        let r = self.select(ty, is_inf, inf, r)?;
        let is_zero = self.bool_op(Op::FOrdEqual, &[x, zero])?;
        let ninf = self.float_const(d, f64::NEG_INFINITY);
        let r = self.select(ty, is_zero, ninf, r)?;
        let neg = self.bool_op(Op::FOrdLessThan, &[x, zero])?;
        let nan = self.bool_op(Op::IsNan, &[x])?;
        let qnan = self.float_const(d, f64::NAN);
        let r = self.select(ty, neg, qnan, r)?;
        self.select(ty, nan, x, r)
    }

    /// f64 `tanh x = sign(x) · t / (t + 2)` with `t = e^{2|x|} − 1`: for `2|x| ≤ 1` by the Taylor series of
    /// `expm1` to degree 20 (no cancellation near 0; truncation below 1e-19), else by [`Emitter::exp_f64`] (`t ≥ 1.7`,
    /// so `−1` loses nothing). `|x|` is clamped to 22, where tanh is 1 in f64; ±0 and NaN are returned as they are.
    pub(super) fn tanh_f64(&mut self, x: Word) -> Result<Word> {
        let d = DType::F64;
        let ty = self.ty(d);
        let ax = self.glsl(GLOp::FAbs, ty, &[x])?;
        let cap = self.float_const(d, 22.0);
        let big = self.bool_op(Op::FOrdGreaterThan, &[ax, cap])?;
        let ax = self.select(ty, big, cap, ax)?;
        let two = self.float_const(d, 2.0);
        let y = self.op(Op::FMul, ty, &[ax, two])?;
        // expm1(y) = y·(1 + y/2 + y²/6 + … + y^19/20!).
        let mut c = [1.0f64; 20];
        for k in 1..20 {
            c[k] = c[k - 1] / (k + 1) as f64;
        }
        let series = self.horner(d, y, &c)?;
        let series = self.op(Op::FMul, ty, &[y, series])?;
        let e = self.exp_f64(y)?;
        let one = self.float_const(d, 1.0);
        let em1 = self.op(Op::FSub, ty, &[e, one])?;
        let near = self.bool_op(Op::FOrdLessThanEqual, &[y, one])?;
        let t = self.select(ty, near, series, em1)?;
        let den = self.op(Op::FAdd, ty, &[t, two])?;
        let r = self.op(Op::FDiv, ty, &[t, den])?;
        let zero = self.float_const(d, 0.0);
        let neg = self.bool_op(Op::FOrdLessThan, &[x, zero])?;
        let nr = self.op(Op::FNegate, ty, &[r])?;
        let r = self.select(ty, neg, nr, r)?;
        // ±0 and NaN: x itself.
        let is_zero = self.bool_op(Op::FOrdEqual, &[x, zero])?;
        let nan = self.bool_op(Op::IsNan, &[x])?;
        let keep = self.bool_op(Op::LogicalOr, &[is_zero, nan])?;
        self.select(ty, keep, x, r)
    }
}

/// `ln 2` split as fdlibm does: `LN2_HI` has 32 significant bits (so `n·LN2_HI` is exact for `|n| < 2^21`),
/// `LN2_HI + LN2_LO` is `ln 2` to about 2^-85.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
