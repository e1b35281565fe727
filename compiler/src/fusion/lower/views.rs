//! Coordinates and views: the affine index arithmetic of [`Emitter`] (a view maps its consumer's coordinates to its
//! operand's: broadcast, transpose, slice, and reshape where still affine) and the strided matrix views of a matmul's
//! operands.

use super::{Emitter, LowerError, Result};
use crate::fusion::Placement;
use crate::kernel::{BufferId, IndexExpr, MatrixView, Var};
use kiln_ir::{NodeId, Op, Shape};

impl Emitter<'_> {
    /// `offset + Σ stride·var`, merged and sorted, without zero strides or variables of extent ≤ 1 (always 0, or
    /// never run).
    pub(super) fn affine(
        &self,
        offset: usize,
        terms: impl IntoIterator<Item = (Var, usize)>,
    ) -> IndexExpr {
        let mut merged: Vec<(Var, usize)> = Vec::new();
        for (v, s) in terms {
            if s == 0 || self.var_extent[v.0 as usize] <= 1 {
                continue;
            }
            match merged.iter_mut().find(|(w, _)| *w == v) {
                Some((_, t)) => *t += s,
                None => merged.push((v, s)),
            }
        }
        merged.sort();
        IndexExpr {
            offset,
            terms: merged,
        }
    }

    pub(super) fn var_expr(&self, v: Var) -> IndexExpr {
        self.affine(0, [(v, 1)])
    }

    pub(super) fn constant(c: usize) -> IndexExpr {
        IndexExpr {
            offset: c,
            terms: Vec::new(),
        }
    }

    /// The row-major element index of `coords` in a tensor of `dims`.
    pub(super) fn linear(&self, coords: &[IndexExpr], dims: &[usize]) -> IndexExpr {
        let strides = Shape::new(dims).strides();
        let offset = coords.iter().zip(&strides).map(|(c, s)| c.offset * s).sum();
        let terms = coords
            .iter()
            .zip(&strides)
            .flat_map(|(c, &s)| c.terms.iter().map(move |&(v, t)| (v, t * s)));
        self.affine(offset, terms)
    }

    /// Re-splits coordinates of a tensor of `from` dims into coordinates of the same elements in `to` dims (a
    /// reshape), if each coordinate is still affine: every variable's term must fall within one dim of `to`, and no
    /// dim may carry into the next.
    pub(super) fn decompose(
        &self,
        coords: &[IndexExpr],
        from: &[usize],
        to: &[usize],
    ) -> Option<Vec<IndexExpr>> {
        if to.contains(&0) || from.contains(&0) {
            return Some(vec![Self::constant(0); to.len()]);
        }
        let flat = self.linear(coords, from);
        let strides = Shape::new(to).strides();
        let numel: usize = to.iter().product();
        if flat.offset >= numel {
            return None;
        }
        let mut digits: Vec<(usize, Vec<(Var, usize)>)> = (0..to.len())
            .map(|k| ((flat.offset / strides[k]) % to[k], Vec::new()))
            .collect();
        for &(v, c) in &flat.terms {
            let k = (0..to.len()).find(|&k| to[k] > 1 && strides[k] <= c && c % strides[k] == 0)?;
            digits[k].1.push((v, c / strides[k]));
        }
        let mut out = Vec::with_capacity(to.len());
        for (k, (offset, terms)) in digits.into_iter().enumerate() {
            let max = offset
                + terms
                    .iter()
                    .map(|&(v, q)| q * (self.var_extent[v.0 as usize] - 1))
                    .sum::<usize>();
            if max >= to[k] {
                return None;
            }
            out.push(self.affine(offset, terms));
        }
        Some(out)
    }

    /// The strided view of a matmul operand whose element `(batch, last_two)` is the view's `(batch, row, col)`
    /// (`last_two` is `(row, col)`, or `(col, row)` to read the operand transposed), as a buffer index.
    pub(super) fn matrix_view(
        &mut self,
        operand: NodeId,
        batch: &[Var],
        last_two: (Var, Var),
        row: Var,
        col: Var,
    ) -> Result<MatrixView> {
        let coords: Vec<IndexExpr> = batch
            .iter()
            .chain([&last_two.0, &last_two.1])
            .map(|&v| self.var_expr(v))
            .collect();
        // Where the views don't reach a buffer affinely, `view_index` names the node to materialize: the one under
        // the non-affine reshape (a convolution's window matrix), so the reshape itself stays a free view.
        let (buffer, index) = self.view_index(operand, &coords)?;
        let stride = |v: Var| index.terms.iter().find(|(w, _)| *w == v).map_or(0, |t| t.1);
        Ok(MatrixView {
            buffer,
            offset: index.offset,
            batch_strides: batch.iter().map(|&v| stride(v)).collect(),
            row_stride: stride(row),
            col_stride: stride(col),
        })
    }

    /// The buffer holding `node`'s value, if it is computed outside this kernel.
    pub(super) fn outside_buffer(&self, node: NodeId) -> Option<BufferId> {
        match self.part.placement[node.index()] {
            Placement::Kernel(k) if k == self.kernel => None,
            _ => self.buffer_of[node.index()],
        }
    }

    /// Follows inline views from `node` down to a buffer: the buffer and the element index of `coords`. (A loop:
    /// a chain of views can be as long as the graph.)
    pub(super) fn view_index(
        &self,
        node: NodeId,
        coords: &[IndexExpr],
    ) -> Result<(BufferId, IndexExpr)> {
        let (mut node, mut coords) = (node, coords.to_vec());
        loop {
            if let Some(buffer) = self.outside_buffer(node) {
                return Ok((buffer, self.linear(&coords, self.graph.ty(node).dims())));
            }
            if self.part.placement[node.index()] != Placement::Inline {
                return Err(LowerError::Materialize(node));
            }
            match self.view_operand(node, &coords) {
                Some(Some((operand, c))) => (node, coords) = (operand, c),
                Some(None) => {
                    let operand = self.graph.node(node).operands[0];
                    return match self.outside_buffer(operand) {
                        Some(buffer) => {
                            Ok((buffer, self.linear(&coords, self.graph.ty(node).dims())))
                        }
                        None => Err(LowerError::Materialize(operand)),
                    };
                }
                None => return Err(LowerError::Materialize(node)),
            }
        }
    }

    /// For a view op: its operand and the operand's coordinates of the element at `coords` (`Some(None)` for a
    /// reshape that isn't affine there). `None` if `node` is not a view.
    pub(super) fn view_operand(
        &self,
        node: NodeId,
        coords: &[IndexExpr],
    ) -> Option<Option<(NodeId, Vec<IndexExpr>)>> {
        let n = self.graph.node(node);
        let operand = *n.operands.first()?;
        let from = self.graph.ty(operand).dims();
        Some(Some(match &n.op {
            // Aligned from the right; stretched dims read element 0.
            Op::Broadcast { shape } => {
                let lead = shape.rank() - from.len();
                let c = (0..from.len())
                    .map(|k| {
                        if from[k] == 1 {
                            Self::constant(0)
                        } else {
                            coords[k + lead].clone()
                        }
                    })
                    .collect();
                (operand, c)
            }
            // Result dim k is operand dim perm[k].
            Op::Transpose { perm } => {
                let mut c = vec![Self::constant(0); perm.len()];
                for (k, &p) in perm.iter().enumerate() {
                    c[p] = coords[k].clone();
                }
                (operand, c)
            }
            Op::Slice { start, .. } => {
                let c = coords
                    .iter()
                    .zip(start)
                    .map(|(c, &s)| IndexExpr {
                        offset: c.offset + s,
                        terms: c.terms.clone(),
                    })
                    .collect();
                (operand, c)
            }
            Op::Reshape { shape } => match self.decompose(coords, shape.dims(), from) {
                Some(c) => (operand, c),
                None => return Some(None),
            },
            // Window `a` of output position `o` reads `o·stride + a·dilation`.
            Op::Windows {
                stride, dilation, ..
            } => {
                let s = stride.len();
                let lead = from.len() - s;
                let mut c = coords[..lead].to_vec();
                for d in 0..s {
                    let (o, a) = (&coords[lead + d], &coords[lead + s + d]);
                    let terms = o
                        .terms
                        .iter()
                        .map(|&(v, t)| (v, t * stride[d]))
                        .chain(a.terms.iter().map(|&(v, t)| (v, t * dilation[d])));
                    c.push(self.affine(o.offset * stride[d] + a.offset * dilation[d], terms));
                }
                (operand, c)
            }
            Op::Input { .. }
            | Op::Constant { .. }
            | Op::Iota { .. }
            | Op::Unary(_)
            | Op::Cast { .. }
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::ReduceSum { .. }
            | Op::ReduceMax { .. }
            | Op::Concat { .. }
            | Op::Matmul
            // Not affine: lowered to guarded loads (`Emitter::pad`, `Emitter::overlap_add`).
            | Op::Pad { .. }
            | Op::OverlapAdd { .. }
            | Op::Gather { .. }
            // A copy, but its result is reduced across processes: never a view.
            | Op::AllReduce { .. } => return None,
        }))
    }
}
