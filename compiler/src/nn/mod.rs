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
mod conv;
mod gpt_checkpoint;
mod layers;
mod loss;
mod models;
pub mod report;
mod seq_trainer;
mod trainer;
mod transformer;

pub use activation::Activation;
pub use backend::{Backend, BackendKind, Interpreter, Program, Vulkan};
pub use checkpoint::{
    load_checkpoint, load_checkpoint_checked, save_checkpoint, Checkpoint, Integrity,
    CHECKPOINT_FILE,
};
pub use conv::{
    dropout_train, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, MaxPool2d,
    Reshape,
};
pub use gpt_checkpoint::{load_gpt_checkpoint, save_gpt_checkpoint, GptCheckpoint, SeqData};
pub use layers::{
    Heaviside, LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Softmax, Softplus, Tanh,
};
pub use loss::Loss;
pub use models::{Cnn, ModelKind, ModelSpec, TwoLayerNet};
pub use seq_trainer::{gpt_forward_graph, SeqTrainer};
pub use trainer::{
    accuracy, evaluate, inference_graph, EpochMetrics, Evaluation, Event, LrSchedule, Ranks,
    TrainConfig, Trainer,
};
pub use transformer::{Embedding, Gpt, GptConfig, LayerNorm, MultiheadAttention, TransformerBlock};

use crate::data::{DataError, Shuffle};
use kiln_ir::{Builder, IrError, Role, Tensor, TensorType, Value};
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
    /// Every element `value` (batch norm's running variance starts at 1).
    Constant(f64),
}

/// A named tensor of a module: its graph input name, type and initialization. [`Module::parameters`] lists the
/// trainable ones (`param` inputs); [`Module::buffers`] the ones a training step updates without gradients
/// (`state` inputs, e.g. batch norm's running statistics).
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub ty: TensorType,
    pub init: Init,
}

/// Which graph a module builds: training (batch norm on batch statistics, updating its running statistics; dropout
/// active) or evaluation (batch norm on the running statistics; dropout the identity), as PyTorch's
/// `model.train()` / `model.eval()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// The new values a training-mode forward pass computes for `state` inputs (a buffer's name, its updated value).
/// [`crate::training_step`] keeps them as outputs `new.<name>` aliasing the input, so a session updates them in place.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateUpdates {
    updates: Vec<(String, Value)>,
}

impl StateUpdates {
    /// Records `value` as the next value of state input `input`; a second update of one input is an error (two
    /// outputs cannot replace the same input).
    pub fn push(&mut self, input: &str, value: Value) -> Result<(), IrError> {
        if self.updates.iter().any(|(name, _)| name == input) {
            return Err(IrError::Invalid(format!(
                "state `{input}` is updated twice in one forward pass (a stateful module applied twice?)"
            )));
        }
        self.updates.push((input.to_string(), value));
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Value)> {
        self.updates.iter().map(|(n, v)| (n.as_str(), *v))
    }

    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }
}

/// A layer or a whole model.
///
/// [`Module::forward`] builds the evaluation-mode graph; [`Module::forward_train`] the training-mode one, by default
/// the same. A module that behaves differently in training (batch norm, dropout) overrides `forward_train`, and so
/// must every container of modules (as [`Sequential`]), passing `updates` on: a container that only implements
/// `forward` runs its children in evaluation mode during training.
pub trait Module {
    /// Appends the evaluation-mode forward computation on `x` to `b`, reading each parameter as the `param` input of
    /// its name (see [`param`]) and each buffer as the `state` input of its name (see [`state`]).
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError>;

    /// The training-mode forward computation, recording the new value of each buffer it updates in `updates`.
    fn forward_train(
        &self,
        b: &mut Builder,
        x: Value,
        updates: &mut StateUpdates,
    ) -> Result<Value, IrError> {
        let _ = updates;
        self.forward(b, x)
    }

    /// The parameters `forward` reads, in a fixed order (the order of initialization).
    fn parameters(&self) -> Vec<Parameter>;

    /// The non-trainable tensors `forward` reads and `forward_train` updates (running statistics), in a fixed order.
    /// Checkpoints save them beside the parameters.
    fn buffers(&self) -> Vec<Parameter> {
        Vec::new()
    }
}

/// `module`'s forward pass in `mode` (the updates are only written in training).
pub fn forward_in(
    module: &dyn Module,
    b: &mut Builder,
    x: Value,
    mode: Mode,
    updates: &mut StateUpdates,
) -> Result<Value, IrError> {
    match mode {
        Mode::Train => module.forward_train(b, x, updates),
        Mode::Eval => module.forward(b, x),
    }
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        (**self).forward(b, x)
    }
    fn forward_train(
        &self,
        b: &mut Builder,
        x: Value,
        updates: &mut StateUpdates,
    ) -> Result<Value, IrError> {
        (**self).forward_train(b, x, updates)
    }
    fn parameters(&self) -> Vec<Parameter> {
        (**self).parameters()
    }
    fn buffers(&self) -> Vec<Parameter> {
        (**self).buffers()
    }
}

/// The `param` input `name` of type `ty`: declared on first use, reused after (so a module applied twice shares its
/// weights).
pub fn param(b: &mut Builder, name: &str, ty: TensorType) -> Result<Value, IrError> {
    declared_input(b, name, Role::Param, ty)
}

/// The `state` input `name` of type `ty` (a buffer), declared on first use and reused after, as [`param`].
pub fn state(b: &mut Builder, name: &str, ty: TensorType) -> Result<Value, IrError> {
    declared_input(b, name, Role::State, ty)
}

fn declared_input(
    b: &mut Builder,
    name: &str,
    role: Role,
    ty: TensorType,
) -> Result<Value, IrError> {
    if let Some(input) = b.graph().input(name) {
        if *input.ty != ty || input.role != role {
            return Err(IrError::Invalid(format!(
                "`{name}` is declared as a {} input {} and used as a {} input {ty}",
                input.role.name(),
                input.ty,
                role.name()
            )));
        }
        return Ok(input.id);
    }
    match role {
        Role::Data => b.data(name, ty),
        Role::Param => b.param(name, ty),
        Role::State => b.state(name, ty),
    }
}

/// Initial values of `module`'s parameters, in [`Module::parameters`] order: one ChaCha8 stream seeded with `seed`,
/// drawn parameter after parameter, element after element.
pub fn init_parameters(module: &dyn Module, seed: u64) -> Result<Vec<(String, Tensor)>, Error> {
    init_tensors(module.parameters(), seed)
}

/// Initial values of `module`'s buffers, in [`Module::buffers`] order (constants: no random draws, so adding a batch
/// norm does not change the other layers' initial weights).
pub fn init_buffers(module: &dyn Module) -> Result<Vec<(String, Tensor)>, Error> {
    init_tensors(module.buffers(), 0)
}

fn init_tensors(tensors: Vec<Parameter>, seed: u64) -> Result<Vec<(String, Tensor)>, Error> {
    let mut rng = Shuffle::new(seed);
    tensors
        .into_iter()
        .map(|p| {
            let n = p.ty.numel();
            let values: Vec<f64> = match p.init {
                Init::Zeros => vec![0.0; n],
                Init::Constant(value) => vec![value; n],
                Init::Uniform { bound } => {
                    (0..n).map(|_| bound * (2.0 * rng.unit() - 1.0)).collect()
                }
            };
            let tensor = Tensor::from_f64_values(p.ty.clone(), &values)?;
            Ok((p.name, tensor))
        })
        .collect()
}
