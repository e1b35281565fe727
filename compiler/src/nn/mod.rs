//! A PyTorch-like model API on top of the graph builder: modules, parameters with their initialization, losses, a
//! [`Trainer`] that runs epochs of minibatches on a [`Backend`], and safetensors checkpoints.
//!
//! A [`Module`] appends its forward computation to a [`Builder`] and names its parameters; the parameters become
//! `param` inputs of the graph, so [`crate::training_step`] can differentiate and update them. The course's
//! `TwoLayerNet` (also shipped as [`TwoLayerNet`]), trained on XOR:
//!
//! ```
//! use kiln::ir::{Builder, IrError, Value};
//! use kiln::nn::{self, Linear, Module, Parameter};
//!
//! /// Linear, clamp(min=0), Linear.
//! struct TwoLayerNet { linear1: Linear, linear2: Linear }
//!
//! impl Module for TwoLayerNet {
//!     fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
//!         let h = self.linear1.forward(b, x)?;
//!         let h_relu = b.relu(h)?;
//!         self.linear2.forward(b, h_relu)
//!     }
//!     fn parameters(&self) -> Vec<Parameter> {
//!         [self.linear1.parameters(), self.linear2.parameters()].concat()
//!     }
//! }
//!
//! fn main() -> Result<(), nn::Error> {
//!     let model = TwoLayerNet { linear1: Linear::new("linear1", 2, 20), linear2: Linear::new("linear2", 20, 2) };
//!     let data = kiln::data::load("xor")?;
//!     let adam = kiln::Optimizer::Adam(kiln::Adam { lr: 0.02, ..Default::default() });
//!     let config = nn::TrainConfig { epochs: 5, batch_size: 20, ..nn::TrainConfig::new(adam) };
//!     let mut trainer = nn::Trainer::new(&model, &data, config, &nn::Interpreter)?;
//!     let history = trainer.fit(|_| {})?;
//!     assert_eq!(history.last().unwrap().test_acc, 1.0);
//!     Ok(())
//! }
//! ```
//!
//! Parameter names are the graph's input names (`linear1.weight`, `l0.bias`, ...), and the names in a checkpoint.

mod activation;
mod backend;
mod checkpoint;
mod layers;
mod loss;
mod models;
pub mod report;
mod trainer;

pub use activation::Activation;
pub use backend::{Backend, BackendKind, Interpreter, Program, Vulkan};
pub use checkpoint::{
    load_checkpoint, load_checkpoint_checked, save_checkpoint, Checkpoint, Integrity,
    CHECKPOINT_FILE,
};
pub use layers::{
    Heaviside, LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Softmax, Softplus, Tanh,
};
pub use loss::Loss;
pub use models::{ModelKind, ModelSpec, TwoLayerNet};
pub use trainer::{accuracy, evaluate, EpochMetrics, Evaluation, Event, TrainConfig, Trainer};

use crate::data::{DataError, Shuffle};
use kiln_ir::{Builder, IrError, Tensor, TensorType, Value};
use std::path::PathBuf;

/// What can go wrong building, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error(transparent)]
    Data(#[from] DataError),
    /// A model, loss and data set that do not fit together, or a bad hyper-parameter.
    #[error("{0}")]
    Config(String),
    /// No Vulkan device, or the device failed a run.
    #[error(transparent)]
    Vulkan(#[from] crate::backend::spirv::VulkanError),
    /// A backend could not compile a graph.
    #[error(transparent)]
    Compile(#[from] crate::compile::Error),
    /// A compiled program refused its inputs.
    #[error(transparent)]
    Run(#[from] kiln_runtime::RunError),
    #[error("checkpoint `{path}`: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    /// Uniform in `[-bound, bound)`.
    Uniform {
        bound: f64,
    },
}

/// A named trainable tensor of a module: its graph input name, type and initialization.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub ty: TensorType,
    pub init: Init,
}

/// A layer or a whole model.
pub trait Module {
    /// Appends the forward computation on `x` to `b`, reading each parameter as the `param` input of its name
    /// (see [`param`]).
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError>;

    /// The parameters `forward` reads, in a fixed order (the order of initialization).
    fn parameters(&self) -> Vec<Parameter>;
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        (**self).forward(b, x)
    }
    fn parameters(&self) -> Vec<Parameter> {
        (**self).parameters()
    }
}

/// The `param` input `name` of type `ty`: declared on first use, reused after (so a module applied twice shares its
/// weights).
pub fn param(b: &mut Builder, name: &str, ty: TensorType) -> Result<Value, IrError> {
    if let Some(input) = b.graph().input(name) {
        if *input.ty != ty {
            return Err(IrError::Invalid(format!(
                "parameter `{name}` is declared as {} and used as {ty}",
                input.ty
            )));
        }
        return Ok(input.id);
    }
    b.param(name, ty)
}

/// Initial values of `module`'s parameters, in [`Module::parameters`] order: one ChaCha8 stream seeded with `seed`,
/// drawn parameter after parameter, element after element.
pub fn init_parameters(module: &dyn Module, seed: u64) -> Result<Vec<(String, Tensor)>, Error> {
    let mut rng = Shuffle::new(seed);
    module
        .parameters()
        .into_iter()
        .map(|p| {
            let n = p.ty.numel();
            let values: Vec<f64> = match p.init {
                Init::Zeros => vec![0.0; n],
                Init::Uniform { bound } => {
                    (0..n).map(|_| bound * (2.0 * rng.unit() - 1.0)).collect()
                }
            };
            let tensor = Tensor::from_f64_values(p.ty.clone(), &values)?;
            Ok((p.name, tensor))
        })
        .collect()
}
