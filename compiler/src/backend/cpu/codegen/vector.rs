//! Vector plans and loops (see the parent module's doc): which kernels and nests run a vector at a time, and the
//! loops that do; every op in them is lowered by the one emitter ([`super::ops`]), reductions fold with
//! [`super::fold`].
//!
//! In the f32x4 loop over the innermost parallel dimension, values are f32x4 (f32), i32x4 (i32: indices and the
//! integer ops that wrap lane by lane as in scalar code) or i32x4 masks of all-ones / zero (bool). A load or store that moves by one element with
//! the innermost variable `j` is a vector access at `j` (a load that moves by more, as a stride-2 pooling window
//! does, is gathered a lane at a time); a load that doesn't move with `j` is loaded once per row,
//! before the loop, and splatted (inside a reduction, where it may move with the reduction's loops, once per
//! iteration). A `reduce` over other loops (a column sum) keeps an f32x4 accumulator: lane `l` folds point `j + l`'s
//! values in the scalar code's order (a max with `maxps` and a NaN mask, then again with `fmax` if that could
//! differ: [`Emitter::lane_fold`], [`Emitter::max_with_exact_fallback`]). Each lane computes exactly what the scalar
//! loop computes for its point: the same IEEE operations, and the math library's code, which gives the same bits
//! for one lane or four.

use super::fold::empty_fold;
use super::ops::{vector_flags, Shape};
use super::{clif_type, Emitter};
use crate::kernel::verify::ValueTypes;
use crate::kernel::{
    Block, BufferId, IndexExpr, Inst, Kernel, KernelProgram, Loop, ReduceKind, ScalarOp, ValueId,
    Var,
};
use cranelift_codegen::ir::{condcodes::IntCC, types, Block as ClifBlock, InstBuilder, Value};
use kiln_ir::{BinaryOp, DType, UnaryOp};
use std::collections::HashMap;

/// Lanes of the f32x4 loops (f32 and bool values).
const LANES: i64 = 4;
/// Vector accumulators of an f32 reduction ([`nested_plan`]); 1 for f64 and i32 ([`typed_nested_plan`]).
const UNROLL: usize = 4;
/// The largest stride (in elements) of a load the f32x4 loop gathers a lane at a time: the lane offsets stay far
/// inside an i32.
const MAX_LANE_STRIDE: usize = 1 << 20;
/// Copies of the body in one iteration of the elementwise f32x4 loop.
const ELEMENTWISE_UNROLL: usize = 4;

/// A kernel the vector loop can run: its innermost parallel variable.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    pub j: Var,
    /// Whether the body has a `reduce` (then the loop is not unrolled: each copy would run its own reduction loop).
    pub reduces: bool,
}

