//! `kiln-runtime`: where compiled kernels run.
//!
//! Today this crate holds only the host-side tensor re-export; executables, the thread pool, GEMM and the Vulkan
//! device arrive with the CPU and GPU backends (issues 5 and 6), and are deliberately absent until then.

pub use kiln_ir::tensor::{Tensor, TensorData};
