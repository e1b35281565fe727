//! `kiln-runtime`: where compiled kernels run.
//!
//! The host-side tensor re-export, and [`vulkan`]: SPIR-V compute programs on a Vulkan device (the GPU path). The
//! CPU executables, thread pool and GEMM arrive with the CPU backend.

pub use kiln_ir::tensor::{Tensor, TensorData};

pub mod vulkan;