/// `Some` when every instruction of the kernel has a vector form and the innermost loop has at least 4 points.
pub(super) fn plan(_program: &KernelProgram, kernel: &Kernel, types: &ValueTypes) -> Option<Plan> {
    let inner = kernel.parallel().iter().rev().find(|l| l.extent > 1)?;
    if inner.extent < LANES as usize {
        return None;
    }
    let j = inner.var;
    if types
        .iter()
        .flatten()
        .any(|t| !matches!(t, DType::F32 | DType::Bool | DType::I32))
    {
        return None;
    }
    let is_i32 = |v: ValueId| types[v.index()] == Some(DType::I32);
    // i32 lanes (a pooling window's first-maximum index: `index`, `mul`, `add`, `select`, `neg`, `max`) take the
    // integer ops that have an i32x4 form and wrap as the scalar ones do; nothing converts to or from i32.
    let let_ok = |op: &ScalarOp, dtype: DType, nested: bool| match op {
        // Moving by one element with `j`: a vector load; by more (a stride-2 pooling window), a lane at a time.
        ScalarOp::Load { index, .. } => index.stride_of(j) <= MAX_LANE_STRIDE,
        // Scalar for now: each lane would check its own guards.
        ScalarOp::LoadOr { .. } | ScalarOp::LoadAt { .. } => false,
        // An i32 index: lane `l` adds `l` times the index's stride in `j`.
        ScalarOp::Index(_) => dtype == DType::I32,
        // The scratch is indexed by the parallel point, not by a reduction's variables.
        ScalarOp::MatmulAcc => !nested,
        ScalarOp::Cast(x) => dtype != DType::I32 && !is_i32(*x),
        ScalarOp::Unary(u, _) if dtype == DType::I32 => matches!(u, UnaryOp::Neg | UnaryOp::Abs),
        ScalarOp::Binary(b, ..) if dtype == DType::I32 => has_vector_lanes(*b),
        ScalarOp::Const { .. }
        | ScalarOp::Unary(..)
        | ScalarOp::Binary(..)
        | ScalarOp::Compare(..)
        | ScalarOp::Select(..) => true,
    };
    let mut reduces = false;
    let ok = kernel.body().insts.iter().all(|inst| match inst {
        Inst::Let { op, dtype, .. } => let_ok(op, *dtype, false),
        Inst::Store { index, .. } => index.stride_of(j) == 1,
        // A reduction over other loops (a column sum: `load b[cols·i + j]`) runs with a lane per parallel point:
        // each lane folds its point's values in the scalar code's order. That order must be the one the scalar loop
        // uses for the same point, or a point's bits would depend on where a thread's chunk starts: a reduction the
        // scalar loop vectorizes along its own loop ([`nested_plan`]: a sum reassociated, a max's NaN picked from
        // another lane) keeps that plan instead.
        Inst::Reduce {
            dtype: DType::F32 | DType::I32,
            loops,
            body,
            value,
            ..
        } => {
            reduces = true;
            let scalar_reassociates = nested_plan(loops, body, Some(*value), types).is_some();
            !scalar_reassociates
                && !loops.iter().any(|l| l.var == j)
                && body.insts.iter().all(|inst| match inst {
                    Inst::Let { op, dtype, .. } => let_ok(op, *dtype, true),
                    Inst::Store { .. } | Inst::Reduce { .. } | Inst::For { .. } => false,
                })
        }
        Inst::Reduce { .. } | Inst::For { .. } => false,
    });
    ok.then_some(Plan { j, reduces })
}

impl Emitter<'_, '_> {
    /// Emits, from the current block: the loads that don't move with `j` (once per row), then
    /// `wide(j): 4·ELEMENTWISE_UNROLL points; brif j + 4·ELEMENTWISE_UNROLL <= jend, wide(j), check` (not in a
    /// kernel with a reduction), then
    /// `vector(j): 4 points; j += 4; brif j + 4 <= jend, vector(j), done`, each behind its own entry check. Leaves
    /// `j` at the first point the vector loop did not run.
    pub(super) fn vector_loop(&mut self, plan: &Plan, jend: Value, done: ClifBlock) {
        let body = self.kernel.body();
        let mut hoisted: HashMap<usize, Value> = HashMap::new();
        self.hoist_loads(body, plan.j, &mut hoisted);
        let vector_check = self.b.create_block();
        let vector_block = self.b.create_block();
        self.lane_var = Some(plan.j);
        if plan.reduces {
            // Not unrolled: each copy would run a reduction loop of its own.
            self.b.ins().jump(vector_check, &[]);
        } else {
            // Strips first, where the kernel's transcendentals run in the runtime's wide routines.
            if let Some(strips) = self.strips.take() {
                let after = self.b.create_block();
                self.strip_loop(&strips, plan.j, jend, &hoisted, after);
                self.b.switch_to_block(after);
                self.strips = Some(strips);
            }
            // `ELEMENTWISE_UNROLL` independent copies of the body: more work for the out-of-order core between
            // branches, and long-latency chains (exp, division) of different copies overlap.
            let wide = ELEMENTWISE_UNROLL as i64 * LANES;
            let wide_block = self.b.create_block();
            let j = self.get_var(plan.j);
            let j_wide = self.b.ins().iadd_imm_s(j, wide);
            let fits = self
                .b
                .ins()
                .icmp(IntCC::UnsignedLessThanOrEqual, j_wide, jend);
            self.b.ins().brif(fits, wide_block, &[], vector_check, &[]);

            self.b.switch_to_block(wide_block);
            let j0 = self.get_var(plan.j);
            for copy in 0..ELEMENTWISE_UNROLL as i64 {
                let jc = self.b.ins().iadd_imm_s(j0, copy * LANES);
                self.set_var(plan.j, jc);
                let mut values = hoisted.clone();
                self.vector_block(body, &mut values);
            }
            self.next_if_fits(plan.j, j0, wide, jend, wide_block, vector_check);
        }

        // Then 4 points at a time.
        self.b.switch_to_block(vector_check);
        let j = self.get_var(plan.j);
        let j4 = self.b.ins().iadd_imm_s(j, LANES);
        let fits = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, j4, jend);
        self.b.ins().brif(fits, vector_block, &[], done, &[]);

