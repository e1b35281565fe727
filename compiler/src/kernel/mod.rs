//! The kernel IR: what fusion produces and what every backend consumes.
//!
//! This is a **contract**: a backend (Cranelift on the CPU, SPIR-V on the GPU) needs nothing but a [`KernelProgram`]
//! — never the graph. Everything is explicit: buffers with their types and roles, kernels in execution order, loop
//! nests with static extents, affine indices, and scalar operations with their dtypes.
//!
//! # Programs and buffers
//!
//! A [`KernelProgram`] owns a list of [`Buffer`]s (dense row-major tensors, addressed in **elements**, never bytes)
//! and a list of [`Kernel`]s run **in order**, one after the other; a kernel sees every store of the kernels before it.
//! Inputs are fed by the caller, constants are baked in, outputs are handed back, temporaries live only during a run
//! (`crate::memory` places them in one arena). A buffer is written by exactly one kernel, which writes every element;
//! each element is stored by one parallel point only, usually once. A point may store an element several times (the
//! last store is its value) and load it back after its first store: [`materialize`] keeps a row's values in the
//! output row and rescales them in place. No point ever loads an element another point stores, so points need no
//! synchronization; a backend that splits one point's loops across threads must keep each element's loads with its
//! stores (the SPIR-V workgroup plan does, or runs such a kernel per point).
//!
//! # Kernels
//!
//! A kernel iterates a **parallel** space (a list of [`Loop`]s, outermost first); each point of it runs the kernel's
//! body ([`Block`]) independently of every other point, so a backend may split the points across threads or GPU
//! invocations in any way. A body is a list of [`Inst`]s, executed in order:
//!
//! - `Let`: a scalar operation ([`ScalarOp`]) producing one value `%n` of a stated dtype;
//! - `Reduce`: a sequential loop nest whose body yields one value per iteration, folded with `sum` or `max` in
//!   row-major order of the loop variables, starting from the first value (an empty loop gives 0, or -inf /
//!   `i32::MIN`; starting a float sum from -0.0 is the same); its result is `%n`;
//! - `For`: a sequential loop nest around a block (used to write the elements of a row that a parallel point owns);
//! - `Store`: writes a value to a buffer element.
//!
//! Blocks nest one level per `Reduce` or `For`. Walks over a kernel (the printer, the interpreter, [`materialize`],
//! the memory planner, both backends) recurse once per level, never once per instruction or per value: a block of a
//! long fused chain holds millions of instructions, but a program lowered from a graph nests fewer than 64 deep. (A
//! reduction nests inside another only if it depends on every enclosing loop variable, each of extent >= 2 and
//! indexing one tensor, whose extents then multiply to at most that tensor's element count, below 2^64.)
//!
//! Values are in SSA form: each `%n` is defined once per kernel, and an instruction may use any value defined earlier
//! in its own block or in an enclosing block. Loop variables ([`Var`]) are numbered per kernel; a variable is in scope
//! in the block of the loop that binds it and in every block nested inside. [`MatmulKernel`]s are a library call with
//! a fused elementwise epilogue: the parallel space is `batch.. × m × n` and the epilogue reads the dot product as
//! [`ScalarOp::MatmulAcc`].
//!
//! # Semantics of scalars
//!
//! Exactly those of the graph ops in `ir-spec/SPEC.md` (§3.2–3.6) on one element: f32 is computed in f32, i32 wraps,
//! `max`/`min` propagate NaN, `select` never looks at the unselected value, `cast` follows §3.3. Reductions and the
//! matmul accumulate in the dtype; backends may reassociate float sums (results are compared with a tolerance).
//!
//! See [`print`] for the text form (`kiln dump --stage kernels`), [`interp`] for the reference interpreter, and
//! [`materialize`] for the pass that `crate::fusion::lower` runs on every program it lowers.

pub mod interp;
pub mod materialize;
mod print;
pub mod verify;

pub use print::print;
pub use verify::{verify, VerifyError};

use kiln_ir::{BinaryOp, CmpDir, DType, Literal, TensorType, UnaryOp};
use std::fmt;

/// Index of a buffer in [`KernelProgram::buffers`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct BufferId(pub u32);

