//! Graphviz DOT export, in the spirit of torchviz's `make_dot`.
//!
//! One box per node, labelled with its `.kir` label, its op (with the attributes that matter when reading the picture)
//! and its result type; edges run from operand to user. Inputs are coloured by role (data white, params orange-red,
//! state light yellow), constants are small grey boxes, other ops light blue. Each output is a green ellipse with an
//! edge from its value; an output that replaces an input has a dashed edge back to that input. Render with
//! `dot -Tsvg graph.dot > graph.svg`.

use crate::graph::{Graph, NodeId};
use crate::op::{Literal, Op, Role};
use crate::text::printer;
use std::fmt::Write;

/// How to draw a graph. `groups[i]` (if given) puts node `i` into cluster `group_names[groups[i]]`: autodiff uses it to
/// tell forward from backward nodes, fusion to show one cluster per kernel.
///
/// A missing group name is drawn as `group N`; nodes past the end of `groups` are drawn outside every cluster.
#[derive(Clone, Debug, Default)]
pub struct DotOptions {
    pub groups: Option<Vec<usize>>,
    pub group_names: Vec<String>,
}

/// Cluster backgrounds, cycled: pale and distinct from the node fills so that both stay readable.
const CLUSTER_FILLS: [&str; 8] = [
    "#f2f2f2", "#fdebd0", "#e8f8f5", "#f5eef8", "#fef9e7", "#eaf2f8", "#fadbd8", "#e9f7ef",
];

/// Dense constants with more elements than this show their count instead of their values.
const MAX_SHOWN_VALUES: usize = 4;

pub fn to_dot(graph: &Graph, options: &DotOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&graph.name));
    out.push_str("  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=11];\n");
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n",
    );
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");

    let group_of = |i: usize| options.groups.as_ref().and_then(|g| g.get(i).copied());
    // Top-level nodes first, then each cluster with its nodes, in ascending group order.
    for i in (0..graph.len()).filter(|&i| group_of(i).is_none()) {
        let _ = writeln!(out, "  {}", node_statement(graph, NodeId(i as u32)));
    }
    // Each group's nodes, ascending, in one pass: looking them up per group would take groups × nodes steps (a
    // million-node chain fuses into a thousand kernels).
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..graph.len() {
        if let Some(g) = group_of(i) {
            members.entry(g).or_default().push(i);
        }
    }
    for (g, nodes) in members {
        let name = options
            .group_names
            .get(g)
            .cloned()
            .unwrap_or_else(|| format!("group {g}"));
        let _ = writeln!(out, "  subgraph cluster_{g} {{");
        let _ = writeln!(
            out,
            "    label={}; style=\"rounded,filled\"; fillcolor=\"{}\"; color=\"#999999\";",
            quote(&name),
            CLUSTER_FILLS[g % CLUSTER_FILLS.len()]
        );
        for i in nodes {
            let _ = writeln!(out, "    {}", node_statement(graph, NodeId(i as u32)));
        }
        out.push_str("  }\n");
    }

    for (i, node) in graph.nodes().iter().enumerate() {
        for operand in &node.operands {
            if operand.index() < graph.len() {
                let _ = writeln!(out, "  n{} -> n{i};", operand.0);
            }
        }
    }

    for (k, o) in graph.outputs().iter().enumerate() {
        let _ = writeln!(
            out,
            "  out{k} [label={}, shape=ellipse, style=filled, fillcolor=\"#b7e4c7\"];",
            quote(&o.name)
        );
        if o.value.index() < graph.len() {
            let _ = writeln!(out, "  n{} -> out{k};", o.value.0);
        }
        if let Some(input) = o.aliases.as_deref().and_then(|a| graph.input(a)) {
            let _ = writeln!(
                out,
                "  out{k} -> n{} [style=dashed, color=\"#2d6a4f\", label=\"replaces\", constraint=false];",
                input.id.0
            );
        }
    }
    out.push_str("}\n");
    out
}

/// `nI [label=..., fillcolor=...]` for one node.
fn node_statement(graph: &Graph, id: NodeId) -> String {
    let node = graph.node(id);
    let label = format!(
        "%{}\n{}\n{}",
        graph.label(id),
        op_summary(&node.op),
        node.ty
    );
    // Fed values by role, constants small and grey; every computed value looks alike (the label tells them apart).
    let style = if let Op::Input { role, .. } = &node.op {
        match role {
            Role::Data => "fillcolor=white",
            Role::Param => "fillcolor=\"#f4a261\"",
            Role::State => "fillcolor=\"#fff3b0\"",
        }
    } else if let Op::Constant { .. } = &node.op {
        "fillcolor=\"#d9d9d9\", fontsize=8, height=0.3"
    } else {
        "fillcolor=\"#cfe8fc\""
    };
    format!("n{} [label={}, {style}];", id.0, quote(&label))
}

/// The op and the attributes worth seeing in a picture: `reduce_sum axes=[1]`, `input param`, `constant 0.5`.
fn op_summary(op: &Op) -> String {
    let m = op.mnemonic();
    match op {
        Op::Input { role, .. } => format!("{m} {role}"),
        Op::Constant { ty, value } => match value {
            Literal::Dense(vs) if vs.len() > MAX_SHOWN_VALUES => {
                format!("{m} [{} values]", vs.len())
            }
            _ => format!("{m} {}", printer::literal(value, ty.dtype)),
        },
        Op::Compare(dir) => format!("{m} {}", dir.name()),
        Op::Cast { to } => format!("{m} to {to}"),
        Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Matmul => m.to_string(),
        // Shapes are visible in the result type; the rest prints as in `.kir`.
        Op::Reshape { .. } | Op::Broadcast { .. } => m.to_string(),
        Op::Iota { .. }
        | Op::ReduceSum { .. }
        | Op::ReduceMax { .. }
        | Op::Transpose { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Pad { .. }
        | Op::Windows { .. }
        | Op::OverlapAdd { .. }
        | Op::Gather { .. }
        | Op::AllReduce { .. } => format!("{m} {}", printer::attributes(op).join(" ")),
    }
}

/// A DOT double-quoted string. Only `"` and `\` need escaping for DOT itself; newlines become `\n` line breaks and
/// other control characters are dropped, since no label needs them.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c if c.is_control() => {}
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_quotes_backslashes_and_newlines() {
        assert_eq!(quote("a\"b\\c\nd\u{7}"), r#""a\"b\\c\nd""#);
    }

    #[test]
    fn groups_out_of_range_do_not_panic() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", Role::Data, crate::types::TensorType::f32(&[2]))
            .unwrap();
        g.add(Op::Unary(crate::op::UnaryOp::Exp), &[x]).unwrap();
        let options = DotOptions {
            groups: Some(vec![7]),
            group_names: vec![],
        };
        let dot = to_dot(&g, &options);
        assert!(dot.contains("subgraph cluster_7"), "{dot}");
        assert!(dot.contains("label=\"group 7\""), "{dot}");
        assert!(dot.contains("n1 [label="), "{dot}");
    }
}
