//! `kiln-runtime`: where compiled programs run, with no dependency on the compiler.
//!
//! - [`buffer`]: 64-byte-aligned host buffers and their conversion from and to tensors.
//! - [`executable`]: [`Executable`], native kernels with the layout of their buffers (inputs read in place,
//!   constants, a per-run arena planned by the compiler, outputs) and the input/output signature; `run` checks the
//!   inputs against the signature and never lets a wrong tensor reach a kernel.
//! - [`step`]: [`Step`], one kernel of an executable, its native entry and the buffer table it runs on; shared by
//!   `executable` and `pool` (`executable` → `pool` → `step`, one way).
//! - [`pool`]: a persistent pool of workers per executable; each kernel's parallel range split into fixed chunks,
//!   each matmul into fixed tiles, across threads; results don't depend on the thread count.
//! - [`gemm`]: the matrix products of matmul kernels, tile by tile (the `gemm` crate for floats).
//! - [`wide`]: `exp`, `log`, `tanh`, `logistic`, `erf`, `sin`, `cos` over f32 strips in AVX2 or AVX-512 (chosen at
//!   startup), bit-identical to the JIT's CLIF math library with FMA: the math library of JIT kernels, wider than
//!   Cranelift's 128-bit vectors.
//! - [`session`]: [`Session`], a training loop's resident parameters and optimizer state, updated in place.
//! - [`vulkan`]: SPIR-V compute programs on a Vulkan device (the GPU path), on `ash` with the loader opened at run time.
//!
//! Every `unsafe` block is at the native-code boundary: calling a kernel, the GEMM on raw buffers, Vulkan, or the
//! wide routines on raw strips (`wide`, whose levels' target features are checked before any is called).

pub mod buffer;
pub mod collective;
pub mod executable;
pub mod gemm;
pub mod pool;
pub mod session;
pub mod step;
pub mod wide;

pub use collective::ThreadGroup;
pub use executable::{BufferSpec, Executable, InputSpec, Layout, OutputSpec, Place};
pub use gemm::{Gemm, MatrixOperand, Tiling};
pub use kiln_ir::tensor::{Tensor, TensorData};
pub use step::{KernelFn, Step};

pub mod vulkan;
pub use session::Session;

/// Why a program could not be run (or assembled).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("program `{program}` takes {expected} input(s), got {got}")]
    InputCount {
        program: String,
        expected: usize,
        got: usize,
    },
    /// The types are rendered (`f32[4,3]`), which keeps the error small.
    #[error("input `{name}` must be {expected}, got {got}")]
    Input {
        name: String,
        expected: String,
        got: String,
    },
    #[error("no value for input `{0}`")]
    MissingInput(String),
    #[error("kernel `{kernel}`: {problem}")]
    BadKernel { kernel: String, problem: String },
    /// An `all_reduce` failed: a peer died, timed out or ran another program.
    #[error(transparent)]
    Collective(#[from] kiln_ir::CollectiveError),
}
