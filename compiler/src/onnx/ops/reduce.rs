//! `Reduce*`: the axes are an attribute until opset 13 (ReduceSum) or 18 (the others), then an optional input;
//! with no axes every axis is reduced, unless `noop_with_empty_axes` (from the same opsets) makes it the identity.

use super::shape::{axis_index, ints_operand};
use crate::onnx::convert::{Ctx, NodeCx, OpResult};
use kiln_ir::{CmpDir, DType, TensorType, Value};

pub fn reduce(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let op = n.op_type();
    let dims = cx.b.shape(x).to_vec();
    let rank = dims.len();
    let axes_input_from = if op == "ReduceSum" { 13 } else { 18 };
    let axes = ints_operand(cx, n, "axes", 1, axes_input_from)?;
    let keep = n.attrs.int("keepdims", 1) != 0;
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| axis_index(n, a, rank))
            .collect::<OpResult<_>>()?,
        _ if n.attrs.int("noop_with_empty_axes", 0) != 0 => return Ok(x),
        _ => (0..rank).collect(),
    };
    let ax: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
    if cx.b.dtype(x) == DType::Bool && matches!(op, "ReduceMax" | "ReduceMin") {
        // Any / all: the reductions are numeric, so through i32 and back.
        let xi = cx.b.cast(x, DType::I32)?;
        let y = if op == "ReduceMax" {
            cx.b.reduce_max(xi, &ax, keep)?
        } else {
            let neg = cx.b.neg(xi)?;
            let m = cx.b.reduce_max(neg, &ax, keep)?;
            cx.b.neg(m)?
        };
        return Ok(cx.b.cast(y, DType::Bool)?);
    }
    let b = &mut cx.b;
    Ok(match op {
        "ReduceSum" => b.reduce_sum(x, &ax, keep)?,
        "ReduceMean" => b.mean(x, &ax, keep)?,
        "ReduceMax" => b.reduce_max(x, &ax, keep)?,
        "ReduceMin" => {
            // min = -max(-x)
            let neg = b.neg(x)?;
            let m = b.reduce_max(neg, &ax, keep)?;
            b.neg(m)?
        }
        "ReduceL1" => {
            let a = b.abs(x)?;
            b.reduce_sum(a, &ax, keep)?
        }
        "ReduceL2" | "ReduceSumSquare" => {
            let sq = b.mul(x, x)?;
            let s = b.reduce_sum(sq, &ax, keep)?;
            if op == "ReduceL2" {
                b.sqrt(s)?
            } else {
                s
            }
        }
        "ReduceLogSum" => {
            let s = b.reduce_sum(x, &ax, keep)?;
            b.log(s)?
        }
        "ReduceLogSumExp" => {
            // m + log(Σ exp(x − m)), m the max (kept for the broadcast), so large values do not overflow; a
            // group of -inf gives NaN as in the composite `logsumexp`.
            let m = b.reduce_max(x, &ax, true)?;
            let shifted = b.sub(x, m)?;
            let e = b.exp(shifted)?;
            let s = b.reduce_sum(e, &ax, true)?;
            let l = b.log(s)?;
            let y = b.add(l, m)?;
            drop_reduced(b, y, keep, &axes, &dims)?
        }
        _ => {
            // ReduceProd: Kiln has no product reduction; each reduced axis is folded by multiplying its slices
            // (exact, in order), which costs one op per element of the axis.
            const MAX_EXTENT: usize = 256;
            let mut y = x;
            for &a in axes.iter().rev() {
                let d = b.shape(y).to_vec();
                if d[a] > MAX_EXTENT {
                    return Err(n.unsupported(format!(
                        "a product over {} elements (at most {MAX_EXTENT})",
                        d[a]
                    )));
                }
                let mut end = d.clone();
                end[a] = 1;
                let mut start = vec![0; d.len()];
                let mut acc = if d[a] == 0 {
                    let mut ones = d.clone();
                    ones[a] = 1;
                    b.full(kiln_ir::TensorType::new(b.dtype(y), ones.as_slice()), 1.0)?
                } else {
                    b.slice(y, &start, &end)?
                };
                for k in 1..d[a] {
                    start[a] = k;
                    end[a] = k + 1;
                    let s = b.slice(y, &start, &end)?;
                    acc = b.mul(acc, s)?;
                }
                y = acc;
            }
            drop_reduced(b, y, keep, &axes, &dims)?
        }
    })
}

