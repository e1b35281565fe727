//! One kernel → one SPIR-V module (see the parent module doc for the shapes of the shaders).
//!
//! [`kernel`] chooses a plan ([`plan`]), and falls back to a smaller one where the device limits say so; an
//! [`Emitter`] then builds the module. The `impl Emitter` is split by concern:
//!
//! - this module: the entry point, the emitter's state, the kernel's structure (bounds guard, parallel point, loop
//!   nests, the instructions of a block) and the assembly of the module;
//! - [`builder`]: SPIR-V plumbing — types, constants, instructions, variables, built-ins, structured control flow,
//!   shared memory;
//! - [`plan`]: which plan a kernel runs under;
//! - [`reduce`]: sequential and cooperative (workgroup) reductions;
//! - [`matmul`]: the per-point and tiled matmul;
//! - [`scalar`]: values, buffer elements and the scalar ops;
//! - [`math_f64`]: the f64 `exp`, `log` and `tanh` GLSL.std.450 lacks;
//! - [`erf`]: `erf` (f32 and f64), which GLSL.std.450 lacks altogether.

mod builder;
mod erf;
mod math_f64;
mod matmul;
mod plan;
mod reduce;
mod scalar;
mod trig;

use self::plan::Plan;
use super::{element_bytes, Error, Options, SpirvKernel, WORKGROUP_SIZE};
use crate::kernel::{Block, BufferId, Inst, Kernel, KernelProgram, Loop, ValueId, Var};
use kiln_ir::DType;
use rspirv::binary::Assemble;
use rspirv::dr::{self, Builder, Instruction};
use rspirv::spirv::{
    AddressingModel, BuiltIn, Capability, ExecutionMode, ExecutionModel, MemoryModel, Op, Word,
};
use std::collections::HashMap;

type Result<T> = std::result::Result<T, Error>;

/// Lowers one kernel, within the device limits of `options` (see "Device limits" in the parent module doc): a plan
/// whose workgroup, shared memory or dispatch does not fit falls back to a smaller one; what no plan fits is an
/// [`Error::Unsupported`] naming the kernel and the limit.
pub(super) fn kernel(
    program: &KernelProgram,
    kernel: &Kernel,
    options: &Options,
) -> Result<SpirvKernel> {
    if let Kernel::Collective(c) = kernel {
        return Err(Error::Collective {
            node: c.copy.name.clone(),
        });
    }
    let mut bindings = kernel.reads();
    for w in kernel.writes() {
        if !bindings.contains(&w) {
            bindings.push(w);
        }
    }
    let points: u64 = kernel.parallel().iter().map(|l| l.extent as u64).product();
    let limits = &options.limits;
    let unsupported = |what: String| Error::Unsupported {
        kernel: kernel.name().to_string(),
        what,
    };
    // Fusion keeps the kernels it forms within this limit (`kiln::compile_vulkan`); a program made without the cap
    // gets this error, never a shader the driver rejects or runs wrongly.
    if bindings.len() as u64 > limits.max_storage_buffers as u64 {
        return Err(unsupported(format!(
            "binding {} storage buffers (the device allows {}: maxPerStageDescriptorStorageBuffers / \
             maxDescriptorSetStorageBuffers; `kiln::compile_vulkan` splits fused kernels to fit)",
            bindings.len(),
            limits.max_storage_buffers
        )));
    }
    for &b in &bindings {
        let buffer = &program.buffers[b.index()];
        let numel = buffer.ty.numel() as u64;
        if numel > u32::MAX as u64 {
            return Err(unsupported(format!(
                "buffer {b} with 2^32 or more elements"
            )));
        }
        let bytes = numel * element_bytes(buffer.ty.dtype) as u64;
        if bytes > limits.max_storage_buffer_range {
            return Err(unsupported(format!(
                "buffer `{}` ({}, {bytes} bytes) is larger than maxStorageBufferRange ({} bytes)",
                buffer.name, buffer.ty, limits.max_storage_buffer_range
            )));
        }
    }
    if points > u32::MAX as u64 {
        return Err(unsupported(
            "a parallel space of 2^32 or more points".into(),
        ));
    }
    let mut plan = Plan::choose(kernel, options);
    loop {
        let Some(groups) = plan.groups(kernel, points, limits) else {
            // A workgroup per point or a tiled matmul that needs more workgroups than the device allows runs per
            // point, whose dispatch covers the most points.
            match plan {
                Plan::PerPoint { .. } => {
                    return Err(unsupported(format!(
                        "{points} points in workgroups of {}: more workgroups than \
                         maxComputeWorkGroupCount {:?} allows (or a grid of 2^32 invocations or more)",
                        plan.local_size(),
                        limits.max_workgroups
                    )))
                }
                Plan::Workgroup { .. } | Plan::Tiled => {
                    plan = Plan::per_point(limits);
                    continue;
                }
            }
        };
        let mut e = Emitter::new(program, kernel.name());
        e.plan = plan;
        e.hide_zeros = options.hide_constant_zeros;
        e.begin(&bindings)?;
        let shaped = e.finish(kernel, points, groups, options)?;
        if shaped.shared_bytes > limits.max_shared_memory_bytes as u64 {
            // Halve a workgroup's invocations (and so its shared arrays), down to a per-point plan.
            plan = match plan {
                Plan::Workgroup { threads, .. } if threads > 2 => {
                    Plan::workgroup(threads / 2, options)
                }
                Plan::Workgroup { .. } | Plan::Tiled => Plan::per_point(limits),
                Plan::PerPoint { .. } => {
                    return Err(unsupported(format!(
                        "{} bytes of shared memory (maxComputeSharedMemorySize is {})",
                        shaped.shared_bytes, limits.max_shared_memory_bytes
                    )))
                }
            };
            continue;
        }
        return Ok(SpirvKernel {
            name: kernel.name().to_string(),
            words: shaped.words,
            bindings,
            groups,
            local_size: plan.local_size(),
            uses_f64: shaped.uses_f64,
            uses_float_controls: shaped.uses_float_controls,
        });
    }
}

