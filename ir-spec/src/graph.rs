//! The graph: a DAG of typed nodes in insertion (= topological) order, plus named outputs.
//!
//! Operands always refer to earlier nodes, so insertion order is a topological order and every walk over `nodes()` is
//! deterministic. Inputs are the nodes whose op is `Op::Input`, in insertion order.

use crate::error::IrError;
use crate::op::{Op, Role};
use crate::types::TensorType;
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Index of a node in its graph. Stable: passes that build a new graph map old ids to new ones explicitly.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Operand list; almost every op has at most three.
pub type Operands = SmallVec<[NodeId; 3]>;

#[derive(Clone, PartialEq, Debug)]
pub struct Node {
    pub op: Op,
    pub operands: Operands,
    /// The result type, as inferred by `Op::infer` when the node was added.
    pub ty: TensorType,
    /// Optional label for printing (`%h1`); inputs are labelled by their input name instead.
    pub name: Option<String>,
}

/// A named graph result. `aliases` names the input this output replaces (an updated parameter or optimizer state),
/// so a runtime may write it in place.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Output {
    pub name: String,
    pub value: NodeId,
    pub aliases: Option<String>,
}

#[derive(Clone, Default)]
pub struct Graph {
    pub name: String,
    nodes: Vec<Node>,
    outputs: Vec<Output>,
    /// Indexes derived from `nodes` and `outputs`, so that adding a node or an output checks its name in O(1) rather
    /// than scanning the graph (which made parsing quadratic). Every method that sets a label or an output keeps
    /// them in step; they are not part of the graph's value (equality and `Debug` ignore them).
    index: NameIndex,
}

#[derive(Clone, Default)]
struct NameIndex {
    /// Each node label that is a name (input names and explicit node names) → its node.
    labels: HashMap<String, NodeId>,
    /// Each output name → its position in `outputs`.
    outputs: HashMap<String, usize>,
    /// The inputs some output aliases.
    aliased: HashSet<String>,
}

/// Equal graphs have equal names, nodes and outputs; the name index is a function of those.
impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        self.name == other.name && self.nodes == other.nodes && self.outputs == other.outputs
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("name", &self.name)
            .field("nodes", &self.nodes)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// A graph input, as seen by callers.
