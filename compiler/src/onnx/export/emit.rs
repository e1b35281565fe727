//! The nodes and initializers of the ONNX graph being written, and fresh value names for the helper values an op's
//! translation needs (index tables, scalar fills, intermediate results).

use super::proto_values::{int64_proto, tensor_proto};
use crate::onnx::proto::{AttributeProto, NodeProto, TensorProto};
use kiln_ir::{DType, Tensor};

#[derive(Default)]
pub struct Emitter {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// Counter of helper names. A helper of the value `v` is named `v/k`: `/` is in no Kiln name, so helpers never
    /// collide with input, label (`%label`) or output names, and `k` is unique over the whole graph.
    fresh: usize,
}

impl Emitter {
    /// A new helper value name derived from `base` (the value the helper serves).
    pub fn fresh(&mut self, base: &str) -> String {
        self.fresh += 1;
        format!("{base}/{}", self.fresh)
    }

    /// Appends the node `op_type(inputs) -> output`, named after its output (so every node name is unique).
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(output.to_string()),
            op_type: Some(op_type.to_string()),
            attribute,
            ..Default::default()
        });
        output.to_string()
    }

    /// [`Emitter::node`] with a fresh output name derived from `base`: an intermediate value.
    pub fn step(
        &mut self,
        base: &str,
        op_type: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(base);
        self.node(op_type, inputs, &out, attribute)
    }

    /// An initializer holding `t`, under a fresh name derived from `base`.
    pub fn tensor(&mut self, base: &str, t: &Tensor) -> String {
        let name = self.fresh(base);
        self.initializers.push(tensor_proto(&name, t));
        name
    }

    /// A rank-0 initializer of `dtype` holding `value` (a fill, a bound, a divisor).
    pub fn scalar(&mut self, base: &str, dtype: DType, value: f64) -> String {
        self.tensor(base, &Tensor::scalar(dtype, value))
    }

    /// A 1-D int64 initializer (a shape, axes, pads).
    pub fn ints(&mut self, base: &str, values: &[i64]) -> String {
        let name = self.fresh(base);
        self.initializers
            .push(int64_proto(&name, &[values.len()], values));
        name
    }

    /// An int64 initializer of the given dims (an index table).
    pub fn int_table(&mut self, base: &str, dims: &[usize], values: &[i64]) -> String {
        let name = self.fresh(base);
        self.initializers.push(int64_proto(&name, dims, values));
        name
    }
}
