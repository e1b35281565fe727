//! The f32x4 loop over the innermost parallel dimension (see the parent module's doc).
//!
//! Values are f32x4 (f32) or i32x4 masks of all-ones / zero (bool). A load or store that moves by one element with
//! the innermost variable `j` is a vector access at `j`; a load that doesn't move with `j` is loaded once per row,
//! before the loop, and splatted (inside a reduction, where it may move with the reduction's loops, once per
//! iteration). A `reduce` over other loops (a column sum) keeps an f32x4 accumulator: lane `l` folds point `j + l`'s
//! values in the scalar code's order (a max with `maxps` and a NaN mask, then again with `fmax` if that could
//! differ, as [`Emitter::vector_reduce`] does). Each lane computes exactly what the scalar loop computes for its
//! point: the same IEEE operations, and the math library's code, which gives the same bits for one lane or four.

use super::check::ValueTypes;
use super::{clif_type, Emitter};
use crate::kernel::{
    Block, BufferId, IndexExpr, Inst, Kernel, KernelProgram, Loop, ReduceKind, ScalarOp, ValueId,
    Var,
};
use cranelift_codegen::ir::{
    condcodes::{FloatCC, IntCC},
    types, Block as ClifBlock, InstBuilder, MemFlagsData, Type, Value,
};
use kiln_ir::{BinaryOp, CmpDir, DType, UnaryOp};
use std::collections::HashMap;

const LANES: i64 = 4;
/// Vector accumulators of a reduction.
const UNROLL: usize = 4;
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
        .any(|t| !matches!(t, DType::F32 | DType::Bool))
    {
        return None;
    }
    let let_ok = |op: &ScalarOp, nested: bool| match op {
        ScalarOp::Load { index, .. } => index.stride_of(j) <= 1,
        ScalarOp::Index(_) => false,
        // The scratch is indexed by the parallel point, not by a reduction's variables.
        ScalarOp::MatmulAcc => !nested,
        ScalarOp::Const { .. }
        | ScalarOp::Unary(..)
        | ScalarOp::Cast(_)
        | ScalarOp::Binary(..)
        | ScalarOp::Compare(..)
        | ScalarOp::Select(..) => true,
    };
    let mut reduces = false;
    let ok = kernel.body().insts.iter().all(|inst| match inst {
        Inst::Let { op, .. } => let_ok(op, false),
        Inst::Store { index, .. } => index.stride_of(j) == 1,
        // A reduction over other loops (a column sum: `load b[cols·i + j]`) runs with a lane per parallel point:
        // each lane folds its point's values in the scalar code's order. That order must be the one the scalar loop
        // uses for the same point, or a point's bits would depend on where a thread's chunk starts: a reduction the
        // scalar loop vectorizes along its own loop ([`nested_plan`]: a sum reassociated, a max's NaN picked from
        // another lane) keeps that plan instead.
        Inst::Reduce {
            dtype: DType::F32,
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
                    Inst::Let { op, .. } => let_ok(op, true),
                    Inst::Store { .. } | Inst::Reduce { .. } | Inst::For { .. } => false,
                })
        }
        Inst::Reduce { .. } | Inst::For { .. } => false,
    });
    ok.then_some(Plan { j, reduces })
}

