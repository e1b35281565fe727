//! The reference interpreter: evaluates a verified graph on host tensors, f32 in f32 and f64 in f64.

use crate::error::IrError;
use crate::graph::Graph;
use crate::tensor::Tensor;

/// Runs `graph` on `inputs` (in graph input order) and returns its outputs (in output order).
pub fn run(_graph: &Graph, _inputs: &[Tensor]) -> Result<Vec<Tensor>, IrError> {
    todo!("interpreter")
}
