//! From a kernel program and its memory plan to a runnable [`Executable`]: compile every kernel, lay the buffers out
//! as the plan says, and hand the runtime the native entries with the JIT module that owns them.
//!
//! A matmul whose epilogue only stores the product, in point order, to a buffer of the matmul's dtype (the plain
//! `x Wᵀ` of a backward pass) has its GEMM write straight into that buffer and no epilogue at all; every other matmul
//! writes to the arena's scratch region, which its epilogue reads.

use super::codegen::{self, KernelCode};
use super::jit::JitModule;
use crate::backend::BackendError;
use crate::kernel::{
    Block, BufferKind, Inst, Kernel, KernelProgram, MatmulKernel, MatrixView, ScalarOp,
};
use crate::memory::{BufferPlacement, MemoryPlan, ALIGNMENT};
use kiln_ir::{Role, Tensor};
use kiln_runtime::{
    BufferSpec, Executable, Gemm, InputSpec, KernelFn, Layout, MatrixOperand, OutputSpec, Place,
    Step,
};
use std::sync::Mutex;
use std::time::Instant;

/// Compiles `program` (laid out by `plan`; `roles` per program input) for `threads` threads. `started` is when
/// compilation began, for [`Executable::compile_time`]. Kernels call the wide math routines as
/// [`crate::Options::wide_math`] does by default.
pub fn assemble(
    program: &KernelProgram,
    plan: &MemoryPlan,
    roles: &[Role],
    threads: usize,
    started: Instant,
) -> Result<Executable, BackendError> {
    let wide_math = super::jit::wide_strips_by_default();
    assemble_with(program, plan, roles, threads, wide_math, started)
}

/// [`assemble`], strip-mining the kernels worth it where `wide_math` and the host allow
/// ([`crate::Options::wide_math`]).
pub fn assemble_with(
    program: &KernelProgram,
    plan: &MemoryPlan,
    roles: &[Role],
    threads: usize,
    wide_math: bool,
    started: Instant,
) -> Result<Executable, BackendError> {
    let layout = layout(program, plan, roles)?;
    let mut jit = JitModule::new()?;
    jit.set_wide(wide_math);
    let mut compiled: Vec<(KernelCode, Option<usize>)> = Vec::with_capacity(program.kernels.len());
    for (k, kernel) in program.kernels.iter().enumerate() {
        let direct = match kernel {
            Kernel::Matmul(m) => direct_destination(program, m),
            Kernel::Loop(_) | Kernel::Collective(_) => None,
        };
        let code = if direct.is_some() {
            KernelCode {
                func: None,
                vectorized: false,
            }
        } else {
            codegen::compile_kernel(&mut jit, program, k)?
        };
        compiled.push((code, direct));
    }
    jit.finalize()?;
    let mut steps = Vec::with_capacity(program.kernels.len());
    for (kernel, (code, direct)) in program.kernels.iter().zip(&compiled) {
        let entry = code.func.map(|f| jit.get(f)).transpose()?.map(|code| {
            // SAFETY: `code` is the finalized entry of a function `codegen::compile_kernel` built with the kernel
            // signature `(table: ptr, start: i64, end: i64)` in the host's default calling convention, which is
            // `KernelFn`'s `extern "C"`. The module that owns it moves into the executable below.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(code) }
        });
        let points: u64 = kernel.parallel().iter().map(|l| l.extent as u64).product();
        let cost = block_cost(kernel.body()).max(1);
        steps.push(match kernel {
            Kernel::Loop(l) => Step::Loop {
                name: l.name.clone(),
                points,
                cost,
                entry: entry.expect("every loop kernel is compiled"),
            },
            Kernel::Collective(c) => {
                let ty = &program.buffers[c.buffer.index()].ty;
                Step::Collective {
                    name: c.copy.name.clone(),
                    points,
                    cost,
                    copy: entry.expect("every collective's copy is compiled"),
                    op: c.op,
                    slot: c.buffer.index(),
                    dtype: ty.dtype,
                    len: ty.numel(),
                }
            }
            Kernel::Matmul(m) => Step::Matmul {
                name: m.name.clone(),
                gemm: Gemm {
                    dtype: m.dtype,
                    batch: m.batch(),
                    m: m.m(),
                    n: m.n(),
                    k: m.k,
                    a: operand(&m.a),
                    b: operand(&m.b),
                    out: direct.unwrap_or(layout.scratch_slot()),
                },
                points,
                cost,
                epilogue: entry,
            },
        });
    }
    let code: Box<dyn Send + Sync> = Box::new(Mutex::new(jit));
    // SAFETY: `code` owns the JIT memory of every entry in `steps`. Each entry was generated from a kernel that
    // `codegen::check` accepted, so it touches only elements inside its buffers (loads and stores are checked against
    // every buffer's element count for all loop values) and the scratch (`matmul.acc` at the point index, below
    // `batch·m·n`, which `layout` reserves); it stores only to output and temp buffers; each parallel point computes
    // and stores its own elements only (the kernel IR's contract); and an input written in place is read at each
    // element before that element is stored (what `memory::plan` decides `InPlace` on).
    let exe = unsafe { Executable::new(layout, steps, code, threads, started.elapsed()) }?;
    Ok(exe)
}

