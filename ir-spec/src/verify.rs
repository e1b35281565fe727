//! The verifier: re-derives every node's type from its operands and checks the graph's structure.
//!
//! Every graph that leaves a pass or the parser is verified; a graph built only through `Graph::add` is well-typed by
//! construction, but passes may edit nodes directly.

use crate::error::IrError;
use crate::graph::{is_valid_name, Graph, NodeId};
use crate::op::Op;
use smallvec::SmallVec;
use std::collections::HashSet;

/// Checks that operands precede their users, every recorded type equals its inferred type, names are unique and valid,
/// and outputs (and their aliases) are well-formed.
pub fn verify(graph: &Graph) -> Result<(), IrError> {
    if !is_valid_name(&graph.name) {
        return Err(IrError::BadName {
            name: graph.name.clone(),
        });
    }
    let mut labels = HashSet::new();
    let mut inputs = HashSet::new();
    for (i, node) in graph.nodes().iter().enumerate() {
        let id = NodeId(i as u32);
        let label = graph.label(id);
        if node.name.is_some() || matches!(node.op, Op::Input { .. }) {
            if !is_valid_name(&label) || label.bytes().all(|b| b.is_ascii_digit()) {
                return Err(IrError::BadName { name: label });
            }
            if !labels.insert(label.clone()) {
                return Err(IrError::Duplicate {
                    what: "node",
                    name: label,
                });
            }
        }
        if let Op::Input { name, .. } = &node.op {
            inputs.insert(name.as_str());
        }
        if let Some(bad) = node.operands.iter().find(|o| o.index() >= i) {
            return Err(IrError::UnknownOperand {
                node: label,
                op: node.op.mnemonic(),
                operand: bad.0,
            });
        }
        let types: SmallVec<[_; 3]> = node.operands.iter().map(|o| graph.ty(*o)).collect();
        let inferred = node.op.infer(&types).map_err(|e| IrError::Type {
            node: label.clone(),
            op: node.op.mnemonic(),
            message: e.0,
        })?;
        if inferred != node.ty {
            return Err(IrError::TypeMismatch {
                node: label,
                op: node.op.mnemonic(),
                recorded: node.ty.to_string(),
                inferred: inferred.to_string(),
            });
        }
    }
    let mut output_names = HashSet::new();
    let mut aliased = HashSet::new();
    for out in graph.outputs() {
        if !is_valid_name(&out.name) {
            return Err(IrError::BadName {
                name: out.name.clone(),
            });
        }
        if !output_names.insert(out.name.as_str()) {
            return Err(IrError::Duplicate {
                what: "output",
                name: out.name.clone(),
            });
        }
        if out.value.index() >= graph.len() {
            return Err(IrError::UnknownOperand {
                node: format!("output {}", out.name),
                op: "output",
                operand: out.value.0,
            });
        }
        if let Some(target) = &out.aliases {
            let Some(input) = graph.input(target) else {
                return Err(IrError::BadAlias {
                    output: out.name.clone(),
                    reason: format!("no input `{target}`"),
                });
            };
            if input.ty != graph.ty(out.value) {
                return Err(IrError::BadAlias {
                    output: out.name.clone(),
                    reason: format!(
                        "type {} differs from input `{target}`'s {}",
                        graph.ty(out.value),
                        input.ty
                    ),
                });
            }
            if !aliased.insert(target.as_str()) {
                return Err(IrError::BadAlias {
                    output: out.name.clone(),
                    reason: format!("input `{target}` is already aliased"),
                });
            }
        }
    }
    Ok(())
}
