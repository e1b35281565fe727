//! The GPU backend: each kernel of a [`KernelProgram`] becomes one SPIR-V compute shader, run through Vulkan
//! ([`kiln_runtime::vulkan`]).
//!
//! # The shaders
//!
//! One module per kernel, built with `rspirv`: SPIR-V 1.3 (Vulkan 1.1), capability `Shader` (plus `Float64` where
//! the kernel computes in f64), one `GLCompute` entry point `main` with `LocalSize 64 1 1` (or 256, see workgroup
//! kernels below; fewer where the device allows fewer, see "Device limits"; [`SpirvKernel::local_size`]). Every
//! buffer the kernel touches is one storage buffer at descriptor set 0, binding `i` (in [`SpirvKernel::bindings`]
//! order; at most the device's binding limit): a `Block`
//! struct holding one runtime array of the element type (`ArrayStride`, member `Offset 0`). Shapes are static, so
//! every extent and stride is a constant in the code.
//!
//! Invocation `g` runs point `g` of the kernel's flattened parallel space (row-major), recovering the loop
//! variables by division; invocations past the end return at once (the bounds guard). A space of more workgroups
//! than `maxComputeWorkGroupCount[0]` is dispatched in 2-D (`x` capped at the limit, `g = gid.y · 64 · groups_x +
//! gid.x`), and in 3-D when the rows also exceed `maxComputeWorkGroupCount[1]` (`row = gid.z · groups_y + gid.y`,
//! rows past the last needed one guarded off: [`grid_groups`]). Indices are 32-bit: a buffer or a parallel space
//! of 2^32 elements or more is rejected ([`Error::Unsupported`]).
//!
//! - `Reduce` is a sequential loop per invocation, accumulating in a function variable from the identity (`-0.0`
//!   for float sums, so an all-`-0` sum stays `-0`, as the kernel interpreter's fold from the first element does;
//!   `-inf` / `i32::MIN` for max), in the kernel IR's row-major order, so results match the interpreter's order —
//!   except for the top-level reductions of a workgroup kernel:
//!
//! ## Workgroup kernels (cooperative reductions)
//!
//! **The rule** (on a GPU; on a CPU implementation such as lavapipe [`Options::for_device`] raises the threshold to
//! [`WORKGROUP_REDUCE_WIDE`], where that measured faster): a loop kernel whose body has a top-level `Reduce` of at least
//! [`WORKGROUP_REDUCE_MIN`] (64) points
//! runs **one workgroup per parallel point** — 64 invocations, or 256 when that reduction has at least
//! [`WORKGROUP_REDUCE_WIDE`] (4,096) points — unless [`Options::workgroup_reductions`] sets another threshold or
//! none (or a top-level loop nest has 2^31 points or more, or the kernel reads a buffer it writes where another
//! invocation may have written the element; a row materialized by `kernel::materialize` is read by its writer and
//! keeps the workgroup plan). Shorter reductions stay sequential: a row of fewer than 64 elements would leave
//! invocations idle and pay the barriers for nothing. Matmul kernels are never workgroup kernels.
//!
//! The workgroup `w = wid.y · groups_x + wid.x` is the parallel point (2-D or 3-D dispatch past the device's counts, as above);
//! the bounds guard on `w` is uniform across the workgroup, so the barriers inside it are legal. In its body:
//! - top-level `Let`s run in every invocation (all compute the same values);
//! - a top-level `Reduce` is strided: invocation `t` folds flattened points `t, t + threads, …` in increasing order
//!   from the identity; the `threads` partial results are then combined in a **fixed order** — a binary tree in
//!   Workgroup-storage shared memory (`sh[t] ⊕= sh[t + s]`, `s = threads/2 … 1`, an `OpControlBarrier` after each
//!   level) or, where [`Options::subgroup_size`] says the device has subgroup shuffles, a butterfly of
//!   `OpGroupNonUniformShuffleXor` within each subgroup, then every invocation folds the per-subgroup results in
//!   subgroup order. Either way the result is the same in every invocation (broadcast) and the same on every run:
//!   nothing depends on timing, and `⊕` is commutative bit for bit. Shuffles rather than `GroupNonUniformArithmetic`
//!   (`OpGroupNonUniformFAdd`…) because those leave the combination order, and `FMax` the NaN and signed-zero
//!   behaviour, to the device;
//! - a top-level `For` (softmax's normalize) is strided the same way, so a row softmax is one dispatch, one
//!   workgroup per row; nested reductions and loops inside a strided iteration stay sequential;
//! - a top-level `Store` is made by invocation 0.
//!
//! **Sum order.** A workgroup reduction adds in a different order from the interpreter (strided partial sums, then
//! a tree), so float sums differ by rounding: tests hold them to the same `|a − b| ≤ 1e-4 + 1e-4·|b|` as every
//! float result. Measured on lavapipe with N(0, 1) inputs, relative to `Σ|x|`: a `[256, 4096]` row sum is within
//! 1.3e-7 of the interpreter and a 1M-element full sum within 1.9e-8 (at most 0.45 of the tolerance), both 10–100×
//! closer to the exact sum than the interpreter is — whereas a sequential f32 loop over those 1M elements in one
//! invocation is off by 1.4e-4 (2,800× the tolerance). Max is exact: it does not depend on the order.
//!
//! ## Matmuls
//!
//! A matmul kernel runs one invocation per output element — a loop over `k` accumulating `a · b` in the dtype
//! from 0, then the fused epilogue — or, where [`Options::tiled_matmul`] is on, `k ≥ 16` and the block counts fit
//! (`⌈n/16⌉`, `⌈m/16⌉` and the batch size each within `maxComputeWorkGroupCount`, and 256 invocations and the
//! tiles' shared memory within the device's limits), as a **tiled shader**: a workgroup of 256
//! invocations per 16×16 block of C (`groups = [⌈n/16⌉, ⌈m/16⌉, batch]`), stepping through `k` 16 at a time with
//! one element of the A tile and one of the B tile loaded per invocation into shared memory (zero past `m`, `n`,
//! `k`, so odd sizes read nothing out of bounds), a barrier, 16 multiply-adds from shared memory, a barrier. The
//! accumulator sees the same terms in the same order as the per-point shader (the zero padding adds `+0`), and the
//! fused epilogue runs on it in a register, for invocations inside `m × n`. Operand views (offset, batch / row /
//! column strides: transposes, broadcasts) are the kernel IR's [`crate::kernel::MatrixView`]s, as per point.
//!
//! # Device limits
//!
//! Everything the shaders assume of the device is in [`Options::limits`] ([`DeviceLimits`]: the device's own from
//! [`Options::for_device`], lowered by hand in tests), and each is checked when a kernel is lowered:
//!
//! - **Bindings** (`maxPerStageDescriptorStorageBuffers`, `maxDescriptorSetStorageBuffers`; 32 on lavapipe, 4 at
//!   least): fusion never forms a kernel binding more (rule 8 of [`crate::fusion`], applied by
//!   [`crate::compile::compile_vulkan`]); a program made without that cap and a kernel no cut can shrink (a concat
//!   of more operands than the limit) are an [`Error::Unsupported`] naming the kernel and the limit, and the runtime
//!   refuses such a dispatch too. Past its limit of 32, lavapipe (Mesa 22.3) ran a shader with 33 bindings to zeros
//!   with exit 0, and crashed in the driver with 34 or more. One descriptor set is used, so `maxBoundDescriptorSets ≥ 1`
//!   always holds.
//! - **Workgroup size** (`maxComputeWorkGroupInvocations`, `maxComputeWorkGroupSize[0]`): every plan uses the
//!   largest power of two within both at most — a per-point workgroup of 64 (fewer below that), a workgroup
//!   reduction of 256 or 64 halved to fit (a per-point plan below 2); a tiled matmul (256 invocations) that does not
//!   fit runs per point.
//! - **Shared memory** (`maxComputeSharedMemorySize`): a module declaring more Workgroup storage than the limit is
//!   lowered again with half the reduction's invocations (down to per point); a tiled matmul falls back to per point.
//! - **Workgroup counts** (`maxComputeWorkGroupCount`): 1-D, 2-D, then 3-D dispatch ([`grid_groups`]); a workgroup
//!   reduction or tiled matmul whose counts don't fit runs per point; a per-point space that still doesn't fit (only
//!   under limits lowered below Vulkan's 65,535 per dimension, which hold 2^32 points) is an [`Error::Unsupported`].
//! - **Buffer size** (`maxStorageBufferRange`): a buffer larger than one binding can address is an
//!   [`Error::Unsupported`] (and the runtime checks it again).
//! - **Push constants**: none are used (every shape is a constant in the code), so `maxPushConstantsSize` is only
//!   reported.
//!
//! # Memory
//!
//! [`program_desc`] places the temporaries in one arena at the offsets of the memory plan ([`crate::memory::plan`],
//! the CPU backend's), so temporaries with disjoint lifetimes share device memory; the runtime scales the offsets to
//! the device's element layout and `minStorageBufferOffsetAlignment` (see [`kiln_runtime::vulkan`]).
//!
//! # Scalars: where the GPU and the interpreter differ
//!
//! The kernel IR's semantics (SPEC.md §3) are kept, with these limits:
//!
//! - `exp`, `log`, `tanh` and `pow` use GLSL.std.450, whose Vulkan precision is looser than the host's libm: `exp`
//!   within `3 + 2·|x|` ULP, `log` within 3 ULP (absolute `2^-21` on `[0.5, 2]`), `pow` as `exp2(b·log2 a)`, `tanh`
//!   inherited from those. Tests compare f32 with `|a − b| ≤ 1e-4 + 1e-4·|b|`. Their edge cases are made explicit
//!   where GLSL.std.450 leaves them undefined: `tanh` of a large `|x|` is ±1 (evaluated on `x` clamped to ±10),
//!   `logistic` is composed from `exp(-|x|)` (never overflows), and `pow` handles a negative base (odd/even integer
//!   exponents, NaN otherwise), a zero base, `pow(x, ±0) = pow(1, y) = 1` by selects around `Pow(|a|, b)`.
//! - GLSL.std.450 has no f64 `exp`, `log`, `tanh` or `pow`, so in f64 they are emitted as range reduction and
//!   polynomials (`emit::math_f64`): `exp` by `n = round(x/ln 2)`, a two-part `ln 2`
//!   and a degree-13 Taylor polynomial, scaled by `Ldexp`; `log` by `Frexp` (subnormals pre-scaled by 2^54) and the
//!   `atanh` series to `s^21`; `tanh` by `expm1` (its Taylor series where `2|x| ≤ 1`); `logistic` composed from
//!   `exp` as in f32; `pow` as `exp(b·log|a|)` with the f32 path's edge cases (odd integers tested exactly up to
//!   2^53, and `pow(-1, ±inf) = 1`). Measured against the host's libm on lavapipe: worst relative error 2.2e-16
//!   (`exp`, `log`), 4.4e-16 (`tanh`), 2.6e-16 (`logistic`), 2.8e-14 for `pow` (its error grows with `|b·ln|a||`,
//!   up to 709); edge cases (NaN, ±inf, ±0, over/underflow) exact, a subnormal result possibly flushed to 0. f64
//!   needs `shaderFloat64` (checked by the runtime: "unsupported on this device").
//! - `erf` has no GLSL.std.450 instruction at any width: it is fdlibm's algorithm in f32 and f64 alike (piecewise
//!   rational approximations, `exp` for the tail; `emit::erf`), measured within 1 ulp of the host's
//!   `libm` in both.
//! - `sin` and `cos` do not use GLSL.std.450's `Sin`/`Cos` (f32 only, and Vulkan asks of them only an absolute
//!   error of 2^-11 on `[-π, π]`): `emit::trig` emits the CPU math library's algorithm with its constants, the
//!   variant without FMA (SPIR-V does not promise a fused `Fma`): `n = RoundEven(x·2/π)`, a Cody–Waite `x - n·π/2`
//!   with five pieces of π/2 in f32 and four in f64 whose products are exact, the same polynomials and quadrant
//!   selects. Accurate for `|x| < 8192` in f32 and `|x| < 2^20` in f64 (SPEC §3.2); beyond, a finite `x` gives a
//!   value in `[-1, 1]`. Measured on lavapipe against the host's f64 `sin`/`cos` (rounded to f32 for f32) over ~50k
//!   inputs each (a grid of `[-16, 16]`, magnitudes 2^-40..2^40, the neighbours of multiples of π/2 up to past the
//!   domain; `compiler/tests/vulkan/spirv_trig.rs`, which allows 2): at most **1 ulp** in f32 and f64; `sin(±0) = ±0`,
//!   `cos(±0) = 1`, `±inf`/NaN → NaN exactly.
//! - `max` / `min` propagate NaN and order zeros like the interpreter, composed from `OpFOrdLessThan`,
//!   `OpFOrdGreaterThan`, `OpIsNan` and `OpSelect` (GLSL's `FMax` leaves NaN undefined).
//! - i32 `div` is SPEC's: `x / 0 = 0`, `MIN / -1 = MIN` (the divisor is replaced by 1 where `OpSDiv` is undefined).
//! - Casts float → i32 truncate and saturate, NaN → 0 (selects around `OpConvertFToS` of an in-range value).
//! - Denormals may be flushed to zero by a device (Vulkan allows it without `shaderDenormPreserve`).
//! - Bool elements are stored as 32-bit words `0` / `1` (see [`kiln_runtime::vulkan`]); in registers they are
//!   SPIR-V `bool`.