impl BufferId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A loop variable of one kernel (`i3`). Its extent is given by the [`Loop`] that binds it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Var(pub u32);

/// An SSA scalar value of one kernel (`%7`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A whole compiled graph: buffers, kernels in execution order, and the graph's inputs and outputs.
#[derive(Clone, PartialEq, Debug)]
pub struct KernelProgram {
    /// The graph's name.
    pub name: String,
    pub buffers: Vec<Buffer>,
    /// Run in this order.
    pub kernels: Vec<Kernel>,
    /// One per graph input, in the graph's input order (the order `interp::run` takes tensors in).
    pub inputs: Vec<ProgramInput>,
    /// One per graph output, in the graph's output order. Several outputs may name the same buffer, and an output
    /// may name an input or constant buffer directly.
    pub outputs: Vec<ProgramOutput>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProgramInput {
    pub name: String,
    pub buffer: BufferId,
}

/// A graph output: the buffer holding it after a run.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProgramOutput {
    pub name: String,
    pub buffer: BufferId,
    /// The input this output replaces after each run (an updated parameter or optimizer state). `crate::memory`
    /// decides whether it can be written in place.
    pub aliases: Option<String>,
}

/// A dense row-major tensor.
#[derive(Clone, PartialEq, Debug)]
pub struct Buffer {
    /// The graph's label for the value (input name, node label or output name); for printing and errors.
    pub name: String,
    pub ty: TensorType,
    pub kind: BufferKind,
}

#[derive(Clone, PartialEq, Debug)]
pub enum BufferKind {
    /// Fed by the caller; never written by a kernel.
    Input,
    /// Written by a kernel and returned to the caller.
    Output,
    /// Written by one kernel and read by later ones; dead after its last reader.
    Temp,
    /// Baked-in values (row-major); never written.
    Constant(Literal),
}

impl BufferKind {
    pub fn name(&self) -> &'static str {
        match self {
            BufferKind::Input => "input",
            BufferKind::Output => "output",
            BufferKind::Temp => "temp",
            BufferKind::Constant(_) => "constant",
        }
    }
}

/// One unit of work; kernels run one after the other.
#[derive(Clone, PartialEq, Debug)]
pub enum Kernel {
    Loop(LoopKernel),
    Matmul(MatmulKernel),
    Collective(CollectiveKernel),
}

impl Kernel {
    pub fn name(&self) -> &str {
        match self {
            Kernel::Loop(k) => &k.name,
            Kernel::Matmul(k) => &k.name,
            Kernel::Collective(k) => &k.copy.name,
        }
    }

    /// The parallel loops: the iteration space split across threads.
    pub fn parallel(&self) -> &[Loop] {
        match self {
            Kernel::Loop(k) => &k.parallel,
            Kernel::Matmul(k) => &k.parallel,
            Kernel::Collective(k) => &k.copy.parallel,
        }
    }

    /// The block run at each parallel point (a matmul's epilogue).
    pub fn body(&self) -> &Block {
        match self {
            Kernel::Loop(k) => &k.body,
            Kernel::Matmul(k) => &k.epilogue,
            Kernel::Collective(k) => &k.copy.body,
        }
    }

    /// Every buffer the kernel reads, in first-use order, without duplicates (matmul operands first).
    pub fn reads(&self) -> Vec<BufferId> {
        let mut out = Vec::new();
        if let Kernel::Matmul(m) = self {
            out.push(m.a.buffer);
            if !out.contains(&m.b.buffer) {
                out.push(m.b.buffer);
            }
        }
        self.body().visit(&mut |inst| {
            if let Some(buffer) = inst.loaded_buffer() {
                if !out.contains(&buffer) {
                    out.push(buffer);
                }
            }
        });
        out
    }

    /// Every buffer the kernel writes, in first-store order, without duplicates.
    pub fn writes(&self) -> Vec<BufferId> {
        let mut out = Vec::new();
        self.body().visit(&mut |inst| {
            if let Inst::Store { buffer, .. } = inst {
                if !out.contains(buffer) {
                    out.push(*buffer);
                }
            }
        });
        out
    }
}

/// A loop nest: `parallel` points, each running `body`.
#[derive(Clone, PartialEq, Debug)]
pub struct LoopKernel {
    pub name: String,
    /// Outermost first. Empty for a kernel that runs its body once (a full reduction to a scalar).
    pub parallel: Vec<Loop>,
    pub body: Block,
}