        self.b.switch_to_block(vector_block);
        let mut values: HashMap<usize, Value> = hoisted.clone();
        self.vector_block(body, &mut values);
        let j = self.get_var(plan.j);
        self.next_if_fits(plan.j, j, LANES, jend, vector_block, done);
        self.lane_var = None;
    }

    /// The back edge of [`Self::vector_loop`]'s loops: `j = j0 + step`, then on to `again` if the next `step` points
    /// (up to `j0 + 2·step`) fit below `jend`, else to `exit`.
    pub(super) fn next_if_fits(
        &mut self,
        j: Var,
        j0: Value,
        step: i64,
        jend: Value,
        again: ClifBlock,
        exit: ClifBlock,
    ) {
        let j_next = self.b.ins().iadd_imm_s(j0, step);
        self.set_var(j, j_next);
        let j_after = self.b.ins().iadd_imm_s(j0, 2 * step);
        let fits = self
            .b
            .ins()
            .icmp(IntCC::UnsignedLessThanOrEqual, j_after, jend);
        self.b.ins().brif(fits, again, &[], exit, &[]);
    }

    /// Loads the lets of `body` that load from an index that doesn't move with `v` once, before the loop over `v`,
    /// splatted, into `hoisted` (by value index): for [`Self::vector_loop`] and [`Self::nested_vector_loops`].
    fn hoist_loads(&mut self, body: &Block, v: Var, hoisted: &mut HashMap<usize, Value>) {
        for inst in &body.insts {
            if let Inst::Let {
                id,
                dtype,
                op: ScalarOp::Load { buffer, index },
            } = inst
            {
                if index.stride_of(v) == 0 {
                    let addr = self.address(*buffer, index);
                    let x = self
                        .b
                        .ins()
                        .load(clif_type(*dtype), super::elem_flags(), addr, 0);
                    let v = self.splat(x, *dtype);
                    hoisted.insert(id.index(), v);
                }
            }
        }
    }

    /// `block` a vector at a time: `values` holds the vector values by `ValueId` index (the hoisted ones on entry).
    pub(super) fn vector_block(&mut self, block: &Block, values: &mut HashMap<usize, Value>) {
        for inst in &block.insts {
            match inst {
                Inst::Let { id, dtype, op } => {
                    if values.contains_key(&id.index()) {
                        continue; // hoisted
                    }
                    let v = match self.contract.get(&id.index()) {
                        Some(&c) => self.contracted(c, |v| values[&v.index()]),
                        None => {
                            let args: Vec<Value> =
                                op.operands().iter().map(|v| values[&v.index()]).collect();
                            self.lower(op, *dtype, Shape::Vector, &args)
                        }
                    };
                    values.insert(id.index(), v);
                }
                Inst::Store {
                    buffer,
                    index,
                    value,
                } => {
                    let addr = self.address(*buffer, index);
                    let v = values[&value.index()];
                    if self.program.buffers[buffer.index()].ty.dtype == DType::Bool {
                        for lane in 0..LANES as u8 {
                            let m = self.b.ins().extractlane(v, lane);
                            let bit = self.b.ins().band_imm_s(m, 1);
                            let byte = self.b.ins().ireduce(types::I8, bit);
                            self.b
                                .ins()
                                .store(vector_flags(), byte, addr, i32::from(lane));
                        }
                    } else {
                        self.b.ins().store(vector_flags(), v, addr, 0);
                    }
                }
                Inst::Reduce {
                    id,
                    kind,
                    loops,
                    body,
                    value,
                    ..
                } if loops.iter().any(|l| l.extent == 0) => {
                    // No trips: every lane's fold of nothing, as the scalar code gives it.
                    let dtype = self.dtype(*id);
                    let empty = self.constant(empty_fold(*kind, dtype));
                    let v = self.splat(empty, dtype);
                    values.insert(id.index(), v);
                }
                Inst::Reduce {
                    id,
                    kind,
                    loops,
                    body,
                    value,
                    ..
                } => {
                    // Lane l folds point j + l's values over `loops`, in the scalar code's order (a max first
                    // with `ordered_max`, again with `fmax` where that could differ).
                    let dtype = self.dtype(*id);
                    let result = match kind {
                        ReduceKind::Max if dtype.is_float() => self.max_with_exact_fallback(
                            |e| {
                                let (result, nan) =
                                    e.lane_fold(*kind, dtype, true, loops, body, *value, values);
                                (result, nan.expect("ordered folds keep a NaN mask"))
                            },
                            |e| {
                                e.lane_fold(*kind, dtype, false, loops, body, *value, values)
                                    .0
                            },
                        ),
                        // A sum, or an i32 max (exact: nothing to fall back on): the scalar order lane by lane.
                        ReduceKind::Sum | ReduceKind::Max => {
                            self.lane_fold(*kind, dtype, false, loops, body, *value, values)
                                .0
                        }
                    };
                    values.insert(id.index(), result);
                }
                Inst::For { .. } => {
                    unreachable!("plan: no for loops in vector kernels")
                }
            }
        }
    }
}

