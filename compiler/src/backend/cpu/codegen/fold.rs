//! Reductions: the one fold step ([`Emitter::fold`], lane-generic) and the loops that apply it.
//!
//! - [`Emitter::reduce`]: a `reduce` in scalar code, one point at a time from the identity, in the interpreter's
//!   row-major order; or, where [`vector::reduce_plan`] allows, [`Emitter::nested_reduce`]'s vector accumulators.
//! - [`Emitter::lane_fold`]: a `reduce` inside the f32x4 parallel loop, a lane per parallel point, each lane in the
//!   scalar order.
//!
//! A float max over vectors folds with [`Emitter::ordered_max`] (one `maxps`/`maxpd`, where `fmax` is nine
//! instructions on x86) and a mask of the NaNs it saw, then runs again with `fmax` where that could differ
//! ([`Emitter::max_with_exact_fallback`]).

use super::ops::Shape;
use super::vector::{self, ReducePlan};
use super::Emitter;
use crate::kernel::{Block, Loop, ReduceKind, ValueId};
use cranelift_codegen::ir::{condcodes::FloatCC, types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::Variable;
use kiln_ir::op::Scalar;
use kiln_ir::DType;
use std::collections::HashMap;

/// The value of a `reduce` over no points (SPEC §3.7): 0 (+0.0 for floats) for a sum, -inf / `i32::MIN` for a max.
pub(super) fn empty_fold(kind: ReduceKind, dtype: DType) -> Scalar {
    match kind {
        ReduceKind::Sum => Scalar::zero(dtype),
        ReduceKind::Max => Scalar::lowest(dtype),
    }
}

impl<'a, 'b> Emitter<'a, 'b> {
    /// Where a fold starts: `-0.0` for float sums (exact: `-0.0 + x == x` bit for bit, so a fold over at least one
    /// point is the interpreter's), 0 for i32 sums, `-inf` / `i32::MIN` for max.
    pub(super) fn fold_identity(&mut self, kind: ReduceKind, dtype: DType) -> Value {
        match (kind, dtype) {
            (ReduceKind::Sum, DType::F32) => self.b.ins().f32const(-0.0f32),
            (ReduceKind::Sum, DType::F64) => self.b.ins().f64const(-0.0f64),
            (ReduceKind::Max, DType::F32 | DType::F64) => self.constant(Scalar::lowest(dtype)),
            (ReduceKind::Sum | ReduceKind::Max, DType::I32 | DType::Bool) => {
                self.constant(empty_fold(kind, dtype))
            }
        }
    }

    /// `a ∘ x`, one step of a fold of `dtype` values (scalars or vectors alike): `fadd`/`iadd` (i32 wraps), `fmax`
    /// (NaN-propagating, `-0 < +0`) / `smax`. No reduction is of bool ([`crate::kernel::verify`]); one would fail to compile.
    pub(super) fn fold(&mut self, kind: ReduceKind, dtype: DType, a: Value, x: Value) -> Value {
        match (kind, dtype) {
            (ReduceKind::Sum, DType::F32 | DType::F64) => self.b.ins().fadd(a, x),
            (ReduceKind::Sum, DType::I32) => self.b.ins().iadd(a, x),
            (ReduceKind::Max, DType::F32 | DType::F64) => self.b.ins().fmax(a, x),
            (ReduceKind::Max, DType::I32) => self.b.ins().smax(a, x),
            (ReduceKind::Sum | ReduceKind::Max, DType::Bool) => {
                let op = format!("reduce.{kind:?}").to_lowercase();
                self.unlowered.get_or_insert(super::ops::Unlowered {
                    op,
                    dtype,
                    shape: Shape::Scalar,
                });
                a
            }
        }
    }

    /// `values` folded as a balanced tree, left half first: `(v0 ∘ v1) ∘ (v2 ∘ v3)` for four.
    fn fold_tree(&mut self, kind: ReduceKind, dtype: DType, values: &[Value]) -> Value {
        match values {
            [] => unreachable!("at least one accumulator"),
            [v] => *v,
            _ => {
                let (low, high) = values.split_at(values.len() / 2);
                let low = self.fold_tree(kind, dtype, low);
                let high = self.fold_tree(kind, dtype, high);
                self.fold(kind, dtype, low, high)
            }
        }
    }

    /// A `reduce` in scalar code (see the module doc); the fold of nothing where a loop has no trips.
    pub(super) fn reduce(
        &mut self,
        kind: ReduceKind,
        dtype: DType,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
    ) -> Value {
        if loops.iter().any(|l| l.extent == 0) {
            // No trips, so no code for the body: the fold of nothing, +0 for a sum (where the loops below start
            // from -0.0), as the interpreter gives.
            return self.constant(empty_fold(kind, dtype));
        }
        if let Some(plan) = vector::reduce_plan(loops, body, value, dtype, self.types) {
            return self.nested_reduce(kind, dtype, loops, body, value, plan);
        }
        let acc = self.b.declare_var(Shape::Scalar.ty(dtype));
        let init = self.fold_identity(kind, dtype);
        self.b.def_var(acc, init);
        self.reduce_nest(loops, body.insts.len(), &mut |e| {
            e.block(body);
            let x = e.value(value);
            let a = e.b.use_var(acc);
            let folded = e.fold(kind, dtype, a, x);
            e.b.def_var(acc, folded);
        });
        self.b.use_var(acc)
    }

    /// A `reduce` whose innermost loop `k` passed [`vector::reduce_plan`]: per point of the outer loops, `k` runs
    /// `plan.unroll` vectors at a time into as many vector accumulators `a_u` (`a_u` takes points `k ≡ u·lanes +
    /// lane` mod `unroll·lanes`), then one vector at a time into `a_0`, then the points left into a scalar one. The
    /// result is `tree(lanes of tree(a_u)) ∘ tail` ([`Self::fold_tree`]): a fixed order for every output element and
    /// thread count. An i32 sum wraps and a max is exact, so both equal the interpreter's fold; a float sum is
    /// reassociated. (Several accumulators keep the loop from waiting on one `fmax`/`fadd` chain.)
    fn nested_reduce(
        &mut self,
        kind: ReduceKind,
        dtype: DType,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
        plan: ReducePlan,
    ) -> Value {
        if kind == ReduceKind::Max && dtype.is_float() {
            return self.max_with_exact_fallback(
                |e| {
                    let (result, nan) = e.nested_fold(kind, dtype, true, loops, body, value, plan);
                    (result, nan.expect("ordered folds keep a NaN mask"))
                },
                |e| {
                    e.nested_fold(kind, dtype, false, loops, body, value, plan)
                        .0
                },
            );
        }
        self.nested_fold(kind, dtype, false, loops, body, value, plan)
            .0
    }

    /// [`Self::nested_reduce`]'s loops; `ordered`: a float max folds vectors with [`Self::ordered_max`] and also
    /// returns the or of `x ≠ x` over them (an integer lane mask; the scalar tail and the combination use `fmax`).
    #[allow(clippy::too_many_arguments)]
    fn nested_fold(
        &mut self,
        kind: ReduceKind,
        dtype: DType,
        ordered: bool,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
        plan: ReducePlan,
    ) -> (Value, Option<Value>) {
        let vty = Shape::Vector.ty(dtype);
        let ordered = ordered && kind == ReduceKind::Max && dtype.is_float();
        let acc = self.b.declare_var(Shape::Scalar.ty(dtype));
        let init = self.fold_identity(kind, dtype);
        self.b.def_var(acc, init);
        let vinit = self.b.ins().splat(vty, init);
        let vaccs: Vec<_> = (0..plan.unroll)
            .map(|_| {
                let v = self.b.declare_var(vty);
                self.b.def_var(v, vinit);
                v
            })
            .collect();
        let nan = ordered.then(|| self.nan_mask(vty.as_int()));
        let (mut unpaired, mut masks) = (None, Vec::new());
        self.nested_vector_loops(
            loops,
            body,
            Some(value),
            plan.unroll,
            Shape::Vector.lanes(dtype),
            &mut |e, copy, copies, values| {
                let a = e.b.use_var(vaccs[copy]);
                let x = values[&value.index()];
                let folded = match nan {
                    Some(nan) => {
                        // `x ≠ x`, two copies in one `fcmp uno` (true where either is NaN), or-ed into the mask once
                        // per iteration.
                        match unpaired.take() {
                            Some(other) => {
                                let either = e.b.ins().fcmp(FloatCC::Unordered, other, x);
                                masks.push(either);
                            }
                            None if copy + 1 < copies => unpaired = Some(x),
                            None => {
                                let is_nan = e.b.ins().fcmp(FloatCC::Unordered, x, x);
                                masks.push(is_nan);
                            }
                        }
                        if copy + 1 == copies {
                            let mut seen = e.b.use_var(nan);
                            let any = masks.drain(..).reduce(|m, n| e.b.ins().bor(m, n));
                            if let Some(any) = any {
                                seen = e.b.ins().bor(seen, any);
                            }
                            e.b.def_var(nan, seen);
                        }
                        e.ordered_max(a, x)
                    }
                    None => e.fold(kind, dtype, a, x),
                };
                e.b.def_var(vaccs[copy], folded);
            },
            &mut |e| {
                let a = e.b.use_var(acc);
                let x = e.value(value);
                let folded = e.fold(kind, dtype, a, x);
                e.b.def_var(acc, folded);
            },
        );
        let v: Vec<Value> = vaccs.iter().map(|&a| self.b.use_var(a)).collect();
        let v = self.fold_tree(kind, dtype, &v);
        let lanes: Vec<Value> = (0..Shape::Vector.lanes(dtype) as u8)
            .map(|lane| self.b.ins().extractlane(v, lane))
            .collect();
        let lanes = self.fold_tree(kind, dtype, &lanes);
        let tail = self.b.use_var(acc);
        let result = self.fold(kind, dtype, lanes, tail);
        (result, nan.map(|nan| self.b.use_var(nan)))
    }

    /// A variable holding a mask of type `ty` with no lane set.
    fn nan_mask(&mut self, ty: types::Type) -> Variable {
        let v = self.b.declare_var(ty);
        let zero = self.b.ins().iconst(ty.lane_type(), 0);
        let none = self.b.ins().splat(ty, zero);
        self.b.def_var(v, none);
        v
    }

    /// A `reduce` over other loops in the f32x4 parallel loop: lane `l` folds point `j + l`'s values over `loops`
    /// in the scalar code's order; `ordered`: a max folds with [`Self::ordered_max`] and also returns the NaN mask.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lane_fold(
        &mut self,
        kind: ReduceKind,
        dtype: DType,
        ordered: bool,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
        values: &HashMap<usize, Value>,
    ) -> (Value, Option<Value>) {
        let ordered = ordered && dtype.is_float();
        let identity = self.fold_identity(kind, dtype);
        let init = self.broadcast(identity, dtype, Shape::Vector);
        let acc = self.b.declare_var(Shape::Vector.ty(dtype));
        self.b.def_var(acc, init);
        let nan = (ordered && kind == ReduceKind::Max).then(|| self.nan_mask(types::I32X4));
        self.reduce_nest(loops, body.insts.len(), &mut |e| {
            let mut inner = values.clone();
            e.vector_block(body, &mut inner);
            let x = inner[&value.index()];
            let a = e.b.use_var(acc);
            let folded = match nan {
                None => e.fold(kind, dtype, a, x),
                Some(nan) => {
                    let seen = e.b.use_var(nan);
                    let is_nan = e.b.ins().fcmp(FloatCC::Unordered, x, x);
                    let seen = e.b.ins().bor(seen, is_nan);
                    e.b.def_var(nan, seen);
                    e.ordered_max(a, x)
                }
            };
            e.b.def_var(acc, folded);
        });
        let result = self.b.use_var(acc);
        (result, nan.map(|nan| self.b.use_var(nan)))
    }

    /// `a < x ? x : a` lane by lane (f32x4 or f64x2): one `maxps`/`maxpd` on x86, where `fmax` is nine
    /// instructions. It is Kiln's `max` except where `x` is NaN (`a` is kept) or both are zeros (`a` is kept, so
    /// `max(-0, +0)` may be `-0`); folded from `-inf` over values without NaN, it gives `fmax`'s fold wherever that
    /// is not a zero (the order of equal nonzero values does not matter: they have the same bits).
    fn ordered_max(&mut self, a: Value, x: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let less = self.b.ins().fcmp(FloatCC::LessThan, a, x);
        let mask = self.b.ins().bitcast(ty, MemFlagsData::new(), less);
        self.b.ins().bitselect(mask, x, a)
    }

    /// `fast` returns a max folded with [`Self::ordered_max`] (a scalar, or a vector of per-lane results) and the
    /// NaN mask of the values it folded. Where no value was NaN and no result is a zero, that is exactly `fmax`'s
    /// fold (see [`Self::ordered_max`]); otherwise (a NaN, or a zero whose sign depends on which zeros came first)
    /// `exact` computes it again with `fmax`, behind one branch. Either way the result is the interpreter's, for
    /// every chunking and thread count.
    pub(super) fn max_with_exact_fallback(
        &mut self,
        fast: impl FnOnce(&mut Self) -> (Value, Value),
        exact: impl FnOnce(&mut Self) -> Value,
    ) -> Value {
        let (result, nan) = fast(self);
        let ty = self.b.func.dfg.value_type(result);
        let saw_nan = self.b.ins().vany_true(nan);
        let zero = match ty.lane_type() {
            types::F32 => self.b.ins().f32const(0.0f32),
            _ => self.b.ins().f64const(0.0f64),
        };
        let zero = if ty.is_vector() {
            self.b.ins().splat(ty, zero)
        } else {
            zero
        };
        let is_zero = self.b.ins().fcmp(FloatCC::Equal, result, zero);
        let is_zero = if ty.is_vector() {
            self.b.ins().vany_true(is_zero)
        } else {
            is_zero
        };
        let redo = self.b.ins().bor(saw_nan, is_zero);
        let (exact_block, join) = (self.b.create_block(), self.b.create_block());
        let joined = self.b.append_block_param(join, ty);
        self.b
            .ins()
            .brif(redo, exact_block, &[], join, &[result.into()]);
        self.b.switch_to_block(exact_block);
        let exact_result = exact(self);
        self.b.ins().jump(join, &[exact_result.into()]);
        self.b.switch_to_block(join);
        joined
    }
}
