//! Reductions: the sequential fold of a per-point kernel, and the cooperative (workgroup) reductions and strided
//! loops of a [`Plan::Workgroup`](super::plan::Plan::Workgroup) kernel — see "Workgroup kernels" in the parent
//! module doc for the rule and the sum order.

use super::{verified, Coop, Emitter, Result};
use crate::kernel::{Block, Inst, Loop, ReduceKind, ValueId};
use kiln_ir::{BinaryOp, DType};
use rspirv::spirv::{Op, Scope, Word};

impl Emitter<'_> {
    pub(super) fn reduce(
        &mut self,
        dtype: DType,
        kind: ReduceKind,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
    ) -> Result<Word> {
        if loops.iter().any(|l| l.extent == 0) {
            return self.empty_fold(kind, dtype);
        }
        let ty = self.ty(dtype);
        let identity = self.identity(kind, dtype)?;
        let acc = self.function_var(ty);
        self.store_var(acc, identity)?;
        self.loops(loops, &mut |e| {
            e.block(body)?;
            let (x, _) = e.value(value);
            let a = e.load_var(ty, acc)?;
            let folded = e.fold(kind, dtype, a, x)?;
            e.store_var(acc, folded)
        })?;
        self.load_var(ty, acc)
    }

    /// A reduction over no points (SPEC §3.7): +0 for a float sum (a loop would leave the `-0.0` it starts from),
    /// else the identity.
    pub(super) fn empty_fold(&mut self, kind: ReduceKind, dtype: DType) -> Result<Word> {
        match (kind, dtype) {
            (ReduceKind::Sum, DType::F32 | DType::F64) => Ok(self.float_const(dtype, 0.0)),
            _ => self.identity(kind, dtype),
        }
    }

    /// The value a reduction starts from (see the parent module doc).
    pub(super) fn identity(&mut self, kind: ReduceKind, dtype: DType) -> Result<Word> {
        Ok(match (kind, dtype) {
            (ReduceKind::Sum, DType::F32 | DType::F64) => self.float_const(dtype, -0.0),
            (ReduceKind::Sum, DType::I32) => self.i32_const(0),
            (ReduceKind::Max, DType::F32 | DType::F64) => {
                self.float_const(dtype, f64::NEG_INFINITY)
            }
            (ReduceKind::Max, DType::I32) => self.i32_const(i32::MIN),
            (ReduceKind::Sum | ReduceKind::Max, DType::Bool) => verified("a reduction of bool"),
        })
    }

    /// `acc ⊕ x`. Both operators are commutative bit for bit (IEEE addition; `max` returns `a + b` for NaNs and
    /// zero ties, so either order gives the same bits), which the subgroup butterfly relies on.
    pub(super) fn fold(
        &mut self,
        kind: ReduceKind,
        dtype: DType,
        acc: Word,
        x: Word,
    ) -> Result<Word> {
        let op = match kind {
            ReduceKind::Sum => BinaryOp::Add,
            ReduceKind::Max => BinaryOp::Max,
        };
        self.binary(op, dtype, acc, x)
    }

    // ---- workgroup kernels ----

    /// The top-level block of a [`Plan::Workgroup`] kernel. Every invocation of the workgroup runs each `Let` (all
    /// compute the same values); reductions and `for` loops are strided across the workgroup; a top-level store is
    /// made by invocation 0 only.
    pub(super) fn coop_block(&mut self, block: &Block) -> Result<()> {
        let coop = self
            .coop
            .ok_or_else(|| self.invalid("a workgroup block outside a workgroup kernel".into()))?;
        for inst in &block.insts {
            match inst {
                Inst::Let { .. } => self.block(&Block {
                    insts: vec![inst.clone()],
                })?,
                Inst::Reduce {
                    id,
                    dtype,
                    kind,
                    loops,
                    body,
                    value,
                } => {
                    let v = self.coop_reduce(coop, *dtype, *kind, loops, body, *value)?;
                    self.values.insert(*id, (v, *dtype));
                }
                Inst::For { loops, body } => {
                    self.strided(coop, loops, &mut |e| e.block(body))?;
                }
                Inst::Store { .. } => {
                    let zero = self.u32_const(0);
                    let first = self.bool_op(Op::IEqual, &[coop.lid, zero])?;
                    self.if_then(first, &mut |e| {
                        e.block(&Block {
                            insts: vec![inst.clone()],
                        })
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Runs `body` at every point of `loops`, the flattened (row-major) points dealt round-robin to the workgroup's
    /// invocations: invocation `t` runs points `t, t + threads, …` in increasing order.
    pub(super) fn strided(
        &mut self,
        coop: Coop,
        loops: &[Loop],
        body: &mut dyn FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let total: u64 = loops.iter().map(|l| l.extent as u64).product();
        if total == 0 {
            return Ok(());
        }
        let bound = self.u32_const(total as u32);
        let step = coop.threads;
        self.counted_loop(
            coop.lid,
            bound,
            &|e, i| {
                let s = e.u32_const(step);
                e.op(Op::IAdd, e.t_u32, &[i, s])
            },
            &mut |e, i| {
                e.parallel_point(loops, i)?;
                body(e)
            },
        )
    }

    /// A top-level reduction of a workgroup kernel; every invocation gets the result.
    ///
    /// Each invocation folds its strided share of the points in increasing order from the identity. The partial
    /// results are then combined in a fixed order, so a run's result never depends on timing:
    /// - shared memory: a binary tree over `sh[0..threads]`, `sh[t] = sh[t] ⊕ sh[t + s]` for `s = threads/2, …, 1`,
    ///   a barrier after each level; the result is `sh[0]`;
    /// - subgroups: a butterfly of `OpGroupNonUniformShuffleXor` (mask 1, 2, … < `SubgroupSize`) leaves every lane
    ///   with its subgroup's fold (bit-identical in every lane, as ⊕ is commutative), lane 0 writes it to
    ///   `sh[SubgroupId]`, and after a barrier every invocation folds `sh[0..NumSubgroups]` in order itself.
    ///
    /// A last barrier keeps the next reduction's writes from racing with this one's reads of `sh`.
    pub(super) fn coop_reduce(
        &mut self,
        coop: Coop,
        dtype: DType,
        kind: ReduceKind,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
    ) -> Result<Word> {
        if loops.iter().any(|l| l.extent == 0) {
            return self.empty_fold(kind, dtype);
        }
        let ty = self.ty(dtype);
        let identity = self.identity(kind, dtype)?;
        let acc = self.function_var(ty);
        self.store_var(acc, identity)?;
        self.strided(coop, loops, &mut |e| {
            e.block(body)?;
            let (x, _) = e.value(value);
            let a = e.load_var(ty, acc)?;
            let folded = e.fold(kind, dtype, a, x)?;
            e.store_var(acc, folded)
        })?;
        let sh = self.shared_array(ty, coop.threads);
        let zero = self.u32_const(0);
        match coop.subgroup {
            Some(sg) => {
                let one = self.u32_const(1);
                self.counted_loop(
                    one,
                    sg.size,
                    &|e, m| {
                        let two = e.u32_const(2);
                        e.op(Op::IMul, e.t_u32, &[m, two])
                    },
                    &mut |e, m| {
                        let scope = e.u32_const(Scope::Subgroup as u32);
                        let mine = e.load_var(ty, acc)?;
                        let other =
                            e.b.group_non_uniform_shuffle_xor(ty, None, scope, mine, m)
                                .map_err(|err| e.build_err(err))?;
                        let folded = e.fold(kind, dtype, mine, other)?;
                        e.store_var(acc, folded)
                    },
                )?;
                let lane0 = self.bool_op(Op::IEqual, &[sg.lane, zero])?;
                self.if_then(lane0, &mut |e| {
                    let v = e.load_var(ty, acc)?;
                    let p = e.shared_ptr(sh, ty, sg.id)?;
                    e.store_var(p, v)
                })?;
                self.barrier()?;
                let p0 = self.shared_ptr(sh, ty, zero)?;
                let first = self.load_var(ty, p0)?;
                self.store_var(acc, first)?;
                self.counted_loop(
                    one,
                    sg.count,
                    &|e, t| {
                        let one = e.u32_const(1);
                        e.op(Op::IAdd, e.t_u32, &[t, one])
                    },
                    &mut |e, t| {
                        let p = e.shared_ptr(sh, ty, t)?;
                        let x = e.load_var(ty, p)?;
                        let a = e.load_var(ty, acc)?;
                        let folded = e.fold(kind, dtype, a, x)?;
                        e.store_var(acc, folded)
                    },
                )?;
                self.barrier()?;
                self.load_var(ty, acc)
            }
            None => {
                let mine = self.load_var(ty, acc)?;
                let p = self.shared_ptr(sh, ty, coop.lid)?;
                self.store_var(p, mine)?;
                self.barrier()?;
                let mut s = coop.threads / 2;
                while s >= 1 {
                    let sc = self.u32_const(s);
                    let active = self.bool_op(Op::ULessThan, &[coop.lid, sc])?;
                    self.if_then(active, &mut |e| {
                        let other = e.op(Op::IAdd, e.t_u32, &[coop.lid, sc])?;
                        let (pa, pb) = (
                            e.shared_ptr(sh, ty, coop.lid)?,
                            e.shared_ptr(sh, ty, other)?,
                        );
                        let (a, b) = (e.load_var(ty, pa)?, e.load_var(ty, pb)?);
                        let folded = e.fold(kind, dtype, a, b)?;
                        e.store_var(pa, folded)
                    })?;
                    self.barrier()?;
                    s /= 2;
                }
                let p0 = self.shared_ptr(sh, ty, zero)?;
                let r = self.load_var(ty, p0)?;
                self.barrier()?;
                Ok(r)
            }
        }
    }
}
