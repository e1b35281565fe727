//! Scalar lowering: kernel IR values, index expressions and buffer elements, and every [`ScalarOp`] — unary, binary,
//! compare, select, cast — with the semantics of SPEC.md §3 (see "Scalars" in the parent module doc for where the
//! GPU differs). The f64 transcendental functions are in [`super::math_f64`].

use super::{verified, Emitter, Result};
use crate::kernel::{BufferId, GuardedDim, IndexExpr, ScalarOp, ValueId};
use kiln_ir::{BinaryOp, CmpDir, DType, UnaryOp};
use rspirv::spirv::{GlslStd450Op as GLOp, Op, StorageClass, Word};

/// `tanh x = x + x³·P(x²)` for |x| < 0.625 in f32: the coefficients of the CPU math library's f32 `tanh`
/// (`backend/cpu/math.rs`, fitted by `math_fit.py`; within 1.3 ulp there).
const TANH_F32_POLY: [f64; 6] = [
    -3.3333334e-01,
    1.3333304e-01,
    -5.3959258e-02,
    2.1768918e-02,
    -8.343945e-03,
    2.2927448e-03,
];

impl Emitter<'_> {
    // ---- values and buffer elements ----

    /// The SPIR-V id and dtype of a value; the verifier saw it defined before this use.
    pub(super) fn value(&self, id: ValueId) -> (Word, DType) {
        match self.values.get(&id) {
            Some(&v) => v,
            None => verified(&format!("{id} used before it is defined")),
        }
    }

    /// An index expression as a u32.
    pub(super) fn index(&mut self, index: &IndexExpr) -> Result<Word> {
        let mut acc = None;
        for &(v, s) in &index.terms {
            let var = match self.vars.get(&v) {
                Some(&var) => var,
                None => verified(&format!("loop variable {v} used out of its loop")),
            };
            acc = Some(match acc {
                None if s == 1 => var,
                None => {
                    let sc = self.u32_const(s as u32);
                    self.op(Op::IMul, self.t_u32, &[var, sc])?
                }
                Some(a) => self.affine(a, var, s)?,
            });
        }
        let offset = self.u32_const(index.offset as u32);
        match acc {
            None => Ok(offset),
            Some(a) if index.offset == 0 => Ok(a),
            Some(a) => self.op(Op::IAdd, self.t_u32, &[a, offset]),
        }
    }

    /// The element index of a guarded load and whether every guard holds; a failed guard contributes 0, so the
    /// (discarded) load stays inside the buffer. The verifier keeps every coordinate and `step · extent` within i32,
    /// so the coordinate computed in wrapping u32 arithmetic is at least 2^31 exactly when it is negative, and one
    /// unsigned compare checks both ends.
    pub(super) fn guarded_index(&mut self, dims: &[GuardedDim]) -> Result<(Word, Word)> {
        let u = self.t_u32;
        let zero = self.u32_const(0);
        let mut index = zero;
        let mut ok = None;
        for d in dims {
            let mut t = self.u32_const(d.offset as i32 as u32);
            for &(v, c) in &d.terms {
                let var = match self.vars.get(&v) {
                    Some(&var) => var,
                    None => verified(&format!("loop variable {v} used out of its loop")),
                };
                let c = self.u32_const(c as i32 as u32);
                let term = self.op(Op::IMul, u, &[var, c])?;
                t = self.op(Op::IAdd, u, &[t, term])?;
            }
            let below = self.u32_const((d.step * d.extent) as u32);
            let mut holds = self.bool_op(Op::ULessThan, &[t, below])?;
            let q = if d.step == 1 {
                t
            } else {
                let step = self.u32_const(d.step as u32);
                let q = self.op(Op::UDiv, u, &[t, step])?;
                let r = self.op(Op::UMod, u, &[t, step])?;
                let exact = self.bool_op(Op::IEqual, &[r, zero])?;
                holds = self.bool_op(Op::LogicalAnd, &[holds, exact])?;
                q
            };
            let q = self.select(u, holds, q, zero)?;
            let stride = self.u32_const(d.stride as u32);
            let term = self.op(Op::IMul, u, &[q, stride])?;
            index = self.op(Op::IAdd, u, &[index, term])?;
            ok = Some(match ok {
                None => holds,
                Some(o) => self.bool_op(Op::LogicalAnd, &[o, holds])?,
            });
        }
        let ok = match ok {
            Some(o) => o,
            None => self.b.constant_true(self.t_bool),
        };
        Ok((index, ok))
    }

    pub(super) fn element_ptr_at(
        &mut self,
        buffer: BufferId,
        index: Word,
    ) -> Result<(Word, DType)> {
        // Every buffer the kernel accesses is bound (`Kernel::reads` and `writes`), and exists (verified).
        let binding = match self.bindings.get(&buffer) {
            Some(&b) => b,
            None => verified(&format!(
                "an access to buffer {buffer}, which does not exist"
            )),
        };
        let elem = self.storage_ty(binding.dtype);
        let ptr = self.b.type_pointer(None, StorageClass::StorageBuffer, elem);
        let zero = self.u32_const(0);
        let p = self
            .b
            .access_chain(ptr, None, binding.var, [zero, index])
            .map_err(|e| self.build_err(e))?;
        Ok((p, binding.dtype))
    }

    pub(super) fn element_ptr(&mut self, buffer: BufferId, index: &IndexExpr) -> Result<Word> {
        let i = self.index(index)?;
        Ok(self.element_ptr_at(buffer, i)?.0)
    }

    /// Loads `buffer[index]` as a register value of the buffer's dtype.
    pub(super) fn load_element(&mut self, buffer: BufferId, index: Word) -> Result<Word> {
        let (ptr, dtype) = self.element_ptr_at(buffer, index)?;
        let elem = self.storage_ty(dtype);
        let raw = self.load_var(elem, ptr)?;
        if dtype == DType::Bool {
            let zero = self.u32_const(0);
            self.bool_op(Op::INotEqual, &[raw, zero])
        } else {
            Ok(raw)
        }
    }

    // ---- scalar ops ----

    pub(super) fn scalar(&mut self, op: &ScalarOp, dtype: DType) -> Result<Word> {
        match op {
            ScalarOp::Load { buffer, index } => {
                let i = self.index(index)?;
                self.load_element(*buffer, i)
            }
            ScalarOp::LoadOr { buffer, dims, fill } => {
                let (i, ok) = self.guarded_index(dims)?;
                let x = self.load_element(*buffer, i)?;
                let fill = self.typed_const(dtype, f64::from_bits(*fill));
                let ty = self.ty(dtype);
                self.select(ty, ok, x, fill)
            }
            ScalarOp::LoadAt {
                buffer,
                index,
                at,
                stride,
                extent,
            } => {
                // The i32 index read as u32: `< extent` also rules out a negative one. Out of range, element
                // `index` (in bounds, `kernel::verify`) is loaded and 0 selected instead. Buffers the device can
                // bind have fewer than 2^32 elements, so the u32 arithmetic doesn't wrap.
                let u = self.t_u32;
                let (at, _) = self.value(*at);
                let at = self.op(Op::Bitcast, u, &[at])?;
                let below = self.u32_const(*extent as u32);
                let ok = self.bool_op(Op::ULessThan, &[at, below])?;
                let zero = self.u32_const(0);
                let at = self.select(u, ok, at, zero)?;
                let stride = self.u32_const(*stride as u32);
                let step = self.op(Op::IMul, u, &[at, stride])?;
                let base = self.index(index)?;
                let i = self.op(Op::IAdd, u, &[base, step])?;
                let x = self.load_element(*buffer, i)?;
                let fill = self.typed_const(dtype, 0.0);
                let ty = self.ty(dtype);
                self.select(ty, ok, x, fill)
            }
            ScalarOp::Const { bits } => Ok(self.typed_const(dtype, f64::from_bits(*bits))),
            ScalarOp::Index(index) => {
                let mut i = self.index(index)?;
                if self.hide_zeros {
                    // An index along an extent-1 axis is the constant 0 (see `Options::hide_constant_zeros`).
                    let opaque = self.opaque_zero();
                    i = self.op(Op::BitwiseOr, self.t_u32, &[i, opaque])?;
                }
                let ty = self.ty(dtype);
                match dtype {
                    DType::F32 | DType::F64 => self.op(Op::ConvertUToF, ty, &[i]),
                    DType::I32 => self.op(Op::Bitcast, ty, &[i]),
                    DType::Bool => {
                        let zero = self.u32_const(0);
                        self.bool_op(Op::INotEqual, &[i, zero])
                    }
                }
            }
            ScalarOp::MatmulAcc => match self.matmul_acc {
                Some((w, _)) => Ok(w),
                None => verified("matmul.acc outside a matmul"),
            },
            ScalarOp::Unary(u, x) => {
                let (x, xd) = self.value(*x);
                self.unary(*u, xd, x)
            }
            ScalarOp::Cast(x) => {
                let (x, from) = self.value(*x);
                self.cast(x, from, dtype)
            }
            ScalarOp::Binary(op, a, b) => {
                let (a, ad) = self.value(*a);
                let (b, _) = self.value(*b);
                self.binary(*op, ad, a, b)
            }
            ScalarOp::Compare(dir, a, b) => {
                let (a, ad) = self.value(*a);
                let (b, _) = self.value(*b);
                self.compare(*dir, ad, a, b)
            }
            ScalarOp::Select(c, a, b) => {
                let (c, _) = self.value(*c);
                let (a, ad) = self.value(*a);
                let (b, _) = self.value(*b);
                let ty = self.ty(ad);
                self.select(ty, c, a, b)
            }
        }
    }

    pub(super) fn unary(&mut self, op: UnaryOp, dtype: DType, x: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        if dtype == DType::I32 {
            return match op {
                // Both wrap: neg(MIN) = abs(MIN) = MIN.
                UnaryOp::Neg => self.op(Op::SNegate, ty, &[x]),
                UnaryOp::Abs => {
                    let zero = self.i32_const(0);
                    let neg = self.bool_op(Op::SLessThan, &[x, zero])?;
                    let nx = self.op(Op::SNegate, ty, &[x])?;
                    self.select(ty, neg, nx, x)
                }
                UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Sqrt
                | UnaryOp::Recip
                | UnaryOp::Tanh
                | UnaryOp::Logistic
                | UnaryOp::Erf
                | UnaryOp::Sin
                | UnaryOp::Cos
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round
                | UnaryOp::Trunc => verified(&format!("i32 `{}` (float-only)", op.name())),
            };
        }
        if dtype == DType::Bool {
            verified(&format!("`{}` on bool", op.name()));
        }
        match op {
            UnaryOp::Neg => self.op(Op::FNegate, ty, &[x]),
            UnaryOp::Exp => self.exp(dtype, x),
            UnaryOp::Log if dtype == DType::F64 => self.log_f64(x),
            UnaryOp::Log => self.glsl(GLOp::Log, ty, &[x]),
            UnaryOp::Sqrt => self.glsl(GLOp::Sqrt, ty, &[x]),
            UnaryOp::Floor => self.glsl(GLOp::Floor, ty, &[x]),
            UnaryOp::Ceil => self.glsl(GLOp::Ceil, ty, &[x]),
            UnaryOp::Round => self.glsl(GLOp::RoundEven, ty, &[x]),
            UnaryOp::Trunc => self.glsl(GLOp::Trunc, ty, &[x]),
            UnaryOp::Recip => {
                let one = self.float_const(dtype, 1.0);
                self.op(Op::FDiv, ty, &[one, x])
            }
            UnaryOp::Tanh if dtype == DType::F64 => self.tanh_f64(x),
            UnaryOp::Tanh => {
                // tanh(±10) is ±1 in f32; clamping keeps e^x of the implementation from overflowing to inf/inf.
                let (lo, hi) = (
                    self.float_const(dtype, -10.0),
                    self.float_const(dtype, 10.0),
                );
                let clamped = self.glsl(GLOp::FClamp, ty, &[x, lo, hi])?;
                let t = self.glsl(GLOp::Tanh, ty, &[clamped])?;
                // GLSL's `Tanh` (lavapipe's (e^2x - 1)/(e^2x + 1)) is accurate only in absolute terms near 0
                // (tanh(1e-30) came out as 3e-8): below 0.625 take the CPU's odd polynomial x + x³·P(x²) instead.
                let x2 = self.op(Op::FMul, ty, &[x, x])?;
                let x3 = self.op(Op::FMul, ty, &[x, x2])?;
                let p = self.horner(dtype, x2, &TANH_F32_POLY)?;
                let x3p = self.op(Op::FMul, ty, &[x3, p])?;
                let poly = self.op(Op::FAdd, ty, &[x, x3p])?;
                let ax = self.glsl(GLOp::FAbs, ty, &[x])?;
                let bound = self.float_const(dtype, 0.625);
                let small = self.bool_op(Op::FOrdLessThan, &[ax, bound])?;
                let t = self.select(ty, small, poly, t)?;
                // NaN is x; so is ±0, whose sign `x + x³·P` loses (-0 + +0 = +0).
                let nan = self.bool_op(Op::IsNan, &[x])?;
                let zero = self.float_const(dtype, 0.0);
                let is_zero = self.bool_op(Op::FOrdEqual, &[x, zero])?;
                let keep = self.bool_op(Op::LogicalOr, &[nan, is_zero])?;
                self.select(ty, keep, x, t)
            }
            UnaryOp::Logistic => {
                // e = exp(-|x|) ≤ 1; x ≥ 0: 1 / (1 + e), else e / (1 + e). NaN flows through `e`.
                let ax = self.glsl(GLOp::FAbs, ty, &[x])?;
                let nax = self.op(Op::FNegate, ty, &[ax])?;
                let e = self.exp(dtype, nax)?;
                let one = self.float_const(dtype, 1.0);
                let den = self.op(Op::FAdd, ty, &[one, e])?;
                let zero = self.float_const(dtype, 0.0);
                let pos = self.bool_op(Op::FOrdGreaterThanEqual, &[x, zero])?;
                let num = self.select(ty, pos, one, e)?;
                self.op(Op::FDiv, ty, &[num, den])
            }
            UnaryOp::Abs => self.glsl(GLOp::FAbs, ty, &[x]),
            UnaryOp::Erf => self.erf(dtype, x),
            UnaryOp::Sin => self.sin_or_cos(dtype, x, false),
            UnaryOp::Cos => self.sin_or_cos(dtype, x, true),
        }
    }

    /// `e^x`: GLSL.std.450 `Exp` for f32, [`Emitter::exp_f64`] for f64.
    pub(super) fn exp(&mut self, dtype: DType, x: Word) -> Result<Word> {
        if dtype == DType::F64 {
            self.exp_f64(x)
        } else {
            let ty = self.ty(dtype);
            self.glsl(GLOp::Exp, ty, &[x])
        }
    }

    pub(super) fn binary(&mut self, op: BinaryOp, dtype: DType, a: Word, b: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        match dtype {
            DType::I32 => match op {
                // SPIR-V integer arithmetic wraps.
                BinaryOp::Add => self.op(Op::IAdd, ty, &[a, b]),
                BinaryOp::Sub => self.op(Op::ISub, ty, &[a, b]),
                BinaryOp::Mul => self.op(Op::IMul, ty, &[a, b]),
                BinaryOp::Div => {
                    // x / 0 = 0 and MIN / -1 = MIN: divide by 1 where OpSDiv is undefined, then fix x / 0.
                    let (zero, one, m1, min) = (
                        self.i32_const(0),
                        self.i32_const(1),
                        self.i32_const(-1),
                        self.i32_const(i32::MIN),
                    );
                    let by_zero = self.bool_op(Op::IEqual, &[b, zero])?;
                    let a_min = self.bool_op(Op::IEqual, &[a, min])?;
                    let b_m1 = self.bool_op(Op::IEqual, &[b, m1])?;
                    let overflow = self.bool_op(Op::LogicalAnd, &[a_min, b_m1])?;
                    let bad = self.bool_op(Op::LogicalOr, &[by_zero, overflow])?;
                    let safe = self.select(ty, bad, one, b)?;
                    let q = self.op(Op::SDiv, ty, &[a, safe])?;
                    self.select(ty, by_zero, zero, q)
                }
                BinaryOp::Max => {
                    let gt = self.bool_op(Op::SGreaterThan, &[a, b])?;
                    self.select(ty, gt, a, b)
                }
                BinaryOp::Min => {
                    let lt = self.bool_op(Op::SLessThan, &[a, b])?;
                    self.select(ty, lt, a, b)
                }
                BinaryOp::Pow => verified("i32 `pow` (float-only)"),
                BinaryOp::And => self.op(Op::BitwiseAnd, ty, &[a, b]),
                BinaryOp::Or => self.op(Op::BitwiseOr, ty, &[a, b]),
                BinaryOp::Xor => self.op(Op::BitwiseXor, ty, &[a, b]),
                // SPIR-V leaves shifts by ≥ 32 undefined; SPEC takes the amount mod 32, so mask it first.
                BinaryOp::Shl => {
                    let amount = self.shift_amount(b)?;
                    self.op(Op::ShiftLeftLogical, ty, &[a, amount])
                }
                BinaryOp::Shr => {
                    let amount = self.shift_amount(b)?;
                    self.op(Op::ShiftRightLogical, ty, &[a, amount])
                }
                BinaryOp::MulHi => self.mul_hi(a, b),
            },
            DType::F32 | DType::F64 => match op {
                BinaryOp::Add => self.op(Op::FAdd, ty, &[a, b]),
                BinaryOp::Sub => self.op(Op::FSub, ty, &[a, b]),
                BinaryOp::Mul => self.op(Op::FMul, ty, &[a, b]),
                BinaryOp::Div => self.op(Op::FDiv, ty, &[a, b]),
                BinaryOp::Max => self.float_max_min(true, dtype, a, b),
                BinaryOp::Min => self.float_max_min(false, dtype, a, b),
                BinaryOp::Pow => self.pow(dtype, a, b),
                BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
                | BinaryOp::Shl
                | BinaryOp::Shr
                | BinaryOp::MulHi => verified(&format!("float `{}` (int-only)", op.name())),
            },
            DType::Bool => verified(&format!("`{}` on bool", op.name())),
        }
    }

    /// NaN-propagating max / min with the interpreter's zero ordering:
    /// `max = nan(a) || nan(b) ? a + b : a > b ? a : a < b ? b : tie`, where a tie of zeros is `a + b` for max
    /// (`+0` unless both are `-0`) and `-((-a) + (-b))` for min (`-0` unless both are `+0`), and `a` otherwise.
    pub(super) fn float_max_min(
        &mut self,
        max: bool,
        dtype: DType,
        a: Word,
        b: Word,
    ) -> Result<Word> {
        let ty = self.ty(dtype);
        let sum = self.op(Op::FAdd, ty, &[a, b])?;
        let zero = self.float_const(dtype, 0.0);
        let a_zero = self.bool_op(Op::FOrdEqual, &[a, zero])?;
        let zero_tie = if max {
            sum
        } else {
            let (na, nb) = (
                self.op(Op::FNegate, ty, &[a])?,
                self.op(Op::FNegate, ty, &[b])?,
            );
            let s = self.op(Op::FAdd, ty, &[na, nb])?;
            self.op(Op::FNegate, ty, &[s])?
        };
        let tie = self.select(ty, a_zero, zero_tie, a)?;
        let (first, second) = if max { (a, b) } else { (b, a) };
        // max: a < b → b, a > b → a; min: a < b → a, a > b → b.
        let lt = self.bool_op(Op::FOrdLessThan, &[a, b])?;
        let r = self.select(ty, lt, second, tie)?;
        let gt = self.bool_op(Op::FOrdGreaterThan, &[a, b])?;
        let r = self.select(ty, gt, first, r)?;
        let a_nan = self.bool_op(Op::IsNan, &[a])?;
        let b_nan = self.bool_op(Op::IsNan, &[b])?;
        let nan = self.bool_op(Op::LogicalOr, &[a_nan, b_nan])?;
        self.select(ty, nan, sum, r)
    }

    /// C99 `pow` from GLSL's `Pow(|a|, b)` (undefined for a negative or zero base) and selects for the edge cases.
    /// `p` = |a|^b, but 1 where |a| = 1 and b = ±inf (C99's `pow(-1, ±inf) = 1`; `pow(1, y) = 1` is handled by the
    /// caller): computed as `exp(b · log|a|)`, it is `inf · 0`, NaN.
    fn unit_base_to_inf(&mut self, dtype: DType, ax: Word, b: Word, p: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        let one = self.float_const(dtype, 1.0);
        let b_inf = self.bool_op(Op::IsInf, &[b])?;
        let a_unit = self.bool_op(Op::FOrdEqual, &[ax, one])?;
        let unit_inf = self.bool_op(Op::LogicalAnd, &[b_inf, a_unit])?;
        self.select(ty, unit_inf, one, p)
    }

    pub(super) fn pow(&mut self, dtype: DType, a: Word, b: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        let (zero, one) = (self.float_const(dtype, 0.0), self.float_const(dtype, 1.0));
        let (inf, nan) = (
            self.float_const(dtype, f64::INFINITY),
            self.float_const(dtype, f64::NAN),
        );
        let ax = self.glsl(GLOp::FAbs, ty, &[a])?;
        let tb = self.glsl(GLOp::Trunc, ty, &[b])?;
        let b_int = self.bool_op(Op::FOrdEqual, &[tb, b])?;
        let (p, b_odd) = if dtype == DType::F64 {
            // |a|^b = exp(b · log|a|) (no f64 `Pow`): the relative error is about |b · ln|a|| ulp (see the parent
            // module doc). `b` is odd iff b - 2·floor(b/2) = ±1, exact in f64 (every f64 ≥ 2^53 is even).
            let l = self.log_f64(ax)?;
            let y = self.op(Op::FMul, ty, &[b, l])?;
            let p = self.exp(dtype, y)?;
            let half = self.float_const(dtype, 0.5);
            let h = self.op(Op::FMul, ty, &[b, half])?;
            let fh = self.glsl(GLOp::Floor, ty, &[h])?;
            let two = self.float_const(dtype, 2.0);
            let twice = self.op(Op::FMul, ty, &[fh, two])?;
            let rem = self.op(Op::FSub, ty, &[b, twice])?;
            let odd = self.bool_op(Op::FOrdEqual, &[rem, one])?;
            let p = self.unit_base_to_inf(dtype, ax, b, p)?;
            (p, self.bool_op(Op::LogicalAnd, &[b_int, odd])?)
        } else {
            let p = self.glsl(GLOp::Pow, ty, &[ax, b])?;
            // GLSL's `Pow` is exp2(b · log2|a|) on lavapipe and elsewhere: NaN for |a| = 1, b = ±inf.
            let p = self.unit_base_to_inf(dtype, ax, b, p)?;
            // Is `b` an integer, and an odd one? Every f32 of magnitude ≥ 2^24 is even.
            let ab = self.glsl(GLOp::FAbs, ty, &[b])?;
            let two24 = self.float_const(dtype, 16_777_216.0);
            let small = self.bool_op(Op::FOrdLessThan, &[ab, two24])?;
            let b_small = self.select(ty, small, b, zero)?;
            let bi = self.op(Op::ConvertFToS, self.t_i32, &[b_small])?;
            let ione = self.i32_const(1);
            let low = self.op(Op::BitwiseAnd, self.t_i32, &[bi, ione])?;
            let odd_bit = self.bool_op(Op::IEqual, &[low, ione])?;
            (p, self.bool_op(Op::LogicalAnd, &[b_int, odd_bit])?)
        };
        // Negative base: odd integer exponent → -|a|^b; even → |a|^b; otherwise NaN, but for a base of -inf, where
        // C99 gives |a|^b (+inf for b > 0, +0 for b < 0). (-0 counts as zero below.)
        let a_neg = self.bool_op(Op::FOrdLessThan, &[a, zero])?;
        let np = self.op(Op::FNegate, ty, &[p])?;
        let neg_odd = self.bool_op(Op::LogicalAnd, &[a_neg, b_odd])?;
        let r = self.select(ty, neg_odd, np, p)?;
        let not_int = self.bool_op(Op::LogicalNot, &[b_int])?;
        let a_inf = self.bool_op(Op::IsInf, &[a])?;
        let a_finite = self.bool_op(Op::LogicalNot, &[a_inf])?;
        let neg_finite = self.bool_op(Op::LogicalAnd, &[a_neg, a_finite])?;
        let neg_frac = self.bool_op(Op::LogicalAnd, &[neg_finite, not_int])?;
        let r = self.select(ty, neg_frac, nan, r)?;
        // Zero base: b < 0 → +inf, b > 0 → +0, each negated for -0 and an odd integer b.
        let a_zero = self.bool_op(Op::FOrdEqual, &[a, zero])?;
        let b_neg = self.bool_op(Op::FOrdLessThan, &[b, zero])?;
        let z = self.select(ty, b_neg, inf, zero)?;
        let recip = self.op(Op::FDiv, ty, &[one, a])?;
        let minus_zero = self.bool_op(Op::FOrdLessThan, &[recip, zero])?;
        let flip = self.bool_op(Op::LogicalAnd, &[minus_zero, b_odd])?;
        let nz = self.op(Op::FNegate, ty, &[z])?;
        let z = self.select(ty, flip, nz, z)?;
        let r = self.select(ty, a_zero, z, r)?;
        // NaN in, NaN out (lavapipe's `Pow(NaN, 1)` is 0) ...
        let a_nan = self.bool_op(Op::IsNan, &[a])?;
        let b_nan = self.bool_op(Op::IsNan, &[b])?;
        let any_nan = self.bool_op(Op::LogicalOr, &[a_nan, b_nan])?;
        let sum = self.op(Op::FAdd, ty, &[a, b])?;
        let r = self.select(ty, any_nan, sum, r)?;
        // ... except that pow(x, ±0) = pow(1, y) = 1, even for NaN.
        let b_zero = self.bool_op(Op::FOrdEqual, &[b, zero])?;
        let a_one = self.bool_op(Op::FOrdEqual, &[a, one])?;
        let unit = self.bool_op(Op::LogicalOr, &[b_zero, a_one])?;
        self.select(ty, unit, one, r)
    }

    pub(super) fn compare(&mut self, dir: CmpDir, dtype: DType, a: Word, b: Word) -> Result<Word> {
        let op = match dtype {
            // Ordered comparisons are false on NaN; `ne` is unordered, so true on NaN.
            DType::F32 | DType::F64 => match dir {
                CmpDir::Lt => Op::FOrdLessThan,
                CmpDir::Le => Op::FOrdLessThanEqual,
                CmpDir::Gt => Op::FOrdGreaterThan,
                CmpDir::Ge => Op::FOrdGreaterThanEqual,
                CmpDir::Eq => Op::FOrdEqual,
                CmpDir::Ne => Op::FUnordNotEqual,
            },
            DType::I32 => match dir {
                CmpDir::Lt => Op::SLessThan,
                CmpDir::Le => Op::SLessThanEqual,
                CmpDir::Gt => Op::SGreaterThan,
                CmpDir::Ge => Op::SGreaterThanEqual,
                CmpDir::Eq => Op::IEqual,
                CmpDir::Ne => Op::INotEqual,
            },
            DType::Bool => match dir {
                CmpDir::Eq => Op::LogicalEqual,
                CmpDir::Ne => Op::LogicalNotEqual,
                CmpDir::Lt | CmpDir::Le | CmpDir::Gt | CmpDir::Ge => {
                    verified("an ordering comparison of bools")
                }
            },
        };
        self.bool_op(op, &[a, b])
    }

    /// SPEC.md §3.3.
    pub(super) fn cast(&mut self, x: Word, from: DType, to: DType) -> Result<Word> {
        let ty = self.ty(to);
        match (from, to) {
            (DType::F32, DType::F32)
            | (DType::F64, DType::F64)
            | (DType::I32, DType::I32)
            | (DType::Bool, DType::Bool) => Ok(x),
            (DType::F32, DType::F64) | (DType::F64, DType::F32) => self.op(Op::FConvert, ty, &[x]),
            (DType::I32, DType::F32 | DType::F64) => self.op(Op::ConvertSToF, ty, &[x]),
            (DType::F32 | DType::F64, DType::I32) => {
                // Truncate toward zero, saturate, NaN → 0: convert only in-range values.
                let (lo, hi) = (
                    self.float_const(from, -2_147_483_648.0),
                    self.float_const(from, 2_147_483_648.0),
                );
                let fty = self.ty(from);
                let zero = self.float_const(from, 0.0);
                let above = self.bool_op(Op::FOrdGreaterThanEqual, &[x, hi])?;
                let below = self.bool_op(Op::FOrdLessThan, &[x, lo])?;
                let ge_lo = self.bool_op(Op::FOrdGreaterThanEqual, &[x, lo])?;
                let lt_hi = self.bool_op(Op::FOrdLessThan, &[x, hi])?;
                let in_range = self.bool_op(Op::LogicalAnd, &[ge_lo, lt_hi])?;
                let safe = self.select(fty, in_range, x, zero)?;
                let c = self.op(Op::ConvertFToS, ty, &[safe])?;
                let (max, min) = (self.i32_const(i32::MAX), self.i32_const(i32::MIN));
                let r = self.select(ty, below, min, c)?;
                self.select(ty, above, max, r)
            }
            (DType::Bool, DType::F32 | DType::F64 | DType::I32) => {
                let (one, zero) = (self.typed_const(to, 1.0), self.typed_const(to, 0.0));
                self.select(ty, x, one, zero)
            }
            // `x != 0`: NaN → true, -0 → false.
            (DType::F32 | DType::F64, DType::Bool) => {
                let zero = self.float_const(from, 0.0);
                self.bool_op(Op::FUnordNotEqual, &[x, zero])
            }
            (DType::I32, DType::Bool) => {
                let zero = self.i32_const(0);
                self.bool_op(Op::INotEqual, &[x, zero])
            }
        }
    }

    /// A shift amount taken mod 32 (SPEC's `shl`/`shr`): OpShift* are undefined for amounts ≥ the bit width.
    fn shift_amount(&mut self, b: Word) -> Result<Word> {
        let mask = self.i32_const(31);
        self.op(Op::BitwiseAnd, self.t_i32, &[b, mask])
    }

    /// `mul_hi`: the high word of OpUMulExtended, whose operands and struct members must be unsigned, so the i32
    /// patterns are bitcast to u32 and back (bitcasts keep every bit).
    fn mul_hi(&mut self, a: Word, b: Word) -> Result<Word> {
        let u = self.t_u32;
        let wide = self.b.type_struct([u, u]);
        let ua = self.op(Op::Bitcast, u, &[a])?;
        let ub = self.op(Op::Bitcast, u, &[b])?;
        let product = self.op(Op::UMulExtended, wide, &[ua, ub])?;
        // Member 0 is the low word, member 1 the high word.
        let high = self
            .b
            .composite_extract(u, None, product, [1])
            .map_err(|e| self.build_err(e))?;
        self.op(Op::Bitcast, self.t_i32, &[high])
    }
}