/// The values `body`'s lets define (by index): what the vector loops over `k` need not splat from outside.
fn let_ids(body: &Block) -> Vec<usize> {
    body.insts
        .iter()
        .filter_map(|inst| match inst {
            Inst::Let { id, .. } => Some(id.index()),
            _ => None,
        })
        .collect()
}

/// `Some(k)` when the innermost loop `k` of a `reduce` or `for` nest can run 4 points at a time: at least 4 points,
/// a body of straight-line f32/bool code (lets and stores only, no `matmul.acc`; i32 only as `index`, constants and
/// their `add`/`sub`, compared into masks: a causal mask), loads that move by 1 or
/// 0 elements with `k`, stores that move by 1 (at most one per buffer; a buffer the body also loads only at the
/// store's own index, as the materialized softmax's in-place rescale `y[k] = y[k] / s` does: each element is then
/// read and written by its own lane of its own iteration, whatever the unrolling), and f32/bool/i32 values from
/// outside (splatted).
pub(super) fn nested_plan(
    loops: &[Loop],
    body: &Block,
    yields: Option<ValueId>,
    types: &ValueTypes,
) -> Option<Var> {
    let inner = loops.last()?;
    if inner.extent < LANES as usize {
        return None;
    }
    let k = inner.var;
    let vector_type = |id: ValueId| matches!(types[id.index()], Some(DType::F32 | DType::Bool));
    let int_type = |id: ValueId| types[id.index()] == Some(DType::I32);
    if yields.is_some_and(|y| !vector_type(y)) {
        return None;
    }
    let (mut loaded, mut stored) = (Vec::new(), Vec::new());
    for inst in &body.insts {
        match inst {
            // i32 lanes for index arithmetic (a causal mask): `index`, constants, `add`/`sub`, compared into a mask.
            Inst::Let { id, op, .. } if int_type(*id) => {
                let ok = match op {
                    ScalarOp::Index(_) | ScalarOp::Const { .. } => true,
                    ScalarOp::Binary(BinaryOp::Add | BinaryOp::Sub, ..) => {
                        op.operands().into_iter().all(int_type)
                    }
                    ScalarOp::Binary(..)
                    | ScalarOp::Load { .. }
                    | ScalarOp::LoadOr { .. }
                    | ScalarOp::LoadAt { .. }
                    | ScalarOp::MatmulAcc
                    | ScalarOp::Unary(..)
                    | ScalarOp::Cast(_)
                    | ScalarOp::Compare(..)
                    | ScalarOp::Select(..) => false,
                };
                if !ok {
                    return None;
                }
            }
            Inst::Let { id, op, .. } => {
                let compares_ints =
                    matches!(op, ScalarOp::Compare(..)) && op.operands().into_iter().all(int_type);
                if !vector_type(*id)
                    || !(compares_ints || op.operands().into_iter().all(vector_type))
                {
                    return None;
                }
                match op {
                    ScalarOp::Load { buffer, index } if index.stride_of(k) <= 1 => {
                        loaded.push((*buffer, index))
                    }
                    ScalarOp::Load { .. }
                    | ScalarOp::LoadOr { .. }
                    | ScalarOp::LoadAt { .. }
                    | ScalarOp::Index(_)
                    | ScalarOp::MatmulAcc => return None,
                    ScalarOp::Const { .. }
                    | ScalarOp::Unary(..)
                    | ScalarOp::Cast(_)
                    | ScalarOp::Binary(..)
                    | ScalarOp::Compare(..)
                    | ScalarOp::Select(..) => {}
                }
            }
            Inst::Store {
                buffer,
                index,
                value,
            } => {
                if index.stride_of(k) != 1
                    || !vector_type(*value)
                    || stored.iter().any(|(b, _)| b == buffer)
                {
                    return None;
                }
                stored.push((*buffer, index));
            }
            Inst::Reduce { .. } | Inst::For { .. } => return None,
        }
    }
    let conflict = |(buffer, index): &(BufferId, &IndexExpr)| {
        stored.iter().any(|(b, i)| b == buffer && i != index)
    };
    if loaded.iter().any(conflict) {
        return None;
    }
    Some(k)
}

