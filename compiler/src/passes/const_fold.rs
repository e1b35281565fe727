//! Constant folding: a node whose operands are all constants (or `iota`s) becomes a `constant`.
//!
//! Values are computed by the reference interpreter on a one-node graph, so a folded constant holds exactly what the
//! interpreter would have computed at run time. Folding never grows a graph by much:
//! - a movement op (`reshape`, `transpose`, `broadcast`, `slice`) of a splat, or a `concat` of equal splats, is that
//!   splat at the new type, however large;
//! - an elementwise op of splats is evaluated once, on rank-0 tensors, and splatted;
//! - anything else is evaluated only when its result has at most [`MAX_DENSE`] elements (and no operand more than
//!   [`MAX_OPERAND`]), and becomes a splat if every element has the same bits, else a dense constant.
//!
//! `iota` itself is never folded (it is already a compact source); nor are `input`s.
//!
//! Preserves: outputs bit-for-bit with respect to the interpreter. Requires: a verified graph; the interpreter.

use super::rewrite::Rewriter;
use kiln_ir::{interp, Graph, IrError, Literal, Node, NodeId, Op, OpClass, TensorType};

/// Largest result folded into a dense constant.
pub const MAX_DENSE: usize = 1024;

/// Largest operand the folder materializes to evaluate a non-splat result (e.g. the sum of a large splat).
pub const MAX_OPERAND: usize = 1 << 20;

pub fn run(graph: &Graph) -> Result<Graph, IrError> {
    let mut rw = Rewriter::new(graph);
    for id in graph.ids() {
        match fold(&rw, id)? {
            Some(literal) => {
                let ty = graph.ty(id).clone();
                let new = rw.add(Op::Constant { ty, value: literal }, &[])?;
                rw.set(id, new)?;
            }
            None => {
                rw.copy(id)?;
            }
        }
    }
    rw.finish()
}

/// The value of old node `id` if it folds, given that its operands are already folded in the new graph.
fn fold(rw: &Rewriter, id: NodeId) -> Result<Option<Literal>, IrError> {
    let node = rw.old().node(id);
    // A source is already a value; an all_reduce's depends on the other processes (SPEC §3.12).
    if matches!(node.op.class(), OpClass::Source | OpClass::Collective) {
        return Ok(None);
    }
    let new = rw.new_graph();
    let operands: Vec<&Node> = rw
        .mapped_operands(id)
        .iter()
        .map(|&o| new.node(o))
        .collect();
    if !operands
        .iter()
        .all(|o| matches!(o.op, Op::Constant { .. } | Op::Iota { .. }))
    {
        return Ok(None);
    }
    let splats: Option<Vec<f64>> = operands.iter().map(|o| splat(o)).collect();

    // A gather of a splat by a splat index reads the splat, or 0 when the index is out of range (SPEC §3.11).
    if let (Op::Gather { axis }, Some(values)) = (&node.op, &splats) {
        let extent = operands[0].ty.dims()[*axis] as f64;
        let index = values[1];
        let inside = (0.0..extent).contains(&index);
        return Ok(Some(Literal::Splat(if inside { values[0] } else { 0.0 })));
    }

    // Movement ops only move elements: a splat stays the same splat at the new shape (a `pad` only if it pads with
    // the same value).
    if let Some(values) = &splats {
        let first = values[0];
        let all_equal = values.iter().all(|v| v.to_bits() == first.to_bits());
        let pads_other = if let Op::Pad { value, .. } = &node.op {
            value.as_splat().map(f64::to_bits) != Some(first.to_bits())
        } else {
            false
        };
        if node.op.class() == OpClass::Movement && all_equal && !pads_other {
            return Ok(Some(Literal::Splat(first)));
        }
    }

    // An elementwise op of splats is a splat: evaluate it once, on scalars.
    if let (Some(values), OpClass::Elementwise) = (&splats, node.op.class()) {
        let scalars: Vec<Op> = operands
            .iter()
            .zip(values)
            .map(|(o, &v)| Op::Constant {
                ty: TensorType::scalar(o.ty.dtype),
                value: Literal::Splat(v),
            })
            .collect();
        let values = evaluate(&node.op, scalars)?;
        return Ok(Some(Literal::Splat(values[0])));
    }

    // Every element of a reduction or a matmul of splats sums (or maxes) the same values in the same order: evaluate
    // one element, on operands shrunk to 1 along every dim that is not reduced.
    if let (Some(values), Some(shrunk)) = (&splats, one_element_operands(&node.op, &operands)) {
        if shrunk.iter().all(|t| t.numel() <= MAX_OPERAND) {
            let sources = shrunk
                .into_iter()
                .zip(values)
                .map(|(ty, &v)| Op::Constant {
                    ty,
                    value: Literal::Splat(v),
                })
                .collect();
            let values = evaluate(&node.op, sources)?;
            // The shrunk operands give exactly one element.
            return Ok(Some(Literal::Splat(values.first().copied().unwrap_or(0.0))));
        }
    }

    if node.ty.numel() > MAX_DENSE || operands.iter().any(|o| o.ty.numel() > MAX_OPERAND) {
        return Ok(None);
    }
    let values = evaluate(&node.op, operands.iter().map(|o| o.op.clone()).collect())?;
    Ok(Some(compact(values)))
}