#[derive(Clone, Copy, Debug)]
pub struct InputInfo<'g> {
    pub id: NodeId,
    pub name: &'g str,
    pub role: Role,
    pub ty: &'g TensorType,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.nodes[id.index()].ty
    }

    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    pub fn output(&self, name: &str) -> Option<&Output> {
        self.index.outputs.get(name).map(|&i| &self.outputs[i])
    }

    /// The graph inputs in insertion order.
    pub fn inputs(&self) -> impl Iterator<Item = InputInfo<'_>> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| {
            let Op::Input { name, role, ty } = &n.op else {
                return None;
            };
            Some(InputInfo {
                id: NodeId(i as u32),
                name,
                role: *role,
                ty,
            })
        })
    }

    pub fn input(&self, name: &str) -> Option<InputInfo<'_>> {
        let id = *self.index.labels.get(name)?;
        let Op::Input { name, role, ty } = &self.nodes[id.index()].op else {
            return None;
        };
        Some(InputInfo {
            id,
            name,
            role: *role,
            ty,
        })
    }

    /// The label a node prints with: its input name, its explicit name, or its index.
    pub fn label(&self, id: NodeId) -> String {
        let node = &self.nodes[id.index()];
        match (&node.op, &node.name) {
            (Op::Input { name, .. }, _) => name.clone(),
            (_, Some(name)) => name.clone(),
            _ => id.0.to_string(),
        }
    }

    /// Appends a node after checking its operands exist and its typing rule holds.
    pub fn add(&mut self, op: Op, operands: &[NodeId]) -> Result<NodeId, IrError> {
        self.add_named(op, operands, None)
    }

    pub fn add_named(
        &mut self,
        op: Op,
        operands: &[NodeId],
        name: Option<String>,
    ) -> Result<NodeId, IrError> {
        let id = NodeId(self.nodes.len() as u32);
        if let Some(bad) = operands.iter().find(|o| o.index() >= self.nodes.len()) {
            return Err(IrError::UnknownOperand {
                node: id.0.to_string(),
                op: op.mnemonic(),
                operand: bad.0,
            });
        }
        // An input's label is its input name; an explicit name on an input is kept but never its label.
        let label = match (&op, &name) {
            (Op::Input { name, .. }, _) => Some(name),
            (_, name) => name.as_ref(),
        };
        if let Some(label) = label {
            self.check_new_label(label, None)?;
        }
        if let (Op::Input { .. }, Some(name)) = (&op, &name) {
            self.check_new_label(name, None)?;
        }
        let ty = {
            let types: SmallVec<[&TensorType; 3]> = operands.iter().map(|o| self.ty(*o)).collect();
            op.infer(&types).map_err(|e| IrError::Type {
                // Named as it prints: an input by its input name.
                node: label.cloned().unwrap_or_else(|| id.0.to_string()),
                op: op.mnemonic(),
                message: e.0,
            })?
        };
        if let Some(label) = label {
            self.index.labels.insert(label.clone(), id);
        }
        self.nodes.push(Node {
            op,
            operands: operands.iter().copied().collect(),
            ty,
            name,
        });
        Ok(id)
    }

    /// Adds a graph input.
    pub fn add_input(
        &mut self,
        name: impl Into<String>,
        role: Role,
        ty: TensorType,
    ) -> Result<NodeId, IrError> {
        self.add(
            Op::Input {
                name: name.into(),
                role,
                ty,
            },
            &[],
        )
    }

    /// Gives a node a printing label (ignored for inputs, which print with their input name).
    pub fn set_name(&mut self, id: NodeId, name: impl Into<String>) -> Result<(), IrError> {
        let name = name.into();
        if id.index() >= self.nodes.len() {
            return Err(IrError::Invalid(format!(
                "cannot name node {id} `{name}`: the graph has {} nodes",
                self.nodes.len()
            )));
        }
        self.check_new_label(&name, Some(id))?;
        let node = &mut self.nodes[id.index()];
        if !matches!(node.op, Op::Input { .. }) {
            // The old name stops being a label; the new one starts.
            if let Some(old) = node.name.take() {
                self.index.labels.remove(&old);
            }
            self.index.labels.insert(name.clone(), id);
        }
        node.name = Some(name);
        Ok(())
    }

    /// A label must be a valid name (see [`is_valid_name`]), not all digits (those are index labels), and unused.
    fn check_new_label(&self, label: &str, except: Option<NodeId>) -> Result<(), IrError> {
        if !is_valid_name(label) || label.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IrError::BadName {
                name: label.to_string(),
            });
        }
        let taken = self
            .index
            .labels
            .get(label)
            .is_some_and(|&owner| except != Some(owner));
        if taken {
            return Err(IrError::Duplicate {
                what: "node",
                name: label.to_string(),
            });
        }
        Ok(())
    }

    /// Marks `value` as a named output.
    pub fn add_output(&mut self, name: impl Into<String>, value: NodeId) -> Result<(), IrError> {
        self.add_output_aliasing(name, value, None)
    }

    /// Marks `value` as a named output that replaces input `aliases` (same type) after each run.
    pub fn add_output_aliasing(
        &mut self,
        name: impl Into<String>,
        value: NodeId,
        aliases: Option<String>,
    ) -> Result<(), IrError> {
        let name = name.into();
        if !is_valid_name(&name) {
            return Err(IrError::BadName { name });
        }
        if value.index() >= self.nodes.len() {
            return Err(IrError::UnknownOperand {
                node: format!("output {name}"),
                op: "output",
                operand: value.0,
            });
        }
        if self.output(&name).is_some() {
            return Err(IrError::Duplicate {
                what: "output",
                name,
            });
        }
        if let Some(target) = &aliases {
            let Some(input) = self.input(target) else {
                return Err(IrError::BadAlias {
                    output: name,
                    reason: format!("there is no input `{target}`"),
                });
            };
            if input.ty != self.ty(value) {
                return Err(IrError::BadAlias {
                    output: name,
                    reason: format!(
                        "its type {} differs from input `{target}`'s {}",
                        self.ty(value),
                        input.ty
                    ),
                });
            }
            if self.index.aliased.contains(target) {
                return Err(IrError::BadAlias {
                    output: name,
                    reason: format!("input `{target}` is already aliased"),
                });
            }
        }
        self.index.outputs.insert(name.clone(), self.outputs.len());
        if let Some(target) = &aliases {
            self.index.aliased.insert(target.clone());
        }
        self.outputs.push(Output {
            name,
            value,
            aliases,
        });
        Ok(())
    }

    /// Removes every output (used by transformations that rebuild the output list).
    pub fn clear_outputs(&mut self) {
        self.outputs.clear();
        self.index.outputs.clear();
        self.index.aliased.clear();
    }

    /// For every node, the nodes that use it, in ascending order.
    pub fn users(&self) -> Vec<Vec<NodeId>> {
        let mut users = vec![Vec::new(); self.nodes.len()];
        for id in self.ids() {
            for &o in &self.nodes[id.index()].operands {
                if users[o.index()].last() != Some(&id) {
                    users[o.index()].push(id);
                }
            }
        }
        users
    }

    /// Nodes from which some output is reachable.
    pub fn live(&self) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        for o in &self.outputs {
            live[o.value.index()] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if live[i] {
                for o in &self.nodes[i].operands {
                    live[o.index()] = true;
                }
            }
        }
        live
    }
}