fn vector_flags() -> MemFlagsData {
    // In bounds (checked), but only element-aligned.
    MemFlagsData::new().with_notrap()
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
    fn next_if_fits(
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

    fn splat(&mut self, scalar: Value, dtype: DType) -> Value {
        match dtype {
            DType::Bool => {
                // 0/1 → 0/-1, the mask of a lane.
                let wide = self.b.ins().uextend(types::I32, scalar);
                let mask = self.b.ins().ineg(wide);
                self.b.ins().splat(types::I32X4, mask)
            }
            _ => self.b.ins().splat(types::F32X4, scalar),
        }
    }

    fn vector_block(&mut self, block: &Block, values: &mut HashMap<usize, Value>) {
        for inst in &block.insts {
            match inst {
                Inst::Let { id, dtype, op } => {
                    if values.contains_key(&id.index()) {
                        continue; // hoisted
                    }
                    let v = match self.contract.get(&id.index()) {
                        Some(&c) => self.contracted(c, |v| values[&v.index()]),
                        None => self.vector_op(op, *dtype, values),
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
                    let empty = self.constant(super::empty_fold(*kind, dtype));
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
                    // with `ordered_max`, again with `fmax` where that could differ, as `vector_reduce` does).
                    let result = match kind {
                        ReduceKind::Sum => {
                            self.lane_fold(*kind, false, loops, body, *value, values).0
                        }
                        ReduceKind::Max => self.max_with_exact_fallback(
                            |e| {
                                let (result, nan) =
                                    e.lane_fold(*kind, true, loops, body, *value, values);
                                (result, nan.expect("ordered folds keep a NaN mask"))
                            },
                            |e| e.lane_fold(*kind, false, loops, body, *value, values).0,
                        ),
                    };
                    values.insert(id.index(), result);
                }
                Inst::For { .. } => {
                    unreachable!("plan: no for loops in vector kernels")
                }
            }
        }
    }

    /// A `reduce` over other loops in the vector kernel: lane `l` folds point `j + l`'s values over `loops` in the
    /// scalar code's order; `ordered`: a max folds with [`Self::ordered_max`] and also returns the NaN mask.
    fn lane_fold(
        &mut self,
        kind: ReduceKind,
        ordered: bool,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
        values: &HashMap<usize, Value>,
    ) -> (Value, Option<Value>) {
        let identity = match kind {
            ReduceKind::Sum => -0.0f32,
            ReduceKind::Max => f32::NEG_INFINITY,
        };
        let identity = self.b.ins().f32const(identity);
        let init = self.b.ins().splat(types::F32X4, identity);
        let acc = self.b.declare_var(types::F32X4);
        self.b.def_var(acc, init);
        let nan = (ordered && kind == ReduceKind::Max).then(|| {
            let v = self.b.declare_var(types::I32X4);
            let zero = self.b.ins().iconst(types::I32, 0);
            let none = self.b.ins().splat(types::I32X4, zero);
            self.b.def_var(v, none);
            v
        });
        self.loop_nest(loops, &mut |e| {
            let mut inner = values.clone();
            e.vector_block(body, &mut inner);
            let x = inner[&value.index()];
            let a = e.b.use_var(acc);
            let folded = match (kind, nan) {
                (ReduceKind::Sum, _) => e.b.ins().fadd(a, x),
                (ReduceKind::Max, None) => e.b.ins().fmax(a, x),
                (ReduceKind::Max, Some(nan)) => {
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

    fn vector_op(&mut self, op: &ScalarOp, dtype: DType, values: &HashMap<usize, Value>) -> Value {
        let v = |id: &crate::kernel::ValueId| values[&id.index()];
        match op {
            ScalarOp::Load { buffer, index }
                if self.lane_var.is_some_and(|j| index.stride_of(j) == 0) =>
            {
                // The same element for every lane (inside a reduction over other loops; elsewhere such loads are
                // hoisted).
                let addr = self.address(*buffer, index);
                let x = self
                    .b
                    .ins()
                    .load(clif_type(dtype), super::elem_flags(), addr, 0);
                self.splat(x, dtype)
            }
            ScalarOp::Load { buffer, index } => {
                let addr = self.address(*buffer, index);
                self.vector_load(addr, dtype)
            }
            ScalarOp::MatmulAcc => {
                let point = self.point_index();
                let i = self.index(&point);
                let base = self.scratch.expect("checked: matmul.acc only in matmuls");
                let addr = self.element_address(base, i, dtype.size_bytes());
                self.vector_load(addr, dtype)
            }
            ScalarOp::Const { bits } => {
                let x = self.constant(crate::kernel::scalar::Scalar::from_f64(
                    f64::from_bits(*bits),
                    dtype,
                ));
                self.splat(x, dtype)
            }
            ScalarOp::Index(_) => unreachable!("plan: no index in vector kernels"),
            ScalarOp::Unary(u, x) => {
                let x = v(x);
                match (dtype, u) {
                    (DType::Bool, _) => x,
                    (_, UnaryOp::Neg) => self.b.ins().fneg(x),
                    (_, UnaryOp::Abs) => self.b.ins().fabs(x),
                    (_, UnaryOp::Sqrt) => self.b.ins().sqrt(x),
                    (_, UnaryOp::Recip) => {
                        let one = self.b.ins().f32const(1.0f32);
                        let one = self.b.ins().splat(types::F32X4, one);
                        self.b.ins().fdiv(one, x)
                    }
                    (_, UnaryOp::Exp) => self.math.exp(self.b, x),
                    (_, UnaryOp::Log) => self.math.log(self.b, x),
                    (_, UnaryOp::Tanh) => self.math.tanh(self.b, x),
                    (_, UnaryOp::Logistic) => self.math.logistic(self.b, x),
                }
            }
            ScalarOp::Cast(x) => {
                let from = self.dtype(*x);
                let x = v(x);
                match (from, dtype) {
                    (a, b) if a == b => x,
                    (DType::F32, DType::Bool) => {
                        let zero = self.b.ins().f32const(0.0f32);
                        let zero = self.b.ins().splat(types::F32X4, zero);
                        self.b.ins().fcmp(FloatCC::NotEqual, x, zero)
                    }
                    (DType::Bool, DType::F32) => {
                        let one = self.b.ins().f32const(1.0f32);
                        let one = self.b.ins().splat(types::F32X4, one);
                        let zero = self.b.ins().f32const(0.0f32);
                        let zero = self.b.ins().splat(types::F32X4, zero);
                        self.mask_select(x, one, zero)
                    }
                    _ => unreachable!("plan: f32 and bool only"),
                }
            }
            ScalarOp::Binary(BinaryOp::Div, x, y) if self.reciprocals.contains_key(&y.index()) => {
                // As the scalar code: `x · (1/s)` (see `Emitter::for_loops`).
                let r = self.reciprocals[&y.index()];
                let r = self.b.ins().splat(types::F32X4, r);
                self.b.ins().fmul(v(x), r)
            }
            ScalarOp::Binary(op, x, y) => {
                let (x, y) = (v(x), v(y));
                match op {
                    BinaryOp::Add => self.b.ins().fadd(x, y),
                    BinaryOp::Sub => self.b.ins().fsub(x, y),
                    BinaryOp::Mul => self.b.ins().fmul(x, y),
                    BinaryOp::Div => self.b.ins().fdiv(x, y),
                    BinaryOp::Max => self.b.ins().fmax(x, y),
                    BinaryOp::Min => self.b.ins().fmin(x, y),
                    BinaryOp::Pow => self.math.pow(self.b, x, y),
                }
            }
            ScalarOp::Compare(dir, x, y) => {
                let operands = self.dtype(*x);
                let (x, y) = (v(x), v(y));
                if operands == DType::Bool {
                    let cc = if *dir == CmpDir::Eq {
                        IntCC::Equal
                    } else {
                        IntCC::NotEqual
                    };
                    return self.b.ins().icmp(cc, x, y);
                }
                // `x > y` as `y < x` (the same IEEE predicate): `select(y < x, x, y)` then lowers to one `maxps` on
                // x86 (ReLU's `select(x > 0, x, 0)`), `select(x < y, x, y)` to one `minps`.
                let (cc, x, y) = match dir {
                    CmpDir::Lt => (FloatCC::LessThan, x, y),
                    CmpDir::Le => (FloatCC::LessThanOrEqual, x, y),
                    CmpDir::Gt => (FloatCC::LessThan, y, x),
                    CmpDir::Ge => (FloatCC::LessThanOrEqual, y, x),
                    CmpDir::Eq => (FloatCC::Equal, x, y),
                    CmpDir::Ne => (FloatCC::NotEqual, x, y),
                };
                self.b.ins().fcmp(cc, x, y)
            }
            ScalarOp::Select(c, x, y) => {
                let (c, x, y) = (v(c), v(x), v(y));
                self.mask_select(c, x, y)
            }
        }
    }

    /// `mask ? x : y` lane by lane (`mask` an i32x4 of all-ones or zero lanes).
    fn mask_select(&mut self, mask: Value, x: Value, y: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        let mask = if ty == types::I32X4 {
            mask
        } else {
            self.b.ins().bitcast(ty, MemFlagsData::new(), mask)
        };
        self.b.ins().bitselect(mask, x, y)
    }

    fn vector_load(&mut self, addr: Value, dtype: DType) -> Value {
        if dtype != DType::Bool {
            return self.b.ins().load(types::F32X4, vector_flags(), addr, 0);
        }
        let mut mask = None;
        for lane in 0..LANES as u8 {
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
/// a body of straight-line f32/bool code (lets and stores only, no `index` or `matmul.acc`), loads that move by 1 or
/// 0 elements with `k`, stores that move by 1 (at most one per buffer; a buffer the body also loads only at the
/// store's own index, as the materialized softmax's in-place rescale `y[k] = y[k] / s` does: each element is then
/// read and written by its own lane of its own iteration, whatever the unrolling), and f32/bool values from outside
/// (splatted).
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
    if yields.is_some_and(|y| !vector_type(y)) {
        return None;
    }
    let (mut loaded, mut stored) = (Vec::new(), Vec::new());
    for inst in &body.insts {
        match inst {
            Inst::Let { id, op, .. } => {
                if !vector_type(*id) || !op.operands().into_iter().all(vector_type) {
                    return None;
                }
                match op {
                    ScalarOp::Load { buffer, index } if index.stride_of(k) <= 1 => {
                        loaded.push((*buffer, index))
                    }
                    ScalarOp::Load { .. } | ScalarOp::Index(_) | ScalarOp::MatmulAcc => {
                        return None
                    }
                    _ => {}
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
type VectorStep<'s, 'a, 'b> =
    dyn FnMut(&mut Emitter<'a, 'b>, usize, usize, &HashMap<usize, Value>) + 's;

impl<'a, 'b> Emitter<'a, 'b> {
    /// A `reduce` whose innermost loop `k` passed [`nested_plan`] (f32 sum or max): per point of the outer loops,
    /// `k` runs 16 points at a time into four f32x4 accumulators `a0..a3` (`a_u` takes points `16i + 4u + lane`),
    /// then 4 at a time into `a0`, then the points left (`extent % 4`) into a scalar one. With `a = (a0 ∘ a1) ∘
    /// (a2 ∘ a3)`, the result is `((a.0 ∘ a.1) ∘ (a.2 ∘ a.3)) ∘ tail`: a fixed order for every output element.
    /// (Several accumulators keep the loop from waiting on one `fmax`/`fadd` chain.)
    ///
    /// A max folds its vectors with [`Self::ordered_max`] (one `maxps`, where `fmax` is nine instructions) and
    /// or-s `x ≠ x` into a NaN mask; the nest runs again with `fmax` where that could differ from `fmax`'s result
    /// ([`Self::max_with_exact_fallback`]).
    pub(super) fn vector_reduce(
        &mut self,
        kind: ReduceKind,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
    ) -> Value {
        match kind {
            ReduceKind::Sum => self.vector_fold(kind, false, loops, body, value).0,
            ReduceKind::Max => self.max_with_exact_fallback(
                |e| {
                    let (result, nan) = e.vector_fold(kind, true, loops, body, value);
                    (result, nan.expect("ordered folds keep a NaN mask"))
                },
                |e| e.vector_fold(kind, false, loops, body, value).0,
            ),
        }
    }

    /// [`Self::vector_reduce`]'s loops; `ordered`: a max folds vectors with [`Self::ordered_max`] and also returns
    /// the or of `x ≠ x` over them (an i32x4 mask; the scalar tail and the final combination use `fmax`).
    fn vector_fold(
        &mut self,
        kind: ReduceKind,
        ordered: bool,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
    ) -> (Value, Option<Value>) {
        let identity = match kind {
            ReduceKind::Sum => -0.0f32,
            ReduceKind::Max => f32::NEG_INFINITY,
        };
        let fold = |e: &mut Self, a: Value, x: Value| match kind {
            ReduceKind::Sum => e.b.ins().fadd(a, x),
            ReduceKind::Max => e.b.ins().fmax(a, x),
        };
        let ordered = ordered && kind == ReduceKind::Max;
        let acc = self.b.declare_var(types::F32);
        let init = self.b.ins().f32const(identity);
        self.b.def_var(acc, init);
        let vinit = self.b.ins().splat(types::F32X4, init);
        let vaccs: Vec<_> = (0..UNROLL)
            .map(|_| {
                let v = self.b.declare_var(types::F32X4);
                self.b.def_var(v, vinit);
                v
            })
            .collect();
        let nan = ordered.then(|| {
            let v = self.b.declare_var(types::I32X4);
            let zero = self.b.ins().iconst(types::I32, 0);
            let none = self.b.ins().splat(types::I32X4, zero);
            self.b.def_var(v, none);
            v
        });
        let (mut unpaired, mut masks) = (None, Vec::new());
        self.nested_vector_loops(
            loops,
            body,
            Some(value),
            UNROLL,
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
                    None => fold(e, a, x),
                };
                e.b.def_var(vaccs[copy], folded);
            },
            &mut |e| {
                let a = e.b.use_var(acc);
                let x = e.value(value);
                let folded = fold(e, a, x);
                e.b.def_var(acc, folded);
            },
        );
        let v: Vec<Value> = vaccs.iter().map(|&a| self.b.use_var(a)).collect();
        let low = fold(self, v[0], v[1]);
        let high = fold(self, v[2], v[3]);
        let v = fold(self, low, high);
        let lanes: Vec<Value> = (0..LANES as u8)
            .map(|lane| self.b.ins().extractlane(v, lane))
            .collect();
        let low = fold(self, lanes[0], lanes[1]);
        let high = fold(self, lanes[2], lanes[3]);
        let lanes = fold(self, low, high);
        let tail = self.b.use_var(acc);
        let result = fold(self, lanes, tail);
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
    fn max_with_exact_fallback(
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

    /// `do { body; k += step } while k < end` as a bottom-tested block looping on itself, `k` starting below `end`:
    /// the one shape of the wide, vector and scalar loops over the innermost reduction variable `k` of
    /// [`Self::nested_vector_loops`] and [`Self::typed_reduce`]. The step adds to `k` as `body` leaves it.
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
        self.nested_vector_loops(loops, body, None, UNROLL, &mut |_, _, _, _| {}, &mut |_| {});
    }

    /// The outer loops of the nest, around: `k` `4·unroll` points at a time (while they fit; `unroll` copies of the
    /// vector body, `vector_step(copy, unroll)` after each), then 4 at a time (`vector_step(0, 1)`), then the
    /// points left one at a time (`scalar_step` after each scalar body).
    fn nested_vector_loops(
        &mut self,
        loops: &[Loop],
        body: &Block,
        yields: Option<ValueId>,
        unroll: usize,
        vector_step: &mut VectorStep<'_, 'a, 'b>,
        scalar_step: &mut dyn FnMut(&mut Self),
    ) {
        let (outer, inner) = loops.split_at(loops.len() - 1);
        let inner = inner[0];
        let (k, extent) = (inner.var, inner.extent as i64);
        let vector_end = extent / LANES * LANES;
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
            let wide = unroll as i64 * LANES;
            let wide_end = extent / wide * wide;
            let mut k_at = 0;
            if unroll > 1 && wide_end > 0 {
                e.step_loop(k, wide, wide_end, &mut |e| {
                    let k0 = e.get_var(k);
                    for copy in 0..unroll {
                        let kc = e.b.ins().iadd_imm_s(k0, copy as i64 * LANES);
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
            if vector_end > k_at {
                e.step_loop(k, LANES, vector_end, &mut |e| {
                    let mut values = hoisted.clone();
                    e.vector_block(body, &mut values);
                    vector_step(e, 0, 1, &values);
                });
            }
            if vector_end < extent {
                e.step_loop(k, 1, extent, &mut |e| {
                    e.block(body);
                    scalar_step(e);
                });
            }
        });
    }
}

/// The vector type and lane count of a reduction of `dtype` other than f32 ([`typed_nested_plan`]).
fn typed_lanes(dtype: DType) -> Option<(Type, i64)> {
    match dtype {
        DType::F64 => Some((types::F64X2, 2)),
        DType::I32 => Some((types::I32X4, 4)),
        DType::F32 | DType::Bool => None,
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
    let (_, lanes) = typed_lanes(dtype)?;
    let inner = loops.last()?;
    if (inner.extent as i64) < lanes {
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
            ScalarOp::Const { .. } => true,
            ScalarOp::Binary(op, ..) => matches!(
                op,
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min
            ),
            ScalarOp::Unary(op, _) => matches!(op, UnaryOp::Neg | UnaryOp::Abs),
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    Some(k)
}

impl Emitter<'_, '_> {
    /// A `reduce` of f64 or i32 that passed [`typed_nested_plan`]: per point of the outer loops, `k` runs a vector
    /// (f64x2 or i32x4) at a time into one vector accumulator (lane `l` takes the points `k ≡ l` mod the lane
    /// count), then the points left into a scalar one; the result is `(lanes folded pairwise: (a.0 ∘ a.1) ∘ (a.2 ∘
    /// a.3)) ∘ tail`, a fixed order for every output element. An i32 sum wraps and max is exact, so both equal the
    /// interpreter's fold; an f64 sum is reassociated, as f32 sums are.
    ///
    /// An f64 max folds its vectors with [`Self::ordered_max`] (one `maxpd`) and a NaN mask, and runs again with
    /// `fmax` where that could differ ([`Self::max_with_exact_fallback`]), as an f32 max does.
    pub(super) fn typed_reduce(
        &mut self,
        kind: ReduceKind,
        dtype: DType,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
    ) -> Value {
        if (kind, dtype) == (ReduceKind::Max, DType::F64) {
            return self.max_with_exact_fallback(
                |e| {
                    let (result, nan) = e.typed_fold(kind, dtype, true, loops, body, value);
                    (result, nan.expect("ordered folds keep a NaN mask"))
                },
                |e| e.typed_fold(kind, dtype, false, loops, body, value).0,
            );
        }
        self.typed_fold(kind, dtype, false, loops, body, value).0
    }

    /// [`Self::typed_reduce`]'s loops; `ordered`: an f64 max folds vectors with [`Self::ordered_max`] and also
    /// returns the or of `x ≠ x` over them (an i64x2 mask; the scalar tail and the combination use `fmax`).
    fn typed_fold(
        &mut self,
        kind: ReduceKind,
        dtype: DType,
        ordered: bool,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
    ) -> (Value, Option<Value>) {
        let (vty, lanes) = typed_lanes(dtype).expect("typed_nested_plan");
        let float = dtype == DType::F64;
        let fold = |e: &mut Self, a: Value, x: Value| match (kind, float) {
            (ReduceKind::Sum, true) => e.b.ins().fadd(a, x),
            (ReduceKind::Sum, false) => e.b.ins().iadd(a, x),
            (ReduceKind::Max, true) => e.b.ins().fmax(a, x),
            (ReduceKind::Max, false) => e.b.ins().smax(a, x),
        };
        let ordered = ordered && (kind, float) == (ReduceKind::Max, true);
        let ty = clif_type(dtype);
        let acc = self.b.declare_var(ty);
        let init = self.reduce_identity(kind, dtype);
        self.b.def_var(acc, init);
        let vacc = self.b.declare_var(vty);
        let vinit = self.b.ins().splat(vty, init);
        self.b.def_var(vacc, vinit);
        let mask_ty = vty.as_int();
        let nan = ordered.then(|| {
            let v = self.b.declare_var(mask_ty);
            let zero = self.b.ins().iconst(mask_ty.lane_type(), 0);
            let none = self.b.ins().splat(mask_ty, zero);
            self.b.def_var(v, none);
            v
        });
        let (outer, inner) = loops.split_at(loops.len() - 1);
        let (k, extent) = (inner[0].var, inner[0].extent as i64);
        let vector_end = extent / lanes * lanes;
        let defined = let_ids(body);
        let mut outside: Vec<ValueId> = Vec::new();
        for inst in &body.insts {
            if let Inst::Let { op, .. } = inst {
                outside.extend(
                    op.operands()
                        .into_iter()
                        .filter(|id| !defined.contains(&id.index())),
                );
            }
        }
        if !defined.contains(&value.index()) {
            outside.push(value);
        }
        self.loop_nest(outer, &mut |e| {
            let zero = e.b.ins().iconst(e.ptr, 0);
            e.set_var(k, zero);
            // Once per point of the outer loops: splats of the values from outside and of the loads that don't move
            // with `k`.
            let mut hoisted: HashMap<usize, Value> = HashMap::new();
            for &id in &outside {
                let x = e.value(id);
                hoisted.insert(id.index(), e.b.ins().splat(vty, x));
            }
            for inst in &body.insts {
                if let Inst::Let {
                    id,
                    op: ScalarOp::Load { buffer, index },
                    ..
                } = inst
                {
                    if index.stride_of(k) == 0 {
                        let addr = e.address(*buffer, index);
                        let x = e.b.ins().load(ty, super::elem_flags(), addr, 0);
                        hoisted.insert(id.index(), e.b.ins().splat(vty, x));
                    }
                }
            }
            if vector_end > 0 {
                e.step_loop(k, lanes, vector_end, &mut |e| {
                    let mut values = hoisted.clone();
                    for inst in &body.insts {
                        let Inst::Let { id, op, .. } = inst else {
                            unreachable!("typed_nested_plan: lets only")
                        };
                        if values.contains_key(&id.index()) {
                            continue; // hoisted
                        }
                        let v = match e.contract.get(&id.index()) {
                            Some(&c) => e.contracted(c, |v| values[&v.index()]),
                            None => e.typed_op(op, dtype, vty, &values),
                        };
                        values.insert(id.index(), v);
                    }
                    let a = e.b.use_var(vacc);
                    let x = values[&value.index()];
                    let folded = match nan {
                        Some(nan) => {
                            let seen = e.b.use_var(nan);
                            let is_nan = e.b.ins().fcmp(FloatCC::Unordered, x, x);
                            let seen = e.b.ins().bor(seen, is_nan);
                            e.b.def_var(nan, seen);
                            e.ordered_max(a, x)
                        }
                        None => fold(e, a, x),
                    };
                    e.b.def_var(vacc, folded);
                });
            }
            if vector_end < extent {
                e.step_loop(k, 1, extent, &mut |e| {
                    e.block(body);
                    let a = e.b.use_var(acc);
                    let x = e.value(value);
                    let folded = fold(e, a, x);
                    e.b.def_var(acc, folded);
                });
            }
        });
        let v = self.b.use_var(vacc);
        let lane: Vec<Value> = (0..lanes as u8)
            .map(|l| self.b.ins().extractlane(v, l))
            .collect();
        let lanes_folded = if lanes == 2 {
            fold(self, lane[0], lane[1])
        } else {
            let low = fold(self, lane[0], lane[1]);
            let high = fold(self, lane[2], lane[3]);
            fold(self, low, high)
        };
        let tail = self.b.use_var(acc);
        let result = fold(self, lanes_folded, tail);
        (result, nan.map(|nan| self.b.use_var(nan)))
    }

    /// One op of a [`typed_nested_plan`] body on vectors of type `vty`.
    fn typed_op(
        &mut self,
        op: &ScalarOp,
        dtype: DType,
        vty: Type,
        values: &HashMap<usize, Value>,
    ) -> Value {
        let float = dtype == DType::F64;
        let v = |id: &ValueId| values[&id.index()];
        match op {
            ScalarOp::Load { buffer, index } => {
                let addr = self.address(*buffer, index);
                self.b.ins().load(vty, vector_flags(), addr, 0)
            }
            ScalarOp::Const { bits } => {
                let x = self.constant(crate::kernel::scalar::Scalar::from_f64(
                    f64::from_bits(*bits),
                    dtype,
                ));
                self.b.ins().splat(vty, x)
            }
            ScalarOp::Binary(op, x, y) => {
                let (x, y) = (v(x), v(y));
                match (op, float) {
                    (BinaryOp::Add, true) => self.b.ins().fadd(x, y),
                    (BinaryOp::Add, false) => self.b.ins().iadd(x, y),
                    (BinaryOp::Sub, true) => self.b.ins().fsub(x, y),
                    (BinaryOp::Sub, false) => self.b.ins().isub(x, y),
                    (BinaryOp::Mul, true) => self.b.ins().fmul(x, y),
                    (BinaryOp::Mul, false) => self.b.ins().imul(x, y),
                    (BinaryOp::Max, true) => self.b.ins().fmax(x, y),
                    (BinaryOp::Max, false) => self.b.ins().smax(x, y),
                    (BinaryOp::Min, true) => self.b.ins().fmin(x, y),
                    (BinaryOp::Min, false) => self.b.ins().smin(x, y),
                    _ => unreachable!("typed_nested_plan: add sub mul max min"),
                }
            }
            ScalarOp::Unary(op, x) => {
                let x = v(x);
                match (op, float) {
                    (UnaryOp::Neg, true) => self.b.ins().fneg(x),
                    (UnaryOp::Neg, false) => self.b.ins().ineg(x),
                    (UnaryOp::Abs, true) => self.b.ins().fabs(x),
                    (UnaryOp::Abs, false) => self.b.ins().iabs(x),
                    _ => unreachable!("typed_nested_plan: neg abs"),
                }
            }
            _ => unreachable!("typed_nested_plan: loads, constants, arithmetic"),
        }
    }
}
