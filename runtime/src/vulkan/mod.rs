//! The Vulkan runtime: devices, buffers and compute pipelines, driven through `ash`.
//!
//! The Vulkan loader (`libvulkan.so.1`) is opened at run time, never linked: on a machine without it, or without a
//! device, [`devices`] and [`Device::open_best`] return an `Err` that says so — nothing here panics or aborts on a
//! missing driver. Every `unsafe` block of the crate's GPU path lives in this module, each with its `// SAFETY:`.
//!
//! # What runs
//!
//! A [`ProgramDesc`] is what a code generator hands over: the program's buffers (with constants' contents), one
//! [`DispatchDesc`] per kernel (a SPIR-V compute module, the buffers bound at bindings `0..` of descriptor set 0, and
//! the workgroup counts), and which buffers are the inputs and outputs. [`VulkanExecutable::new`] creates everything
//! once: one device-local `VkBuffer` per program buffer but the temporaries (constants uploaded at creation), one compute pipeline per
//! distinct module, descriptor sets, a host-visible staging buffer, and **one command buffer** recording the whole
//! program — copies from the staging buffer into the inputs, the dispatches in order with a shader-write →
//! shader-read barrier between each two, and copies from the outputs back into the staging buffer.
//! [`VulkanExecutable::run`] checks the inputs, writes them into the staging buffer, submits that command buffer once
//! and waits. Tensors stay on the device between kernels; only the program's inputs and outputs cross the bus.
//!
//! **Training** runs in a [`VulkanSession`] instead: parameters and optimizer state (the inputs that outputs replace,
//! per a [`Residency`]) live in the session's device buffers across steps; a step uploads only the data inputs,
//! downloads only the outputs that replace nothing (the loss), and updates the resident buffers with device-side
//! copies at the end of the session's own command buffer, recorded once like the executable's.
//!
//! **Temporaries live in one arena** when the program places them ([`BufferDesc::arena`], from the compiler's
//! memory plan, which `kiln` makes with the device's element sizes, [`element_bytes`]): one device-local buffer,
//! each temporary bound at its offset with its own range. The offsets are scaled by one power-of-two factor `f` —
//! the smallest making every temporary's device size fit its planned size (1 for a plan made with device sizes; 4
//! for a host-layout plan with a bool temporary, where bool takes 1 byte) and every offset a multiple of the device's
//! `minStorageBufferOffsetAlignment` — so temporaries that do not overlap in the plan do not overlap on the device,
//! and the arena is `f ×` the plan's peak ([`VulkanExecutable::arena_bytes`]; `f = 1` on a device whose alignment
//! divides the plan's 64 bytes, which every common GPU's does).
//!
//! Where the compute queue writes timestamps (`timestampValidBits > 0`), the command buffer also writes one before
//! the first dispatch and one after each (stage `COMPUTE_SHADER`, after the dispatch's barrier), into a query pool
//! reset at the start of the same command buffer; [`VulkanExecutable::run_profiled`] turns consecutive ones into
//! per-dispatch device times (`timestampPeriod` ns per tick, modulo the valid bits).
//!
//! # Threads
//!
//! A [`VulkanExecutable`] is `Send + Sync`: share it (an `Arc`) and run it from any number of threads. Its runs are
//! serialized by its run lock — they share its staging buffer, command buffer and fence, and a session's steps share
//! its device buffers — so each run sees only its own inputs and outputs. Different executables and sessions of one
//! [`Device`] run concurrently on the device, sharing its one queue: every host call that uses the queue
//! (`vkQueueSubmit`, `vkQueueWaitIdle`, `vkDeviceWaitIdle`) is made under the device's queue lock, as Vulkan requires
//! of a queue used from several threads; the wait for a run's fence is not, so one executable's run never waits for
//! another's to finish. (Lavapipe happens to tolerate unsynchronized submissions; a GPU driver need not.)
//!
//! # Device limits
//!
//! [`DeviceInfo::limits`] holds the limits the code generator must respect ([`DeviceLimits`]). The executable
//! checks again what it can see in a [`ProgramDesc`] — workgroup counts, bindings per dispatch, buffer sizes — and
//! refuses a program past them with [`VulkanError::Unsupported`]: past the binding limit, lavapipe ran a shader with
//! 33 bindings to zeros without an error, and crashed in the driver with 34 or more.
//!
//! # Element layout
//!
//! f32, i32 and f64 are stored as themselves; **bool is stored as a 32-bit `0` / `1`** (the smallest type every
//! Vulkan 1.1 device can load from a storage buffer without the 8-bit storage extension). f64 needs the device
//! feature `shaderFloat64`; a program using f64 on a device without it fails at [`VulkanExecutable::new`] with
//! [`VulkanError::Unsupported`].
//!
//! # Modules
//!
//! `device` (instance, device, queue and its lock) and `validate` (the checks of a [`ProgramDesc`]) come first;
//! `memory` (buffers, mapping) and `commands` (command buffers, barriers, submission) are shared by `executable` and
//! `session`, so neither reaches into the other's helpers; `session` builds on the executable's program (its
//! signature, views, descriptor sets and dispatches), never the other way round.

