//! `sin` and `cos` for f32 and f64: the CPU backend's algorithm (`backend/cpu/math/trig.rs`) with its constants,
//! so that Vulkan and the CPU agree within a few ulp. GLSL.std.450's `Sin`/`Cos` are not used: they are 32-bit only,
//! and devices implement them with loose or no range reduction (Vulkan requires only an absolute error of 2^-11
//! inside `[-π, π]`).
//!
//! `n = RoundEven(x·2/π)`, `r = x - n·π/2` with π/2 in the parts whose products `n·cᵢ` are exact without FMA (SPIR-V
//! does not promise a fused `Fma`, and a device may or may not contract `FMul` + `FSub`; with exact products either
//! way gives the same `r`): five pieces (four of 11 bits) for f32, fdlibm's 4 × 33 bits for f64. That makes the
//! accurate domain that of the CPU without FMA (the parent module doc of `spirv` states it). `r` is clamped to
//! `[-1, 1]`, so beyond the domain the result is inaccurate but finite; then the same polynomials and quadrant
//! selection as the CPU. `sin(±0) = ±0`; `±inf` and NaN give NaN, selected explicitly since a device's `inf - inf` need not be NaN.

use super::{Emitter, Result};
use crate::backend::cpu::math::trig;
use kiln_ir::DType;
use rspirv::spirv::{GlslStd450Op as GLOp, Op, Word};

impl Emitter<'_> {
    /// `sin x` (`cos = false`) or `cos x` in f32 or f64 (see the module doc).
    pub(super) fn sin_or_cos(&mut self, dtype: DType, x: Word, cos: bool) -> Result<Word> {
        let ty = self.ty(dtype);
        let constants = trig::constants(dtype == DType::F32);
        let c = |e: &mut Self, v: f64| e.float_const(dtype, v);
        // n = round(x·2/π), r = x - n·π/2 part by part.
        let two_over_pi = c(self, std::f64::consts::FRAC_2_PI);
        let t = self.op(Op::FMul, ty, &[x, two_over_pi])?;
        let n = self.glsl(GLOp::RoundEven, ty, &[t])?;
        let mut r = x;
        for &part in constants.pio2_plain {
            let part = c(self, part);
            let product = self.op(Op::FMul, ty, &[n, part])?;
            r = self.op(Op::FSub, ty, &[r, product])?;
        }
        // Clamped with ordered compares, not `FClamp` (undefined for NaN); beyond the accurate domain only.
        let (minus_one, one) = (c(self, -1.0), c(self, 1.0));
        let below = self.bool_op(Op::FOrdLessThan, &[r, minus_one])?;
        let r = self.select(ty, below, minus_one, r)?;
        let above = self.bool_op(Op::FOrdGreaterThan, &[r, one])?;
        let r = self.select(ty, above, one, r)?;
        let z = self.op(Op::FMul, ty, &[r, r])?;
        // sin r = r + (r·z)·S(z)
        let s = self.horner(dtype, z, constants.sin_poly)?;
        let rz = self.op(Op::FMul, ty, &[r, z])?;
        let rzs = self.op(Op::FMul, ty, &[rz, s])?;
        let sin_r = self.op(Op::FAdd, ty, &[r, rzs])?;
        // cos r = w + (((1 - w) - z/2) + z²·C(z)), w = 1 - z/2 rounded.
        let half = c(self, 0.5);
        let hz = self.op(Op::FMul, ty, &[half, z])?;
        let w = self.op(Op::FSub, ty, &[one, hz])?;
        let lost = self.op(Op::FSub, ty, &[one, w])?;
        let lost = self.op(Op::FSub, ty, &[lost, hz])?;
        let cp = self.horner(dtype, z, constants.cos_poly)?;
        let z2 = self.op(Op::FMul, ty, &[z, z])?;
        let z2c = self.op(Op::FMul, ty, &[z2, cp])?;
        let tail = self.op(Op::FAdd, ty, &[lost, z2c])?;
        let cos_r = self.op(Op::FAdd, ty, &[w, tail])?;
        // q = m mod 4 with m = n (+ 1 for cos, as cos x = sin(x + π/2)); odd q takes cos r, q ≥ 2 negates.
        let m = if cos {
            self.op(Op::FAdd, ty, &[n, one])?
        } else {
            n
        };
        let quarter = c(self, 0.25);
        let m_quarter = self.op(Op::FMul, ty, &[m, quarter])?;
        let whole = self.glsl(GLOp::Floor, ty, &[m_quarter])?;
        let four = c(self, 4.0);
        let whole4 = self.op(Op::FMul, ty, &[whole, four])?;
        let q = self.op(Op::FSub, ty, &[m, whole4])?;
        let q_half = self.op(Op::FMul, ty, &[q, half])?;
        let q_half_floor = self.glsl(GLOp::Floor, ty, &[q_half])?;
        let odd = self.bool_op(Op::FOrdNotEqual, &[q_half_floor, q_half])?;
        let value = self.select(ty, odd, cos_r, sin_r)?;
        let two = c(self, 2.0);
        let negative = self.bool_op(Op::FOrdGreaterThanEqual, &[q, two])?;
        let negated = self.op(Op::FNegate, ty, &[value])?;
        let value = self.select(ty, negative, negated, value)?;
        let value = if cos {
            value
        } else {
            // sin(±0) = ±0: r + (+0) loses the sign of -0.
            let zero = c(self, 0.0);
            let is_zero = self.bool_op(Op::FOrdEqual, &[x, zero])?;
            self.select(ty, is_zero, x, value)?
        };
        let nan = self.bool_op(Op::IsNan, &[x])?;
        let inf = self.bool_op(Op::IsInf, &[x])?;
        let no_value = self.bool_op(Op::LogicalOr, &[nan, inf])?;
        let nan_value = c(self, f64::NAN);
        self.select(ty, no_value, nan_value, value)
    }
}
