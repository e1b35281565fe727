//! Algebraic simplification: local rewrites that remove work, each exact in IEEE arithmetic unless noted.
//!
//! Rules (each written out as algebra above its code below):
//! - identities: `x * 1`, `1 * x`, `x + 0`, `0 + x`, `x - 0`, `x / 1` → `x`; `neg(neg x)` → `x`;
//!   `x + neg(y)`, `neg(y) + x` → `x - y`; `x - neg(y)` → `x + y`; `select(c, x, x)` → `x`; `cast` to `x`'s own
//!   dtype → `x`;
//! - movement: `reshape`/`broadcast` to `x`'s own shape and `transpose` by the identity → `x`; chains of two
//!   `reshape`s, two `broadcast`s or two `transpose`s → one (or none, if the composition is the identity);
//! - `transpose(matmul(a, b))` (last two dims swapped) → `matmul(transpose b, transpose a)`, only where `a` or `b` is
//!   itself such a transpose (the two cancel) and the matmul has no other use, so no transpose is ever added.
//!   Folding a transpose *into* a matmul (a matmul reading an operand with swapped strides) is not a graph rewrite —
//!   the IR has no transposed matmul — it happens when fusion lowers matmul operands to kernel IR with strides.
//! - `overlap_add` of windows that tile without overlap (every stride equals its window dim, dilation 1: the input
//!   gradient of a 2×2/stride-2 max or average pool, of a patchify convolution) → `reshape(transpose(w))`, padded
//!   with zeros where the tiles stop short of `size`: each result element is exactly one window element (the others
//!   add `+0`, which changes only the sign of a zero, as `x + 0 → x` does). Fusion then writes it as a copy in tile
//!   order instead of a reduction over the window with a divided, guarded index per tap.
//!
//! A "constant 1 / 0" is a splat constant, possibly seen through movement ops (`broadcast(splat 1)` is 1).
//!
//! Decisions on IEEE corner cases:
//! - `x + 0 → x` is applied, as XLA's algebraic simplifier does, although it is not exact for `x = -0.0` with a `+0.0`
//!   constant (`-0.0 + 0.0 = +0.0`): the result may differ in the sign of a zero, never in value. (`x + (-0.0)` and
//!   `x - (+0.0)` are exact.)
//! - `x * 0 → 0` is **not** applied: `inf * 0` and `NaN * 0` are NaN, and nothing here proves `x` finite. Likewise
//!   `x - x → 0` and `x / x → 1` are not applied.
//! - NaN payloads are not preserved (an identity rewrite may keep a signalling NaN that `x * 1` would have quieted).
//! - i32 arithmetic wraps, so `x - neg(y) = x + y` holds for every i32, `MIN` included.
//!
//! Preserves: outputs bit-for-bit except for the sign of a zero produced by `x + 0` (values compare equal); inputs,
//! outputs and aliases. Requires: a verified graph. Leaves dead nodes for [`super::dce`].

use super::rewrite::{use_counts, Rewriter};
use kiln_ir::op::broadcastable_to;
use kiln_ir::{BinaryOp, Graph, IrError, Literal, NodeId, Op, Shape, UnaryOp};

pub fn run(graph: &Graph) -> Result<Graph, IrError> {
    let uses = use_counts(graph);
    let mut rw = Rewriter::new(graph);
    for id in graph.ids() {
        match rewrite(&mut rw, id, &uses)? {
            Some(new) => rw.set(id, new)?,
            None => {
                rw.copy(id)?;
            }
        }
    }
    rw.finish()
}

