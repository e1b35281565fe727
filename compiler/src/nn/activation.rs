//! The activations a model can put between its layers, by name: the vocabulary shared by the model API
//! ([`super::ModelSpec`]), the CLI and the example graphs of [`crate::zoo`].

use kiln_ir::{Builder, IrError, Value};

/// The activation between the layers of a multi-layer model: of [`super::ModelSpec`]'s `mlp` and of
/// [`crate::zoo::mlp`]. One vocabulary for the model API, the CLI (`--activation`, checkpoints' metadata) and the
/// example graphs, so a name means the same builder call everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    LeakyRelu,
    Sigmoid,
    Tanh,
    Softplus,
}

impl Activation {
    /// The activation called `name` (as in checkpoints' metadata and `--activation`), `None` for an unknown one.
    pub fn from_name(name: &str) -> Option<Activation> {
        Some(match name {
            "identity" => Activation::Identity,
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softplus" => Activation::Softplus,
            _ => return None,
        })
    }

    /// The name [`Activation::from_name`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softplus => "softplus",
        }
    }

    /// PyTorch's default negative slope of `LeakyReLU`.
    pub const LEAKY_SLOPE: f64 = 0.01;

    /// Appends the activation of `x` to `b` (the identity appends nothing): one builder call, the same one as the
    /// module of the same name in [`super::layers`].
    pub fn apply(self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        match self {
            Activation::Identity => Ok(x),
            Activation::Relu => b.relu(x),
            Activation::LeakyRelu => b.leaky_relu(x, Activation::LEAKY_SLOPE),
            Activation::Sigmoid => b.sigmoid(x),
            Activation::Tanh => b.tanh(x),
            Activation::Softplus => b.softplus(x),
        }
    }
}