mod commands;
mod device;
mod executable;
mod memory;
mod session;
mod validate;

pub use device::{devices, Device, DeviceInfo, DeviceKind, DeviceLimits};
pub use executable::VulkanExecutable;
pub use session::{Residency, StepBytes, VulkanSession};

use ash::vk;
use kiln_ir::{DType, Tensor, TensorType};

/// What can go wrong on the GPU path. The message of each names the thing concerned.
#[derive(Debug, thiserror::Error)]
pub enum VulkanError {
    /// No Vulkan loader (`libvulkan.so.1`) could be opened, or it lacks an entry point.
    #[error("Vulkan is not available: {0}")]
    NoLoader(String),
    /// The loader works but offers no device able to run compute shaders (Vulkan ≥ 1.1 with a compute queue).
    #[error("no Vulkan device: {0}")]
    NoDevice(String),
    /// A Vulkan call failed.
    #[error("Vulkan call {call} failed: {result}")]
    Call {
        call: &'static str,
        result: vk::Result,
    },
    /// The program needs something the device does not offer (f64 without `shaderFloat64`, a buffer larger than the
    /// device allows, …).
    #[error("unsupported on this device ({device}): {what}")]
    Unsupported { device: String, what: String },
    /// A malformed program description (a code generator bug).
    #[error("invalid program `{program}`: {message}")]
    InvalidProgram { program: String, message: String },
    /// A run-time input does not match the program.
    #[error("program `{program}`: {message}")]
    Input { program: String, message: String },
}

/// Shorthand for mapping a failed `vk::Result` to [`VulkanError::Call`].
pub(crate) fn call(call: &'static str) -> impl FnOnce(vk::Result) -> VulkanError {
    move |result| VulkanError::Call { call, result }
}

/// One buffer of a program: a dense row-major tensor.
#[derive(Clone, Debug)]
pub struct BufferDesc {
    /// For errors and debugging.
    pub name: String,
    pub ty: TensorType,
    /// The contents of a constant buffer, uploaded once when the executable is created.
    pub constant: Option<Tensor>,
    /// A temporary's place in the program's arena, `(offset, size)` in bytes of the host layout, from the memory
    /// plan: temporaries whose places overlap are never live at the same time. `None`: its own buffer.
    pub arena: Option<(u64, u64)>,
}

/// One kernel: a SPIR-V compute shader (entry point `main`) and what it is dispatched with.
#[derive(Clone, Debug)]
pub struct DispatchDesc {
    pub name: String,
    /// The SPIR-V module's words.
    pub spirv: Vec<u32>,
    /// `bindings[i]` is the index (into [`ProgramDesc::buffers`]) of the buffer at descriptor set 0, binding `i`.
    pub bindings: Vec<usize>,
    /// Workgroup counts `x, y, z` (each at most the device's limit; 0 skips the dispatch).
    pub groups: [u32; 3],
    /// The module declares the `Float64` capability.
    pub uses_f64: bool,
    /// The module uses `SPV_KHR_float_controls` (`SignedZeroInfNanPreserve`).
    pub uses_float_controls: bool,
}

/// A whole program: its buffers, its dispatches in order, and which buffers are its inputs and outputs.
#[derive(Clone, Debug)]
pub struct ProgramDesc {
    pub name: String,
    pub buffers: Vec<BufferDesc>,
    pub dispatches: Vec<DispatchDesc>,
    /// `(input name, buffer index)`, in the order [`VulkanExecutable::run`] takes tensors.
    pub inputs: Vec<(String, usize)>,
    /// `(output name, buffer index)`, in the order [`VulkanExecutable::run`] returns tensors.
    pub outputs: Vec<(String, usize)>,
    /// The arena's size (the plan's peak) and the alignment of its offsets and sizes, in bytes of the layout the plan
    /// was made for (the device's, from `kiln`; a host-layout plan is scaled up where a type is wider here).
    pub arena_bytes: u64,
    pub arena_alignment: u64,
}

/// Bytes per element on the device (bool is a 32-bit word; see the module doc).
pub fn element_bytes(dtype: DType) -> usize {
    match dtype {
        DType::F32 | DType::I32 | DType::Bool => 4,
        DType::F64 => 8,
    }
}

/// A tensor's elements in the device layout.
fn to_device_bytes(t: &Tensor) -> Vec<u8> {
    use kiln_ir::tensor::TensorData;
    match t.data() {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect(),
    }
}

/// A tensor of type `ty` read back from the device layout (`bytes` holds exactly its elements).
fn from_device_bytes(ty: &TensorType, bytes: &[u8]) -> Tensor {
    use kiln_ir::tensor::TensorData;
    let words4 = || bytes.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
    let data = match ty.dtype {
        DType::F32 => TensorData::F32(words4().map(f32::from_le_bytes).collect()),
        DType::I32 => TensorData::I32(words4().map(i32::from_le_bytes).collect()),
        DType::Bool => TensorData::Bool(words4().map(|w| u32::from_le_bytes(w) != 0).collect()),
        DType::F64 => TensorData::F64(
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
    };
    Tensor::new(ty.clone(), data).expect("the byte count matches the type")
}
