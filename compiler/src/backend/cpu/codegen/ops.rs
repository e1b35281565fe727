//! The one lowering of a kernel `ScalarOp` to CLIF, for every shape a value takes: a scalar, or a 128-bit vector of
//! lanes (f32x4, f64x2, i32x4; bool as an i32x4 mask). Cranelift's instructions are lane-generic (`fadd`, `fcmp`,
//! `smax` and the math library take a scalar or a vector alike), so each op is written once; the shape only decides
//! how a value enters (a load or a splatted constant) and how a condition selects.
//!
//! Every `(op, dtype)` pair is listed, with no wildcard arms: a new op or dtype does not compile until it has a
//! lowering or a stated refusal ([`Unlowered`]). A refusal is an internal error: [`crate::kernel::verify`] rejects the ops the
//! CPU backend has no code for (float-only ops on integers and bools), and the vector plans
//! ([`super::vector`]) choose only ops their shape lowers, so compiled kernels never reach one.

use super::{clif_type, elem_flags, Emitter};
use crate::backend::BackendError;
use crate::kernel::ScalarOp;
use cranelift_codegen::ir::{
    condcodes::{FloatCC, IntCC},
    types, InstBuilder, MemFlagsData, Type, Value,
};
use kiln_ir::op::Scalar;
use kiln_ir::{BinaryOp, CmpDir, DType, UnaryOp};

/// The shape of a value: one point, or a 128-bit vector of points (one per lane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    Scalar,
    /// f32x4, f64x2, i32x4; a bool is an i32x4 mask of all-ones / zero lanes (what `fcmp` on f32x4 gives).
    Vector,
}

impl Shape {
    /// The CLIF type of a `dtype` value of this shape.
    pub(super) fn ty(self, dtype: DType) -> Type {
        match (self, dtype) {
            (Shape::Scalar, _) => clif_type(dtype),
            (Shape::Vector, DType::F32) => types::F32X4,
            (Shape::Vector, DType::F64) => types::F64X2,
            (Shape::Vector, DType::I32 | DType::Bool) => types::I32X4,
        }
    }

    /// Points per value.
    pub(super) fn lanes(self, dtype: DType) -> i64 {
        i64::from(self.ty(dtype).lane_count())
    }
}

/// An op with no code: not defined on `dtype`, or no code for `shape` (see the module doc: internal, never reached
/// by a kernel that [`crate::kernel::verify`] accepted and the vector plans chose).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Unlowered {
    pub op: String,
    pub dtype: DType,
    pub shape: Shape,
}

impl Unlowered {
    pub(super) fn into_error(self, kernel: &str) -> BackendError {
        let Unlowered { op, dtype, shape } = self;
        let shape = match shape {
            Shape::Scalar => "a scalar",
            Shape::Vector => "a vector",
        };
        BackendError::BadCall {
            name: kernel.to_string(),
            problem: format!(
                "internal error: the CPU backend has no lowering of `{op}` on {dtype} as {shape}"
            ),
        }
    }
}

