//! The one way passes edit a graph: copy it node by node into a new graph, mapping old ids to new ones.
//!
//! `Graph` only appends, so a pass walks the old graph in order (operands before users) and, for each node, either
//! copies it with its operands remapped, maps it to a node already in the new graph, or appends replacement nodes.
//! [`Rewriter::finish`] re-adds the outputs, with their names and aliases, at their new values. Inputs a pass copies keep
//! their relative order, so the graph's signature is unchanged.

use kiln_ir::graph::Operands;
use kiln_ir::{Graph, IrError, NodeId, Op};

/// A new graph under construction from an old one, with the old→new id map.
pub struct Rewriter<'g> {
    old: &'g Graph,
    new: Graph,
    map: Vec<Option<NodeId>>,
}

impl<'g> Rewriter<'g> {
    /// An empty new graph with the old graph's name.
    pub fn new(old: &'g Graph) -> Rewriter<'g> {
        Rewriter {
            old,
            new: Graph::new(old.name.clone()),
            map: vec![None; old.len()],
        }
    }

    /// The graph being rewritten.
    pub fn old(&self) -> &'g Graph {
        self.old
    }

    /// The graph built so far.
    pub fn new_graph(&self) -> &Graph {
        &self.new
    }

    /// The new id of an old node that has been copied or mapped.
    ///
    /// Panics if it has not: passes visit nodes in order, so every operand is mapped before its users.
    pub fn mapped(&self, old: NodeId) -> NodeId {
        self.map[old.index()].expect("operands are mapped before their users")
    }

    /// The old node's operands, as new ids.
    pub fn mapped_operands(&self, old: NodeId) -> Operands {
        self.old
            .node(old)
            .operands
            .iter()
            .map(|&o| self.mapped(o))
            .collect()
    }

    /// Appends the old node unchanged but for its remapped operands, keeping its name.
    pub fn copy(&mut self, old: NodeId) -> Result<NodeId, IrError> {
        let node = self.old.node(old);
        let operands = self.mapped_operands(old);
        // An input's name is its `Op::Input` name, not a label.
        let name = if matches!(node.op, Op::Input { .. }) {
            None
        } else {
            node.name.clone()
        };
        let new = self.new.add_named(node.op.clone(), &operands, name)?;
        self.map[old.index()] = Some(new);
        Ok(new)
    }

    /// Appends a fresh, unnamed node to the new graph (operands are new ids).
    pub fn add(&mut self, op: Op, operands: &[NodeId]) -> Result<NodeId, IrError> {
        self.new.add(op, operands)
    }

    /// Maps the old node to `new`, a node of the new graph with the same type (else an error: a bug in the pass).
    ///
    /// An old node's name moves to `new` when `new` has none (and is not an input), so labels such as `%h0` survive
    /// rewrites of the node they label.
    pub fn set(&mut self, old: NodeId, new: NodeId) -> Result<(), IrError> {
        if self.old.ty(old) != self.new.ty(new) {
            return Err(IrError::Invalid(format!(
                "a rewrite replaced %{} ({}) of type {} by a value of type {}",
                self.old.label(old),
                self.old.node(old).op.mnemonic(),
                self.old.ty(old),
                self.new.ty(new)
            )));
        }
        self.map[old.index()] = Some(new);
        let target = self.new.node(new);
        if let Some(name) = &self.old.node(old).name {
            if target.name.is_none() && !matches!(target.op, Op::Input { .. }) {
                self.new.set_name(new, name.clone())?;
            }
        }
        Ok(())
    }

    /// The new graph, with the old graph's outputs (names and aliases) at their new values.
    pub fn finish(mut self) -> Result<Graph, IrError> {
        for out in self.old.outputs() {
            let value = self.mapped(out.value);
            self.new
                .add_output_aliasing(out.name.clone(), value, out.aliases.clone())?;
        }
        Ok(self.new)
    }
}

/// How many times each node is used: once per user node (counted once even if it uses it twice) and once per output.
pub fn use_counts(graph: &Graph) -> Vec<usize> {
    let mut uses: Vec<usize> = graph.users().iter().map(Vec::len).collect();
    for out in graph.outputs() {
        uses[out.value.index()] += 1;
    }
    uses
}