/// What old node `id` becomes in the new graph, or `None` to copy it as is.
fn rewrite(rw: &mut Rewriter, id: NodeId, uses: &[usize]) -> Result<Option<NodeId>, IrError> {
    let node = rw.old().node(id);
    let ops = rw.mapped_operands(id);
    match &node.op {
        Op::Unary(UnaryOp::Neg) => Ok(neg(rw.new_graph(), ops[0])),
        Op::Cast { to } => {
            // cast(x: T, T) == x
            Ok((rw.new_graph().ty(ops[0]).dtype == *to).then_some(ops[0]))
        }
        Op::Binary(op) => binary(rw, *op, ops[0], ops[1]),
        Op::Select => {
            // select(c, x, x) == x
            Ok((ops[1] == ops[2]).then_some(ops[1]))
        }
        Op::Reshape { shape } => reshape(rw, shape, ops[0]),
        Op::Transpose { perm } => {
            let single_use = uses[node.operands[0].index()] == 1;
            transpose(rw, perm, ops[0], single_use)
        }
        Op::Broadcast { shape } => broadcast(rw, shape, ops[0]),
        Op::OverlapAdd {
            size,
            stride,
            dilation,
        } => overlap_add_of_tiles(rw, size, stride, dilation, ops[0]),
        // No rules (yet) for these; listed so that a new op makes the compiler ask whether it needs one.
        Op::Input { .. }
        | Op::Constant { .. }
        | Op::Iota { .. }
        | Op::Unary(_)
        | Op::Compare(_)
        | Op::ReduceSum { .. }
        | Op::ReduceMax { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Matmul
        | Op::Pad { .. }
        | Op::Windows { .. }
        | Op::Gather { .. }
        // Never rewritten: every rank must keep calling the same collectives.
        | Op::AllReduce { .. } => Ok(None),
    }
}

fn neg(g: &Graph, x: NodeId) -> Option<NodeId> {
    // neg(neg(y)) == y
    negated(g, x)
}

fn binary(
    rw: &mut Rewriter,
    op: BinaryOp,
    a: NodeId,
    b: NodeId,
) -> Result<Option<NodeId>, IrError> {
    let g = rw.new_graph();
    let is = |v: NodeId, c: f64| splat_value(g, v) == Some(c);
    match op {
        BinaryOp::Mul => {
            // x * 1 == x
            if is(b, 1.0) {
                return Ok(Some(a));
            }
            // 1 * x == x
            if is(a, 1.0) {
                return Ok(Some(b));
            }
            // x * 0 == 0 is false for x = inf or NaN: not applied.
        }
        BinaryOp::Add => {
            // x + 0 == x (the sign of a zero may change: -0.0 + 0.0 = +0.0; XLA applies it too)
            if is(b, 0.0) {
                return Ok(Some(a));
            }
            // 0 + x == x (likewise)
            if is(a, 0.0) {
                return Ok(Some(b));
            }
            // x + (-y) == x - y
            if let Some(y) = negated(g, b) {
                return rw.add(Op::Binary(BinaryOp::Sub), &[a, y]).map(Some);
            }
            // (-y) + x == x - y
            if let Some(y) = negated(g, a) {
                return rw.add(Op::Binary(BinaryOp::Sub), &[b, y]).map(Some);
            }
        }
        BinaryOp::Sub => {
            // x - 0 == x
            if is(b, 0.0) {
                return Ok(Some(a));
            }
            // x - (-y) == x + y
            if let Some(y) = negated(g, b) {
                return rw.add(Op::Binary(BinaryOp::Add), &[a, y]).map(Some);
            }
        }
        BinaryOp::Div => {
            // x / 1 == x
            if is(b, 1.0) {
                return Ok(Some(a));
            }
        }
        BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::Pow
        | BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Xor
        | BinaryOp::Shl
        | BinaryOp::Shr
        | BinaryOp::MulHi => {}
    }
    Ok(None)
}

fn reshape(rw: &mut Rewriter, shape: &Shape, x: NodeId) -> Result<Option<NodeId>, IrError> {
    let g = rw.new_graph();
    // reshape(x, shape(x)) == x
    if g.ty(x).shape == *shape {
        return Ok(Some(x));
    }
    // reshape(reshape(y, s1), s2) == reshape(y, s2): both keep the row-major order of the elements
    let inner = g.node(x);
    let Op::Reshape { .. } = inner.op else {
        return Ok(None);
    };
    let y = inner.operands[0];
    if g.ty(y).shape == *shape {
        return Ok(Some(y));
    }
    rw.add(
        Op::Reshape {
            shape: shape.clone(),
        },
        &[y],
    )
    .map(Some)
}

/// `overlap_add{size, stride, dilation}(w)` with `stride == window` and `dilation == 1` in every dim: `w` is
/// `[lead.., o_1..o_s, k_1..k_s]` and result element `p_d = o_d·k_d + a_d` is `w[lead, o, a]` alone, so
/// `= pad(reshape(transpose(w, lead.., o_1, k_1, .., o_s, k_s), [lead.., o_1·k_1, ..]), high = size − o·k)`.
fn overlap_add_of_tiles(
    rw: &mut Rewriter,
    size: &[usize],
    stride: &[usize],
    dilation: &[usize],
    w: NodeId,
) -> Result<Option<NodeId>, IrError> {
    let dims = rw.new_graph().ty(w).shape.0.to_vec();
    let s = size.len();
    let lead = dims.len() - 2 * s;
    let (outs, window) = (&dims[lead..lead + s], &dims[lead + s..]);
    if dilation.iter().any(|&d| d != 1) || stride != window {
        return Ok(None);
    }
    let mut perm: Vec<usize> = (0..lead).collect();
    let mut tiled: Vec<usize> = dims[..lead].to_vec();
    for d in 0..s {
        perm.extend([lead + d, lead + s + d]);
        tiled.push(outs[d] * window[d]);
    }
    let interleaved = rw.add(Op::Transpose { perm }, &[w])?;
    let tiled_shape = Shape::new(&tiled);
    let mut y = rw.add(Op::Reshape { shape: tiled_shape }, &[interleaved])?;
    let high: Vec<usize> = (0..lead)
        .map(|_| 0)
        .chain((0..s).map(|d| size[d] - outs[d] * window[d]))
        .collect();
    if high.iter().any(|&h| h > 0) {
        y = rw.add(
            Op::Pad {
                low: vec![0; high.len()],
                high,
                value: Literal::Splat(0.0),
            },
            &[y],
        )?;
    }
    Ok(Some(y))
}

fn broadcast(rw: &mut Rewriter, shape: &Shape, x: NodeId) -> Result<Option<NodeId>, IrError> {
    let g = rw.new_graph();
    // broadcast(x, shape(x)) == x
    if g.ty(x).shape == *shape {
        return Ok(Some(x));
    }
    // broadcast(broadcast(y, s1), s2) == broadcast(y, s2): each repeats elements of y along the dims where it is 1 or
    // absent, and so does their composition
    let inner = g.node(x);
    let Op::Broadcast { .. } = inner.op else {
        return Ok(None);
    };
    let y = inner.operands[0];
    if !broadcastable_to(g.ty(y).dims(), shape.dims()) {
        return Ok(None);
    }
    rw.add(
        Op::Broadcast {
            shape: shape.clone(),
        },
        &[y],
    )
    .map(Some)
}

fn transpose(
    rw: &mut Rewriter,
    perm: &[usize],
    x: NodeId,
    x_single_use: bool,
) -> Result<Option<NodeId>, IrError> {
    let g = rw.new_graph();
    // transpose(x, identity) == x
    if is_identity(perm) {
        return Ok(Some(x));
    }
    let inner = g.node(x);
    // transpose(transpose(y, p1), p2) == transpose(y, p) with p[k] = p1[p2[k]]:
    // result dim k is inner dim p2[k], which is y's dim p1[p2[k]]
    if let Op::Transpose { perm: p1 } = &inner.op {
        let y = inner.operands[0];
        let composed: Vec<usize> = perm.iter().map(|&k| p1[k]).collect();
        if is_identity(&composed) {
            return Ok(Some(y));
        }
        return rw.add(Op::Transpose { perm: composed }, &[y]).map(Some);
    }
    // (A B)ᵀ == Bᵀ Aᵀ, batch by batch: element [j, i] is Σ_l a[i, l]·b[l, j] either way, in the same order of l
    if !(matches!(inner.op, Op::Matmul) && is_swap_last2(perm) && x_single_use) {
        return Ok(None);
    }
    let (a, b) = (inner.operands[0], inner.operands[1]);
    let (a_t, b_t) = (swapped(g, a), swapped(g, b));
    if a_t.is_none() && b_t.is_none() {
        return Ok(None);
    }
    let b_t = match b_t {
        Some(b_t) => b_t,
        None => rw.add(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[b],
        )?,
    };
    let a_t = match a_t {
        Some(a_t) => a_t,
        None => rw.add(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[a],
        )?,
    };
    rw.add(Op::Matmul, &[b_t, a_t]).map(Some)
}

/// `y` if `x` is `neg(y)`.
fn negated(g: &Graph, x: NodeId) -> Option<NodeId> {
    let node = g.node(x);
    let Op::Unary(UnaryOp::Neg) = node.op else {
        return None;
    };
    Some(node.operands[0])
}

/// `y` if `x` is `y` with its last two dims swapped.
fn swapped(g: &Graph, x: NodeId) -> Option<NodeId> {
    let node = g.node(x);
    let Op::Transpose { perm } = &node.op else {
        return None;
    };
    is_swap_last2(perm).then(|| node.operands[0])
}

/// The value of every element of `x`, if `x` is a splat constant seen through movement ops.
fn splat_value(g: &Graph, mut x: NodeId) -> Option<f64> {
    loop {
        let node = g.node(x);
        if let Op::Constant { value, .. } = &node.op {
            return value.as_splat();
        }
        // A view of a splat is the same splat.
        let view = matches!(
            node.op,
            Op::Reshape { .. } | Op::Transpose { .. } | Op::Broadcast { .. } | Op::Slice { .. }
        );
        if !view {
            return None;
        }
        x = node.operands[0];
    }
}

fn is_identity(perm: &[usize]) -> bool {
    perm.iter().enumerate().all(|(i, &p)| i == p)
}

/// `[0, 1, ..., r-1, r-2]`: the transpose a matmul's `ᵀ` means.
fn is_swap_last2(perm: &[usize]) -> bool {
    let r = perm.len();
    r >= 2
        && perm[r - 2] == r - 1
        && perm[r - 1] == r - 2
        && perm[..r - 2].iter().enumerate().all(|(i, &p)| i == p)
}
