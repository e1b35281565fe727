//! Dead-code elimination: drops every node from which no output is reachable.
//!
//! Keeps every input, used or not (the inputs are the graph's signature: callers feed them by position), and every
//! output with its name and alias. Surviving nodes keep their names and relative order.
//!
//! Preserves: outputs bit-for-bit (nothing that is kept changes). Requires: a verified graph.

use super::rewrite::Rewriter;
use kiln_ir::{Graph, IrError, Op};

pub fn run(graph: &Graph) -> Result<Graph, IrError> {
    let live = graph.live();
    let mut rw = Rewriter::new(graph);
    for id in graph.ids() {
        let is_input = matches!(graph.node(id).op, Op::Input { .. });
        if live[id.index()] || is_input {
            rw.copy(id)?;
        }
    }
    rw.finish()
}
