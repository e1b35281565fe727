//! ONNX import: an `.onnx` model (protobuf `ModelProto`) becomes a Kiln [`Graph`]. Export, the other way, is
//! [`export`] (its module doc has the op mapping).
//!
//! ```no_run
//! let bytes = std::fs::read("model.onnx").unwrap();
//! let options = kiln::onnx::ImportOptions::default().dim("batch", 1);
//! let graph = kiln::onnx::import(&bytes, &options).unwrap();
//! ```
//!
//! How the ONNX model maps onto the IR:
//! - **Types.** float → f32, double → f64, bool → bool, every integer type → i32 (int64 values are range-checked
//!   when they become a tensor of the graph: a value outside i32 is an error naming the tensor). Other types
//!   (float16, strings, ...) are errors.
//! - **Shapes** are static in Kiln: a symbolic dim (`dim_param`) of a graph input takes its size from
//!   [`ImportOptions::dims`]; the error for missing ones lists them all.
//! - **Initializers** become constants, or `param` inputs with [`ImportOptions::trainable`] (their values are then
//!   in [`Imported::params`]).
//! - **A loss** ([`ImportOptions::loss`], see the `loss` module) may be appended on an output, for fine-tuning.
//! - **Static operands** (a `Reshape`'s shape, `Squeeze`'s axes, `Slice`'s starts, `Pad`'s pads, ...) must be known
//!   at import: initializers, `Constant` nodes and what [`fold`] computes from them (`Shape`, `Size`, integer
//!   arithmetic, `Concat`, `Gather`, ...). Anything else is an error naming the node.
//! - **Ops** are translated one family per module of [`ops`]; an op Kiln cannot express is
//!   [`ImportError::Unsupported`], naming the node and listing [`SUPPORTED_OPS`].
//!
//! Malformed bytes are an [`ImportError::Decode`], never a panic.

mod attrs;
mod convert;
pub mod export;
mod fold;
mod loss;
mod ops;
pub mod proto;
mod summary;
mod tensor;

pub use export::{export, export_model, ExportError, ExportOptions, ExportSummary};
pub use loss::{LossKind, LossSpec, LOSS_OUTPUT, TARGET_INPUT};
pub use ops::SUPPORTED_OPS;
pub use summary::Summary;

use kiln_ir::{Graph, IrError, Tensor};
use std::collections::BTreeMap;

/// How to fix what ONNX leaves open.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The size of each symbolic dim (`dim_param`) of the graph's inputs, by name.
    pub dims: BTreeMap<String, usize>,
    /// Whole shapes of graph inputs, by input name: they replace the model's (its fixed dims must agree).
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// Graph inputs bound to values at import: they become constants, so an operand that must be static (a shape,
    /// axes, pads) may come from a graph input, as in ONNX's node tests.
    pub input_values: BTreeMap<String, proto::TensorProto>,
    /// Float initializers become `param` inputs (trainable) instead of constants.
    pub trainable: bool,
    /// A loss appended on an output, with a new data input for its targets ([`LossSpec`]), so that
    /// `kiln::training_step` can fine-tune the model.
    pub loss: Option<LossSpec>,
}

impl ImportOptions {
    /// Sets symbolic dim `name` to `size`.
    pub fn dim(mut self, name: &str, size: usize) -> ImportOptions {
        self.dims.insert(name.to_string(), size);
        self
    }
}

/// Why a model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The bytes are not a valid ONNX protobuf.
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    /// The model is valid ONNX but uses something Kiln has no translation for.
    #[error(
        "node `{node}`: {op_type} (domain `{domain}`, opset {opset}) is not supported by the importer{}\nsupported ops: {}",
        if detail.is_empty() { String::new() } else { format!(": {detail}") },
        SUPPORTED_OPS.join(" ")
    )]
    Unsupported {
        node: String,
        op_type: String,
        domain: String,
        opset: i64,
        /// Empty when the op itself is missing; else which attribute or form is.
        detail: String,
    },
    /// Graph inputs have symbolic dims that the options do not size.
    #[error("symbolic dims not given (set each with --shape or ImportOptions::dim): {}", .0.join(", "))]
    SymbolicDims(Vec<String>),
    /// An integer tensor holds a value outside i32.
    #[error("tensor `{tensor}`: value {value} does not fit in i32 (Kiln's integer type)")]
    IntRange { tensor: String, value: i64 },
    /// A node is malformed, or an operand that must be known at import is not.
    #[error("node `{node}` ({op_type}): {message}")]
    Node {
        node: String,
        op_type: String,
        message: String,
    },
    /// The model is structurally wrong (a missing value, an unsupported type, ...).
    #[error("{0}")]
    Invalid(String),
    /// Building the graph failed (a shape or dtype error), naming the node.
    #[error("node `{node}` ({op_type}): {source}")]
    Build {
        node: String,
        op_type: String,
        #[source]
        source: Box<IrError>,
    },
}

/// An imported model: the graph, the values of its `param` inputs (with [`ImportOptions::trainable`]) and a summary.
#[derive(Clone, Debug)]
pub struct Imported {
    pub graph: Graph,
    /// `(input name, value)` for each `param` input, in input order.
    pub params: Vec<(String, Tensor)>,
    pub summary: Summary,
}

/// Decodes `bytes` as an ONNX `ModelProto` and translates its graph.
pub fn import(bytes: &[u8], options: &ImportOptions) -> Result<Graph, ImportError> {
    Ok(import_model(bytes, options)?.graph)
}

/// [`import`], also returning the parameters and the summary.
pub fn import_model(bytes: &[u8], options: &ImportOptions) -> Result<Imported, ImportError> {
    let model = decode_model(bytes)?;
    convert::convert(&model, options)
}

/// Decodes an ONNX `ModelProto`.
pub fn decode_model(bytes: &[u8]) -> Result<proto::ModelProto, ImportError> {
    use prost::Message;
    proto::ModelProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))
}

/// Decodes a serialized `TensorProto` (the `.pb` files of ONNX's test data).
pub fn decode_tensor_proto(bytes: &[u8]) -> Result<proto::TensorProto, ImportError> {
    use prost::Message;
    proto::TensorProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))
}

/// A `TensorProto` as a Kiln tensor, with the importer's type mapping (integers range-checked into i32).
pub fn tensor_from_proto(t: &proto::TensorProto) -> Result<Tensor, ImportError> {
    tensor::Constant::from_proto(t)?.to_tensor(t.name())
}

/// [`decode_tensor_proto`] then [`tensor_from_proto`], with the tensor's name.
pub fn decode_tensor(bytes: &[u8]) -> Result<(String, Tensor), ImportError> {
    let t = decode_tensor_proto(bytes)?;
    Ok((t.name().to_string(), tensor_from_proto(&t)?))
}