/// An assembled module and what it declares.
struct Shaped {
    words: Vec<u32>,
    uses_f64: bool,
    uses_float_controls: bool,
    /// Bytes of Workgroup-storage memory the module declares.
    shared_bytes: u64,
}

/// The invocation-side facts of a [`Plan::Workgroup`] kernel.
#[derive(Clone, Copy)]
struct Coop {
    threads: u32,
    /// `LocalInvocationIndex`.
    lid: Word,
    subgroup: Option<Subgroup>,
}

/// Subgroup built-ins, loaded once.
#[derive(Clone, Copy)]
struct Subgroup {
    size: Word,
    lane: Word,
    id: Word,
    count: Word,
}

/// A storage buffer binding: its variable and element type.
#[derive(Clone, Copy)]
struct Binding {
    var: Word,
    dtype: DType,
}

struct Emitter<'p> {
    b: Builder,
    program: &'p KernelProgram,
    kernel: String,
    glsl: Word,
    t_void: Word,
    t_bool: Word,
    t_u32: Word,
    t_i32: Word,
    t_f32: Word,
    t_f64: Option<Word>,
    main: Word,
    plan: Plan,
    /// Set while emitting a [`Plan::Workgroup`] kernel.
    coop: Option<Coop>,
    /// Input variables (built-ins) the entry point lists.
    interface: Vec<Word>,
    /// Workgroup-storage arrays of `threads` elements, by element type.
    shared: HashMap<Word, Word>,
    /// Bytes of every Workgroup-storage array declared (a `bool` counted as 4).
    shared_bytes: u64,
    /// Constants by (type, bit pattern).
    consts: HashMap<(Word, u64), Word>,
    /// Storage buffer struct type by element type (each decorated once).
    structs: HashMap<Word, Word>,
    bindings: HashMap<BufferId, Binding>,
    /// The SPIR-V id and dtype of each kernel IR value.
    values: HashMap<ValueId, (Word, DType)>,
    /// The current value (u32) of each loop variable.
    vars: HashMap<Var, Word>,
    /// `OpVariable`s of the function; they must open the entry block, so they are inserted at the end.
    function_vars: Vec<Instruction>,
    matmul_acc: Option<(Word, DType)>,
    /// [`Options::hide_constant_zeros`].
    hide_zeros: bool,
    /// `NumWorkgroups.z >> 31`: a u32 that is always 0 but that no device compiler can prove to be 0.
    opaque_zero: Option<Word>,
    /// Float zeros made from [`Self::opaque_zero`], by (type, bit pattern).
    hidden_zeros: HashMap<(Word, u64), Word>,
    /// Instructions that open the entry block after the `OpVariable`s (so they dominate every use).
    prelude: Vec<Instruction>,
}

