//! The ops that lower to guarded loads: `pad` and `overlap_add` (`load.or`), whose elements are read from their
//! operand's buffer only where per-dim guards on the coordinates hold, and are a fill value elsewhere; and `gather`
//! (`load.at`), whose guard is on an index value read at run time.

use super::{Emitter, LowerError, Result};
use crate::kernel::{GuardedDim, IndexExpr, Inst, Loop, ReduceKind, ScalarOp, ValueId, Var};
use kiln_ir::NodeId;

impl Emitter<'_> {
    /// A `pad` at `coords`: a guarded load of its operand's buffer at `coords − low`, or the fill.
    pub(super) fn pad(
        &mut self,
        node: NodeId,
        coords: &[IndexExpr],
        low: &[usize],
        fill: f64,
    ) -> Result<ValueId> {
        let operand = self.graph.node(node).operands[0];
        let dtype = self.graph.ty(node).dtype;
        let Some(buffer) = self.outside_buffer(operand) else {
            return Err(LowerError::Materialize(operand));
        };
        let ty = self.graph.ty(operand);
        if ty.numel() == 0 {
            return Ok(self.let_(dtype, ScalarOp::constant(fill)));
        }
        let strides = ty.shape.strides();
        let dims = coords
            .iter()
            .enumerate()
            .map(|(d, c)| GuardedDim::shifted(c, low[d], ty.dims()[d], strides[d]))
            .collect();
        let fill = fill.to_bits();
        Ok(self.let_(dtype, ScalarOp::LoadOr { buffer, dims, fill }))
    }

    /// A `gather` along `axis` at `coords`, given the index's value `at` there: a `load.at` of the buffer under `x`,
    /// followed through its views with the axis coordinate a placeholder variable. The placeholder's coefficient is
    /// the stride per index step; the rest is the element at index 0. A view that isn't affine in the coordinates,
    /// or an `x` computed in this kernel, is materialized first.
    pub(super) fn gather(
        &mut self,
        node: NodeId,
        coords: &[IndexExpr],
        axis: usize,
        at: ValueId,
    ) -> Result<ScalarOp> {
        let x = self.graph.node(node).operands[0];
        let ty = self.graph.ty(x);
        let extent = ty.dims()[axis];
        if ty.numel() == 0 {
            // Every index is out of range (or there is no element to read): the result is all zeros.
            return Ok(ScalarOp::constant(0.0));
        }
        let level = coords.iter().map(|c| self.expr_level(c)).max().unwrap_or(0);
        let placeholder = self.new_var(extent, level);
        let mut c = coords.to_vec();
        c[axis] = self.var_expr(placeholder);
        let mut under = x;
        let buffer = loop {
            if let Some(buffer) = self.outside_buffer(under) {
                break buffer;
            }
            match self.view_operand(under, &c) {
                Some(Some((operand, mapped))) => (under, c) = (operand, mapped),
                _ => return Err(LowerError::Materialize(under)),
            }
        };
        let full = self.linear(&c, self.graph.ty(under).dims());
        let stride = full
            .terms
            .iter()
            .filter(|(v, _)| *v == placeholder)
            .map(|(_, s)| s)
            .sum();
        let index = IndexExpr {
            offset: full.offset,
            terms: full
                .terms
                .into_iter()
                .filter(|(v, _)| *v != placeholder)
                .collect(),
        };
        Ok(ScalarOp::LoadAt {
            buffer,
            index,
            at,
            stride,
            extent,
        })
    }

    /// An `overlap_add` at `coords` (`[lead.., y..]`): a `reduce.sum` over the window positions `a` (row-major) of
    /// the operand's element `[lead.., (y − a·dilation)/stride, a]` where that is a whole window index in range, else
    /// 0. Its operand must be in a buffer.
    pub(super) fn overlap_add(
        &mut self,
        node: NodeId,
        coords: &[IndexExpr],
        stride: &[usize],
        dilation: &[usize],
    ) -> Result<ValueId> {
        let operand = self.graph.node(node).operands[0];
        let dtype = self.graph.ty(node).dtype;
        let Some(buffer) = self.outside_buffer(operand) else {
            return Err(LowerError::Materialize(operand));
        };
        let ty = self.graph.ty(operand).clone();
        if ty.numel() == 0 {
            return Ok(self.let_(dtype, ScalarOp::constant(0.0)));
        }
        let (dims, strides) = (ty.dims(), ty.shape.strides());
        let s = stride.len();
        let lead = dims.len() - 2 * s;
        let level = coords.iter().map(|c| self.expr_level(c)).max().unwrap_or(0);
        // One variable per window dim wider than 1 (a window of 1 is always position 0).
        let mut loops = Vec::new();
        let window_vars: Vec<Option<Var>> = dims[lead + s..]
            .iter()
            .map(|&k| {
                (k > 1).then(|| {
                    let var = self.new_var(k, level + 1);
                    loops.push(Loop { var, extent: k });
                    var
                })
            })
            .collect();
        let signed = |c: &IndexExpr| -> Vec<(Var, i64)> {
            c.terms.iter().map(|&(v, t)| (v, t as i64)).collect()
        };
        let mut guarded: Vec<GuardedDim> = (0..lead)
            .map(|d| GuardedDim::shifted(&coords[d], 0, dims[d], strides[d]))
            .collect();
        for d in 0..s {
            let y = &coords[lead + d];
            let mut terms = signed(y);
            if let Some(a) = window_vars[d] {
                terms.push((a, -(dilation[d] as i64)));
            }
            terms.sort();
            guarded.push(GuardedDim {
                offset: y.offset as i64,
                terms,
                step: stride[d],
                extent: dims[lead + d],
                stride: strides[lead + d],
            });
        }
        for d in 0..s {
            guarded.push(GuardedDim {
                offset: 0,
                terms: window_vars[d].map(|a| (a, 1)).into_iter().collect(),
                step: 1,
                extent: dims[lead + s + d],
                stride: strides[lead + s + d],
            });
        }
        let load = ScalarOp::LoadOr {
            buffer,
            dims: guarded,
            fill: 0f64.to_bits(),
        };
        if loops.is_empty() {
            return Ok(self.let_(dtype, load));
        }
        self.record_reduce(node, level, coords);
        let vars = loops.iter().map(|l| l.var).collect();
        let (value, body) = self.nested(level + 1, vars, |e| Ok(e.let_(dtype, load)))?;
        let id = self.new_value(level);
        self.frames[level].insts.push(Inst::Reduce {
            id,
            dtype,
            kind: ReduceKind::Sum,
            loops,
            body,
            value,
        });
        Ok(id)
    }
}
