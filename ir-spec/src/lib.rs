//! `kiln-ir`: the typed DAG IR that Kiln lowers models to, and the reference interpreter every backend is checked
//! against.
//!
//! - [`types`]: dtypes, shapes, tensor types (`f32[128,784]`).
//! - [`op`]: the primitive op set and its typing rules; [`vjp`]: the gradient rule of each op.
//! - [`graph`]: the DAG; [`verify`]: the verifier; [`builder`] and [`composite`]: what users write.
//! - [`text`]: the `.kir` printer and parser; [`dot`]: Graphviz export.
//! - [`interp`] and [`tensor`]: the reference interpreter on host tensors.
//!
//! The normative description of every op is `SPEC.md` beside this crate.

pub mod builder;
pub mod collective;
pub mod composite;
pub mod dot;
pub mod error;
pub mod graph;
pub mod interp;
pub mod op;
pub mod tensor;
pub mod text;
pub mod types;
pub mod verify;
pub mod vjp;

pub use builder::{Builder, Value};
pub use collective::{Collective, CollectiveBuffer, CollectiveError, ReduceOp, SingleProcess};
pub use composite::{AttentionWeights, BatchNormTrain, ConvSpec, GeluApprox};
pub use error::IrError;
pub use graph::{Graph, InputInfo, Node, NodeId, Output};
pub use op::{Axes, BinaryOp, CmpDir, Literal, Op, OpClass, Role, UnaryOp};
pub use tensor::{Tensor, TensorData};
pub use types::{DType, Shape, TensorType};
pub use verify::verify;
