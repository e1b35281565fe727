//! One kernel → one SPIR-V module (see the parent module doc for the shape of the code).

use super::{
    element_bytes, grid_groups, DeviceLimits, Error, Options, SpirvKernel, WORKGROUP_REDUCE_WIDE,
    WORKGROUP_SIZE,
};
use crate::kernel::{
    Block, BufferId, IndexExpr, Inst, Kernel, KernelProgram, Loop, LoopKernel, MatmulKernel,
    ReduceKind, ScalarOp, ValueId, Var,
};
use kiln_ir::{BinaryOp, CmpDir, DType, UnaryOp};
use rspirv::binary::Assemble;
use rspirv::dr::{self, Builder, InsertPoint, Instruction, Operand};
use rspirv::spirv::{
    AddressingModel, BuiltIn, Capability, Decoration, ExecutionMode, ExecutionModel,
    FunctionControl, GlslStd450Op as GLOp, LoopControl, MemoryModel, Op, Scope, SelectionControl,
    StorageClass, Word,
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

/// The largest power-of-two workgroup size (x) the device allows: at most `maxComputeWorkGroupInvocations` and
/// `maxComputeWorkGroupSize[0]`.
fn max_threads(limits: &DeviceLimits) -> u32 {
    let most = limits
        .max_workgroup_invocations
        .min(limits.max_workgroup_size[0])
        .max(1);
    1 << most.ilog2()
}

/// How a kernel's parallel points map onto invocations (the rule is in the parent module doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Plan {
    /// One invocation per parallel point, `threads` ([`WORKGROUP_SIZE`], or fewer where the device allows fewer)
    /// invocations per workgroup.
    PerPoint { threads: u32 },
    /// One workgroup of `threads` invocations per parallel point: top-level reductions and `for` loops are strided
    /// across the workgroup, reductions combined through shared memory (after a subgroup butterfly if
    /// `subgroups`).
    Workgroup { threads: u32, subgroups: bool },
    /// A matmul as `TILE × TILE` output blocks, one workgroup of `TILE²` invocations each (one output element per
    /// invocation), `k` walked in `TILE`-wide steps through shared-memory tiles of A and B.
    Tiled,
}

impl Plan {
    fn per_point(limits: &DeviceLimits) -> Plan {
        Plan::PerPoint {
            threads: WORKGROUP_SIZE.min(max_threads(limits)),
        }
    }

    /// A workgroup plan of `threads` invocations (a power of two), with subgroups where they fit.
    fn workgroup(threads: u32, options: &Options) -> Plan {
        let subgroups = options
            .subgroup_size
            .is_some_and(|s| s.is_power_of_two() && (2..=threads).contains(&s));
        Plan::Workgroup { threads, subgroups }
    }

    fn choose(kernel: &Kernel, options: &Options) -> Plan {
        let limits = &options.limits;
        let per_point = Plan::per_point(limits);
        let k = match kernel {
            Kernel::Loop(k) => k,
            Kernel::Matmul(m) => {
                let fits = max_threads(limits) >= TILE * TILE;
                return match tiled_groups(m, limits) {
                    Some(_) if options.tiled_matmul && m.k >= TILE as usize && fits => Plan::Tiled,
                    _ => per_point,
                };
            }
        };
        let flat = |loops: &[Loop]| loops.iter().map(|l| l.extent as u64).product::<u64>();
        let longest = k
            .body
            .insts
            .iter()
            .filter_map(|i| match i {
                Inst::Reduce { loops, .. } => Some(flat(loops)),
                _ => None,
            })
            .max();
        let Some(longest) = longest else {
            return per_point;
        };
        // A strided counter must not wrap: every top-level loop nest stays below 2^31.
        let fits = k.body.insts.iter().all(|i| match i {
            Inst::Reduce { loops, .. } | Inst::For { loops, .. } => flat(loops) < 1 << 31,
            _ => true,
        });
        let Some(min) = options.workgroup_reductions else {
            return per_point;
        };
        // A kernel that reads back what it stores would need barriers between the store and the loads of other
        // invocations, and stays per point — unless each element is read by the invocation that stored it (a row
        // materialized by `kernel::materialize`; see [`accessed_by_its_writer`]).
        let writes = kernel.writes();
        if kernel
            .reads()
            .iter()
            .any(|b| writes.contains(b) && !accessed_by_its_writer(k, *b))
        {
            return per_point;
        }
        // A workgroup of fewer than 2 invocations would reduce nothing in parallel.
        if longest < min as u64 || !fits || max_threads(limits) < 2 {
            return per_point;
        }
        let threads = if longest >= WORKGROUP_REDUCE_WIDE as u64 {
            256
        } else {
            64
        };
        Plan::workgroup(threads.min(max_threads(limits)), options)
    }

    fn local_size(self) -> u32 {
        match self {
            Plan::PerPoint { threads } => threads,
            Plan::Workgroup { threads, .. } => threads,
            Plan::Tiled => TILE * TILE,
        }
    }

    /// The workgroup counts of the plan for `points` points, or `None` if the device's counts can't hold them.
    fn groups(self, kernel: &Kernel, points: u64, limits: &DeviceLimits) -> Option<[u32; 3]> {
        match self {
            Plan::PerPoint { threads } => {
                grid_groups(points.div_ceil(threads as u64), threads, limits)
            }
            Plan::Workgroup { .. } => grid_groups(points, 1, limits),
            Plan::Tiled => match kernel {
                Kernel::Matmul(m) => tiled_groups(m, limits),
                Kernel::Loop(_) => None,
            },
        }
    }
}

/// Whether, in a [`Plan::Workgroup`] kernel, every load and store of `buffer` is made by the invocation that
/// stores that element, so no barrier is needed between them: every access is directly in the body of a top-level
/// `reduce` or `for`, all these nests have the same extents, and all index `buffer` with the same affine function of
/// the nest's variables (position by position), one-to-one. [`Emitter::strided`] deals the flattened points of each
/// such nest alike (point `c` to invocation `c mod threads`), so the element of point `c` is stored and loaded by
/// that invocation only, in program order.
fn accessed_by_its_writer(kernel: &LoopKernel, buffer: BufferId) -> bool {
    // (extents, offset, strides by loop position and of the other variables)
    type Access = (Vec<usize>, usize, Vec<usize>, Vec<(Var, usize)>);
    let mut accesses: Vec<Access> = Vec::new();
    let mut nested = false;
    for inst in &kernel.body.insts {
        let (loops, body) = match inst {
            Inst::Reduce { loops, body, .. } | Inst::For { loops, body } => (loops, body),
            // Run by every invocation (a let) or by invocation 0 (a store).
            Inst::Let { .. } | Inst::Store { .. } if accesses_buffer(inst, buffer).is_some() => {
                return false
            }
            Inst::Let { .. } | Inst::Store { .. } => continue,
        };
        for i in &body.insts {
            if let Inst::Reduce { body, .. } | Inst::For { body, .. } = i {
                body.visit(&mut |i| nested |= accesses_buffer(i, buffer).is_some());
            }
            let Some(index) = accesses_buffer(i, buffer) else {
                continue;
            };
            let position = |v: Var| loops.iter().position(|l| l.var == v);
            let strides = loops.iter().map(|l| index.stride_of(l.var)).collect();
            let outer = index
                .terms
                .iter()
                .filter(|t| position(t.0).is_none())
                .copied()
                .collect();
            let extents = loops.iter().map(|l| l.extent).collect();
            accesses.push((extents, index.offset, strides, outer));
        }
    }
    let Some(first) = accesses.first() else {
        return false;
    };
    // One-to-one: sorted by stride, each stride exceeds the largest offset the smaller ones reach.
    let mut dims: Vec<(usize, usize)> = first
        .2
        .iter()
        .zip(&first.0)
        .filter(|&(_, &extent)| extent > 1)
        .map(|(&stride, &extent)| (stride, extent))
        .collect();
    dims.sort();
    let mut reach = 0usize;
    for (stride, extent) in dims {
        if stride <= reach {
            return false;
        }
        reach = reach.saturating_add(stride.saturating_mul(extent - 1));
    }
    !nested && accesses.iter().all(|a| a == first)
}

/// The index of `inst`'s load or store of `buffer`, if it is one.
fn accesses_buffer(inst: &Inst, buffer: BufferId) -> Option<&IndexExpr> {
    match inst {
        Inst::Let {
            op: ScalarOp::Load { buffer: b, index },
            ..
        }
        | Inst::Store {
            buffer: b, index, ..
        } if *b == buffer => Some(index),
        _ => None,
    }
}

/// The side of a matmul tile: a workgroup computes a `TILE × TILE` block of C.
pub(super) const TILE: u32 = 16;

