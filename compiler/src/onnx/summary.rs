//! What `kiln import` prints about a model: its opset, inputs and outputs with their (fixed) types, the number of
//! parameters and the ops it uses.

use kiln_ir::TensorType;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The version of the default ONNX opset.
    pub opset: i64,
    /// The `producer_name` of the model (empty if not recorded).
    pub producer: String,
    /// The graph's inputs (initializers excluded), by ONNX name, with the Kiln types they were given.
    pub inputs: Vec<(String, TensorType)>,
    /// The graph's outputs, by ONNX name, with their Kiln types.
    pub outputs: Vec<(String, TensorType)>,
    /// Elements in all initializers.
    pub parameter_count: usize,
    /// ONNX op type → number of nodes.
    pub ops: BTreeMap<String, usize>,
    /// The loss appended at import ([`super::ImportOptions::loss`]), described.
    pub loss: Option<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "opset {}", self.opset)?;
        if !self.producer.is_empty() {
            write!(f, " (producer {})", self.producer)?;
        }
        writeln!(f)?;
        for (what, values) in [("input", &self.inputs), ("output", &self.outputs)] {
            for (name, ty) in values {
                writeln!(f, "{what} {name}: {ty}")?;
            }
        }
        writeln!(f, "parameters: {}", self.parameter_count)?;
        let ops: Vec<String> = self
            .ops
            .iter()
            .map(|(op, n)| format!("{op} x{n}"))
            .collect();
        write!(f, "ops: {}", ops.join(", "))?;
        if let Some(loss) = &self.loss {
            write!(f, "\nloss: {loss}")?;
        }
        Ok(())
    }
}
