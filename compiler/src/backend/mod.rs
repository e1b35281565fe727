//! Code generation: from Kiln's IR to native code.
//!
//! A backend depends on the IR types and its code generator only; it never calls a graph pass.
//! - [`cpu`] — Cranelift: a JIT harness and a vectorized math library written in CLIF.
//! - [`spirv`] — one SPIR-V compute shader per kernel, run through Vulkan.

pub mod cpu;
pub mod spirv;

/// What can go wrong while generating or running native code.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The host is not a target Cranelift supports, or a code generator setting was rejected.
    #[error("host target not supported by Cranelift: {0}")]
    Host(String),
    /// Cranelift rejected or failed to compile a function (including verifier errors).
    #[error("compiling `{name}`: {source}")]
    Compile {
        name: String,
        #[source]
        source: Box<cranelift_module::ModuleError>,
    },
    /// A function was used before [`cpu::jit::JitModule::finalize`] made it callable.
    #[error("function `{0}` is not finalized yet: call `JitModule::finalize` first")]
    NotFinalized(String),
    /// A kernel was run with arguments that do not fit it.
    #[error("kernel `{name}`: {problem}")]
    BadCall { name: String, problem: String },
    /// A map kernel's body emitted an instruction with effects (a load, store, call or trap); bodies compute only.
    #[error(
        "map kernel `{name}`: the body emitted `{opcode}`, but a body may only compute values"
    )]
    ImpureBody { name: String, opcode: String },
    /// The kernel IR is not valid ([`crate::kernel::verify`]): a fusion bug, or a hand-built program.
    #[error(transparent)]
    Invalid(#[from] crate::kernel::VerifyError),
    /// A value of the program could not be built (a constant that does not fit its type).
    #[error(transparent)]
    Ir(#[from] kiln_ir::IrError),
    /// The runtime rejected the assembled program.
    #[error(transparent)]
    Runtime(#[from] kiln_runtime::RunError),
}
