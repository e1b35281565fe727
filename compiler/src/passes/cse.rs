//! Common-subexpression elimination: nodes with equal ops (attributes included) and equal operands become one.
//!
//! Every op but `input` is a pure function of its attributes and operands, so a node equal to an earlier one is
//! replaced by it; the first occurrence survives (and keeps its name). Constants are compared by the bit pattern of
//! their literal (`-0.0` and `0.0` stay apart, equal NaNs merge; a splat and a dense literal never merge). Inputs are
//! never merged: two inputs are two values the caller feeds. The merged-away nodes are left for [`super::dce`] — none
//! of them is referenced afterwards, so they are simply not copied.
//!
//! Preserves: outputs bit-for-bit. Requires: a verified graph.

use super::rewrite::Rewriter;
use kiln_ir::graph::Operands;
use kiln_ir::{Graph, IrError, NodeId, Op};
use std::collections::HashMap;

pub fn run(graph: &Graph) -> Result<Graph, IrError> {
    let mut rw = Rewriter::new(graph);
    let mut seen: HashMap<(Op, Operands), NodeId> = HashMap::new();
    for id in graph.ids() {
        let node = graph.node(id);
        if matches!(node.op, Op::Input { .. }) {
            rw.copy(id)?;
            continue;
        }
        let key = (node.op.clone(), rw.mapped_operands(id));
        match seen.get(&key) {
            Some(&earlier) => rw.set(id, earlier)?,
            None => {
                let new = rw.copy(id)?;
                seen.insert(key, new);
            }
        }
    }
    rw.finish()
}