mod emit;

use crate::kernel::{BufferId, BufferKind, KernelProgram};
use crate::memory::BufferPlacement;
use kiln_ir::{IrError, Tensor};
use kiln_runtime::vulkan::{BufferDesc, DispatchDesc, ProgramDesc};

/// The Vulkan runtime's API, re-exported: embedding users depend on `kiln` only.
pub use kiln_runtime::vulkan::{
    devices, element_bytes, Device, DeviceInfo, DeviceKind, DeviceLimits, Residency, StepBytes,
    VulkanError, VulkanExecutable, VulkanSession,
};

/// Workgroup size of a one-invocation-per-point shader (x; y = z = 1).
pub const WORKGROUP_SIZE: u32 = 64;

/// A kernel whose longest top-level reduction has at least this many points runs one workgroup per parallel point
/// (see the module doc); shorter reductions stay sequential in one invocation.
pub const WORKGROUP_REDUCE_MIN: u32 = 64;

/// From this reduction length on, a workgroup kernel has 256 invocations instead of 64.
pub const WORKGROUP_REDUCE_WIDE: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel uses something this backend cannot express.
    #[error("kernel `{kernel}`: {what} is not supported by the SPIR-V backend")]
    Unsupported { kernel: String, what: String },
    /// The kernel IR is inconsistent (a value used before its definition, …): a fusion bug.
    #[error("kernel `{kernel}`: invalid kernel IR: {message}")]
    InvalidKernel { kernel: String, message: String },
    /// An `all_reduce` (SPEC §3.12): the Vulkan path has no collectives.
    #[error(
        "node `{node}`: all_reduce needs the CPU backend; NCCL-style GPU collectives are not built"
    )]
    Collective { node: String },
    #[error(transparent)]
    Vulkan(#[from] VulkanError),
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// One kernel as a SPIR-V compute shader, with what it is dispatched with.
#[derive(Clone, Debug)]
pub struct SpirvKernel {
    pub name: String,
    /// The module's words.
    pub words: Vec<u32>,
    /// `bindings[i]` is the buffer bound at descriptor set 0, binding `i`: every buffer the kernel reads or writes.
    pub bindings: Vec<BufferId>,
    /// Workgroup counts `x, y, z`; 0 for an empty parallel space.
    pub groups: [u32; 3],
    /// Invocations per workgroup (the module's `LocalSize` x; y = z = 1).
    pub local_size: u32,
    /// The module declares `Float64`.
    pub uses_f64: bool,
    /// The module uses `SPV_KHR_float_controls`.
    pub uses_float_controls: bool,
}

impl SpirvKernel {
    /// The module in SPIR-V assembly (`kiln dump --stage spirv`).
    pub fn disassemble(&self) -> String {
        use rspirv::binary::Disassemble;
        match rspirv::dr::load_words(&self.words) {
            Ok(module) => module.disassemble(),
            Err(e) => format!("; cannot parse the module: {e}"),
        }
    }
}

/// What the shaders may ask of the device.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Options {
    /// Declare the `SignedZeroInfNanPreserve` execution mode for f32 / f64 (`SPV_KHR_float_controls`). Without it
    /// a device compiler may assume no NaN exists (Mesa folds `x - x` to 0), and NaN results may differ from the
    /// interpreter's; ordinary values are unaffected.
    pub preserve_nan: [bool; 2],
    /// `Some(n)`: a loop kernel whose longest top-level reduction has at least `n` points becomes a workgroup kernel
    /// (see the module doc; the default is [`WORKGROUP_REDUCE_MIN`]). `None`: every kernel runs one invocation per
    /// point.
    pub workgroup_reductions: Option<u32>,
    /// The device's subgroup size, where compute shaders may use subgroup shuffles: workgroup reductions then
    /// combine within subgroups first. `None`: through shared memory only.
    pub subgroup_size: Option<u32>,
    /// Lower matmuls with `k ≥ 16` to the tiled shader (see the module doc); `false`: one invocation per output
    /// element.
    pub tiled_matmul: bool,
    /// Make float zero constants and loop indices run-time values to the device compiler (the bits OR a zero it
    /// cannot prove). A workaround for Mesa's lavapipe (22.3, measured): it folds `x · 0`, `0 / x` and `x / 0` to
    /// `+0` even under `SignedZeroInfNanPreserve`, so `-1 · 0` is `+0` and `1 / 0` is `0` there, where SPEC (IEEE)
    /// says `-0` and `+inf`. Set for CPU-type devices by [`Options::for_device`]; real GPUs get plain constants.
    pub hide_constant_zeros: bool,
    /// The device limits every shader and dispatch must respect (see "Device limits" in the module doc): the
    /// device's own from [`Options::for_device`]; tests lower them to run the small-limit paths on any device.
    pub limits: DeviceLimits,
}

