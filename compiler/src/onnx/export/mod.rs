//! ONNX export: a Kiln [`Graph`] (and values for some of its inputs) becomes an `.onnx` model at opset
//! [`OPSET`] (18, IR version [`IR_VERSION`] = 8), with static shapes.
//!
//! ```no_run
//! # let graph = kiln::ir::Graph::new("g");
//! let bytes = kiln::onnx::export(&graph, &[], &kiln::onnx::ExportOptions::default()).unwrap();
//! std::fs::write("model.onnx", bytes).unwrap();
//! ```
//!
//! - **Inputs**: an input given a value becomes an initializer of that name (a trained parameter, a batch norm's
//!   running statistics); every other input is a graph input of its Kiln type (f32 → FLOAT, f64 → DOUBLE, i32 →
//!   INT32, bool → BOOL).
//! - **Outputs** keep their names: the output's node computes into that name (a second output of the same node, or
//!   an output that is an input, is an `Identity`).
//! - **Value names**: graph inputs keep their names; every other node is `%label` (its name or index, as in `.kir`
//!   text); helper values are `%label/k`. `%` and `/` are in no Kiln name, so nothing collides.
//! - **Dead nodes** (no output depends on them) are not exported, so an unsupported op there is no error.
//!
//! The mapping (`ops.rs` is one exhaustive `match` over [`kiln_ir::Op`]; **no wildcard arm**, so a new op must be
//! decided there):
//!
//! | Kiln op | ONNX |
//! |---|---|
//! | `input` | graph input, or initializer when given a value |
//! | `constant` | initializer (a splat over more than one element: scalar initializer + `Expand`) |
//! | `iota` | initializer, computed by the reference interpreter |
//! | `neg exp log sqrt recip tanh logistic abs erf sin cos floor ceil round` | `Neg Exp Log Sqrt Reciprocal Tanh Sigmoid Abs Erf Sin Cos Floor Ceil Round` |
//! | `trunc` | `Where(Less(x, 0), Ceil(x), Floor(x))` |
//! | `cast` | `Cast`; float → i32 as `IsNaN`/`Where`/`Clip`/`Cast`/`Where` (Kiln saturates and maps NaN to 0) |
//! | `add sub mul max min pow` | `Add Sub Mul Max Min Pow` |
//! | `div` | `Div`; on i32 guarded by `Where` (Kiln: `x / 0 = 0`, `MIN / -1 = MIN`; ONNX: undefined) |
//! | `and or xor` | `BitwiseAnd BitwiseOr BitwiseXor` (opset 18) |
//! | `compare{lt le gt ge eq ne}` | `Less LessOrEqual Greater GreaterOrEqual Equal`, `Not(Equal)` |
//! | `select` | `Where`; on bool branches `Or(And(c, a), And(Not(c), b))` (onnxruntime has no bool `Where`) |
//! | `reduce_sum`, `reduce_max` | `ReduceSum`, `ReduceMax` (axes as an input, `keepdims`); no axes: `Identity` |
//! | `reshape` | `Reshape` (`allowzero = 1` when the shape has a 0) |
//! | `transpose`, `broadcast`, `concat`, `matmul` | `Transpose`, `Expand`, `Concat`, `MatMul` |
//! | `slice` | `Slice` over the axes not taken whole (`Identity` when none) |
//! | `pad` | `Pad` (constant mode, the fill as a scalar input) |
//! | `windows` | one `Gather` per windowed dim with a constant `[o, k]` index table, then `Transpose` |
//! | `gather` | `GatherElements`, its index guarded by `Where` (Kiln reads 0 out of range; ONNX rejects it) |
//! | `shl shr mul_hi overlap_add` | refused: [`ExportError::Unsupported`] naming the node |
//!
//! Convolutions and pooling are compositions in Kiln (SPEC §3.10): they export as the `Pad`, `Gather`
//! (im2col), `MatMul` and `ReduceMax`/`ReduceSum` they are made of, not as ONNX `Conv`/`MaxPool` nodes; the values
//! are the same. `shl`, `shr` and `mul_hi` only occur in the counter-based random numbers of training-mode dropout,
//! and `overlap_add` in gradients, so inference graphs do not contain them.

mod emit;
mod ops;
mod proto_values;

use super::proto::{GraphProto, ModelProto, OperatorSetIdProto};
use emit::Emitter;
use kiln_ir::{Graph, NodeId, Op, Tensor};
use proto_values::{tensor_proto, value_info};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The default-domain opset every exported model imports.
pub const OPSET: i64 = 18;
/// The ONNX IR version written (8: the first with opset 18).
pub const IR_VERSION: i64 = 8;

/// How to write the model.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// `ModelProto.producer_version` (default: this crate's version).
    pub producer_version: String,
    /// `ModelProto.doc_string`, e.g. how the model was trained.
    pub doc: String,
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions {
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            doc: String::new(),
        }
    }
}

/// Why a graph could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A node whose op has no ONNX equivalent.
    #[error("node `%{node}` ({op}: {types}): no ONNX equivalent at opset {OPSET}: {reason}")]
    Unsupported {
        /// The node's label (its name, or its index).
        node: String,
        /// The op's mnemonic.
        op: String,
        /// Operand types → result type.
        types: String,
        reason: String,
    },
    /// A value given for an input that does not exist or does not have the input's type.
    #[error("value `{name}`: {message}")]
    Value { name: String, message: String },
    /// Anything else about the graph that ONNX cannot hold, naming the place.
    #[error("{0}")]
    Invalid(String),
}