/// Memory flags of vector accesses: in bounds (checked), but only element-aligned.
pub(super) fn vector_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl Emitter<'_, '_> {
    /// `op` defining a `dtype` value of `shape`, given its operands' values (in `op.operands()` order). An op the
    /// shape has no code for records an [`Unlowered`] (the kernel then fails to compile) and stands in a zero, so
    /// the function under construction stays well formed until the error is reported.
    pub(super) fn lower(
        &mut self,
        op: &ScalarOp,
        dtype: DType,
        shape: Shape,
        args: &[Value],
    ) -> Value {
        match self.lower_op(op, dtype, shape, args) {
            Ok(v) => v,
            Err(e) => {
                self.unlowered.get_or_insert(e);
                let zero = self.constant(Scalar::zero(dtype));
                self.broadcast(zero, dtype, shape)
            }
        }
    }

    fn lower_op(
        &mut self,
        op: &ScalarOp,
        dtype: DType,
        shape: Shape,
        args: &[Value],
    ) -> Result<Value, Unlowered> {
        Ok(match op {
            ScalarOp::Load { buffer, index } => {
                let addr = self.address(*buffer, index);
                match shape {
                    Shape::Scalar => self.b.ins().load(clif_type(dtype), elem_flags(), addr, 0),
                    // The same element for every lane (inside a reduction over other loops of the f32x4 parallel
                    // loop; elsewhere such loads are hoisted out of the vector loop).
                    Shape::Vector if self.lane_var.is_some_and(|j| index.stride_of(j) == 0) => {
                        let x = self.b.ins().load(clif_type(dtype), elem_flags(), addr, 0);
                        self.splat(x, dtype)
                    }
                    Shape::Vector => match self.lane_var.map(|j| index.stride_of(j)) {
                        Some(stride) if stride > 1 => self.strided_vector_load(addr, dtype, stride),
                        _ => self.vector_load(addr, dtype),
                    },
                }
            }
            ScalarOp::LoadOr { buffer, dims, fill } => match shape {
                Shape::Scalar => {
                    let (index, ok) = self.guarded_index(dims);
                    let addr = self.element_address(self.bases[buffer], index, dtype.size_bytes());
                    let x = self.b.ins().load(clif_type(dtype), elem_flags(), addr, 0);
                    let fill = self.constant(Scalar::from_f64(f64::from_bits(*fill), dtype));
                    self.b.ins().select(ok, x, fill)
                }
                Shape::Vector => {
                    return Err(Unlowered {
                        op: "load.or".into(),
                        dtype,
                        shape,
                    })
                }
            },
            ScalarOp::LoadAt {
                buffer,
                index,
                stride,
                extent,
                ..
            } => match shape {
                Shape::Scalar => {
                    // Sign-extended, `at < extent` as unsigned also rules out a negative index; an index out of
                    // range loads element `index` (in bounds, `kernel::verify`) and selects 0 instead.
                    let at = self.b.ins().sextend(self.ptr, args[0]);
                    let ok = self
                        .b
                        .ins()
                        .icmp_imm_u(IntCC::UnsignedLessThan, at, *extent as i64);
                    let zero = self.b.ins().iconst(self.ptr, 0);
                    let at = self.b.ins().select(ok, at, zero);
                    let step = self.b.ins().imul_imm_s(at, *stride as i64);
                    let base = self.index(index);
                    let i = self.b.ins().iadd(base, step);
                    let addr = self.element_address(self.bases[buffer], i, dtype.size_bytes());
                    let x = self.b.ins().load(clif_type(dtype), elem_flags(), addr, 0);
                    let fill = self.constant(Scalar::zero(dtype));
                    self.b.ins().select(ok, x, fill)
                }
                Shape::Vector => {
                    return Err(Unlowered {
                        op: "load.at".into(),
                        dtype,
                        shape,
                    })
                }
            },
            ScalarOp::Const { bits } => {
                let x = self.constant(Scalar::from_f64(f64::from_bits(*bits), dtype));
                self.broadcast(x, dtype, shape)
            }
            ScalarOp::Index(index) => match shape {
                Shape::Scalar => {
                    let i = self.index(index);
                    match dtype {
                        DType::F32 | DType::F64 => self.b.ins().fcvt_from_uint(clif_type(dtype), i),
                        DType::I32 => self.b.ins().ireduce(types::I32, i),
                        DType::Bool => self.b.ins().icmp_imm_s(IntCC::NotEqual, i, 0),
                    }
                }
                // i32 in the vector body of a `reduce`/`for` nest (a causal mask's `index k <= index q`): lane `l`
                // holds the index at point `k + l`, the value at `k` plus `l` times the index's stride in `k`.
                // The same in the f32x4 parallel loop (a pooling window's position), with `j`'s stride.
                Shape::Vector
                    if dtype == DType::I32 && self.nested_lane_var.or(self.lane_var).is_some() =>
                {
                    let k = self.nested_lane_var.or(self.lane_var).expect("checked");
                    let first = self.index(index);
                    let first = self.b.ins().ireduce(types::I32, first);
                    let first = self.b.ins().splat(types::I32X4, first);
                    let stride = index.stride_of(k);
                    let steps: Vec<u8> = (0..4i32)
                        .flat_map(|l| (l.wrapping_mul(stride as i32)).to_le_bytes())
                        .collect();
                    let steps = self.b.func.dfg.constants.insert(steps.into());
                    let steps = self.b.ins().vconst(types::I32X4, steps);
                    self.b.ins().iadd(first, steps)
                }
                Shape::Vector => {
                    return Err(Unlowered {
                        op: "index".into(),
                        dtype,
                        shape,
                    })
                }
            },
            ScalarOp::MatmulAcc => {
                let point = self.point_index();
                let i = self.index(&point);
                let base = self.scratch.expect("checked: matmul.acc only in matmuls");
                let addr = self.element_address(base, i, dtype.size_bytes());
                match shape {
                    Shape::Scalar => self.b.ins().load(clif_type(dtype), elem_flags(), addr, 0),
                    Shape::Vector => self.vector_load(addr, dtype),
                }
            }
            ScalarOp::Unary(u, _) => self.unary(*u, dtype, shape, args[0])?,
            ScalarOp::Cast(x) => {
                let from = self.dtype(*x);
                self.cast(args[0], from, dtype, shape)?
            }
            ScalarOp::Binary(BinaryOp::Div, _, y) if self.reciprocals.contains_key(&y.index()) => {
                // `x · (1/s)` (see `Emitter::for_loops`).
                let r = self.reciprocals[&y.index()];
                let r = self.broadcast(r, dtype, shape);
                self.b.ins().fmul(args[0], r)
            }
            ScalarOp::Binary(op, ..) => self.binary(*op, dtype, shape, args[0], args[1])?,
            ScalarOp::Compare(dir, x, _) => {
                let operands = self.dtype(*x);
                self.compare(*dir, operands, shape, args[0], args[1])?
            }
            ScalarOp::Select(..) => self.select(shape, args[0], args[1], args[2]),
        })
    }

    /// `x` as a value of `shape`: itself, or splatted to every lane.
    pub(super) fn broadcast(&mut self, x: Value, dtype: DType, shape: Shape) -> Value {
        match shape {
            Shape::Scalar => x,
            Shape::Vector => self.splat(x, dtype),
        }
    }

    /// A scalar of `dtype` in every lane of its vector type (a bool's 0/1 becomes the lane mask 0/-1).
    pub(super) fn splat(&mut self, scalar: Value, dtype: DType) -> Value {
        match dtype {
            DType::Bool => {
                let wide = self.b.ins().uextend(types::I32, scalar);
                let mask = self.b.ins().ineg(wide);
                self.b.ins().splat(types::I32X4, mask)
            }
            DType::F32 | DType::F64 | DType::I32 => {
                self.b.ins().splat(Shape::Vector.ty(dtype), scalar)
            }
        }
    }

    /// `value` as a constant of `dtype` and `shape`.
    fn constant_of(&mut self, value: f64, dtype: DType, shape: Shape) -> Value {
        let x = self.constant(Scalar::from_f64(value, dtype));
        self.broadcast(x, dtype, shape)
    }

    pub(super) fn constant(&mut self, value: Scalar) -> Value {
        match value {
            Scalar::F32(x) => self.b.ins().f32const(x),
            Scalar::F64(x) => self.b.ins().f64const(x),
            Scalar::I32(x) => self.b.ins().iconst(types::I32, i64::from(x)),
            Scalar::Bool(x) => self.b.ins().iconst(types::I8, i64::from(x)),
        }
    }

    /// A vector of consecutive elements from `addr` (a bool vector: four bytes 0/1 into lane masks).
    pub(super) fn vector_load(&mut self, addr: Value, dtype: DType) -> Value {
        if dtype != DType::Bool {
            return self
                .b
                .ins()
                .load(Shape::Vector.ty(dtype), vector_flags(), addr, 0);
        }
        let mut mask = None;
        for lane in 0..Shape::Vector.lanes(dtype) as u8 {
            let byte = self
                .b
                .ins()
                .uload8(types::I32, vector_flags(), addr, i32::from(lane));
            let m = self.b.ins().ineg(byte);
            mask = Some(match mask {
                None => self.b.ins().splat(types::I32X4, m),
                Some(v) => self.b.ins().insertlane(v, m, lane),
            });
        }
        mask.expect("four lanes")
    }

    /// Four lanes `stride` elements apart (a window of a strided pooling: `load b[2·j + …]`), one scalar load per
    /// lane; each lane is the element its point loads (the vector plan bounds `stride`, so the offsets fit an i32).
    pub(super) fn strided_vector_load(
        &mut self,
        addr: Value,
        dtype: DType,
        stride: usize,
    ) -> Value {
        let mut vector = None;
        for lane in 0..Shape::Vector.lanes(dtype) as u8 {
            let offset = i32::try_from(usize::from(lane) * stride * dtype.size_bytes())
                .expect("the vector plan bounds the stride");
            let x = if dtype == DType::Bool {
                let byte = self.b.ins().uload8(types::I32, elem_flags(), addr, offset);
                self.b.ins().ineg(byte)
            } else {
                self.b
                    .ins()
                    .load(clif_type(dtype), elem_flags(), addr, offset)
            };
            vector = Some(match vector {
                None => self.b.ins().splat(Shape::Vector.ty(dtype), x),
                Some(v) => self.b.ins().insertlane(v, x, lane),
            });
        }
        vector.expect("four lanes")
    }

    /// `c ? x : y`: a bool byte selects with `select`; a vector mask lane by lane, with `bitselect`.
    pub(super) fn select(&mut self, shape: Shape, c: Value, x: Value, y: Value) -> Value {
        match shape {
            Shape::Scalar => self.b.ins().select(c, x, y),
            Shape::Vector => {
                let ty = self.b.func.dfg.value_type(x);
                let mask = if ty == types::I32X4 {
                    c
                } else {
                    self.b.ins().bitcast(ty, MemFlagsData::new(), c)
                };
                self.b.ins().bitselect(mask, x, y)
            }
        }
    }

    fn unary(
        &mut self,
        op: UnaryOp,
        dtype: DType,
        shape: Shape,
        x: Value,
    ) -> Result<Value, Unlowered> {
        use DType::*;
        Ok(match (op, dtype) {
            (UnaryOp::Neg, F32 | F64) => self.b.ins().fneg(x),
            (UnaryOp::Neg, I32) => self.b.ins().ineg(x),
            (UnaryOp::Abs, F32 | F64) => self.b.ins().fabs(x),
            (UnaryOp::Abs, I32) => self.b.ins().iabs(x),
            (UnaryOp::Sqrt, F32 | F64) => self.b.ins().sqrt(x),
            (UnaryOp::Recip, F32 | F64) => {
                let one = self.constant_of(1.0, dtype, shape);
                self.b.ins().fdiv(one, x)
            }
            (UnaryOp::Exp, F32 | F64) => self.math.exp(self.b, x),
            (UnaryOp::Log, F32 | F64) => self.math.log(self.b, x),
            (UnaryOp::Tanh, F32 | F64) => self.math.tanh(self.b, x),
            (UnaryOp::Logistic, F32 | F64) => self.math.logistic(self.b, x),
            (UnaryOp::Erf, F32 | F64) => self.math.erf(self.b, x),
            (UnaryOp::Sin, F32 | F64) => self.math.sin(self.b, x),
            (UnaryOp::Cos, F32 | F64) => self.math.cos(self.b, x),
            // One SSE4.1 `round` instruction each (scalar and vector), which `cranelift_native` finds on any
            // x86-64 host Kiln runs on; without SSE4.1 Cranelift calls libm's `floorf` and friends instead.
            (UnaryOp::Floor, F32 | F64) => self.b.ins().floor(x),
            (UnaryOp::Ceil, F32 | F64) => self.b.ins().ceil(x),
            (UnaryOp::Round, F32 | F64) => self.b.ins().nearest(x),
            (UnaryOp::Trunc, F32 | F64) => self.b.ins().trunc(x),
            // Float-only ops (SPEC), and no unary op takes a bool.
            (
                UnaryOp::Sqrt
                | UnaryOp::Recip
                | UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Tanh
                | UnaryOp::Logistic
                | UnaryOp::Erf
                | UnaryOp::Sin
                | UnaryOp::Cos
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round
                | UnaryOp::Trunc,
                I32,
            )
            | (
                UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Sqrt
                | UnaryOp::Recip
                | UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Tanh
                | UnaryOp::Logistic
                | UnaryOp::Erf
                | UnaryOp::Sin
                | UnaryOp::Cos
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round
                | UnaryOp::Trunc,
                Bool,
            ) => {
                return Err(Unlowered {
                    op: op.name().into(),
                    dtype,
                    shape,
                })
            }
        })
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        dtype: DType,
        shape: Shape,
        x: Value,
        y: Value,
    ) -> Result<Value, Unlowered> {
        use DType::*;
        let refuse = || Unlowered {
            op: op.name().into(),
            dtype,
            shape,
        };
        Ok(match (op, dtype) {
            (BinaryOp::Add, F32 | F64) => self.b.ins().fadd(x, y),
            (BinaryOp::Add, I32) => self.b.ins().iadd(x, y),
            (BinaryOp::Sub, F32 | F64) => self.b.ins().fsub(x, y),
            (BinaryOp::Sub, I32) => self.b.ins().isub(x, y),
            (BinaryOp::Mul, F32 | F64) => self.b.ins().fmul(x, y),
            (BinaryOp::Mul, I32) => self.b.ins().imul(x, y),
            (BinaryOp::Div, F32 | F64) => self.b.ins().fdiv(x, y),
            (BinaryOp::Div, I32) if shape == Shape::Scalar => {
                // x / 0 == 0 and MIN / -1 == MIN (wrapping): divide by 1 in both cases, then fix the result.
                let zero = self.b.ins().icmp_imm_s(IntCC::Equal, y, 0);
                let minus_one = self.b.ins().icmp_imm_s(IntCC::Equal, y, -1);
                let special = self.b.ins().bor(zero, minus_one);
                let one = self.b.ins().iconst(types::I32, 1);
                let divisor = self.b.ins().select(special, one, y);
                let q = self.b.ins().sdiv(x, divisor);
                let negated = self.b.ins().ineg(x);
                let q = self.b.ins().select(minus_one, negated, q);
                let z = self.b.ins().iconst(types::I32, 0);
                self.b.ins().select(zero, z, q)
            }
            // x86 has no vector integer division.
            (BinaryOp::Div, I32) => return Err(refuse()),
            // `fmax`/`fmin` propagate NaN and order -0 < +0, as SPEC's max/min do.
            (BinaryOp::Max, F32 | F64) => self.b.ins().fmax(x, y),
            (BinaryOp::Max, I32) => self.b.ins().smax(x, y),
            (BinaryOp::Min, F32 | F64) => self.b.ins().fmin(x, y),
            (BinaryOp::Min, I32) => self.b.ins().smin(x, y),
            (BinaryOp::Pow, F32 | F64) => self.math.pow(self.b, x, y),
            (BinaryOp::And, I32) => self.b.ins().band(x, y),
            (BinaryOp::Or, I32) => self.b.ins().bor(x, y),
            (BinaryOp::Xor, I32) => self.b.ins().bxor(x, y),
            // Cranelift takes a scalar shift amount mod the lane width, which is SPEC's `b mod 32`. Its vector
            // shifts take one amount for every lane, so per-lane amounts stay scalar (`vector.rs` keeps them out).
            (BinaryOp::Shl, I32) if shape == Shape::Scalar => self.b.ins().ishl(x, y),
            (BinaryOp::Shr, I32) if shape == Shape::Scalar => self.b.ins().ushr(x, y),
            (BinaryOp::MulHi, I32) if shape == Shape::Scalar => self.b.ins().umulhi(x, y),
            // x86 has no vector `umulhi` on 32-bit lanes in Cranelift.
            (BinaryOp::Shl | BinaryOp::Shr | BinaryOp::MulHi, I32) => return Err(refuse()),
            // `pow` is float-only and the bitwise ops int-only (SPEC), and no binary op takes bools.
            (BinaryOp::Pow, I32)
            | (
                BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
                | BinaryOp::Shl
                | BinaryOp::Shr
                | BinaryOp::MulHi,
                F32 | F64,
            )
            | (
                BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::Pow
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
                | BinaryOp::Shl
                | BinaryOp::Shr
                | BinaryOp::MulHi,
                Bool,
            ) => return Err(refuse()),
        })
    }

    fn compare(
        &mut self,
        dir: CmpDir,
        operands: DType,
        shape: Shape,
        x: Value,
        y: Value,
    ) -> Result<Value, Unlowered> {
        let vector = shape == Shape::Vector;
        Ok(match operands {
            DType::F32 | DType::F64 => {
                // On vectors, `x > y` as `y < x` (the same IEEE predicate): `select(y < x, x, y)` then lowers to
                // one `maxps` on x86 (ReLU's `select(x > 0, x, 0)`), `select(x < y, x, y)` to one `minps`.
                let (cc, x, y) = match dir {
                    CmpDir::Lt => (FloatCC::LessThan, x, y),
                    CmpDir::Le => (FloatCC::LessThanOrEqual, x, y),
                    CmpDir::Gt if vector => (FloatCC::LessThan, y, x),
                    CmpDir::Gt => (FloatCC::GreaterThan, x, y),
                    CmpDir::Ge if vector => (FloatCC::LessThanOrEqual, y, x),
                    CmpDir::Ge => (FloatCC::GreaterThanOrEqual, x, y),
                    CmpDir::Eq => (FloatCC::Equal, x, y),
                    CmpDir::Ne => (FloatCC::NotEqual, x, y),
                };
                self.b.ins().fcmp(cc, x, y)
            }
            DType::I32 | DType::Bool => {
                let cc = match (dir, operands) {
                    (CmpDir::Lt, DType::I32) => IntCC::SignedLessThan,
                    (CmpDir::Le, DType::I32) => IntCC::SignedLessThanOrEqual,
                    (CmpDir::Gt, DType::I32) => IntCC::SignedGreaterThan,
                    (CmpDir::Ge, DType::I32) => IntCC::SignedGreaterThanOrEqual,
                    // Bools (0/1 bytes, or 0/-1 lane masks) compare for equality only.
                    (CmpDir::Eq, _) => IntCC::Equal,
                    (CmpDir::Ne, _) => IntCC::NotEqual,
                    (CmpDir::Lt | CmpDir::Le | CmpDir::Gt | CmpDir::Ge, _) => {
                        return Err(Unlowered {
                            op: format!("compare.{}", dir.name()),
                            dtype: operands,
                            shape,
                        })
                    }
                };
                self.b.ins().icmp(cc, x, y)
            }
        })
    }

    /// SPEC.md §3.3, as `Scalar::cast`. Vectors convert only between f32 and bool (the f32x4 loop's types): every
    /// other conversion changes the lane count or the lane width of a mask.
    fn cast(&mut self, x: Value, from: DType, to: DType, shape: Shape) -> Result<Value, Unlowered> {
        use DType::*;
        let scalar = shape == Shape::Scalar;
        Ok(match (from, to) {
            (F32, F32) | (F64, F64) | (I32, I32) | (Bool, Bool) => x,
            (F32, F64) if scalar => self.b.ins().fpromote(types::F64, x),
            (F64, F32) if scalar => self.b.ins().fdemote(types::F32, x),
            (F32 | F64, I32) if scalar => self.b.ins().fcvt_to_sint_sat(types::I32, x),
            (I32, F32 | F64) if scalar => self.b.ins().fcvt_from_sint(clif_type(to), x),
            (Bool, F32 | F64) if scalar || to == F32 => {
                let one = self.constant_of(1.0, to, shape);
                let zero = self.constant_of(0.0, to, shape);
                self.select(shape, x, one, zero)
            }
            (Bool, I32) if scalar => self.b.ins().uextend(types::I32, x),
            (F32 | F64, Bool) if scalar || from == F32 => {
                let zero = self.constant_of(0.0, from, shape);
                self.b.ins().fcmp(FloatCC::NotEqual, x, zero)
            }
            (I32, Bool) if scalar => self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
            (F32, F64)
            | (F64, F32)
            | (F32 | F64, I32)
            | (I32, F32 | F64)
            | (Bool, F32 | F64)
            | (Bool, I32)
            | (F32 | F64, Bool)
            | (I32, Bool) => {
                return Err(Unlowered {
                    op: format!("cast from {from}"),
                    dtype: to,
                    shape,
                })
            }
        })
    }
}