impl Default for Options {
    /// NaN-preserving f32 and f64, workgroup reductions through shared memory only (what every Vulkan 1.1 device
    /// runs).
    fn default() -> Options {
        Options {
            preserve_nan: [true, true],
            workgroup_reductions: Some(WORKGROUP_REDUCE_MIN),
            subgroup_size: None,
            tiled_matmul: true,
            hide_constant_zeros: false,
            limits: DeviceLimits::UNCHECKED,
        }
    }
}

impl Options {
    /// What `device` supports, and the plans that pay on it: on a GPU, workgroup reductions from
    /// [`WORKGROUP_REDUCE_MIN`] points and the tiled matmul. A CPU implementation ([`DeviceKind::Cpu`], e.g.
    /// lavapipe) runs a workgroup's invocations as SIMD lanes of one thread, where barriers cost and gain no
    /// parallelism (measured on lavapipe: a `[4096, 1024]` row softmax 22 ms per point vs 56–62 ms by workgroups, a
    /// 256×784×256 matmul 148 ms per point vs 270 ms tiled): there matmuls run per point and only reductions of
    /// [`WORKGROUP_REDUCE_WIDE`] points or more by workgroups, for accuracy (see the module doc's sum order). Tests set
    /// the fields to run every path on lavapipe.
    pub fn for_device(device: &DeviceInfo) -> Options {
        let gpu = device.kind != DeviceKind::Cpu;
        Options {
            preserve_nan: device.preserves_nan,
            workgroup_reductions: Some(if gpu {
                WORKGROUP_REDUCE_MIN
            } else {
                WORKGROUP_REDUCE_WIDE
            }),
            subgroup_size: device.subgroup_shuffle.then_some(device.subgroup_size),
            tiled_matmul: gpu,
            hide_constant_zeros: !gpu,
            limits: device.limits,
        }
    }

