//! Gradient (vector-Jacobian product) rules, one arm per primitive in the order of [`Op`]; the elementwise ops' rules
//! are their entries in the op table (`op/elementwise.rs`).
//!
//! Each rule appends to the builder the nodes that map the cotangent `g` of a node's result `y` to the cotangents of
//! its operands. Rules follow PyTorch at non-differentiable points (SPEC.md states each): ties of `max`/`min` split
//! the gradient evenly, `reduce_max` spreads it evenly over the maxima, `abs'(0) = 0`; comparisons, `select`'s
//! condition, `iota` and casts to or from integers carry no gradient.

use crate::builder::{Builder, Value};
use crate::error::IrError;
use crate::graph::NodeId;
use crate::op::{CmpDir, Op};
use smallvec::{smallvec, SmallVec};

/// The cotangent of each operand (`None`: no gradient flows, or the caller did not ask for it).
pub type OperandGrads = SmallVec<[Option<Value>; 3]>;

/// Cotangents of `node`'s operands given the cotangent `g` of its result. `needs[i]` says whether operand `i`'s
/// cotangent is wanted; rules skip the work for the others.
pub fn vjp(
    b: &mut Builder,
    node: NodeId,
    g: Value,
    needs: &[bool],
) -> Result<OperandGrads, IrError> {
    let n = b.graph().node(node).clone();
    let x = |i: usize| n.operands[i];
    let y = node;
    let want = |i: usize| needs.get(i).copied().unwrap_or(false);
    let mut grads: OperandGrads = smallvec![None; n.operands.len()];
    match &n.op {
        // Sources have no operands.
        Op::Input { .. } | Op::Constant { .. } | Op::Iota { .. } => {}

        // The elementwise table's rule (`op/elementwise.rs`).
        Op::Unary(u) => {
            if want(0) {
                grads[0] = Some(u.vjp(b, g, x(0), y)?);
            }
        }

        // A float-to-float cast passes the gradient back in the operand's dtype; casts to or from i32/bool are
        // piecewise constant.
        Op::Cast { to } => {
            let from = b.dtype(x(0));
            if want(0) && from.is_float() && to.is_float() {
                grads[0] = Some(b.cast(g, from)?);
            }
        }

        Op::Binary(op) => {
            let [dl, dr] = op.vjp(b, g, (x(0), x(1)), y, [want(0), want(1)])?;
            grads[0] = dl;
            grads[1] = dr;
        }

        // Comparisons are piecewise constant.
        Op::Compare(_) => {}

        // select(c, a, b): a gets g where c, b gets g elsewhere; c gets nothing.
        Op::Select => {
            let c = x(0);
            let zero = if want(1) || want(2) {
                Some(b.zeros_like(g)?)
            } else {
                None
            };
            if let (true, Some(zero)) = (want(1), zero) {
                grads[1] = Some(b.select(c, g, zero)?);
            }
            if let (true, Some(zero)) = (want(2), zero) {
                grads[2] = Some(b.select(c, zero, g)?);
            }
        }

        // d sum(x) / dx = 1: broadcast g back over the reduced axes.
        Op::ReduceSum { axes, keep_dims } => {
            if want(0) {
                let g_keep = keep_dims_form(b, g, x(0), axes, *keep_dims)?;
                let shape = b.shape(x(0)).to_vec();
                grads[0] = Some(b.broadcast(g_keep, &shape)?);
            }
        }

        // d max(x) / dx_i = 1/k for each of the k maxima (torch.amax), 0 elsewhere.
        Op::ReduceMax { axes, keep_dims } => {
            if want(0) {
                let x0 = x(0);
                let shape = b.shape(x0).to_vec();
                let dtype = b.dtype(x0);
                let y_keep = keep_dims_form(b, y, x0, axes, *keep_dims)?;
                let y_full = b.broadcast(y_keep, &shape)?;
                let is_max = b.compare(CmpDir::Eq, x0, y_full)?;
                let ones = b.cast(is_max, dtype)?;
                let axes_i: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
                let count = b.reduce_sum(ones, &axes_i, true)?;
                let g_keep = keep_dims_form(b, g, x0, axes, *keep_dims)?;
                let share = b.div(g_keep, count)?;
                let share_full = b.broadcast(share, &shape)?;
                let zero = b.zeros_like(share_full)?;
                grads[0] = Some(b.select(is_max, share_full, zero)?);
            }
        }

        // Movement ops move the cotangent back.
        Op::Reshape { .. } => {
            if want(0) {
                let shape = b.shape(x(0)).to_vec();
                grads[0] = Some(b.reshape(g, &shape)?);
            }
        }
        Op::Transpose { perm } => {
            if want(0) {
                let mut inverse = vec![0; perm.len()];
                for (k, &p) in perm.iter().enumerate() {
                    inverse[p] = k;
                }
                grads[0] = Some(b.transpose(g, &inverse)?);
            }
        }
        // Broadcasting copies; its VJP sums the copies: over the added leading dims and over dims stretched from 1.
        Op::Broadcast { shape } => {
            if want(0) {
                let from = b.shape(x(0)).to_vec();
                let lead = shape.rank() - from.len();
                let axes: Vec<isize> = (0..shape.rank())
                    .filter(|&i| i < lead || (from[i - lead] == 1 && shape.dims()[i] != 1))
                    .map(|i| i as isize)
                    .collect();
                let summed = if axes.is_empty() {
                    g
                } else {
                    b.reduce_sum(g, &axes, true)?
                };
                grads[0] = Some(b.reshape(summed, &from)?);
            }
        }
        // The cotangent of a slice is g placed in zeros of the operand's shape, padded one axis at a time.
        Op::Slice { start, end } => {
            if want(0) {
                let full = b.shape(x(0)).to_vec();
                let mut cur = g;
                for axis in 0..full.len() {
                    let (before, after) = (start[axis], full[axis] - end[axis]);
                    if before == 0 && after == 0 {
                        continue;
                    }
                    let mut parts = Vec::with_capacity(3);
                    for (extent, is_pad) in [(before, true), (0, false), (after, true)] {
                        if !is_pad {
                            parts.push(cur);
                        } else if extent > 0 {
                            let mut dims = b.shape(cur).to_vec();
                            dims[axis] = extent;
                            let ty = b.ty(cur).with_shape(dims);
                            parts.push(b.full(ty, 0.0)?);
                        }
                    }
                    cur = b.concat(&parts, axis as isize)?;
                }
                grads[0] = Some(cur);
            }
        }
        // Each operand of a concat gets its slab of g.
        Op::Concat { axis } => {
            let gdims = b.shape(g).to_vec();
            let mut offset = 0;
            for (i, &operand) in n.operands.iter().enumerate() {
                let extent = b.shape(operand)[*axis];
                if want(i) {
                    let mut start = vec![0; gdims.len()];
                    let mut end = gdims.clone();
                    start[*axis] = offset;
                    end[*axis] = offset + extent;
                    grads[i] = Some(b.slice(g, &start, &end)?);
                }
                offset += extent;
            }
        }

        // The padding is constant: the operand's cotangent is g inside the padding.
        Op::Pad { low, .. } => {
            if want(0) {
                let dims = b.shape(x(0)).to_vec();
                let end: Vec<usize> = dims.iter().zip(low).map(|(n, l)| n + l).collect();
                grads[0] = Some(b.slice(g, low, &end)?);
            }
        }
        // Each window element is a copy of an input element: the copies' cotangents add up where they came from.
        Op::Windows {
            stride, dilation, ..
        } => {
            if want(0) {
                let dims = b.shape(x(0)).to_vec();
                let size = dims[dims.len() - stride.len()..].to_vec();
                grads[0] = Some(b.overlap_add(g, &size, stride, dilation)?);
            }
        }
        // overlap_add is linear and windows is its transpose.
        Op::OverlapAdd {
            stride, dilation, ..
        } => {
            if want(0) {
                let dims = b.shape(x(0)).to_vec();
                let window = dims[dims.len() - stride.len()..].to_vec();
                grads[0] = Some(b.windows(g, &window, stride, dilation)?);
            }
        }

        // Each element read is a copy of one `x` element (or the constant 0): the cotangents add up where they came
        // from, in a fixed order (`scatter_add`). The index is an integer: no gradient.
        Op::Gather { axis } => {
            if want(0) {
                let size = b.shape(x(0))[*axis];
                grads[0] = Some(b.scatter_add(g, x(1), *axis as isize, size)?);
            }
        }

        // d(A B) = dA B + A dB: dA = g Bᵀ, dB = Aᵀ g.
        Op::Matmul => {
            let (a, bm) = (x(0), x(1));
            if want(0) {
                let bt = b.transpose_last2(bm)?;
                grads[0] = Some(b.matmul(g, bt)?);
            }
            if want(1) {
                let at = b.transpose_last2(a)?;
                grads[1] = Some(b.matmul(at, g)?);
            }
        }

        // y_r = Σ_s x_s on every rank r, so ∂L/∂x_r = Σ_s g_s: the all-reduce of a sum is its own transpose (and
        // of a mean, the mean: y_r = (1/P) Σ_s x_s gives (1/P) Σ_s g_s). Every rank runs the backward pass too, so
        // each calls the new collective in the same order.
        Op::AllReduce { op, group } => {
            if want(0) {
                grads[0] = Some(b.all_reduce(g, *op, *group)?);
            }
        }
    }
    Ok(grads)
}

/// `v` (shaped like a reduction of `x` over `axes`) reshaped to the keep-dims form, so it broadcasts against `x`.
fn keep_dims_form(
    b: &mut Builder,
    v: Value,
    x: Value,
    axes: &[usize],
    keep_dims: bool,
) -> Result<Value, IrError> {
    if keep_dims {
        return Ok(v);
    }
    let dims: Vec<usize> = b
        .shape(x)
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    b.reshape(v, &dims)
}