/// A tiled matmul's workgroup counts: column blocks, row blocks, batch points; `None` if one exceeds the device's
/// `maxComputeWorkGroupCount` in its dimension (or a side is empty).
pub(super) fn tiled_groups(m: &MatmulKernel, limits: &DeviceLimits) -> Option<[u32; 3]> {
    let batch: u64 = m.batch().iter().map(|&b| b as u64).product();
    let counts = [
        (m.n() as u64).div_ceil(TILE as u64),
        (m.m() as u64).div_ceil(TILE as u64),
        batch,
    ];
    counts
        .iter()
        .zip(limits.max_workgroups)
        .all(|(&c, max)| (1..=max as u64).contains(&c))
        .then(|| counts.map(|c| c as u32))
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

    fn unsupported(&self, what: String) -> Error {
        Error::Unsupported {
            kernel: self.kernel.clone(),
            what,
        }
    }

    fn invalid(&self, message: String) -> Error {
        Error::InvalidKernel {
            kernel: self.kernel.clone(),
            message,
        }
    }

    fn build_err(&self, e: dr::Error) -> Error {
        self.invalid(format!("SPIR-V builder: {e:?}"))
    }

    // ---- types and constants ----

    /// The register type of a dtype.
    fn ty(&mut self, dtype: DType) -> Word {
        match dtype {
            DType::F32 => self.t_f32,
            DType::I32 => self.t_i32,
            DType::Bool => self.t_bool,
            DType::F64 => match self.t_f64 {
                Some(t) => t,
                None => {
                    self.b.capability(Capability::Float64);
                    let t = self.b.type_float(64, None);
                    self.t_f64 = Some(t);
                    t
                }
            },
        }
    }

    /// The storage type of a dtype's elements (bool is a u32 word).
    fn storage_ty(&mut self, dtype: DType) -> Word {
        match dtype {
            DType::Bool => self.t_u32,
            d => self.ty(d),
        }
    }

    fn constant(&mut self, ty: Word, bits: u64) -> Word {
        if let Some(&c) = self.consts.get(&(ty, bits)) {
            return c;
        }
        let c = if ty == self.t_bool {
            if bits != 0 {
                self.b.constant_true(ty)
            } else {
                self.b.constant_false(ty)
            }
        } else if Some(ty) == self.t_f64 {
            self.b.constant_bit64(ty, bits)
        } else {
            self.b.constant_bit32(ty, bits as u32)
        };
        self.consts.insert((ty, bits), c);
        c
    }

    fn u32_const(&mut self, v: u32) -> Word {
        self.constant(self.t_u32, v as u64)
    }

    /// A float constant of `dtype` (f32 or f64); a zero is hidden behind [`Self::opaque_zero`] under
    /// [`Options::hide_constant_zeros`].
    fn float_const(&mut self, dtype: DType, v: f64) -> Word {
        let t = self.ty(dtype);
        if self.hide_zeros && v == 0.0 {
            return self.hidden_zero(dtype, v.is_sign_negative());
        }
        match dtype {
            DType::F64 => self.constant(t, v.to_bits()),
            _ => self.constant(t, (v as f32).to_bits() as u64),
        }
    }

    /// `NumWorkgroups.z >> 31`, computed once in the prelude: 0 in every dispatch (a z count is far below 2^31), but a
    /// run-time value to the device compiler.
    fn opaque_zero(&mut self) -> Word {
        if let Some(z) = self.opaque_zero {
            return z;
        }
        let (u, v3) = (self.t_u32, self.b.type_vector(self.t_u32, 3));
        let var = self.global_var(v3, StorageClass::Input);
        self.b.decorate(
            var,
            Decoration::BuiltIn,
            [Operand::BuiltIn(BuiltIn::NumWorkgroups)],
        );
        self.interface.push(var);
        let shift = self.u32_const(31);
        let (groups, z, zero) = (self.b.id(), self.b.id(), self.b.id());
        self.prelude.extend([
            Instruction::new(Op::Load, Some(v3), Some(groups), vec![Operand::IdRef(var)]),
            Instruction::new(
                Op::CompositeExtract,
                Some(u),
                Some(z),
                vec![Operand::IdRef(groups), Operand::LiteralBit32(2)],
            ),
            Instruction::new(
                Op::ShiftRightLogical,
                Some(u),
                Some(zero),
                vec![Operand::IdRef(z), Operand::IdRef(shift)],
            ),
        ]);
        self.opaque_zero = Some(zero);
        zero
    }

    /// `±0` of `dtype` as the bits of a constant OR [`Self::opaque_zero`], made in the prelude.
    fn hidden_zero(&mut self, dtype: DType, negative: bool) -> Word {
        let t = self.ty(dtype);
        let key = (t, negative as u64);
        if let Some(&z) = self.hidden_zeros.get(&key) {
            return z;
        }
        let opaque = self.opaque_zero();
        let u = self.t_u32;
        let sign = self.u32_const(if negative { 0x8000_0000 } else { 0 });
        let (high, value) = (self.b.id(), self.b.id());
        self.prelude.push(Instruction::new(
            Op::BitwiseOr,
            Some(u),
            Some(high),
            vec![Operand::IdRef(sign), Operand::IdRef(opaque)],
        ));
        let bits = if dtype == DType::F64 {
            // Low word, high word (with the sign).
            let (words_ty, words) = (self.b.type_vector(u, 2), self.b.id());
            self.prelude.push(Instruction::new(
                Op::CompositeConstruct,
                Some(words_ty),
                Some(words),
                vec![Operand::IdRef(opaque), Operand::IdRef(high)],
            ));
            words
        } else {
            high
        };
        self.prelude.push(Instruction::new(
            Op::Bitcast,
            Some(t),
            Some(value),
            vec![Operand::IdRef(bits)],
        ));
        self.hidden_zeros.insert(key, value);
        value
    }

    fn i32_const(&mut self, v: i32) -> Word {
        self.constant(self.t_i32, v as u32 as u64)
    }

    /// A constant of `dtype` with value `v` (converted as `Scalar::from_f64` does).
    fn typed_const(&mut self, dtype: DType, v: f64) -> Word {
        match dtype {
            DType::F32 | DType::F64 => self.float_const(dtype, v),
            DType::I32 => self.i32_const(v as i32),
            DType::Bool => self.constant(self.t_bool, (v != 0.0) as u64),
        }
    }

    // ---- instructions ----

    /// Appends `op` with result type `ty` and id operands `args`; returns the result id.
    fn op(&mut self, op: Op, ty: Word, args: &[Word]) -> Result<Word> {
        let id = self.b.id();
        let inst = Instruction::new(
            op,
            Some(ty),
            Some(id),
            args.iter().map(|&a| Operand::IdRef(a)).collect(),
        );
        self.b
            .insert_into_block(InsertPoint::End, inst)
            .map_err(|e| self.build_err(e))?;
        Ok(id)
    }

    fn glsl(&mut self, op: GLOp, ty: Word, args: &[Word]) -> Result<Word> {
        let set = self.glsl;
        self.b
            .ext_inst(
                ty,
                None,
                set,
                op as u32,
                args.iter().map(|&a| Operand::IdRef(a)),
            )
            .map_err(|e| self.build_err(e))
    }

    fn select(&mut self, ty: Word, c: Word, a: Word, b: Word) -> Result<Word> {
        self.op(Op::Select, ty, &[c, a, b])
    }

    fn bool_op(&mut self, op: Op, args: &[Word]) -> Result<Word> {
        self.op(op, self.t_bool, args)
    }

    /// A function-local variable of type `ty` (declared in the entry block at the end).
    fn function_var(&mut self, ty: Word) -> Word {
        let ptr = self.b.type_pointer(None, StorageClass::Function, ty);
        let id = self.b.id();
        self.function_vars.push(Instruction::new(
            Op::Variable,
            Some(ptr),
            Some(id),
            vec![Operand::StorageClass(StorageClass::Function)],
        ));
        id
    }

    fn load_var(&mut self, ty: Word, var: Word) -> Result<Word> {
        self.b
            .load(ty, None, var, None, [])
            .map_err(|e| self.build_err(e))
    }

    fn store_var(&mut self, var: Word, value: Word) -> Result<()> {
        self.b
            .store(var, value, None, [])
            .map_err(|e| self.build_err(e))
    }

    fn label(&mut self, id: Word) -> Result<()> {
        self.b
            .begin_block(Some(id))
            .map(|_| ())
            .map_err(|e| self.build_err(e))
    }

    fn branch(&mut self, to: Word) -> Result<()> {
        self.b.branch(to).map_err(|e| self.build_err(e))
    }

    // ---- module skeleton ----

    /// Declares the bindings, the invocation id and the entry point, and opens `main`'s entry block.
    fn begin(&mut self, bindings: &[BufferId]) -> Result<()> {
        for (i, &buf) in bindings.iter().enumerate() {
            let dtype = self.program.buffers[buf.index()].ty.dtype;
            let elem = self.storage_ty(dtype);
            let st = match self.structs.get(&elem) {
                Some(&s) => s,
                None => {
                    let arr = self.b.type_runtime_array(elem);
                    let stride = element_stride(dtype);
                    self.b.decorate(
                        arr,
                        Decoration::ArrayStride,
                        [Operand::LiteralBit32(stride)],
                    );
                    let s = self.b.type_struct([arr]);
                    self.b.decorate(s, Decoration::Block, []);
                    self.b
                        .member_decorate(s, 0, Decoration::Offset, [Operand::LiteralBit32(0)]);
                    self.structs.insert(elem, s);
                    s
                }
            };
            let ptr = self.b.type_pointer(None, StorageClass::StorageBuffer, st);
            let var = self
                .b
                .variable(ptr, None, StorageClass::StorageBuffer, None);
            self.b
                .decorate(var, Decoration::DescriptorSet, [Operand::LiteralBit32(0)]);
            self.b
                .decorate(var, Decoration::Binding, [Operand::LiteralBit32(i as u32)]);
            self.b
                .name(var, self.program.buffers[buf.index()].name.clone());
            self.bindings.insert(buf, Binding { var, dtype });
        }
        let fn_ty = self.b.type_function(self.t_void, []);
        self.main = self
            .b
            .begin_function(self.t_void, None, FunctionControl::NONE, fn_ty)
            .map_err(|e| self.build_err(e))?;
        self.b.name(self.main, "main");
        self.b.begin_block(None).map_err(|e| self.build_err(e))?;
        Ok(())
    }

    /// A module-scope variable (declared among the globals whatever block is open).
    fn global_var(&mut self, ty: Word, class: StorageClass) -> Word {
        let ptr = self.b.type_pointer(None, class, ty);
        let id = self.b.id();
        self.b
            .module_mut()
            .types_global_values
            .push(Instruction::new(
                Op::Variable,
                Some(ptr),
                Some(id),
                vec![Operand::StorageClass(class)],
            ));
        id
    }

    /// Declares the input built-in `builtin` of type `ty`, lists it in the entry point, and loads it.
    fn builtin(&mut self, builtin: BuiltIn, ty: Word) -> Result<Word> {
        let var = self.global_var(ty, StorageClass::Input);
        self.b
            .decorate(var, Decoration::BuiltIn, [Operand::BuiltIn(builtin)]);
        self.interface.push(var);
        self.load_var(ty, var)
    }

    /// `x`, `y` and (if `want_z`) `z` of a `uvec3` built-in.
    fn builtin_xyz(
        &mut self,
        builtin: BuiltIn,
        want_z: bool,
    ) -> Result<(Word, Word, Option<Word>)> {
        let v3 = self.b.type_vector(self.t_u32, 3);
        let v = self.builtin(builtin, v3)?;
        let mut component = |i: u32| {
            self.b
                .composite_extract(self.t_u32, None, v, [i])
                .map_err(|e| self.build_err(e))
        };
        let x = component(0)?;
        let y = component(1)?;
        let z = if want_z { Some(component(2)?) } else { None };
        Ok((x, y, z))
    }

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

    // ---- control flow ----

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
                    let (v, dtype) = self.value(*value)?;
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

    fn reduce(
        &mut self,
        dtype: DType,
        kind: ReduceKind,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
    ) -> Result<Word> {
        if loops.iter().any(|l| l.extent == 0) {
            return self.empty_fold(kind, dtype);
        }
        let ty = self.ty(dtype);
        let identity = self.identity(kind, dtype)?;
        let acc = self.function_var(ty);
        self.store_var(acc, identity)?;
        self.loops(loops, &mut |e| {
            e.block(body)?;
            let (x, _) = e.value(value)?;
            let a = e.load_var(ty, acc)?;
            let folded = e.fold(kind, dtype, a, x)?;
            e.store_var(acc, folded)
        })?;
        self.load_var(ty, acc)
    }

    /// A reduction over no points (SPEC §3.7): +0 for a float sum (a loop would leave the `-0.0` it starts from),
    /// else the identity.
    fn empty_fold(&mut self, kind: ReduceKind, dtype: DType) -> Result<Word> {
        match (kind, dtype) {
            (ReduceKind::Sum, DType::F32 | DType::F64) => Ok(self.float_const(dtype, 0.0)),
            _ => self.identity(kind, dtype),
        }
    }

    /// The value a reduction starts from (see the parent module doc).
    fn identity(&mut self, kind: ReduceKind, dtype: DType) -> Result<Word> {
        Ok(match (kind, dtype) {
            (ReduceKind::Sum, DType::F32 | DType::F64) => self.float_const(dtype, -0.0),
            (ReduceKind::Sum, DType::I32) => self.i32_const(0),
            (ReduceKind::Max, DType::F32 | DType::F64) => {
                self.float_const(dtype, f64::NEG_INFINITY)
            }
            (ReduceKind::Max, DType::I32) => self.i32_const(i32::MIN),
            (_, DType::Bool) => return Err(self.invalid("a reduction over bool".into())),
        })
    }

    /// `acc ⊕ x`. Both operators are commutative bit for bit (IEEE addition; `max` returns `a + b` for NaNs and
    /// zero ties, so either order gives the same bits), which the subgroup butterfly relies on.
    fn fold(&mut self, kind: ReduceKind, dtype: DType, acc: Word, x: Word) -> Result<Word> {
        let op = match kind {
            ReduceKind::Sum => BinaryOp::Add,
            ReduceKind::Max => BinaryOp::Max,
        };
        self.binary(op, dtype, acc, x)
    }

    // ---- workgroup kernels ----

    /// The top-level block of a [`Plan::Workgroup`] kernel. Every invocation of the workgroup runs each `Let` (all
    /// compute the same values); reductions and `for` loops are strided across the workgroup; a top-level store is
    /// made by invocation 0 only.
    fn coop_block(&mut self, block: &Block) -> Result<()> {
        let coop = self
            .coop
            .ok_or_else(|| self.invalid("a workgroup block outside a workgroup kernel".into()))?;
        for inst in &block.insts {
            match inst {
                Inst::Let { .. } => self.block(&Block {
                    insts: vec![inst.clone()],
                })?,
                Inst::Reduce {
                    id,
                    dtype,
                    kind,
                    loops,
                    body,
                    value,
                } => {
                    let v = self.coop_reduce(coop, *dtype, *kind, loops, body, *value)?;
                    self.values.insert(*id, (v, *dtype));
                }
                Inst::For { loops, body } => {
                    self.strided(coop, loops, &mut |e| e.block(body))?;
                }
                Inst::Store { .. } => {
                    let zero = self.u32_const(0);
                    let first = self.bool_op(Op::IEqual, &[coop.lid, zero])?;
                    self.if_then(first, &mut |e| {
                        e.block(&Block {
                            insts: vec![inst.clone()],
                        })
                    })?;
                }
            }
        }
        Ok(())
    }

    /// `if cond { then }` as a structured selection.
    fn if_then(&mut self, cond: Word, then: &mut dyn FnMut(&mut Self) -> Result<()>) -> Result<()> {
        let (body, end) = (self.b.id(), self.b.id());
        self.b
            .selection_merge(end, SelectionControl::NONE)
            .map_err(|e| self.build_err(e))?;
        self.b
            .branch_conditional(cond, body, end, [])
            .map_err(|e| self.build_err(e))?;
        self.label(body)?;
        then(self)?;
        self.branch(end)?;
        self.label(end)
    }

    /// `for (i = start; i < bound; i = next(i)) body(i)` as a structured loop (u32 counter).
    fn counted_loop(
        &mut self,
        start: Word,
        bound: Word,
        next: &dyn Fn(&mut Self, Word) -> Result<Word>,
        body: &mut dyn FnMut(&mut Self, Word) -> Result<()>,
    ) -> Result<()> {
        let counter = self.function_var(self.t_u32);
        self.store_var(counter, start)?;
        self.loop_on_counter(counter, &|_| bound, next, body)
    }

    /// The structured loop `while counter < bound() { body(counter); counter = next(counter) }` over an already
    /// initialised u32 function variable: the one shape behind [`Self::loops`] and [`Self::counted_loop`]. `bound` is
    /// evaluated in the condition block, after the counter is loaded, so that each caller's ids come out in the order
    /// they always had (the emitted SPIR-V is snapshot-tested).
    fn loop_on_counter(
        &mut self,
        counter: Word,
        bound: &dyn Fn(&mut Self) -> Word,
        next: &dyn Fn(&mut Self, Word) -> Result<Word>,
        body: &mut dyn FnMut(&mut Self, Word) -> Result<()>,
    ) -> Result<()> {
        let (header, cond, body_label, cont, merge) = (
            self.b.id(),
            self.b.id(),
            self.b.id(),
            self.b.id(),
            self.b.id(),
        );
        self.branch(header)?;
        self.label(header)?;
        self.b
            .loop_merge(merge, cont, LoopControl::NONE, [])
            .map_err(|e| self.build_err(e))?;
        self.branch(cond)?;
        self.label(cond)?;
        let i = self.load_var(self.t_u32, counter)?;
        let bound = bound(self);
        let more = self.bool_op(Op::ULessThan, &[i, bound])?;
        self.b
            .branch_conditional(more, body_label, merge, [])
            .map_err(|e| self.build_err(e))?;
        self.label(body_label)?;
        body(self, i)?;
        self.branch(cont)?;
        self.label(cont)?;
        let n = next(self, i)?;
        self.store_var(counter, n)?;
        self.branch(header)?;
        self.label(merge)
    }

    /// Runs `body` at every point of `loops`, the flattened (row-major) points dealt round-robin to the workgroup's
    /// invocations: invocation `t` runs points `t, t + threads, …` in increasing order.
    fn strided(
        &mut self,
        coop: Coop,
        loops: &[Loop],
        body: &mut dyn FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let total: u64 = loops.iter().map(|l| l.extent as u64).product();
        if total == 0 {
            return Ok(());
        }
        let bound = self.u32_const(total as u32);
        let step = coop.threads;
        self.counted_loop(
            coop.lid,
            bound,
            &|e, i| {
                let s = e.u32_const(step);
                e.op(Op::IAdd, e.t_u32, &[i, s])
            },
            &mut |e, i| {
                e.parallel_point(loops, i)?;
                body(e)
            },
        )
    }

    /// The workgroup-storage array of `threads` elements of type `ty`.
    fn shared_array(&mut self, ty: Word, threads: u32) -> Word {
        if let Some(&v) = self.shared.get(&ty) {
            return v;
        }
        let v = self.new_shared_array(ty, threads);
        self.shared.insert(ty, v);
        v
    }

    fn shared_ptr(&mut self, array: Word, ty: Word, index: Word) -> Result<Word> {
        let ptr = self.b.type_pointer(None, StorageClass::Workgroup, ty);
        self.b
            .access_chain(ptr, None, array, [index])
            .map_err(|e| self.build_err(e))
    }

    /// `OpControlBarrier(Workgroup, Workgroup, AcquireRelease | WorkgroupMemory)`: every invocation of the workgroup
    /// arrives, and the shared-memory writes before it are visible to the reads after it.
    fn barrier(&mut self) -> Result<()> {
        let scope = self.u32_const(Scope::Workgroup as u32);
        let semantics = self.u32_const(0x8 | 0x100);
        self.b
            .control_barrier(scope, scope, semantics)
            .map_err(|e| self.build_err(e))
    }

    /// A top-level reduction of a workgroup kernel; every invocation gets the result.
    ///
    /// Each invocation folds its strided share of the points in increasing order from the identity. The partial
    /// results are then combined in a fixed order, so a run's result never depends on timing:
    /// - shared memory: a binary tree over `sh[0..threads]`, `sh[t] = sh[t] ⊕ sh[t + s]` for `s = threads/2, …, 1`,
    ///   a barrier after each level; the result is `sh[0]`;
    /// - subgroups: a butterfly of `OpGroupNonUniformShuffleXor` (mask 1, 2, … < `SubgroupSize`) leaves every lane
    ///   with its subgroup's fold (bit-identical in every lane, as ⊕ is commutative), lane 0 writes it to
    ///   `sh[SubgroupId]`, and after a barrier every invocation folds `sh[0..NumSubgroups]` in order itself.
    ///
    /// A last barrier keeps the next reduction's writes from racing with this one's reads of `sh`.
    fn coop_reduce(
        &mut self,
        coop: Coop,
        dtype: DType,
        kind: ReduceKind,
        loops: &[Loop],
        body: &Block,
        value: ValueId,
    ) -> Result<Word> {
        if loops.iter().any(|l| l.extent == 0) {
            return self.empty_fold(kind, dtype);
        }
        let ty = self.ty(dtype);
        let identity = self.identity(kind, dtype)?;
        let acc = self.function_var(ty);
        self.store_var(acc, identity)?;
        self.strided(coop, loops, &mut |e| {
            e.block(body)?;
            let (x, _) = e.value(value)?;
            let a = e.load_var(ty, acc)?;
            let folded = e.fold(kind, dtype, a, x)?;
            e.store_var(acc, folded)
        })?;
        let sh = self.shared_array(ty, coop.threads);
        let zero = self.u32_const(0);
        match coop.subgroup {
            Some(sg) => {
                let one = self.u32_const(1);
                self.counted_loop(
                    one,
                    sg.size,
                    &|e, m| {
                        let two = e.u32_const(2);
                        e.op(Op::IMul, e.t_u32, &[m, two])
                    },
                    &mut |e, m| {
                        let scope = e.u32_const(Scope::Subgroup as u32);
                        let mine = e.load_var(ty, acc)?;
                        let other =
                            e.b.group_non_uniform_shuffle_xor(ty, None, scope, mine, m)
                                .map_err(|err| e.build_err(err))?;
                        let folded = e.fold(kind, dtype, mine, other)?;
                        e.store_var(acc, folded)
                    },
                )?;
                let lane0 = self.bool_op(Op::IEqual, &[sg.lane, zero])?;
                self.if_then(lane0, &mut |e| {
                    let v = e.load_var(ty, acc)?;
                    let p = e.shared_ptr(sh, ty, sg.id)?;
                    e.store_var(p, v)
                })?;
                self.barrier()?;
                let p0 = self.shared_ptr(sh, ty, zero)?;
                let first = self.load_var(ty, p0)?;
                self.store_var(acc, first)?;
                self.counted_loop(
                    one,
                    sg.count,
                    &|e, t| {
                        let one = e.u32_const(1);
                        e.op(Op::IAdd, e.t_u32, &[t, one])
                    },
                    &mut |e, t| {
                        let p = e.shared_ptr(sh, ty, t)?;
                        let x = e.load_var(ty, p)?;
                        let a = e.load_var(ty, acc)?;
                        let folded = e.fold(kind, dtype, a, x)?;
                        e.store_var(acc, folded)
                    },
                )?;
                self.barrier()?;
                self.load_var(ty, acc)
            }
            None => {
                let mine = self.load_var(ty, acc)?;
                let p = self.shared_ptr(sh, ty, coop.lid)?;
                self.store_var(p, mine)?;
                self.barrier()?;
                let mut s = coop.threads / 2;
                while s >= 1 {
                    let sc = self.u32_const(s);
                    let active = self.bool_op(Op::ULessThan, &[coop.lid, sc])?;
                    self.if_then(active, &mut |e| {
                        let other = e.op(Op::IAdd, e.t_u32, &[coop.lid, sc])?;
                        let (pa, pb) = (
                            e.shared_ptr(sh, ty, coop.lid)?,
                            e.shared_ptr(sh, ty, other)?,
                        );
                        let (a, b) = (e.load_var(ty, pa)?, e.load_var(ty, pb)?);
                        let folded = e.fold(kind, dtype, a, b)?;
                        e.store_var(pa, folded)
                    })?;
                    self.barrier()?;
                    s /= 2;
                }
                let p0 = self.shared_ptr(sh, ty, zero)?;
                let r = self.load_var(ty, p0)?;
                self.barrier()?;
                Ok(r)
            }
        }
    }

    /// `Σ_l a[β, i, l] · b[β, l, j]` for the current point, accumulated in the dtype from 0.
    fn matmul_dot(&mut self, m: &MatmulKernel) -> Result<Word> {
        let ty = self.ty(m.dtype);
        let zero = self.typed_const(m.dtype, 0.0);
        let acc = self.function_var(ty);
        self.store_var(acc, zero)?;
        let rank = m.parallel.len();
        let point: Vec<Word> = m.parallel.iter().map(|l| self.vars[&l.var]).collect();
        let (batch, i, j) = (&point[..rank - 2], point[rank - 2], point[rank - 1]);
        // The row / column part of each operand's index does not depend on `l`.
        let a_base = self.view_base(&m.a, batch, i, m.a.row_stride)?;
        let b_base = self.view_base(&m.b, batch, j, m.b.col_stride)?;
        let l_var = Var(u32::MAX);
        let (a_buf, b_buf) = (m.a.buffer, m.b.buffer);
        let (a_step, b_step) = (m.a.col_stride, m.b.row_stride);
        self.loops(
            &[Loop {
                var: l_var,
                extent: m.k,
            }],
            &mut |e| {
                let l = e.vars[&l_var];
                let ai = e.affine(a_base, l, a_step)?;
                let bi = e.affine(b_base, l, b_step)?;
                let x = e.load_element(a_buf, ai)?;
                let y = e.load_element(b_buf, bi)?;
                let p = e.binary(BinaryOp::Mul, m.dtype, x, y)?;
                let s = e.load_var(ty, acc)?;
                let s = e.binary(BinaryOp::Add, m.dtype, s, p)?;
                e.store_var(acc, s)
            },
        )?;
        self.load_var(ty, acc)
    }

    /// `x`, with `-0` made `+0` (floats; other dtypes unchanged). A matmul's sum starts from +0 (SPEC §3.9), so an
    /// all-`-0` sum is `+0`; but device compilers fold `+0 + p` to `p` even under `SignedZeroInfNanPreserve`
    /// (lavapipe does), so the sign is fixed after the sum, on the bits, where no float rule can fold it away.
    fn positive_zero(&mut self, dtype: DType, x: Word) -> Result<Word> {
        let u = self.t_u32;
        let is_negative_zero = match dtype {
            DType::F32 => {
                let bits = self.op(Op::Bitcast, u, &[x])?;
                let sign = self.u32_const(0x8000_0000);
                self.bool_op(Op::IEqual, &[bits, sign])?
            }
            DType::F64 => {
                // Two u32 words (low first): a 64-bit integer type would need the Int64 capability.
                let words_ty = self.b.type_vector(u, 2);
                let words = self.op(Op::Bitcast, words_ty, &[x])?;
                let low = self
                    .b
                    .composite_extract(u, None, words, [0])
                    .map_err(|e| self.build_err(e))?;
                let high = self
                    .b
                    .composite_extract(u, None, words, [1])
                    .map_err(|e| self.build_err(e))?;
                let (zero, sign) = (self.u32_const(0), self.u32_const(0x8000_0000));
                let low_zero = self.bool_op(Op::IEqual, &[low, zero])?;
                let high_sign = self.bool_op(Op::IEqual, &[high, sign])?;
                self.bool_op(Op::LogicalAnd, &[low_zero, high_sign])?
            }
            DType::I32 | DType::Bool => return Ok(x),
        };
        let ty = self.ty(dtype);
        let positive = self.typed_const(dtype, 0.0);
        self.select(ty, is_negative_zero, positive, x)
    }

    /// The tiled matmul ([`Plan::Tiled`]). Workgroup `(bx, by, bz)` computes `C[bz, by·T + r, bx·T + c]` for
    /// `r, c < T` (invocation `r·T + c`). For each step `k0 = 0, T, …`, every invocation loads one element of the A
    /// tile `A[bz, by·T + r, k0 + c]` and one of the B tile `B[bz, k0 + r, bx·T + c]` into shared memory — 0 where
    /// the index is past `m`, `n` or `k`, so edges need no special case and nothing out of bounds is read — then,
    /// after a barrier, adds `As[r][l] · Bs[l][c]` for `l = 0..T` in order, and waits at a second barrier before the
    /// tiles are overwritten. Products past `k` are `0 · 0 = +0`, so the accumulator sees exactly the terms of the
    /// per-point shader, in the same order (`l = 0..k`), from the same `+0`. Finally an invocation inside `m × n`
    /// runs the fused epilogue on its accumulator (in a register). Barriers are outside every non-uniform branch:
    /// the dispatch has no workgroup past the end and every invocation walks all steps.
    fn tiled_matmul(&mut self, m: &MatmulKernel) -> Result<()> {
        let ty = self.ty(m.dtype);
        let u = self.t_u32;
        let v3 = self.b.type_vector(u, 3);
        let wid = self.builtin(BuiltIn::WorkgroupId, v3)?;
        let mut w = [0; 3];
        for (c, slot) in w.iter_mut().enumerate() {
            *slot = self
                .b
                .composite_extract(u, None, wid, [c as u32])
                .map_err(|e| self.build_err(e))?;
        }
        let lid = self.builtin(BuiltIn::LocalInvocationIndex, u)?;
        let t = self.u32_const(TILE);
        let r = self.op(Op::UDiv, u, &[lid, t])?;
        let c = self.op(Op::UMod, u, &[lid, t])?;
        let row0 = self.op(Op::IMul, u, &[w[1], t])?;
        let col0 = self.op(Op::IMul, u, &[w[0], t])?;
        let i = self.op(Op::IAdd, u, &[row0, r])?;
        let j = self.op(Op::IAdd, u, &[col0, c])?;
        let rank = m.parallel.len();
        self.parallel_point(&m.parallel[..rank - 2], w[2])?;
        let batch: Vec<Word> = m.parallel[..rank - 2]
            .iter()
            .map(|l| self.vars[&l.var])
            .collect();
        let (mm, nn, kk) = (
            self.u32_const(m.m() as u32),
            self.u32_const(m.n() as u32),
            self.u32_const(m.k as u32),
        );
        let i_ok = self.bool_op(Op::ULessThan, &[i, mm])?;
        let j_ok = self.bool_op(Op::ULessThan, &[j, nn])?;
        let a_row = self.view_base(&m.a, &batch, i, m.a.row_stride)?;
        let b_col = self.view_base(&m.b, &batch, j, m.b.col_stride)?;
        let a_tile = self.new_shared_array(ty, TILE * TILE);
        let b_tile = self.new_shared_array(ty, TILE * TILE);
        let zero = self.typed_const(m.dtype, 0.0);
        let acc = self.function_var(ty);
        self.store_var(acc, zero)?;
        let staged = self.function_var(ty);
        let steps = self.u32_const((m.k as u32).div_ceil(TILE));
        let first = self.u32_const(0);
        let (a_buf, b_buf) = (m.a.buffer, m.b.buffer);
        let (a_step, b_step) = (m.a.col_stride, m.b.row_stride);
        let dtype = m.dtype;
        // Stages one element of a tile, the same for A and B: `tile[lid] = ok ? buf[base + k·step] : 0` (through
        // `staged`, as a structured `if`).
        let stage = |e: &mut Self,
                     ok: Word,
                     buf: BufferId,
                     base: Word,
                     k: Word,
                     step: usize,
                     tile: Word| {
            e.store_var(staged, zero)?;
            e.if_then(ok, &mut |e| {
                let idx = e.affine(base, k, step)?;
                let x = e.load_element(buf, idx)?;
                e.store_var(staged, x)
            })?;
            let x = e.load_var(ty, staged)?;
            let p = e.shared_ptr(tile, ty, lid)?;
            e.store_var(p, x)
        };
        self.counted_loop(
            first,
            steps,
            &|e, s| {
                let one = e.u32_const(1);
                e.op(Op::IAdd, e.t_u32, &[s, one])
            },
            &mut |e, s| {
                let k0 = e.op(Op::IMul, u, &[s, t])?;
                // As[r][c] = A[i, k0 + c]
                let ka = e.op(Op::IAdd, u, &[k0, c])?;
                let ka_ok = e.bool_op(Op::ULessThan, &[ka, kk])?;
                let a_ok = e.bool_op(Op::LogicalAnd, &[i_ok, ka_ok])?;
                stage(e, a_ok, a_buf, a_row, ka, a_step, a_tile)?;
                // Bs[r][c] = B[k0 + r, j]
                let kb = e.op(Op::IAdd, u, &[k0, r])?;
                let kb_ok = e.bool_op(Op::ULessThan, &[kb, kk])?;
                let b_ok = e.bool_op(Op::LogicalAnd, &[kb_ok, j_ok])?;
                stage(e, b_ok, b_buf, b_col, kb, b_step, b_tile)?;
                e.barrier()?;
                let a_base = e.op(Op::IMul, u, &[r, t])?;
                for l in 0..TILE {
                    let lc = e.u32_const(l);
                    let ai = e.op(Op::IAdd, u, &[a_base, lc])?;
                    let lt = e.u32_const(l * TILE);
                    let bi = e.op(Op::IAdd, u, &[lt, c])?;
                    let (pa, pb) = (e.shared_ptr(a_tile, ty, ai)?, e.shared_ptr(b_tile, ty, bi)?);
                    let (x, y) = (e.load_var(ty, pa)?, e.load_var(ty, pb)?);
                    let prod = e.binary(BinaryOp::Mul, dtype, x, y)?;
                    let sum = e.load_var(ty, acc)?;
                    let sum = e.binary(BinaryOp::Add, dtype, sum, prod)?;
                    e.store_var(acc, sum)?;
                }
                e.barrier()
            },
        )?;
        let inside = self.bool_op(Op::LogicalAnd, &[i_ok, j_ok])?;
        self.vars.insert(m.parallel[rank - 2].var, i);
        self.vars.insert(m.parallel[rank - 1].var, j);
        self.if_then(inside, &mut |e| {
            let a = e.load_var(ty, acc)?;
            let a = e.positive_zero(dtype, a)?;
            e.matmul_acc = Some((a, dtype));
            e.block(&m.epilogue)
        })
    }

    /// A fresh workgroup-storage array of `len` elements of type `ty`.
    fn new_shared_array(&mut self, ty: Word, len: u32) -> Word {
        let bytes = if Some(ty) == self.t_f64 { 8 } else { 4 };
        self.shared_bytes += len as u64 * bytes;
        let len = self.u32_const(len);
        let arr = self.b.type_array(ty, len);
        self.global_var(arr, StorageClass::Workgroup)
    }

    /// `offset + Σ β_t·batch_strides[t] + x·stride` as a u32.
    fn view_base(
        &mut self,
        v: &crate::kernel::MatrixView,
        batch: &[Word],
        x: Word,
        stride: usize,
    ) -> Result<Word> {
        let mut acc = self.u32_const(v.offset as u32);
        for (&bv, &s) in batch.iter().zip(&v.batch_strides) {
            acc = self.affine(acc, bv, s)?;
        }
        self.affine(acc, x, stride)
    }

    /// `base + var·stride` as a u32 (folding zero strides).
    fn affine(&mut self, base: Word, var: Word, stride: usize) -> Result<Word> {
        if stride == 0 {
            return Ok(base);
        }
        let term = if stride == 1 {
            var
        } else {
            let s = self.u32_const(stride as u32);
            self.op(Op::IMul, self.t_u32, &[var, s])?
        };
        self.op(Op::IAdd, self.t_u32, &[base, term])
    }

    // ---- values ----

    fn value(&self, id: ValueId) -> Result<(Word, DType)> {
        self.values
            .get(&id)
            .copied()
            .ok_or_else(|| self.invalid(format!("{id} is used before it is defined")))
    }

    /// An index expression as a u32.
    fn index(&mut self, index: &IndexExpr) -> Result<Word> {
        let mut acc = None;
        for &(v, s) in &index.terms {
            let var = *self
                .vars
                .get(&v)
                .ok_or_else(|| self.invalid(format!("loop variable {v} is not in scope")))?;
            acc = Some(match acc {
                None if s == 1 => var,
                None => {
                    let sc = self.u32_const(s as u32);
                    self.op(Op::IMul, self.t_u32, &[var, sc])?
                }
                Some(a) => self.affine(a, var, s)?,
            });
        }
        let offset = self.u32_const(index.offset as u32);
        match acc {
            None => Ok(offset),
            Some(a) if index.offset == 0 => Ok(a),
            Some(a) => self.op(Op::IAdd, self.t_u32, &[a, offset]),
        }
    }

    fn element_ptr_at(&mut self, buffer: BufferId, index: Word) -> Result<(Word, DType)> {
        let binding = *self
            .bindings
            .get(&buffer)
            .ok_or_else(|| self.invalid(format!("buffer {buffer} is not bound")))?;
        let elem = self.storage_ty(binding.dtype);
        let ptr = self.b.type_pointer(None, StorageClass::StorageBuffer, elem);
        let zero = self.u32_const(0);
        let p = self
            .b
            .access_chain(ptr, None, binding.var, [zero, index])
            .map_err(|e| self.build_err(e))?;
        Ok((p, binding.dtype))
    }

    fn element_ptr(&mut self, buffer: BufferId, index: &IndexExpr) -> Result<Word> {
        let i = self.index(index)?;
        Ok(self.element_ptr_at(buffer, i)?.0)
    }

    /// Loads `buffer[index]` as a register value of the buffer's dtype.
    fn load_element(&mut self, buffer: BufferId, index: Word) -> Result<Word> {
        let (ptr, dtype) = self.element_ptr_at(buffer, index)?;
        let elem = self.storage_ty(dtype);
        let raw = self.load_var(elem, ptr)?;
        if dtype == DType::Bool {
            let zero = self.u32_const(0);
            self.bool_op(Op::INotEqual, &[raw, zero])
        } else {
            Ok(raw)
        }
    }

    fn scalar(&mut self, op: &ScalarOp, dtype: DType) -> Result<Word> {
        match op {
            ScalarOp::Load { buffer, index } => {
                let i = self.index(index)?;
                self.load_element(*buffer, i)
            }
            ScalarOp::Const { bits } => Ok(self.typed_const(dtype, f64::from_bits(*bits))),
            ScalarOp::Index(index) => {
                let mut i = self.index(index)?;
                if self.hide_zeros {
                    // An index along an extent-1 axis is the constant 0 (see `Options::hide_constant_zeros`).
                    let opaque = self.opaque_zero();
                    i = self.op(Op::BitwiseOr, self.t_u32, &[i, opaque])?;
                }
                let ty = self.ty(dtype);
                match dtype {
                    DType::F32 | DType::F64 => self.op(Op::ConvertUToF, ty, &[i]),
                    DType::I32 => self.op(Op::Bitcast, ty, &[i]),
                    DType::Bool => {
                        let zero = self.u32_const(0);
                        self.bool_op(Op::INotEqual, &[i, zero])
                    }
                }
            }
            ScalarOp::MatmulAcc => self
                .matmul_acc
                .map(|(w, _)| w)
                .ok_or_else(|| self.invalid("matmul.acc outside a matmul epilogue".into())),
            ScalarOp::Unary(u, x) => {
                let (x, xd) = self.value(*x)?;
                self.unary(*u, xd, x)
            }
            ScalarOp::Cast(x) => {
                let (x, from) = self.value(*x)?;
                self.cast(x, from, dtype)
            }
            ScalarOp::Binary(op, a, b) => {
                let (a, ad) = self.value(*a)?;
                let (b, _) = self.value(*b)?;
                self.binary(*op, ad, a, b)
            }
            ScalarOp::Compare(dir, a, b) => {
                let (a, ad) = self.value(*a)?;
                let (b, _) = self.value(*b)?;
                self.compare(*dir, ad, a, b)
            }
            ScalarOp::Select(c, a, b) => {
                let (c, _) = self.value(*c)?;
                let (a, ad) = self.value(*a)?;
                let (b, _) = self.value(*b)?;
                let ty = self.ty(ad);
                self.select(ty, c, a, b)
            }
        }
    }

    fn unary(&mut self, op: UnaryOp, dtype: DType, x: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        if dtype == DType::I32 {
            return match op {
                // Both wrap: neg(MIN) = abs(MIN) = MIN.
                UnaryOp::Neg => self.op(Op::SNegate, ty, &[x]),
                UnaryOp::Abs => {
                    let zero = self.i32_const(0);
                    let neg = self.bool_op(Op::SLessThan, &[x, zero])?;
                    let nx = self.op(Op::SNegate, ty, &[x])?;
                    self.select(ty, neg, nx, x)
                }
                _ => Err(self.unsupported(format!("i32 `{}`", op.name()))),
            };
        }
        if dtype == DType::Bool {
            return Err(self.invalid(format!("`{}` on bool", op.name())));
        }
        match op {
            UnaryOp::Neg => self.op(Op::FNegate, ty, &[x]),
            UnaryOp::Exp => self.exp(dtype, x),
            UnaryOp::Log if dtype == DType::F64 => self.log_f64(x),
            UnaryOp::Log => self.glsl(GLOp::Log, ty, &[x]),
            UnaryOp::Sqrt => self.glsl(GLOp::Sqrt, ty, &[x]),
            UnaryOp::Recip => {
                let one = self.float_const(dtype, 1.0);
                self.op(Op::FDiv, ty, &[one, x])
            }
            UnaryOp::Tanh if dtype == DType::F64 => self.tanh_f64(x),
            UnaryOp::Tanh => {
                // tanh(±10) is ±1 in f32; clamping keeps e^x of the implementation from overflowing to inf/inf.
                let (lo, hi) = (
                    self.float_const(dtype, -10.0),
                    self.float_const(dtype, 10.0),
                );
                let clamped = self.glsl(GLOp::FClamp, ty, &[x, lo, hi])?;
                let t = self.glsl(GLOp::Tanh, ty, &[clamped])?;
                let nan = self.bool_op(Op::IsNan, &[x])?;
                self.select(ty, nan, x, t)
            }
            UnaryOp::Logistic => {
                // e = exp(-|x|) ≤ 1; x ≥ 0: 1 / (1 + e), else e / (1 + e). NaN flows through `e`.
                let ax = self.glsl(GLOp::FAbs, ty, &[x])?;
                let nax = self.op(Op::FNegate, ty, &[ax])?;
                let e = self.exp(dtype, nax)?;
                let one = self.float_const(dtype, 1.0);
                let den = self.op(Op::FAdd, ty, &[one, e])?;
                let zero = self.float_const(dtype, 0.0);
                let pos = self.bool_op(Op::FOrdGreaterThanEqual, &[x, zero])?;
                let num = self.select(ty, pos, one, e)?;
                self.op(Op::FDiv, ty, &[num, den])
            }
            UnaryOp::Abs => self.glsl(GLOp::FAbs, ty, &[x]),
        }
    }

    /// `e^x`: GLSL.std.450 `Exp` for f32, [`Emitter::exp_f64`] for f64.
    fn exp(&mut self, dtype: DType, x: Word) -> Result<Word> {
        if dtype == DType::F64 {
            self.exp_f64(x)
        } else {
            let ty = self.ty(dtype);
            self.glsl(GLOp::Exp, ty, &[x])
        }
    }

    /// `p(x) = Σ coefficients[i]·x^i` by Horner's rule, in f64.
    fn horner_f64(&mut self, x: Word, coefficients: &[f64]) -> Result<Word> {
        let ty = self.ty(DType::F64);
        let mut acc = self.float_const(DType::F64, coefficients[coefficients.len() - 1]);
        for &c in coefficients[..coefficients.len() - 1].iter().rev() {
            let m = self.op(Op::FMul, ty, &[acc, x])?;
            let c = self.float_const(DType::F64, c);
            acc = self.op(Op::FAdd, ty, &[m, c])?;
        }
        Ok(acc)
    }

    /// f64 `e^x` (GLSL.std.450's `Exp` is 32-bit only): `n = round(x / ln 2)`, `r = x − n·ln 2` in two parts
    /// (Cody–Waite, fdlibm's split: `n·ln2_hi` is exact), `e^r` by its Taylor polynomial of degree 13 (`|r| ≤ 0.347`:
    /// truncation below 5e-18), then `· 2^n` by two `Ldexp`s (so `2^n` itself never overflows). `x` is clamped to
    /// `[-746, 710]` first, beyond which the result is 0 or +inf anyway; NaN is passed through.
    fn exp_f64(&mut self, x: Word) -> Result<Word> {
        let d = DType::F64;
        let ty = self.ty(d);
        let (hi, lo) = (self.float_const(d, 710.0), self.float_const(d, -746.0));
        let above = self.bool_op(Op::FOrdGreaterThan, &[x, hi])?;
        let xc = self.select(ty, above, hi, x)?;
        let below = self.bool_op(Op::FOrdLessThan, &[xc, lo])?;
        let xc = self.select(ty, below, lo, xc)?;
        let nan = self.bool_op(Op::IsNan, &[x])?;
        let zero = self.float_const(d, 0.0);
        let xc = self.select(ty, nan, zero, xc)?;
        let inv_ln2 = self.float_const(d, std::f64::consts::LOG2_E);
        let t = self.op(Op::FMul, ty, &[xc, inv_ln2])?;
        let n = self.glsl(GLOp::RoundEven, ty, &[t])?;
        let (c_hi, c_lo) = (self.float_const(d, LN2_HI), self.float_const(d, LN2_LO));
        let nh = self.op(Op::FMul, ty, &[n, c_hi])?;
        let r = self.op(Op::FSub, ty, &[xc, nh])?;
        let nl = self.op(Op::FMul, ty, &[n, c_lo])?;
        let r = self.op(Op::FSub, ty, &[r, nl])?;
        let mut coefficients = [1.0f64; 14];
        for k in 1..14 {
            coefficients[k] = coefficients[k - 1] / k as f64;
        }
        let p = self.horner_f64(r, &coefficients)?;
        let ni = self.op(Op::ConvertFToS, self.t_i32, &[n])?;
        let two = self.i32_const(2);
        let h = self.op(Op::SDiv, self.t_i32, &[ni, two])?;
        let rest = self.op(Op::ISub, self.t_i32, &[ni, h])?;
        let scaled = self.glsl(GLOp::Ldexp, ty, &[p, h])?;
        let scaled = self.glsl(GLOp::Ldexp, ty, &[scaled, rest])?;
        self.select(ty, nan, x, scaled)
    }

    /// f64 `ln x`: `x = m·2^e` (`Frexp` — of `x·2^54` for a subnormal `x` —, `m` moved into `[√½, √2)`), `ln m = 2·atanh(s)` with `s = (m−1)/(m+1)`
    /// (`|s| ≤ 0.172`) by its odd series to `s^21` (truncation below 1e-18), plus `e·ln 2` in two parts. `x < 0` and
    /// NaN give NaN, `±0` gives -inf, +inf gives +inf.
    fn log_f64(&mut self, x: Word) -> Result<Word> {
        let d = DType::F64;
        let ty = self.ty(d);
        let one = self.float_const(d, 1.0);
        // Frexp is undefined on 0, inf and NaN: give it 1 there; the selects below fix the result.
        let zero = self.float_const(d, 0.0);
        let pos = self.bool_op(Op::FOrdGreaterThan, &[x, zero])?;
        let inf = self.float_const(d, f64::INFINITY);
        let finite = self.bool_op(Op::FOrdLessThan, &[x, inf])?;
        let ordinary = self.bool_op(Op::LogicalAnd, &[pos, finite])?;
        let xs = self.select(ty, ordinary, x, one)?;
        // A subnormal `x` is scaled by 2^54 into the normal range first (devices' `Frexp` may not handle
        // subnormals).
        let min_normal = self.float_const(d, f64::MIN_POSITIVE);
        let tiny = self.bool_op(Op::FOrdLessThan, &[xs, min_normal])?;
        let two54 = self.float_const(d, 18_014_398_509_481_984.0);
        let scaled = self.op(Op::FMul, ty, &[xs, two54])?;
        let xs = self.select(ty, tiny, scaled, xs)?;
        let e_var = self.function_var(self.t_i32);
        let m = self.glsl(GLOp::Frexp, ty, &[xs, e_var])?;
        let e = self.load_var(self.t_i32, e_var)?;
        let (i54, i0) = (self.i32_const(54), self.i32_const(0));
        let shift = self.select(self.t_i32, tiny, i54, i0)?;
        let e = self.op(Op::ISub, self.t_i32, &[e, shift])?;
        let sqrt_half = self.float_const(d, std::f64::consts::FRAC_1_SQRT_2);
        let small = self.bool_op(Op::FOrdLessThan, &[m, sqrt_half])?;
        let two = self.float_const(d, 2.0);
        let m2 = self.op(Op::FMul, ty, &[m, two])?;
        let m = self.select(ty, small, m2, m)?;
        let ione = self.i32_const(1);
        let e1 = self.op(Op::ISub, self.t_i32, &[e, ione])?;
        let e = self.select(self.t_i32, small, e1, e)?;
        let f = self.op(Op::FSub, ty, &[m, one])?;
        let den = self.op(Op::FAdd, ty, &[f, two])?;
        let s = self.op(Op::FDiv, ty, &[f, den])?;
        let z = self.op(Op::FMul, ty, &[s, s])?;
        // 2s·(1 + z/3 + z²/5 + … + z^10/21) = 2s + 2s·z·q(z).
        let q: Vec<f64> = (1..=10).map(|k| 1.0 / (2 * k + 1) as f64).collect();
        let q = self.horner_f64(z, &q)?;
        let two_s = self.op(Op::FMul, ty, &[s, two])?;
        let sz = self.op(Op::FMul, ty, &[two_s, z])?;
        let tail = self.op(Op::FMul, ty, &[sz, q])?;
        let ln_m = self.op(Op::FAdd, ty, &[two_s, tail])?;
        let ef = self.op(Op::ConvertSToF, ty, &[e])?;
        let (c_hi, c_lo) = (self.float_const(d, LN2_HI), self.float_const(d, LN2_LO));
        let lo = self.op(Op::FMul, ty, &[ef, c_lo])?;
        let small_part = self.op(Op::FAdd, ty, &[ln_m, lo])?;
        let hi = self.op(Op::FMul, ty, &[ef, c_hi])?;
        let r = self.op(Op::FAdd, ty, &[hi, small_part])?;
        // Edge cases: +inf → +inf, ±0 → -inf, negative or NaN → NaN.
        let is_inf = self.bool_op(Op::FOrdEqual, &[x, inf])?;
        let r = self.select(ty, is_inf, inf, r)?;
        let is_zero = self.bool_op(Op::FOrdEqual, &[x, zero])?;
        let ninf = self.float_const(d, f64::NEG_INFINITY);
        let r = self.select(ty, is_zero, ninf, r)?;
        let neg = self.bool_op(Op::FOrdLessThan, &[x, zero])?;
        let nan = self.bool_op(Op::IsNan, &[x])?;
        let qnan = self.float_const(d, f64::NAN);
        let r = self.select(ty, neg, qnan, r)?;
        self.select(ty, nan, x, r)
    }

    /// f64 `tanh x = sign(x) · t / (t + 2)` with `t = e^{2|x|} − 1`: for `2|x| ≤ 1` by the Taylor series of
    /// `expm1` to degree 20 (no cancellation near 0; truncation below 1e-19), else by [`Emitter::exp_f64`] (`t ≥ 1.7`,
    /// so `−1` loses nothing). `|x|` is clamped to 22, where tanh is 1 in f64; ±0 and NaN are returned as they are.
    fn tanh_f64(&mut self, x: Word) -> Result<Word> {
        let d = DType::F64;
        let ty = self.ty(d);
        let ax = self.glsl(GLOp::FAbs, ty, &[x])?;
        let cap = self.float_const(d, 22.0);
        let big = self.bool_op(Op::FOrdGreaterThan, &[ax, cap])?;
        let ax = self.select(ty, big, cap, ax)?;
        let two = self.float_const(d, 2.0);
        let y = self.op(Op::FMul, ty, &[ax, two])?;
        // expm1(y) = y·(1 + y/2 + y²/6 + … + y^19/20!).
        let mut c = [1.0f64; 20];
        for k in 1..20 {
            c[k] = c[k - 1] / (k + 1) as f64;
        }
        let series = self.horner_f64(y, &c)?;
        let series = self.op(Op::FMul, ty, &[y, series])?;
        let e = self.exp_f64(y)?;
        let one = self.float_const(d, 1.0);
        let em1 = self.op(Op::FSub, ty, &[e, one])?;
        let near = self.bool_op(Op::FOrdLessThanEqual, &[y, one])?;
        let t = self.select(ty, near, series, em1)?;
        let den = self.op(Op::FAdd, ty, &[t, two])?;
        let r = self.op(Op::FDiv, ty, &[t, den])?;
        let zero = self.float_const(d, 0.0);
        let neg = self.bool_op(Op::FOrdLessThan, &[x, zero])?;
        let nr = self.op(Op::FNegate, ty, &[r])?;
        let r = self.select(ty, neg, nr, r)?;
        // ±0 and NaN: x itself.
        let is_zero = self.bool_op(Op::FOrdEqual, &[x, zero])?;
        let nan = self.bool_op(Op::IsNan, &[x])?;
        let keep = self.bool_op(Op::LogicalOr, &[is_zero, nan])?;
        self.select(ty, keep, x, r)
    }

    fn binary(&mut self, op: BinaryOp, dtype: DType, a: Word, b: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        match dtype {
            DType::I32 => match op {
                // SPIR-V integer arithmetic wraps.
                BinaryOp::Add => self.op(Op::IAdd, ty, &[a, b]),
                BinaryOp::Sub => self.op(Op::ISub, ty, &[a, b]),
                BinaryOp::Mul => self.op(Op::IMul, ty, &[a, b]),
                BinaryOp::Div => {
                    // x / 0 = 0 and MIN / -1 = MIN: divide by 1 where OpSDiv is undefined, then fix x / 0.
                    let (zero, one, m1, min) = (
                        self.i32_const(0),
                        self.i32_const(1),
                        self.i32_const(-1),
                        self.i32_const(i32::MIN),
                    );
                    let by_zero = self.bool_op(Op::IEqual, &[b, zero])?;
                    let a_min = self.bool_op(Op::IEqual, &[a, min])?;
                    let b_m1 = self.bool_op(Op::IEqual, &[b, m1])?;
                    let overflow = self.bool_op(Op::LogicalAnd, &[a_min, b_m1])?;
                    let bad = self.bool_op(Op::LogicalOr, &[by_zero, overflow])?;
                    let safe = self.select(ty, bad, one, b)?;
                    let q = self.op(Op::SDiv, ty, &[a, safe])?;
                    self.select(ty, by_zero, zero, q)
                }
                BinaryOp::Max => {
                    let gt = self.bool_op(Op::SGreaterThan, &[a, b])?;
                    self.select(ty, gt, a, b)
                }
                BinaryOp::Min => {
                    let lt = self.bool_op(Op::SLessThan, &[a, b])?;
                    self.select(ty, lt, a, b)
                }
                BinaryOp::Pow => Err(self.unsupported("i32 `pow`".into())),
            },
            DType::F32 | DType::F64 => match op {
                BinaryOp::Add => self.op(Op::FAdd, ty, &[a, b]),
                BinaryOp::Sub => self.op(Op::FSub, ty, &[a, b]),
                BinaryOp::Mul => self.op(Op::FMul, ty, &[a, b]),
                BinaryOp::Div => self.op(Op::FDiv, ty, &[a, b]),
                BinaryOp::Max => self.float_max_min(true, dtype, a, b),
                BinaryOp::Min => self.float_max_min(false, dtype, a, b),
                BinaryOp::Pow => self.pow(dtype, a, b),
            },
            DType::Bool => Err(self.invalid(format!("`{}` on bool", op.name()))),
        }
    }

    /// NaN-propagating max / min with the interpreter's zero ordering:
    /// `max = nan(a) || nan(b) ? a + b : a > b ? a : a < b ? b : tie`, where a tie of zeros is `a + b` for max
    /// (`+0` unless both are `-0`) and `-((-a) + (-b))` for min (`-0` unless both are `+0`), and `a` otherwise.
    fn float_max_min(&mut self, max: bool, dtype: DType, a: Word, b: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        let sum = self.op(Op::FAdd, ty, &[a, b])?;
        let zero = self.float_const(dtype, 0.0);
        let a_zero = self.bool_op(Op::FOrdEqual, &[a, zero])?;
        let zero_tie = if max {
            sum
        } else {
            let (na, nb) = (
                self.op(Op::FNegate, ty, &[a])?,
                self.op(Op::FNegate, ty, &[b])?,
            );
            let s = self.op(Op::FAdd, ty, &[na, nb])?;
            self.op(Op::FNegate, ty, &[s])?
        };
        let tie = self.select(ty, a_zero, zero_tie, a)?;
        let (first, second) = if max { (a, b) } else { (b, a) };
        // max: a < b → b, a > b → a; min: a < b → a, a > b → b.
        let lt = self.bool_op(Op::FOrdLessThan, &[a, b])?;
        let r = self.select(ty, lt, second, tie)?;
        let gt = self.bool_op(Op::FOrdGreaterThan, &[a, b])?;
        let r = self.select(ty, gt, first, r)?;
        let a_nan = self.bool_op(Op::IsNan, &[a])?;
        let b_nan = self.bool_op(Op::IsNan, &[b])?;
        let nan = self.bool_op(Op::LogicalOr, &[a_nan, b_nan])?;
        self.select(ty, nan, sum, r)
    }

    /// C99 `pow` from GLSL's `Pow(|a|, b)` (undefined for a negative or zero base) and selects for the edge cases.
    fn pow(&mut self, dtype: DType, a: Word, b: Word) -> Result<Word> {
        let ty = self.ty(dtype);
        let (zero, one) = (self.float_const(dtype, 0.0), self.float_const(dtype, 1.0));
        let (inf, nan) = (
            self.float_const(dtype, f64::INFINITY),
            self.float_const(dtype, f64::NAN),
        );
        let ax = self.glsl(GLOp::FAbs, ty, &[a])?;
        let tb = self.glsl(GLOp::Trunc, ty, &[b])?;
        let b_int = self.bool_op(Op::FOrdEqual, &[tb, b])?;
        let (p, b_odd) = if dtype == DType::F64 {
            // |a|^b = exp(b · log|a|) (no f64 `Pow`): the relative error is about |b · ln|a|| ulp (see the parent
            // module doc). `b` is odd iff b - 2·floor(b/2) = ±1, exact in f64 (every f64 ≥ 2^53 is even).
            let l = self.log_f64(ax)?;
            let y = self.op(Op::FMul, ty, &[b, l])?;
            let p = self.exp(dtype, y)?;
            let half = self.float_const(dtype, 0.5);
            let h = self.op(Op::FMul, ty, &[b, half])?;
            let fh = self.glsl(GLOp::Floor, ty, &[h])?;
            let two = self.float_const(dtype, 2.0);
            let twice = self.op(Op::FMul, ty, &[fh, two])?;
            let rem = self.op(Op::FSub, ty, &[b, twice])?;
            let odd = self.bool_op(Op::FOrdEqual, &[rem, one])?;
            // pow(-1, ±inf) = 1 (C99): b · log 1 = inf · 0 is NaN otherwise.
            let b_inf = self.bool_op(Op::IsInf, &[b])?;
            let a_unit = self.bool_op(Op::FOrdEqual, &[ax, one])?;
            let unit_inf = self.bool_op(Op::LogicalAnd, &[b_inf, a_unit])?;
            let p = self.select(ty, unit_inf, one, p)?;
            (p, self.bool_op(Op::LogicalAnd, &[b_int, odd])?)
        } else {
            let p = self.glsl(GLOp::Pow, ty, &[ax, b])?;
            // Is `b` an integer, and an odd one? Every f32 of magnitude ≥ 2^24 is even.
            let ab = self.glsl(GLOp::FAbs, ty, &[b])?;
            let two24 = self.float_const(dtype, 16_777_216.0);
            let small = self.bool_op(Op::FOrdLessThan, &[ab, two24])?;
            let b_small = self.select(ty, small, b, zero)?;
            let bi = self.op(Op::ConvertFToS, self.t_i32, &[b_small])?;
            let ione = self.i32_const(1);
            let low = self.op(Op::BitwiseAnd, self.t_i32, &[bi, ione])?;
            let odd_bit = self.bool_op(Op::IEqual, &[low, ione])?;
            (p, self.bool_op(Op::LogicalAnd, &[b_int, odd_bit])?)
        };
        // Negative base: odd integer exponent → -|a|^b; even → |a|^b; otherwise NaN, but for a base of -inf, where
        // C99 gives |a|^b (+inf for b > 0, +0 for b < 0). (-0 counts as zero below.)
        let a_neg = self.bool_op(Op::FOrdLessThan, &[a, zero])?;
        let np = self.op(Op::FNegate, ty, &[p])?;
        let neg_odd = self.bool_op(Op::LogicalAnd, &[a_neg, b_odd])?;
        let r = self.select(ty, neg_odd, np, p)?;
        let not_int = self.bool_op(Op::LogicalNot, &[b_int])?;
        let a_inf = self.bool_op(Op::IsInf, &[a])?;
        let a_finite = self.bool_op(Op::LogicalNot, &[a_inf])?;
        let neg_finite = self.bool_op(Op::LogicalAnd, &[a_neg, a_finite])?;
        let neg_frac = self.bool_op(Op::LogicalAnd, &[neg_finite, not_int])?;
        let r = self.select(ty, neg_frac, nan, r)?;
        // Zero base: b < 0 → +inf, b > 0 → +0, each negated for -0 and an odd integer b.
        let a_zero = self.bool_op(Op::FOrdEqual, &[a, zero])?;
        let b_neg = self.bool_op(Op::FOrdLessThan, &[b, zero])?;
        let z = self.select(ty, b_neg, inf, zero)?;
        let recip = self.op(Op::FDiv, ty, &[one, a])?;
        let minus_zero = self.bool_op(Op::FOrdLessThan, &[recip, zero])?;
        let flip = self.bool_op(Op::LogicalAnd, &[minus_zero, b_odd])?;
        let nz = self.op(Op::FNegate, ty, &[z])?;
        let z = self.select(ty, flip, nz, z)?;
        let r = self.select(ty, a_zero, z, r)?;
        // NaN in, NaN out (lavapipe's `Pow(NaN, 1)` is 0) ...
        let a_nan = self.bool_op(Op::IsNan, &[a])?;
        let b_nan = self.bool_op(Op::IsNan, &[b])?;
        let any_nan = self.bool_op(Op::LogicalOr, &[a_nan, b_nan])?;
        let sum = self.op(Op::FAdd, ty, &[a, b])?;
        let r = self.select(ty, any_nan, sum, r)?;
        // ... except that pow(x, ±0) = pow(1, y) = 1, even for NaN.
        let b_zero = self.bool_op(Op::FOrdEqual, &[b, zero])?;
        let a_one = self.bool_op(Op::FOrdEqual, &[a, one])?;
        let unit = self.bool_op(Op::LogicalOr, &[b_zero, a_one])?;
        self.select(ty, unit, one, r)
    }

    fn compare(&mut self, dir: CmpDir, dtype: DType, a: Word, b: Word) -> Result<Word> {
        let op = match dtype {
            // Ordered comparisons are false on NaN; `ne` is unordered, so true on NaN.
            DType::F32 | DType::F64 => match dir {
                CmpDir::Lt => Op::FOrdLessThan,
                CmpDir::Le => Op::FOrdLessThanEqual,
                CmpDir::Gt => Op::FOrdGreaterThan,
                CmpDir::Ge => Op::FOrdGreaterThanEqual,
                CmpDir::Eq => Op::FOrdEqual,
                CmpDir::Ne => Op::FUnordNotEqual,
            },
            DType::I32 => match dir {
                CmpDir::Lt => Op::SLessThan,
                CmpDir::Le => Op::SLessThanEqual,
                CmpDir::Gt => Op::SGreaterThan,
                CmpDir::Ge => Op::SGreaterThanEqual,
                CmpDir::Eq => Op::IEqual,
                CmpDir::Ne => Op::INotEqual,
            },
            DType::Bool => match dir {
                CmpDir::Eq => Op::LogicalEqual,
                CmpDir::Ne => Op::LogicalNotEqual,
                _ => return Err(self.invalid("an ordering comparison of bools".into())),
            },
        };
        self.bool_op(op, &[a, b])
    }

    /// SPEC.md §3.3.
    fn cast(&mut self, x: Word, from: DType, to: DType) -> Result<Word> {
        if from == to {
            return Ok(x);
        }
        let ty = self.ty(to);
        match (from, to) {
            (DType::F32, DType::F64) | (DType::F64, DType::F32) => self.op(Op::FConvert, ty, &[x]),
            (DType::I32, DType::F32 | DType::F64) => self.op(Op::ConvertSToF, ty, &[x]),
            (DType::F32 | DType::F64, DType::I32) => {
                // Truncate toward zero, saturate, NaN → 0: convert only in-range values.
                let (lo, hi) = (
                    self.float_const(from, -2_147_483_648.0),
                    self.float_const(from, 2_147_483_648.0),
                );
                let fty = self.ty(from);
                let zero = self.float_const(from, 0.0);
                let above = self.bool_op(Op::FOrdGreaterThanEqual, &[x, hi])?;
                let below = self.bool_op(Op::FOrdLessThan, &[x, lo])?;
                let ge_lo = self.bool_op(Op::FOrdGreaterThanEqual, &[x, lo])?;
                let lt_hi = self.bool_op(Op::FOrdLessThan, &[x, hi])?;
                let in_range = self.bool_op(Op::LogicalAnd, &[ge_lo, lt_hi])?;
                let safe = self.select(fty, in_range, x, zero)?;
                let c = self.op(Op::ConvertFToS, ty, &[safe])?;
                let (max, min) = (self.i32_const(i32::MAX), self.i32_const(i32::MIN));
                let r = self.select(ty, below, min, c)?;
                self.select(ty, above, max, r)
            }
            (DType::Bool, _) => {
                let (one, zero) = (self.typed_const(to, 1.0), self.typed_const(to, 0.0));
                self.select(ty, x, one, zero)
            }
            // `x != 0`: NaN → true, -0 → false.
            (DType::F32 | DType::F64, DType::Bool) => {
                let zero = self.float_const(from, 0.0);
                self.bool_op(Op::FUnordNotEqual, &[x, zero])
            }
            (DType::I32, DType::Bool) => {
                let zero = self.i32_const(0);
                self.bool_op(Op::INotEqual, &[x, zero])
            }
            (f, t) => Err(self.invalid(format!("cast from {f} to {t}"))),
        }
    }
}

/// `ln 2` split as fdlibm does: `LN2_HI` has 32 significant bits (so `n·LN2_HI` is exact for `|n| < 2^21`),
/// `LN2_HI + LN2_LO` is `ln 2` to about 2^-85.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// Bytes between consecutive elements of a buffer of `dtype` on the device.
pub(super) fn element_stride(dtype: DType) -> u32 {
    kiln_runtime::vulkan::element_bytes(dtype) as u32
}