    /// [`Options::for_device`] with the GPU plans (workgroup reductions from [`WORKGROUP_REDUCE_MIN`] points, the
    /// tiled matmul) whatever the device's kind: how the tests run them on lavapipe.
    pub fn gpu_plans(device: &DeviceInfo) -> Options {
        Options {
            workgroup_reductions: Some(WORKGROUP_REDUCE_MIN),
            tiled_matmul: true,
            ..Options::for_device(device)
        }
    }
}

/// Lowers every kernel of `program` to a SPIR-V module, in program order, with the default [`Options`].
pub fn lower(program: &KernelProgram) -> Result<Vec<SpirvKernel>, Error> {
    lower_with(program, &Options::default())
}

/// Lowers every kernel of `program` to a SPIR-V module, in program order.
pub fn lower_with(program: &KernelProgram, options: &Options) -> Result<Vec<SpirvKernel>, Error> {
    // The emitter relies on a valid program: typed values in scope, ops on dtypes they are defined on, accesses in
    // bounds.
    crate::kernel::verify(program).map_err(|e| Error::InvalidKernel {
        kernel: e.kernel,
        message: e.problem,
    })?;
    program
        .kernels
        .iter()
        .map(|k| emit::kernel(program, k, options))
        .collect()
}

/// The program and its shaders as the Vulkan runtime takes them, temporaries placed in one arena by the memory plan
/// made with the device's element sizes ([`crate::memory::plan_for`] with [`element_bytes`]: a bool temporary takes
/// 4 bytes there, so it needs no wider arena); the runtime scales the offsets only where the device's
/// `minStorageBufferOffsetAlignment` exceeds the plan's alignment.
pub fn program_desc(
    program: &KernelProgram,
    kernels: &[SpirvKernel],
) -> Result<ProgramDesc, Error> {
    let plan = crate::memory::plan_for(program, element_bytes);
    let buffers = program
        .buffers
        .iter()
        .zip(&plan.placements)
        .map(|(b, placement)| {
            let constant = match &b.kind {
                BufferKind::Constant(lit) => {
                    let values: Vec<f64> = (0..b.ty.numel()).map(|i| lit.get(i)).collect();
                    Some(Tensor::from_f64_values(b.ty.clone(), &values)?)
                }
                _ => None,
            };
            let arena = match *placement {
                BufferPlacement::Arena { offset, size } => Some((offset as u64, size as u64)),
                _ => None,
            };
            Ok(BufferDesc {
                name: b.name.clone(),
                ty: b.ty.clone(),
                constant,
                arena,
            })
        })
        .collect::<Result<Vec<_>, IrError>>()?;
    Ok(ProgramDesc {
        name: program.name.clone(),
        buffers,
        dispatches: kernels
            .iter()
            .map(|k| DispatchDesc {
                name: k.name.clone(),
                spirv: k.words.clone(),
                bindings: k.bindings.iter().map(|b| b.index()).collect(),
                groups: k.groups,
                uses_f64: k.uses_f64,
                uses_float_controls: k.uses_float_controls,
            })
            .collect(),
        inputs: program
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.buffer.index()))
            .collect(),
        outputs: program
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.buffer.index()))
            .collect(),
        arena_bytes: plan.peak_bytes as u64,
        arena_alignment: crate::memory::ALIGNMENT as u64,
    })
}

