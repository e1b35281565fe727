//! Graph → `.kir` text, in the one canonical spelling the parser round-trips: two-space indent, attributes in a fixed
//! order per op, integer lists without spaces (`[1,0]`), value lists and operands separated by `, `.

use crate::graph::{is_valid_name, Graph, NodeId};
use crate::op::{Literal, Op};
use crate::types::DType;
use std::fmt::Write;

/// Prints a graph in the `.kir` text format.
pub fn print(graph: &Graph) -> String {
    let mut out = String::new();
    out.push_str("graph ");
    out.push_str(&graph_name(&graph.name));
    out.push_str(" {\n");
    for (i, node) in graph.nodes().iter().enumerate() {
        let id = NodeId(i as u32);
        let _ = write!(out, "  %{} = {}", graph.label(id), node.op.mnemonic());
        let attrs = attributes(&node.op);
        if !attrs.is_empty() {
            let _ = write!(out, "{{{}}}", attrs.join(", "));
        }
        for (k, operand) in node.operands.iter().enumerate() {
            out.push_str(if k == 0 { " %" } else { ", %" });
            out.push_str(&operand_label(graph, *operand));
        }
        let _ = writeln!(out, " : {}", node.ty);
    }
    for o in graph.outputs() {
        let _ = write!(
            out,
            "  output {} = %{}",
            o.name,
            operand_label(graph, o.value)
        );
        if let Some(input) = &o.aliases {
            let _ = write!(out, " aliases %{input}");
        }
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

/// The label of a referenced node; a dangling reference (only in a graph that would not verify) prints as its index
/// rather than panicking.
fn operand_label(graph: &Graph, id: NodeId) -> String {
    if id.index() < graph.len() {
        graph.label(id)
    } else {
        id.0.to_string()
    }
}

/// A graph name prints bare when it is a valid name, else quoted, so that any `Graph::name` round-trips.
fn graph_name(name: &str) -> String {
    if is_valid_name(name) {
        return name.to_string();
    }
    let mut quoted = String::from("\"");
    for c in name.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{{{:x}}}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `key=value` for each attribute of `op`, in the table's order. Sources' types are printed after the `:`.
pub(crate) fn attributes(op: &Op) -> Vec<String> {
    let names = op.kind().attributes().iter().map(|(name, _)| name);
    names
        .zip(attribute_values(op))
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

/// Each attribute's value as `.kir` spells it, in the order of [`crate::op::OpKind::attributes`].
fn attribute_values(op: &Op) -> Vec<String> {
    match op {
        Op::Input { role, .. } => vec![role.to_string()],
        Op::Constant { ty, value } => vec![literal(value, ty.dtype)],
        Op::Iota { axis, .. } | Op::Concat { axis } | Op::Gather { axis } => vec![axis.to_string()],
        Op::Cast { to } => vec![to.to_string()],
        Op::Compare(dir) => vec![dir.name().to_string()],
        Op::AllReduce { op, group } => vec![op.name().to_string(), group.to_string()],
        Op::ReduceSum { axes, keep_dims } | Op::ReduceMax { axes, keep_dims } => {
            vec![int_list(axes), keep_dims.to_string()]
        }
        Op::Reshape { shape } | Op::Broadcast { shape } => vec![shape.to_string()],
        Op::Transpose { perm } => vec![int_list(perm)],
        Op::Slice { start, end } => vec![int_list(start), int_list(end)],
        // The fill prints in the operand's dtype, which is the result's; the printer has only the op here, so a
        // float fill prints as f64 text (exact for every f32).
        Op::Pad { low, high, value } => {
            vec![int_list(low), int_list(high), literal(value, DType::F64)]
        }
        Op::Windows {
            window,
            stride,
            dilation,
        } => vec![int_list(window), int_list(stride), int_list(dilation)],
        Op::OverlapAdd {
            size,
            stride,
            dilation,
        } => vec![int_list(size), int_list(stride), int_list(dilation)],
        Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Matmul => Vec::new(),
    }
}

pub(crate) fn int_list(xs: &[usize]) -> String {
    let items: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// A splat prints as one value, a dense literal as a list, so that the two stay distinct through a round trip.
pub(crate) fn literal(value: &Literal, dtype: DType) -> String {
    match value {
        Literal::Splat(v) => number(*v, dtype),
        Literal::Dense(vs) => {
            let items: Vec<String> = vs.iter().map(|&v| number(v, dtype)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// Floats print with `{:?}` (the shortest text that reads back to the same f64: `0.5`, `1e-5`, `-100.0`) or `inf`,
/// `-inf`, `nan`; integer and bool values print as integers.
pub(crate) fn number(v: f64, dtype: DType) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    // 2^53: below it every integral f64 converts to i64 exactly.
    let integral = v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0;
    if !dtype.is_float() && integral {
        return format!("{}", v as i64);
    }
    // An f32 constant holds an f32 value: its shortest f32 text (`0.9`, not `0.8999999761581421`) reads back to it,
    // since the parser rounds f32 constants to the nearest f32.
    if dtype == DType::F32 && (v as f32) as f64 == v {
        return format!("{:?}", v as f32);
    }
    format!("{v:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_shortest_round_trip() {
        assert_eq!(number(0.5, DType::F32), "0.5");
        assert_eq!(number(1e-5, DType::F64), "1e-5");
        assert_eq!(number(-100.0, DType::F32), "-100.0");
        assert_eq!(number(f64::INFINITY, DType::F32), "inf");
        assert_eq!(number(f64::NEG_INFINITY, DType::F32), "-inf");
        assert_eq!(number(f64::NAN, DType::F64), "nan");
        assert_eq!(number(3.0, DType::I32), "3");
        assert_eq!(number(-7.0, DType::I32), "-7");
        assert_eq!(number(1.0, DType::Bool), "1");
        // Not representable as i32: printed as a float rather than silently changed.
        assert_eq!(number(0.5, DType::I32), "0.5");
    }

    #[test]
    fn odd_graph_names_are_quoted() {
        assert_eq!(graph_name("mlp.v2"), "mlp.v2");
        assert_eq!(graph_name(""), "\"\"");
        assert_eq!(graph_name("a \"b\"\n\u{1}"), r#""a \"b\"\n\u{1}""#);
    }
}