/// For a reduction or a matmul, its operand types with every dim that is not summed over set to 1; `None` for other
/// ops.
fn one_element_operands(op: &Op, operands: &[&Node]) -> Option<Vec<TensorType>> {
    let shrink = |ty: &TensorType, keep: &dyn Fn(usize) -> bool| {
        let dims: Vec<usize> = (0..ty.rank())
            .map(|i| if keep(i) { ty.dims()[i] } else { 1 })
            .collect();
        ty.with_shape(dims)
    };
    match op {
        Op::ReduceSum { axes, .. } | Op::ReduceMax { axes, .. } => {
            Some(vec![shrink(&operands[0].ty, &|i| axes.contains(&i))])
        }
        // [..., m, k] x [..., k, n]: keep k only.
        Op::Matmul => {
            let r = operands[0].ty.rank();
            Some(vec![
                shrink(&operands[0].ty, &|i| i == r - 1),
                shrink(&operands[1].ty, &|i| i == r - 2),
            ])
        }
        Op::Input { .. }
        | Op::Constant { .. }
        | Op::Iota { .. }
        | Op::Unary(_)
        | Op::Cast { .. }
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Pad { .. }
        | Op::Windows { .. }
        // Not one sum per element: the edges add fewer windows.
        | Op::OverlapAdd { .. }
        | Op::Gather { .. }
        | Op::AllReduce { .. } => None,
    }
}

/// The splatted value of a constant node, if it is one value everywhere.
fn splat(node: &Node) -> Option<f64> {
    if let Op::Constant { value, .. } = &node.op {
        value.as_splat()
    } else {
        None
    }
}

/// `op` applied to source nodes `sources`, on the interpreter: the result's elements in row-major order.
fn evaluate(op: &Op, sources: Vec<Op>) -> Result<Vec<f64>, IrError> {
    let mut g = Graph::new("const_fold");
    let operands = sources
        .into_iter()
        .map(|s| g.add(s, &[]))
        .collect::<Result<Vec<_>, _>>()?;
    let result = g.add(op.clone(), &operands)?;
    g.add_output("value", result)?;
    let outputs = interp::run(&g, &[])?;
    Ok(outputs[0].to_f64_vec())
}

/// A splat when every element has the same bits, else dense.
fn compact(values: Vec<f64>) -> Literal {
    let dense = Literal::Dense(values);
    match dense.as_splat() {
        Some(v) => Literal::Splat(v),
        None => dense,
    }
}
