//! The graph: a DAG of typed nodes in insertion (= topological) order, plus named outputs.
//!
//! Operands always refer to earlier nodes, so insertion order is a topological order and every walk over `nodes()` is
//! deterministic. Inputs are the nodes whose op is `Op::Input`, in insertion order.

use crate::error::IrError;
use crate::op::{Op, Role};
use crate::types::TensorType;
use smallvec::SmallVec;
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

#[derive(Clone, PartialEq, Debug, Default)]
pub struct Graph {
    pub name: String,
    nodes: Vec<Node>,
    outputs: Vec<Output>,
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
            nodes: Vec::new(),
            outputs: Vec::new(),
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
        self.outputs.iter().find(|o| o.name == name)
    }

    /// The graph inputs in insertion order.
    pub fn inputs(&self) -> impl Iterator<Item = InputInfo<'_>> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.op {
                Op::Input { name, role, ty } => Some(InputInfo {
                    id: NodeId(i as u32),
                    name,
                    role: *role,
                    ty,
                }),
                _ => None,
            })
    }

    pub fn input(&self, name: &str) -> Option<InputInfo<'_>> {
        self.inputs().find(|i| i.name == name)
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
        if let Op::Input {
            name: input_name, ..
        } = &op
        {
            self.check_new_label(input_name, None)?;
        }
        if let Some(label) = &name {
            self.check_new_label(label, None)?;
        }
        let ty = {
            let types: SmallVec<[&TensorType; 3]> = operands.iter().map(|o| self.ty(*o)).collect();
            op.infer(&types).map_err(|e| IrError::Type {
                node: name.clone().unwrap_or_else(|| id.0.to_string()),
                op: op.mnemonic(),
                message: e.0,
            })?
        };
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
        self.check_new_label(&name, Some(id))?;
        self.nodes[id.index()].name = Some(name);
        Ok(())
    }

    /// A label must be a valid name (see [`is_valid_name`]), not all digits (those are index labels), and unused.
    fn check_new_label(&self, label: &str, except: Option<NodeId>) -> Result<(), IrError> {
        if !is_valid_name(label) || label.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IrError::BadName {
                name: label.to_string(),
            });
        }
        let taken = self.nodes.iter().enumerate().any(|(i, n)| {
            let own = match &n.op {
                Op::Input { name, .. } => Some(name.as_str()),
                _ => n.name.as_deref(),
            };
            own == Some(label) && except != Some(NodeId(i as u32))
        });
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
            if self
                .outputs
                .iter()
                .any(|o| o.aliases.as_deref() == Some(target))
            {
                return Err(IrError::BadAlias {
                    output: name,
                    reason: format!("input `{target}` is already aliased"),
                });
            }
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