/// Lowers `program` and loads it on `device`: the executable takes the program's inputs in order.
pub fn compile(device: &Device, program: &KernelProgram) -> Result<VulkanExecutable, Error> {
    compile_with(device, program, &Options::for_device(device.info()))
}

/// [`compile`] with explicit [`Options`] (e.g. to force the shared-memory reduction path on a device with
/// subgroups). Options the device lacks make pipeline creation or the run fail.
pub fn compile_with(
    device: &Device,
    program: &KernelProgram,
    options: &Options,
) -> Result<VulkanExecutable, Error> {
    let kernels = lower_with(program, options)?;
    let desc = program_desc(program, &kernels)?;
    Ok(VulkanExecutable::new(device, desc)?)
}

/// Workgroup counts for `points` invocations of [`WORKGROUP_SIZE`] (see the module doc): 1-D up to 65,535 groups,
/// then 2-D.
pub fn dispatch_groups(points: u64) -> [u32; 3] {
    grid_groups(
        points.div_ceil(WORKGROUP_SIZE as u64),
        WORKGROUP_SIZE,
        &DeviceLimits::UNCHECKED,
    )
    .unwrap_or([0, 0, 0])
}

/// Workgroup counts for one workgroup per point (workgroup kernels): 1-D up to 65,535 groups, then 2-D.
pub fn workgroup_groups(points: u64) -> [u32; 3] {
    grid_groups(points, 1, &DeviceLimits::UNCHECKED).unwrap_or([0, 0, 0])
}

/// Workgroup counts `[x, y, z]` for `groups` workgroups, each covering `row_points` consecutive points.
///
/// `x` is as many as `maxComputeWorkGroupCount[0]` allows; the rows of `x` workgroups are laid out along `y`, and
/// along `z` as well (`rows = z · y`, the last `z` layer possibly partly past the end) when there are more rows than
/// `maxComputeWorkGroupCount[1]`. `None` when the device's counts can't hold `groups`, or when the linear point
/// index of the last row, `rows · x · row_points`, would not fit in 32 bits (the shader's index arithmetic is u32).
/// `[0, 0, 0]` for no workgroups.
pub fn grid_groups(groups: u64, row_points: u32, limits: &DeviceLimits) -> Option<[u32; 3]> {
    if groups == 0 {
        return Some([0, 0, 0]);
    }
    let [max_x, max_y, max_z] = limits.max_workgroups.map(|m| m.max(1) as u64);
    let x = groups.min(max_x);
    let rows = groups.div_ceil(x);
    let y = rows.min(max_y);
    let z = rows.div_ceil(y);
    (z <= max_z && rows * x * row_points as u64 <= 1 << 32)
        .then_some([x as u32, y as u32, z as u32])
}