impl<'p> Emitter<'p> {
    fn new(program: &'p KernelProgram, kernel: &str) -> Emitter<'p> {
        let mut b = Builder::new();
        b.set_version(1, 3);
        b.capability(Capability::Shader);
        let glsl = b.ext_inst_import("GLSL.std.450");
        b.memory_model(AddressingModel::Logical, MemoryModel::GLSL450);
        let t_void = b.type_void();
        let t_bool = b.type_bool();
        let t_u32 = b.type_int(32, 0);
        let t_i32 = b.type_int(32, 1);
        let t_f32 = b.type_float(32, None);
        Emitter {
            b,
            program,
            kernel: kernel.to_string(),
            glsl,
            t_void,
            t_bool,
            t_u32,
            t_i32,
            t_f32,
            t_f64: None,
            main: 0,
            plan: Plan::PerPoint {
                threads: WORKGROUP_SIZE,
            },
            coop: None,
            interface: Vec::new(),
            shared: HashMap::new(),
            shared_bytes: 0,
            consts: HashMap::new(),
            structs: HashMap::new(),
            bindings: HashMap::new(),
            values: HashMap::new(),
            vars: HashMap::new(),
            function_vars: Vec::new(),
            matmul_acc: None,
            hide_zeros: false,
            opaque_zero: None,
            hidden_zeros: HashMap::new(),
            prelude: Vec::new(),
        }
    }

    /// An inconsistency inside the emitter (a plan and a kernel that do not go together, a builder error): the
    /// kernel IR itself was verified (see [`verified`]).
    fn invalid(&self, message: String) -> Error {
        Error::InvalidKernel {
            kernel: self.kernel.clone(),
            message,
        }
    }

    fn build_err(&self, e: dr::Error) -> Error {
        self.invalid(format!("SPIR-V builder: {e:?}"))
    }

    // ---- kernel structure ----

    /// Emits the body (under the bounds guard, or the tiled matmul), closes the function and assembles the module.
    fn finish(
        mut self,
        kernel: &Kernel,
        points: u64,
        groups: [u32; 3],
        options: &Options,
    ) -> Result<Shaped> {
        match (self.plan, kernel) {
            (Plan::Tiled, Kernel::Matmul(m)) => self.tiled_matmul(m)?,
            (Plan::Tiled, _) => return Err(self.invalid("a tiled plan for a loop kernel".into())),
            _ => self.guarded_body(kernel, points, groups)?,
        }
        self.b.ret().map_err(|e| self.build_err(e))?;
        self.b.end_function().map_err(|e| self.build_err(e))?;
        let interface = std::mem::take(&mut self.interface);
        self.b
            .entry_point(ExecutionModel::GLCompute, self.main, "main", interface);
        self.b.execution_mode(
            self.main,
            ExecutionMode::LocalSize,
            [self.plan.local_size(), 1, 1],
        );

        let uses_f64 = self.t_f64.is_some();
        let widths: Vec<u32> = [
            (32, options.preserve_nan[0]),
            (64, options.preserve_nan[1] && uses_f64),
        ]
        .into_iter()
        .filter_map(|(w, on)| on.then_some(w))
        .collect();
        let uses_float_controls = !widths.is_empty();
        if uses_float_controls {
            self.b.extension("SPV_KHR_float_controls");
            self.b.capability(Capability::SignedZeroInfNanPreserve);
            for w in widths {
                self.b
                    .execution_mode(self.main, ExecutionMode::SignedZeroInfNanPreserve, [w]);
            }
        }
        let vars = std::mem::take(&mut self.function_vars);
        let mut module = self.b.module();
        let entry = &mut module.functions[0].blocks[0].instructions;
        let prelude = std::mem::take(&mut self.prelude);
        let vars_len = vars.len();
        entry.splice(0..0, vars);
        entry.splice(vars_len..vars_len, prelude);
        Ok(Shaped {
            words: module.assemble(),
            uses_f64,
            uses_float_controls,
            shared_bytes: self.shared_bytes,
        })
    }

    /// The bounds guard and the body of a per-point or workgroup kernel (see the parent module doc).
    fn guarded_body(&mut self, kernel: &Kernel, points: u64, groups: [u32; 3]) -> Result<()> {
        // The linear id counts rows of `groups_x` workgroups; a row is `gid.y` (2-D), or `gid.z · groups_y + gid.y`
        // where the rows needed exceed `maxComputeWorkGroupCount[1]` (3-D, see `grid_groups`). A 3-D grid may hold
        // rows past the last needed one: those invocations must do nothing, and their linear id could wrap, so
        // they are excluded by the row, not by the id.
        let three_d = groups[2] > 1;
        let (builtin, row_len) = match self.plan {
            // g = row · (threads · groups_x) + gid.x
            Plan::PerPoint { threads } => (BuiltIn::GlobalInvocationId, groups[0].max(1) * threads),
            // The point is the workgroup's: w = row · groups_x + wid.x, the same in every invocation of it, so the
            // guard below is uniform across the workgroup and the barriers inside it are legal.
            Plan::Workgroup { .. } => (BuiltIn::WorkgroupId, groups[0].max(1)),
            Plan::Tiled => return Err(self.invalid("a guarded body for a tiled matmul".into())),
        };
        let (x, y, z) = self.builtin_xyz(builtin, three_d)?;
        let row = match z {
            Some(z) => {
                let per_z = self.u32_const(groups[1]);
                let zoff = self.op(Op::IMul, self.t_u32, &[z, per_z])?;
                self.op(Op::IAdd, self.t_u32, &[zoff, y])?
            }
            None => y,
        };
        let row_len_id = self.u32_const(row_len);
        let yoff = self.op(Op::IMul, self.t_u32, &[row, row_len_id])?;
        let linear = self.op(Op::IAdd, self.t_u32, &[yoff, x])?;
        let total = self.u32_const(points as u32);
        let mut in_bounds = self.bool_op(Op::ULessThan, &[linear, total])?;
        if three_d {
            let rows = self.u32_const(points.div_ceil(row_len as u64) as u32);
            let row_ok = self.bool_op(Op::ULessThan, &[row, rows])?;
            in_bounds = self.bool_op(Op::LogicalAnd, &[row_ok, in_bounds])?;
        }
        self.if_then(in_bounds, &mut |e| {
            if let Plan::Workgroup { threads, subgroups } = e.plan {
                let lid = e.builtin(BuiltIn::LocalInvocationIndex, e.t_u32)?;
                let subgroup = if subgroups {
                    e.b.capability(Capability::GroupNonUniform);
                    e.b.capability(Capability::GroupNonUniformShuffle);
                    Some(Subgroup {
                        size: e.builtin(BuiltIn::SubgroupSize, e.t_u32)?,
                        lane: e.builtin(BuiltIn::SubgroupLocalInvocationId, e.t_u32)?,
                        id: e.builtin(BuiltIn::SubgroupId, e.t_u32)?,
                        count: e.builtin(BuiltIn::NumSubgroups, e.t_u32)?,
                    })
                } else {
                    None
                };
                e.coop = Some(Coop {
                    threads,
                    lid,
                    subgroup,
                });
            }
            e.parallel_point(kernel.parallel(), linear)?;
            match kernel {
                Kernel::Loop(k) if e.coop.is_some() => e.coop_block(&k.body)?,
                Kernel::Loop(k) => e.block(&k.body)?,
                // `kernel` refused it before any emission.
                Kernel::Collective(c) => {
                    return Err(Error::Collective {
                        node: c.copy.name.clone(),
                    })
                }
                Kernel::Matmul(m) => {
                    let acc = e.matmul_dot(m)?;
                    let acc = e.positive_zero(m.dtype, acc)?;
                    e.matmul_acc = Some((acc, m.dtype));
                    e.block(&m.epilogue)?;
                }
            }
            Ok(())
        })
    }

    /// Binds the parallel loop variables from the linear invocation index (row-major).
    fn parallel_point(&mut self, loops: &[Loop], linear: Word) -> Result<()> {
        let mut rest = linear;
        for (pos, l) in loops.iter().enumerate().rev() {
            let v = if pos == 0 {
                rest
            } else if l.extent == 1 {
                self.u32_const(0)
            } else {
                let ext = self.u32_const(l.extent as u32);
                let v = self.op(Op::UMod, self.t_u32, &[rest, ext])?;
                rest = self.op(Op::UDiv, self.t_u32, &[rest, ext])?;
                v
            };
            self.vars.insert(l.var, v);
        }
        Ok(())
    }

    /// Runs `body` at every point of `loops` (row-major), as nested structured loops.
    fn loops(
        &mut self,
        loops: &[Loop],
        body: &mut dyn FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let Some((l, inner)) = loops.split_first() else {
            return body(self);
        };
        match l.extent {
            0 => Ok(()),
            1 => {
                let zero = self.u32_const(0);
                self.vars.insert(l.var, zero);
                self.loops(inner, body)
            }
            extent => {
                let counter = self.function_var(self.t_u32);
                let zero = self.u32_const(0);
                self.store_var(counter, zero)?;
                self.loop_on_counter(
                    counter,
                    &|e| e.u32_const(extent as u32),
                    &|e, i| {
                        let one = e.u32_const(1);
                        e.op(Op::IAdd, e.t_u32, &[i, one])
                    },
                    &mut |e, i| {
                        e.vars.insert(l.var, i);
                        e.loops(inner, body)
                    },
                )
            }
        }
    }

    fn block(&mut self, block: &Block) -> Result<()> {
        for inst in &block.insts {
            match inst {
                Inst::Let { id, dtype, op } => {
                    let v = self.scalar(op, *dtype)?;
                    self.values.insert(*id, (v, *dtype));
                }
                Inst::Reduce {
                    id,
                    dtype,
                    kind,
                    loops,
                    body,
                    value,
                } => {
                    let v = self.reduce(*dtype, *kind, loops, body, *value)?;
                    self.values.insert(*id, (v, *dtype));
                }
                Inst::For { loops, body } => self.loops(loops, &mut |e| e.block(body))?,
                Inst::Store {
                    buffer,
                    index,
                    value,
                } => {
                    let (v, dtype) = self.value(*value);
                    let stored = if dtype == DType::Bool {
                        let (one, zero) = (self.u32_const(1), self.u32_const(0));
                        self.select(self.t_u32, v, one, zero)?
                    } else {
                        v
                    };
                    let ptr = self.element_ptr(*buffer, index)?;
                    self.store_var(ptr, stored)?;
                }
            }
        }
        Ok(())
    }
}

/// A case [`crate::kernel::verify`] rules out — [`super::lower_with`] verifies the program before anything is
/// emitted, so the emitter does not check the kernel IR again (undefined values, ops on dtypes they are not defined
/// on, unbound buffers…); reaching one is a bug in the verifier. What the device allows is checked here (see
/// [`kernel`]): that is not a property of the IR.
#[cold]
#[track_caller]
fn verified(what: &str) -> ! {
    unreachable!("kernel::verify rules out {what}")
}

/// Bytes between consecutive elements of a buffer of `dtype` on the device.
pub(super) fn element_stride(dtype: DType) -> u32 {
    kiln_runtime::vulkan::element_bytes(dtype) as u32
}
