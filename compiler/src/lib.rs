//! Kiln: a deep-learning graph compiler.
//!
//! This crate is the API boundary for embedding users: it re-exports the IR ([`ir`]) and adds the passes.

pub use kiln_ir as ir;
pub use kiln_ir::{Builder, DType, Graph, IrError, Role, Tensor, TensorType};