/// `all_reduce` (SPEC §3.12): `copy` writes the operand into the result buffer (one parallel point per element,
/// views of the operand folded into its loads), then the runtime reduces that buffer in place across the process
/// group, a host step between kernels. With one process (the kernel interpreter, a run with no group) only the copy
/// runs, which is the op's one-process meaning.
#[derive(Clone, PartialEq, Debug)]
pub struct CollectiveKernel {
    pub op: kiln_ir::ReduceOp,
    /// Stores every element of `buffer` (and nothing else).
    pub copy: LoopKernel,
    /// The result, reduced in place after the copy.
    pub buffer: BufferId,
}

/// `C[β, i, j] = epilogue(Σ_l A[β, i, l] · B[β, l, j])` for every point `(β.., i, j)` of `parallel`.
///
/// The sum is accumulated in `dtype` from 0 over `l = 0..k` (so `k = 0` gives 0). Transposed, sliced or broadcast
/// operands are folded into the [`MatrixView`] strides, so no copy is made for `x Wᵀ`; fusion also computes a
/// transposed product `(AB)ᵀ` this way, as `BᵀAᵀ` (a weight gradient in the orientation of its weight).
#[derive(Clone, PartialEq, Debug)]
pub struct MatmulKernel {
    pub name: String,
    /// The batch loops, then `i < m`, then `j < n`.
    pub parallel: Vec<Loop>,
    /// The contracted extent.
    pub k: usize,
    pub dtype: DType,
    /// `[β.., m, k]`.
    pub a: MatrixView,
    /// `[β.., k, n]`.
    pub b: MatrixView,
    /// Run at each point; reads the dot product as [`ScalarOp::MatmulAcc`] and stores the results.
    pub epilogue: Block,
}

impl MatmulKernel {
    pub fn m(&self) -> usize {
        self.parallel[self.parallel.len() - 2].extent
    }

    pub fn n(&self) -> usize {
        self.parallel[self.parallel.len() - 1].extent
    }

    /// Extents of the batch loops.
    pub fn batch(&self) -> Vec<usize> {
        self.parallel[..self.parallel.len() - 2]
            .iter()
            .map(|l| l.extent)
            .collect()
    }
}

/// A strided view of a buffer as a batch of matrices: element `(β, r, c)` is
/// `buffer[offset + Σ_t β_t·batch_strides[t] + r·row_stride + c·col_stride]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MatrixView {
    pub buffer: BufferId,
    pub offset: usize,
    pub batch_strides: Vec<usize>,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatrixView {
    /// The element index of `(batch, row, col)`.
    pub fn index(&self, batch: &[usize], row: usize, col: usize) -> usize {
        self.offset
            + batch
                .iter()
                .zip(&self.batch_strides)
                .map(|(b, s)| b * s)
                .sum::<usize>()
            + row * self.row_stride
            + col * self.col_stride
    }
}

/// A loop variable and its extent: `var` takes `0..extent`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Loop {
    pub var: Var,
    pub extent: usize,
}

/// An element index: `offset + Σ stride·var`, in elements of the indexed buffer.
///
/// Every view the fusion pass folds into a load is affine: a broadcast has stride 0, a transpose permutes strides, a
/// slice adds to the offset, a reshape recomputes strides (where the result is still affine; otherwise the value is
/// materialized first). Terms are sorted by variable, with non-zero strides.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct IndexExpr {
    pub offset: usize,
    pub terms: Vec<(Var, usize)>,
}

impl IndexExpr {
    /// The index at the given variable values (`vars[v]` is the value of `Var(v)`).
    pub fn eval(&self, vars: &[usize]) -> usize {
        self.offset
            + self
                .terms
                .iter()
                .map(|&(v, s)| vars[v.0 as usize] * s)
                .sum::<usize>()
    }

    /// How far the index moves when `var` grows by 1 (0 where it has no term).
    pub fn stride_of(&self, var: Var) -> usize {
        self.terms
            .iter()
            .find(|&&(v, _)| v == var)
            .map_or(0, |&(_, s)| s)
    }
}