/// The work of one run of `block`: one per instruction, a nested loop's body (and its loop step) times the loop's
/// points. The runtime splits a kernel's points into chunks of about equal work ([`kiln_runtime::Step::Loop`]).
fn block_cost(block: &Block) -> u64 {
    block
        .insts
        .iter()
        .map(|inst| match inst {
            Inst::Let { .. } | Inst::Store { .. } => 1,
            Inst::Reduce { loops, body, .. } | Inst::For { loops, body } => loops
                .iter()
                .map(|l| l.extent as u64)
                .product::<u64>()
                .saturating_mul(block_cost(body) + 1),
        })
        .fold(0, u64::saturating_add)
}

fn operand(v: &MatrixView) -> MatrixOperand {
    MatrixOperand {
        buffer: v.buffer.index(),
        offset: v.offset,
        batch_strides: v.batch_strides.clone(),
        row_stride: v.row_stride,
        col_stride: v.col_stride,
    }
}

/// The buffer a matmul's GEMM can write directly: its epilogue is `%a = matmul.acc; store b[point] = %a`.
fn direct_destination(program: &KernelProgram, m: &MatmulKernel) -> Option<usize> {
    let [Inst::Let {
        id,
        dtype,
        op: ScalarOp::MatmulAcc,
    }, Inst::Store {
        buffer,
        index,
        value,
    }] = &m.epilogue.insts[..]
    else {
        return None;
    };
    let dest = &program.buffers[buffer.index()];
    if value != id || *dtype != m.dtype || dest.ty.dtype != m.dtype || index.offset != 0 {
        return None;
    }
    if buffer == &m.a.buffer || buffer == &m.b.buffer {
        return None;
    }
    // The store's index must be the row-major point index: each loop of extent > 1 with its row-major stride.
    let mut stride = 1;
    let mut expected = Vec::new();
    for l in m.parallel.iter().rev() {
        if l.extent > 1 {
            expected.push((l.var, stride));
        }
        stride *= l.extent;
    }
    let mut terms: Vec<_> = index
        .terms
        .iter()
        .copied()
        .filter(|&(_, s)| s != 0)
        .collect();
    terms.sort();
    expected.sort();
    (terms == expected && dest.ty.numel() == stride).then_some(buffer.index())
}

fn layout(
    program: &KernelProgram,
    plan: &MemoryPlan,
    roles: &[Role],
) -> Result<Layout, BackendError> {
    let input_of = |b: crate::kernel::BufferId| -> Result<usize, BackendError> {
        program
            .inputs
            .iter()
            .position(|i| i.buffer == b)
            .ok_or_else(|| BackendError::BadCall {
                name: program.name.clone(),
                problem: format!("buffer {b} is an input buffer no program input names"),
            })
    };
    let mut constants = Vec::new();
    let mut buffers = Vec::with_capacity(program.buffers.len());
    for (b, buffer) in program.buffers.iter().enumerate() {
        let place = match plan.placements[b] {
            BufferPlacement::Input => Place::Input(input_of(crate::kernel::BufferId(b as u32))?),
            BufferPlacement::Constant => {
                let BufferKind::Constant(lit) = &buffer.kind else {
                    unreachable!("the plan places constant buffers only as constants")
                };
                let values: Vec<f64> = (0..buffer.ty.numel()).map(|i| lit.get(i)).collect();
                constants.push(Tensor::from_f64_values(buffer.ty.clone(), &values)?);
                Place::Constant(constants.len() - 1)
            }
            BufferPlacement::Arena { offset, .. } => Place::Arena { offset },
            BufferPlacement::Output => Place::Output,
            BufferPlacement::InPlace { input } => Place::InPlace {
                input: input_of(input)?,
            },
            BufferPlacement::CopyBack { input } => Place::CopyBack {
                input: input_of(input)?,
            },
        };
        buffers.push(BufferSpec {
            name: buffer.name.clone(),
            ty: buffer.ty.clone(),
            place,
        });
    }
    let scratch_bytes = program
        .kernels
        .iter()
        .filter_map(|k| match k {
            Kernel::Matmul(m) if direct_destination(program, m).is_none() => {
                Some(m.batch().iter().product::<usize>() * m.m() * m.n() * m.dtype.size_bytes())
            }
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let scratch_offset = plan.peak_bytes.div_ceil(ALIGNMENT) * ALIGNMENT;
    let inputs = program
        .inputs
        .iter()
        .zip(roles)
        .map(|(i, &role)| InputSpec {
            name: i.name.clone(),
            ty: program.buffers[i.buffer.index()].ty.clone(),
            role,
            buffer: i.buffer.index(),
        })
        .collect();
    let outputs = program
        .outputs
        .iter()
        .map(|o| OutputSpec {
            name: o.name.clone(),
            buffer: o.buffer.index(),
            aliases: o
                .aliases
                .as_ref()
                .and_then(|a| program.inputs.iter().position(|i| &i.name == a)),
        })
        .collect();
    Ok(Layout {
        name: program.name.clone(),
        buffers,
        inputs,
        outputs,
        constants,
        arena_bytes: scratch_offset + scratch_bytes,
        scratch_offset,
    })
}
