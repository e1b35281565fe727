//! One kernel of an executable ([`Step`]), its native entry ([`KernelFn`]) and the buffer table it runs on
//! ([`Table`]): the vocabulary shared by [`crate::executable`], which assembles and runs the steps, and
//! [`crate::pool`], which splits them across threads.
//!
//! The dependencies run one way: `executable` → `pool` → `step`, and `executable` → `step`. Neither `step` nor
//! `pool` knows the [`crate::Executable`] that owns the steps (the pool is handed the steps, a table and a split).

use crate::gemm::Gemm;
use kiln_ir::{DType, ReduceOp};

/// A kernel's native entry: runs points `[start, end)` of its flattened parallel space (row-major over its parallel
/// loops) on the buffers of `table`.
pub type KernelFn = unsafe extern "C" fn(table: *const *mut u8, start: u64, end: u64);

/// One kernel, in execution order.
pub enum Step {
    /// A loop nest: `entry` over `points` parallel points.
    Loop {
        name: String,
        points: u64,
        /// Estimated work of one point (scalar instructions of the body, inner loops multiplied out; at least 1):
        /// how finely the points are worth splitting.
        cost: u64,
        entry: KernelFn,
    },
    /// A matrix product, then (unless the product is written straight to its destination) an epilogue over the
    /// `points` of `[β.., m, n]` that reads the product from the scratch. The product runs in the fixed tiles of
    /// [`Gemm::tiling`]; the epilogue runs on each tile right after its product, or in one pass after all of them
    /// ([`crate::Executable::set_epilogue_in_tiles`]).
    Matmul {
        name: String,
        gemm: Gemm,
        points: u64,
        /// Estimated work of the epilogue at one point, as for [`Step::Loop`].
        cost: u64,
        epilogue: Option<KernelFn>,
    },
    /// `all_reduce` (SPEC §3.12): `copy` writes the operand into buffer `slot` as a loop over `points`, then the
    /// executable reduces that buffer in place across its process group, on the calling thread, before the next step.
    Collective {
        name: String,
        points: u64,
        /// Estimated work of one point of the copy, as for [`Step::Loop`].
        cost: u64,
        copy: KernelFn,
        op: ReduceOp,
        /// The table slot of the result buffer; `len` elements of `dtype` (f32 or f64).
        slot: usize,
        dtype: DType,
        len: usize,
    },
}

impl Step {
    pub fn name(&self) -> &str {
        match self {
            Step::Loop { name, .. } | Step::Matmul { name, .. } | Step::Collective { name, .. } => {
                name
            }
        }
    }
}

/// The buffers of one run (or session step): one pointer per table slot, the buffers of the layout and then the
/// matmul scratch (`Layout::scratch_slot`). Filled by the executable or the session, read by the kernels.
#[derive(Clone)]
pub(crate) struct Table {
    pub(crate) slots: Vec<*mut u8>,
}