/// One dimension of a [`ScalarOp::LoadOr`]: the signed affine coordinate `t = offset + Σ coef·var` holds when
/// `t >= 0`, `t` is a multiple of `step` and `t / step < extent`; it then moves the element index by
/// `t / step · stride`.
///
/// `t` is the buffer's own coordinate, scaled by `step`: a `pad` of `lo` reads `t = y − lo` with step 1, an
/// `overlap_add` with window stride `s` and dilation `d` reads window `a` of output position `y` at `t = y − d·a`
/// with step `s`. Terms are sorted by variable, with non-zero coefficients.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct GuardedDim {
    pub offset: i64,
    pub terms: Vec<(Var, i64)>,
    pub step: usize,
    pub extent: usize,
    pub stride: usize,
}

impl GuardedDim {
    /// The dim's index into the buffer at these variable values, or `None` where its guard fails.
    pub fn eval(&self, vars: &[usize]) -> Option<usize> {
        let t = self.offset
            + self
                .terms
                .iter()
                .map(|&(v, c)| vars[v.0 as usize] as i64 * c)
                .sum::<i64>();
        let t = usize::try_from(t).ok()?;
        (t % self.step == 0 && t / self.step < self.extent).then_some(t / self.step)
    }

    /// The dim at coordinate `coord − lo`, with step 1: a padded dim.
    pub fn shifted(coord: &IndexExpr, lo: usize, extent: usize, stride: usize) -> GuardedDim {
        GuardedDim {
            offset: coord.offset as i64 - lo as i64,
            terms: coord.terms.iter().map(|&(v, s)| (v, s as i64)).collect(),
            step: 1,
            extent,
            stride,
        }
    }
}

impl fmt::Display for GuardedDim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `(i1 - 2*i4 + 1)/2 < 5 : 16`: the coordinate, divided by the step, below the extent, times the stride.
        f.write_str("(")?;
        let mut first = true;
        for &(v, c) in &self.terms {
            let sign = if c < 0 { "-" } else { "+" };
            match (first, c < 0) {
                (true, false) => {}
                (true, true) => f.write_str("-")?,
                (false, _) => write!(f, " {sign} ")?,
            }
            first = false;
            if c.unsigned_abs() == 1 {
                write!(f, "{v}")?;
            } else {
                write!(f, "{}*{v}", c.unsigned_abs())?;
            }
        }
        match (first, self.offset) {
            (true, o) => write!(f, "{o}")?,
            (false, 0) => {}
            (false, o) if o < 0 => write!(f, " - {}", o.unsigned_abs())?,
            (false, o) => write!(f, " + {o}")?,
        }
        f.write_str(")")?;
        if self.step != 1 {
            write!(f, "/{}", self.step)?;
        }
        write!(f, " < {} : {}", self.extent, self.stride)
    }
}

/// A list of instructions run in order.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Block {
    pub insts: Vec<Inst>,
}

impl Block {
    /// Calls `f` on every instruction, nested blocks included (pre-order).
    pub fn visit(&self, f: &mut impl FnMut(&Inst)) {
        for inst in &self.insts {
            f(inst);
            match inst {
                Inst::Reduce { body, .. } | Inst::For { body, .. } => body.visit(f),
                Inst::Let { .. } | Inst::Store { .. } => {}
            }
        }
    }
}

#[derive(Clone, PartialEq, Debug)]
pub enum Inst {
    /// `%id: dtype = op`.
    Let {
        id: ValueId,
        dtype: DType,
        op: ScalarOp,
    },
    /// `%id: dtype = reduce.kind (loops) { body } yield value`: `value` (computed by `body`, or defined outside it) is
    /// folded over every point of `loops` in row-major order, starting from the first value (see the module doc).
    Reduce {
        id: ValueId,
        dtype: DType,
        kind: ReduceKind,
        loops: Vec<Loop>,
        body: Block,
        value: ValueId,
    },
    /// `for (loops) { body }`: runs `body` at every point of `loops`, in row-major order.
    For { loops: Vec<Loop>, body: Block },
    /// `store buffer[index] = value`. The value's dtype is the buffer's.
    Store {
        buffer: BufferId,
        index: IndexExpr,
        value: ValueId,
    },
}