/// What a reduction does after a copy of the vector body: `(emitter, copy, copies in this iteration, values of the
/// body)`.
pub(super) type VectorStep<'s, 'a, 'b> =
    dyn FnMut(&mut Emitter<'a, 'b>, usize, usize, &HashMap<usize, Value>) + 's;

impl<'a, 'b> Emitter<'a, 'b> {
    /// `do { body; k += step } while k < end` as a bottom-tested block looping on itself, `k` starting below `end`:
    /// the one shape of the wide, vector and scalar loops over the innermost reduction variable `k` of
    /// [`Self::nested_vector_loops`]. The step adds to `k` as `body` leaves it.
    fn step_loop(&mut self, k: Var, step: i64, end: i64, body: &mut dyn FnMut(&mut Self)) {
        let loop_block = self.b.create_block();
        let done = self.b.create_block();
        self.b.ins().jump(loop_block, &[]);
        self.b.switch_to_block(loop_block);
        body(self);
        let kv = self.get_var(k);
        let k_next = self.b.ins().iadd_imm_s(kv, step);
        self.set_var(k, k_next);
        let more = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, k_next, end);
        self.b.ins().brif(more, loop_block, &[], done, &[]);
        self.b.switch_to_block(done);
    }

    /// A `for` whose innermost loop `k` passed [`nested_plan`]: 16 points at a time (four copies of the body), then
    /// 4, then the rest one at a time, each point computed with the same operations either way.
    pub(super) fn vector_for(&mut self, loops: &[Loop], body: &Block) {
        self.nested_vector_loops(
            loops,
            body,
            None,
            UNROLL,
            LANES,
            &mut |_, _, _, _| {},
            &mut |_| {},
        );
    }

    /// The outer loops of the nest, around: `k` `lanes·unroll` points at a time (while they fit; `unroll` copies of
    /// the vector body, `vector_step(copy, unroll)` after each), then `lanes` at a time (`vector_step(0, 1)`), then
    /// the points left one at a time (`scalar_step` after each scalar body).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn nested_vector_loops(
        &mut self,
        loops: &[Loop],
        body: &Block,
        yields: Option<ValueId>,
        unroll: usize,
        lanes: i64,
        vector_step: &mut VectorStep<'_, 'a, 'b>,
        scalar_step: &mut dyn FnMut(&mut Self),
    ) {
        let (outer, inner) = loops.split_at(loops.len() - 1);
        let inner = inner[0];
        let (k, extent) = (inner.var, inner.extent as i64);
        let vector_end = extent / lanes * lanes;
        let defined = let_ids(body);
        let mut outside: Vec<ValueId> = Vec::new();
        for inst in &body.insts {
            let used = match inst {
                Inst::Let { op, .. } => op.operands(),
                Inst::Store { value, .. } => vec![*value],
                Inst::Reduce { .. } | Inst::For { .. } => {
                    unreachable!("nested_plan: no nested loops")
                }
            };
            outside.extend(used.into_iter().filter(|id| !defined.contains(&id.index())));
        }
        outside.extend(yields.filter(|id| !defined.contains(&id.index())));
        self.loop_nest(outer, &mut |e| {
            // Once per point of the outer loops: splats of the values from outside and of the loads that don't move
            // with `k`.
            let zero = e.b.ins().iconst(e.ptr, 0);
            e.set_var(k, zero);
            let mut hoisted: HashMap<usize, Value> = HashMap::new();
            for &id in &outside {
                let x = e.value(id);
                let v = e.splat(x, e.dtype(id));
                hoisted.insert(id.index(), v);
            }
            e.hoist_loads(body, k, &mut hoisted);
            let wide = unroll as i64 * lanes;
            let wide_end = extent / wide * wide;
            let mut k_at = 0;
            // A `for` nest's strips first ([`super::strips`]; a multiple of `wide` points), where it has them.
            if let Some(strips) = e.nest_strips.take() {
                let len = strips.len();
                let strips_end = extent / len * len;
                e.nested_lane_var = Some(k);
                e.step_loop(k, len, strips_end, &mut |e| {
                    let k0 = e.get_var(k);
                    e.strip(&strips, k, k0, &hoisted);
                    e.set_var(k, k0);
                });
                k_at = strips_end;
                e.nest_strips = Some(strips);
            }
            if unroll > 1 && wide_end > k_at {
                e.nested_lane_var = Some(k);
                e.step_loop(k, wide, wide_end, &mut |e| {
                    let k0 = e.get_var(k);
                    for copy in 0..unroll {
                        let kc = e.b.ins().iadd_imm_s(k0, copy as i64 * lanes);
                        e.set_var(k, kc);
                        let mut values = hoisted.clone();
                        e.vector_block(body, &mut values);
                        vector_step(e, copy, unroll, &values);
                    }
                    // The step moves on from the iteration's first point (a definition only: no instruction).
                    e.set_var(k, k0);
                });
                k_at = wide_end;
            }
            e.nested_lane_var = Some(k);
            if vector_end > k_at {
                e.step_loop(k, lanes, vector_end, &mut |e| {
                    let mut values = hoisted.clone();
                    e.vector_block(body, &mut values);
                    vector_step(e, 0, 1, &values);
                });
            }
            e.nested_lane_var = None;
            if vector_end < extent {
                e.step_loop(k, 1, extent, &mut |e| {
                    e.block(body);
                    scalar_step(e);
                });
            }
        });
    }
}