/// `ArgMax`/`ArgMin` along `axis`: the first (or with `select_last_index`, the last) position holding the
/// extreme value, as i32 (ONNX's int64). `ArgMin` is `ArgMax` of `-x`.
/// `y` reduced over `axes` of `dims` with the reduced dims kept as 1s: as is with `keep`, else reshaped without them.
fn drop_reduced(
    b: &mut kiln_ir::Builder,
    y: Value,
    keep: bool,
    axes: &[usize],
    dims: &[usize],
) -> OpResult<Value> {
    if keep {
        return Ok(y);
    }
    let out: Vec<usize> = (0..dims.len())
        .filter(|d| !axes.contains(d))
        .map(|d| dims[d])
        .collect();
    Ok(b.reshape(y, &out)?)
}

pub fn arg(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let rank = cx.b.shape(x).len();
    let axis = axis_index(n, n.attrs.int("axis", 0), rank)?;
    let keep = n.attrs.int("keepdims", 1) != 0;
    let last = n.attrs.int("select_last_index", 0) != 0;
    arg_extreme(cx, n, x, axis, keep, last)
}

/// The position of the first (or `last`) maximum (`ArgMin`: minimum) of `x` along `axis`.
fn arg_extreme(
    cx: &mut Ctx,
    n: &NodeCx,
    x: Value,
    axis: usize,
    keep: bool,
    last: bool,
) -> OpResult<Value> {
    let dims = cx.b.shape(x).to_vec();
    let b = &mut cx.b;
    let x = if n.op_type() == "ArgMin" {
        b.neg(x)?
    } else {
        x
    };
    let ax = [axis as isize];
    let m = b.reduce_max(x, &ax, true)?;
    let hit = b.compare(CmpDir::Eq, x, m)?;
    let pos = b.iota(TensorType::new(DType::I32, dims.as_slice()), axis)?;
    let y = if last {
        // The largest hit position (misses are -1).
        let miss = b.full_like(pos, -1.0)?;
        let p = b.select(hit, pos, miss)?;
        b.reduce_max(p, &ax, keep)?
    } else {
        // The smallest hit position: -max(-p), misses at the extent.
        let miss = b.full_like(pos, dims[axis] as f64)?;
        let p = b.select(hit, pos, miss)?;
        let neg = b.neg(p)?;
        let m = b.reduce_max(neg, &ax, keep)?;
        b.neg(m)?
    };
    Ok(y)
}

/// `Hardmax`: 1 at the first maximum along `axis`, 0 elsewhere, in `x`'s dtype; before opset 13 over the input
/// coerced to 2-D at `axis` (default 1), as `Softmax`.
pub fn hardmax(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let shape = cx.b.shape(x).to_vec();
    let (flat, axis) = if n.opset >= 13 {
        (x, axis_index(n, n.attrs.int("axis", -1), shape.len())?)
    } else {
        let axis = axis_index(n, n.attrs.int("axis", 1), shape.len())?;
        let rows: usize = shape[..axis].iter().product();
        let cols: usize = shape[axis..].iter().product();
        (cx.b.reshape(x, &[rows, cols])?, 1)
    };
    let pos = arg_extreme(cx, n, flat, axis, true, false)?;
    let b = &mut cx.b;
    let fd = b.shape(flat).to_vec();
    let iota = b.iota(TensorType::new(DType::I32, fd.as_slice()), axis)?;
    let hit = b.compare(CmpDir::Eq, iota, pos)?;
    let y = b.cast(hit, b.dtype(x))?;
    Ok(b.reshape(y, &shape)?)
}
