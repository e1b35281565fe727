//! The f32x4 loop of a kernel's innermost parallel dimension (see the parent module's doc).

use super::check::ValueTypes;
use super::Emitter;
use crate::kernel::{Kernel, KernelProgram, Var};
use cranelift_codegen::ir::{Block, InstBuilder, Value};

/// What the vector loop needs to know about a kernel it can vectorize.
#[derive(Clone, Debug)]
pub(super) struct Plan {}

/// `Some` when every instruction of the kernel has a vector form (see the parent module's doc).
pub(super) fn plan(_program: &KernelProgram, _kernel: &Kernel, _types: &ValueTypes) -> Option<Plan> {
    None
}

impl Emitter<'_, '_> {
    /// Emits `vector(j)` from the current block and leaves `j` past the last full vector; jumps to `done`.
    pub(super) fn vector_loop(&mut self, _plan: &Plan, _j: Var, _jend: Value, done: Block) {
        self.b.ins().jump(done, &[]);
    }
}
