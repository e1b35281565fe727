//! The one error type of `kiln-ir`. Every message names the place (node, op, input, output) and the types involved.

use crate::text::ParseError;

#[derive(Clone, PartialEq, Debug, thiserror::Error)]
pub enum IrError {
    /// An op's typing rule failed for this node.
    #[error("node %{node} ({op}): {message}")]
    Type {
        node: String,
        op: &'static str,
        message: String,
    },

    /// A node names an operand that does not precede it.
    #[error("node %{node} ({op}): operand %{operand} is not defined before it")]
    UnknownOperand {
        node: String,
        op: &'static str,
        operand: u32,
    },

    #[error("duplicate {what} name `{name}`")]
    Duplicate { what: &'static str, name: String },

    #[error("invalid name `{name}`: names use ASCII letters, digits, `_` and `.`, and are not all digits")]
    BadName { name: String },

    #[error("output `{output}` cannot alias: {reason}")]
    BadAlias { output: String, reason: String },

    /// A node's recorded type differs from what its typing rule gives (a pass or the parser produced it).
    #[error("node %{node} ({op}): recorded type {recorded} but the typing rule gives {inferred}")]
    TypeMismatch {
        node: String,
        op: &'static str,
        recorded: String,
        inferred: String,
    },

    /// A builder call (with NumPy-style implicit broadcasting) was given operands it can't combine.
    #[error("{op}: {message}")]
    Build { op: String, message: String },

    #[error("{0}")]
    Parse(Box<ParseError>),

    /// A value given for a graph input does not fit it (wrong count, unknown or missing name, dtype or shape).
    #[error("input `{input}`: {message}")]
    BadInput { input: String, message: String },

    /// A graph-level request that does not fit the graph (unknown output, wrong kind of input, ...).
    #[error("{0}")]
    Invalid(String),
}

impl From<ParseError> for IrError {
    fn from(e: ParseError) -> IrError {
        IrError::Parse(Box::new(e))
    }
}

pub type Result<T, E = IrError> = std::result::Result<T, E>;