/// Names of inputs, nodes and outputs: ASCII letters, digits, `_` and `.`, not empty (`grad.l1.weight` is one name).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::UnaryOp;

    fn chain() -> (Graph, NodeId, NodeId) {
        let mut g = Graph::new("g");
        let x = g.add_input("x", Role::Data, TensorType::f32(&[2])).unwrap();
        let y = g.add(Op::Unary(UnaryOp::Neg), &[x]).unwrap();
        (g, x, y)
    }

    fn is_duplicate(r: Result<impl fmt::Debug, IrError>) -> bool {
        matches!(r, Err(IrError::Duplicate { what: "node", .. }))
    }

    #[test]
    fn renaming_frees_the_old_label() {
        let (mut g, x, y) = chain();
        g.set_name(y, "a").unwrap();
        g.set_name(y, "b").unwrap();
        // `a` is free again, `b` is taken, and a node may be renamed to its own name.
        let z = g
            .add_named(Op::Unary(UnaryOp::Neg), &[x], Some("a".into()))
            .unwrap();
        assert!(is_duplicate(g.set_name(z, "b")));
        g.set_name(y, "b").unwrap();
        assert!(is_duplicate(g.add_named(
            Op::Unary(UnaryOp::Exp),
            &[x],
            Some("b".into())
        )));
        assert!(is_duplicate(g.set_name(z, "x")));
        assert_eq!((g.label(y), g.label(z)), ("b".to_string(), "a".to_string()));
    }

    #[test]
    fn an_inputs_explicit_name_is_not_its_label() {
        let (mut g, x, y) = chain();
        // Ignored for printing, so it does not take the label `alias`...
        g.set_name(x, "alias").unwrap();
        assert_eq!(g.label(x), "x");
        g.set_name(y, "alias").unwrap();
        // ... and the input keeps its own.
        assert!(is_duplicate(g.set_name(y, "x")));
        assert!(is_duplicate(g.add_input(
            "x",
            Role::Data,
            TensorType::f32(&[1])
        )));
        assert_eq!(g.input("x").map(|i| i.id), Some(x));
        assert!(
            g.input("alias").is_none(),
            "a non-input label is not an input"
        );
    }

    #[test]
    fn a_rejected_node_takes_no_label() {
        let (mut g, x, _) = chain();
        let bad = g.add_named(Op::Binary(crate::op::BinaryOp::Pow), &[x], Some("p".into()));
        assert!(matches!(bad, Err(IrError::Type { .. })));
        g.add_named(Op::Unary(UnaryOp::Exp), &[x], Some("p".into()))
            .unwrap();
        assert!(matches!(
            g.set_name(NodeId(99), "q"),
            Err(IrError::Invalid(_))
        ));
    }

    #[test]
    fn outputs_and_aliases_are_indexed_and_cleared() {
        let (mut g, x, y) = chain();
        g.add_output_aliasing("o", y, Some("x".into())).unwrap();
        assert!(matches!(
            g.add_output("o", x),
            Err(IrError::Duplicate { what: "output", .. })
        ));
        assert!(matches!(
            g.add_output_aliasing("p", y, Some("x".into())),
            Err(IrError::BadAlias { .. })
        ));
        assert_eq!(g.output("o").map(|o| o.value), Some(y));
        g.clear_outputs();
        assert!(g.output("o").is_none());
        g.add_output_aliasing("o", x, Some("x".into())).unwrap();
        assert_eq!(g.output("o").map(|o| o.value), Some(x));
    }

    #[test]
    fn clones_keep_their_own_index_and_equality_ignores_it() {
        let (mut g, x, y) = chain();
        g.set_name(y, "a").unwrap();
        let mut h = g.clone();
        assert_eq!(g, h);
        h.set_name(y, "b").unwrap();
        assert_ne!(g, h);
        // Renaming in the clone freed `a` there only.
        assert!(is_duplicate(g.add_named(
            Op::Unary(UnaryOp::Exp),
            &[x],
            Some("a".into())
        )));
        h.add_named(Op::Unary(UnaryOp::Exp), &[x], Some("a".into()))
            .unwrap();
        // Built in a different order, same value: equal.
        let (mut k, _, y2) = chain();
        k.set_name(y2, "zz").unwrap();
        k.set_name(y2, "a").unwrap();
        assert_eq!(k, g);
    }
}