/// `Some(k)` when a `reduce` of f64 or i32 can run its innermost loop `k` a vector (f64x2, i32x4) at a time: at least
/// that many points, and a body of lets of the reduction's dtype only (loads that move by 1 or 0 elements with `k`,
/// constants, `add sub mul max min neg abs`), with operands of that dtype.
pub(super) fn typed_nested_plan(
    loops: &[Loop],
    body: &Block,
    value: ValueId,
    dtype: DType,
    types: &ValueTypes,
) -> Option<Var> {
    if !matches!(dtype, DType::F64 | DType::I32) {
        return None;
    }
    let inner = loops.last()?;
    if (inner.extent as i64) < Shape::Vector.lanes(dtype) {
        return None;
    }
    let k = inner.var;
    let typed = |id: ValueId| types[id.index()] == Some(dtype);
    if !typed(value) {
        return None;
    }
    for inst in &body.insts {
        let Inst::Let { id, op, .. } = inst else {
            return None;
        };
        if !typed(*id) || !op.operands().into_iter().all(typed) {
            return None;
        }
        let ok = match op {
            ScalarOp::Load { index, .. } => index.stride_of(k) <= 1,
            ScalarOp::LoadOr { .. } | ScalarOp::LoadAt { .. } => false,
            ScalarOp::Const { .. } => true,
            ScalarOp::Binary(op, ..) => has_vector_lanes(*op),
            ScalarOp::Unary(op, _) => match op {
                UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round
                | UnaryOp::Trunc => true,
                UnaryOp::Sqrt
                | UnaryOp::Recip
                | UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Tanh
                | UnaryOp::Logistic
                | UnaryOp::Erf
                | UnaryOp::Sin
                | UnaryOp::Cos => false,
            },
            ScalarOp::Index(_)
            | ScalarOp::MatmulAcc
            | ScalarOp::Cast(_)
            | ScalarOp::Compare(..)
            | ScalarOp::Select(..) => false,
        };
        if !ok {
            return None;
        }
    }
    Some(k)
}

