//! Kiln: a deep-learning graph compiler.
//!
//! This crate is the API boundary for embedding users: it re-exports the IR ([`ir`]) and adds the graph
//! transformations: [`autodiff`] (reverse mode, emitting the backward pass as IR) and [`train`] (whole training steps
//! with SGD / Adam / AdamW updates), the compiler: [`compile`] a graph to an [`Executable`] of native code and
//! run it, or train through a [`Session`] that keeps parameters and optimizer state resident; and a PyTorch-like model
//! API ([`nn`]: modules, losses, a trainer, checkpoints) with data sets to train on ([`data`]).

pub mod autodiff;
pub mod backend;
pub mod compile;
pub mod data;
pub mod fusion;
pub mod kernel;
pub mod memory;
pub mod nn;
pub mod onnx;
pub mod passes;
pub mod train;
pub mod zoo;

pub use autodiff::{grad, GradGraph};
pub use compile::{compile, compile_vulkan, kernel_program, CompileCache, Error, Options, Target};
pub use kiln_ir as ir;
pub use kiln_ir::{Builder, DType, Graph, IrError, Role, Tensor, TensorType};
#[cfg(feature = "mpi")]
pub use kiln_runtime::collective::mpi::{
    Algorithm as MpiAllReduce, MpiGroup, SEGMENT as MPI_SEGMENT,
};
pub use kiln_runtime::{Executable, RunError, Session, ThreadGroup};
pub use passes::optimize;
pub use train::{
    step_on_interpreter, training_step, training_step_clipped, training_step_data_parallel, Adam,
    DataParallel, Optimizer, Sgd,
};

/// The README's code blocks, compiled and run as doctests so the embedding example stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