impl ExportError {
    fn unsupported(graph: &Graph, id: NodeId, reason: &str) -> ExportError {
        ExportError::Unsupported {
            node: graph.label(id),
            op: graph.node(id).op.mnemonic().to_string(),
            types: signature(graph, id),
            reason: reason.to_string(),
        }
    }

    fn node(graph: &Graph, id: NodeId, message: &str) -> ExportError {
        ExportError::Invalid(format!(
            "node `%{}` ({}: {}): {message}",
            graph.label(id),
            graph.node(id).op.mnemonic(),
            signature(graph, id)
        ))
    }
}

/// `f32[2,3], f32[3] -> f32[2,3]`: a node's operand and result types, for messages.
fn signature(graph: &Graph, id: NodeId) -> String {
    let node = graph.node(id);
    let operands: Vec<String> = node
        .operands
        .iter()
        .map(|&o| graph.ty(o).to_string())
        .collect();
    format!("{} -> {}", operands.join(", "), node.ty)
}

/// What was written: printed by `kiln export` and `kiln train --onnx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub nodes: usize,
    pub initializers: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub opset: i64,
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nodes, {} initializers, {} inputs, {} outputs, opset {}",
            self.nodes, self.initializers, self.inputs, self.outputs, self.opset
        )
    }
}

/// Exports `graph` as ONNX protobuf bytes; `values` are `(input name, value)` pairs that become initializers.
pub fn export(
    graph: &Graph,
    values: &[(String, Tensor)],
    options: &ExportOptions,
) -> Result<Vec<u8>, ExportError> {
    use prost::Message;
    Ok(export_model(graph, values, options)?.0.encode_to_vec())
}

/// [`export`], returning the `ModelProto` and a summary instead of the bytes.
pub fn export_model(
    graph: &Graph,
    values: &[(String, Tensor)],
    options: &ExportOptions,
) -> Result<(ModelProto, ExportSummary), ExportError> {
    let given = given_values(graph, values)?;
    let names = value_names(graph)?;
    let live = graph.live();
    let mut e = Emitter::default();
    let mut inputs = Vec::new();
    for id in graph.ids() {
        let node = graph.node(id);
        if let Op::Input { name, ty, .. } = &node.op {
            match given.get(name.as_str()) {
                Some(value) => e.initializers.push(tensor_proto(name, value)),
                None => inputs.push(value_info(name, ty)),
            }
        } else if live[id.index()] {
            let ins: Vec<&str> = node
                .operands
                .iter()
                .map(|o| names[o.index()].as_str())
                .collect();
            ops::lower(&mut e, graph, id, &ins, &names[id.index()])?;
        }
    }
    let mut outputs = Vec::new();
    for o in graph.outputs() {
        let value = &names[o.value.index()];
        if *value != o.name {
            e.node("Identity", &[value], &o.name, vec![]);
        }
        outputs.push(value_info(&o.name, graph.ty(o.value)));
    }
    let summary = ExportSummary {
        nodes: e.nodes.len(),
        initializers: e.initializers.len(),
        inputs: inputs.len(),
        outputs: outputs.len(),
        opset: OPSET,
    };
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("kiln".to_string()),
        producer_version: Some(options.producer_version.clone()),
        doc_string: (!options.doc.is_empty()).then(|| options.doc.clone()),
        graph: Some(GraphProto {
            node: e.nodes,
            name: Some(graph.name.clone()),
            initializer: e.initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok((model, summary))
}

/// `values` by input name, each checked: an existing input, its type, given once.
fn given_values<'v>(
    graph: &Graph,
    values: &'v [(String, Tensor)],
) -> Result<HashMap<&'v str, &'v Tensor>, ExportError> {
    let mut given = HashMap::new();
    for (name, value) in values {
        let error = |message: String| ExportError::Value {
            name: name.clone(),
            message,
        };
        let input = graph.input(name).ok_or_else(|| {
            let inputs: Vec<&str> = graph.inputs().map(|i| i.name).collect();
            error(format!(
                "graph `{}` has no such input (its inputs: {})",
                graph.name,
                inputs.join(", ")
            ))
        })?;
        if value.ty() != input.ty {
            return Err(error(format!(
                "the value is {} but the input is {}",
                value.ty(),
                input.ty
            )));
        }
        if given.insert(name.as_str(), value).is_some() {
            return Err(error("given more than once".to_string()));
        }
    }
    Ok(given)
}

/// The ONNX value name of every node: inputs keep their names; the first output naming a (non-input) node gives it
/// its name; every other node is `%label`. ONNX has one namespace for values, Kiln separate ones for labels and
/// outputs, so an output named like an input but computing something else cannot be written.
fn value_names(graph: &Graph) -> Result<Vec<String>, ExportError> {
    let mut names: Vec<String> = graph
        .ids()
        .map(|id| match &graph.node(id).op {
            Op::Input { name, .. } => name.clone(),
            _ => format!("%{}", graph.label(id)),
        })
        .collect();
    let inputs: HashSet<&str> = graph.inputs().map(|i| i.name).collect();
    let mut named = vec![false; graph.len()];
    for o in graph.outputs() {
        let id = o.value.index();
        let is_input = matches!(graph.node(o.value).op, Op::Input { .. });
        if inputs.contains(o.name.as_str()) {
            if !(is_input && names[id] == o.name) {
                return Err(ExportError::Invalid(format!(
                    "output `{}` has the name of an input but another value (ONNX values share one namespace)",
                    o.name
                )));
            }
        } else if !is_input && !named[id] {
            names[id] = o.name.clone();
            named[id] = true;
        }
    }
    Ok(names)
}