/// How a `reduce` runs its innermost loop a vector at a time ([`super::fold`]'s `nested_reduce`).
#[derive(Clone, Copy, Debug)]
pub(super) struct ReducePlan {
    /// Vector accumulators (and copies of the body per iteration while they fit).
    pub unroll: usize,
}

/// The vector plan of a `reduce` of `dtype` in scalar code, if any: an f32 sum or max whose nest passed
/// [`nested_plan`] (four accumulators), or an f64/i32 one that passed [`typed_nested_plan`] (one).
pub(super) fn reduce_plan(
    loops: &[Loop],
    body: &Block,
    value: ValueId,
    dtype: DType,
    types: &ValueTypes,
) -> Option<ReducePlan> {
    match dtype {
        DType::F32 => {
            nested_plan(loops, body, Some(value), types).map(|_| ReducePlan { unroll: UNROLL })
        }
        DType::F64 | DType::I32 => {
            typed_nested_plan(loops, body, value, dtype, types).map(|_| ReducePlan { unroll: 1 })
        }
        DType::Bool => None,
    }
}

/// Whether an i32 (or f64) binary op has a lane-by-lane vector form that computes each lane as the scalar code does.
fn has_vector_lanes(op: BinaryOp) -> bool {
    match op {
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Xor => true,
        // x86 has no vector integer division; f64 `div`/`pow` stay scalar (so do their sums' orders).
        // Cranelift's vector shifts take one amount for all lanes and it has no i32x4 `umulhi`.
        BinaryOp::Div | BinaryOp::Pow | BinaryOp::Shl | BinaryOp::Shr | BinaryOp::MulHi => false,
    }
}