impl Inst {
    /// The buffer a `let` reads (a `load` or `load.or`).
    pub fn loaded_buffer(&self) -> Option<BufferId> {
        match self {
            Inst::Let {
                op:
                    ScalarOp::Load { buffer, .. }
                    | ScalarOp::LoadOr { buffer, .. }
                    | ScalarOp::LoadAt { buffer, .. },
                ..
            } => Some(*buffer),
            Inst::Let { .. } | Inst::Reduce { .. } | Inst::For { .. } | Inst::Store { .. } => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReduceKind {
    /// `acc + x`; empty: 0.
    Sum,
    /// `max(acc, x)` (NaN-propagating); empty: -inf (floats) or `i32::MIN`.
    Max,
}

impl ReduceKind {
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "sum",
            ReduceKind::Max => "max",
        }
    }
}

/// One scalar operation. Operand dtypes are those of the operand values; the result dtype is stated by the `Let`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ScalarOp {
    /// `buffer[index]`.
    Load {
        buffer: BufferId,
        index: IndexExpr,
    },
    /// `buffer[Σ_d (t_d / step_d) · stride_d]` when every [`GuardedDim`] holds, else `fill` (the f64
    /// bit pattern of a constant, as in `Const`). What a `pad`, a padded window and an `overlap_add` lower to: the
    /// guards are checked on the coordinates, so no out-of-range element is ever read. The buffer is not empty.
    LoadOr {
        buffer: BufferId,
        dims: Vec<GuardedDim>,
        fill: u64,
    },
    /// `buffer[index + at·stride]` when the i32 value `at` is in `0..extent`, else 0 (`false` for bool): what a
    /// `gather` lowers to (SPEC §3.11). The index value is checked before the load, so no index read from memory
    /// can make a load leave the buffer; `index` is the element at `at = 0`, and `index + (extent − 1)·stride`
    /// is in bounds (`kernel::verify`). `extent` is at least 1.
    LoadAt {
        buffer: BufferId,
        index: IndexExpr,
        at: ValueId,
        stride: usize,
        extent: usize,
    },
    /// A constant, stored as the f64 bit pattern (exact for every dtype), converted to the `Let`'s dtype.
    Const {
        bits: u64,
    },
    /// The integer value of `index`, converted to the `Let`'s dtype (what `iota` lowers to).
    Index(IndexExpr),
    /// The dot product of a [`MatmulKernel`] at the current point (epilogues only).
    MatmulAcc,
    Unary(UnaryOp, ValueId),
    /// Converts to the `Let`'s dtype (SPEC.md §3.3).
    Cast(ValueId),
    Binary(BinaryOp, ValueId, ValueId),
    /// Result dtype bool.
    Compare(CmpDir, ValueId, ValueId),
    /// `cond ? a : b`.
    Select(ValueId, ValueId, ValueId),
}

impl ScalarOp {
    pub fn constant(value: f64) -> ScalarOp {
        ScalarOp::Const {
            bits: value.to_bits(),
        }
    }

    /// The values the op reads (none for loads but `load.at`'s index, constants, indices and `matmul.acc`).
    pub fn operands(&self) -> Vec<ValueId> {
        match self {
            ScalarOp::Load { .. }
            | ScalarOp::LoadOr { .. }
            | ScalarOp::Const { .. }
            | ScalarOp::Index(_)
            | ScalarOp::MatmulAcc => Vec::new(),
            ScalarOp::Unary(_, x) | ScalarOp::Cast(x) | ScalarOp::LoadAt { at: x, .. } => vec![*x],
            ScalarOp::Binary(_, x, y) | ScalarOp::Compare(_, x, y) => vec![*x, *y],
            ScalarOp::Select(c, x, y) => vec![*c, *x, *y],
        }
    }
}

impl fmt::Display for BufferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

impl fmt::Display for IndexExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for &(v, s) in &self.terms {
            if !first {
                f.write_str(" + ")?;
            }
            first = false;
            if s == 1 {
                write!(f, "{v}")?;
            } else {
                write!(f, "{s}*{v}")?;
            }
        }
        if first {
            write!(f, "{}", self.offset)
        } else if self.offset != 0 {
            write!(f, " + {}", self.offset)
        } else {
            Ok(())
        }
    }
}
