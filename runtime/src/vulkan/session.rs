//! A training session on the device: parameters and optimizer state stay in device buffers across steps.
//!
//! The GPU counterpart of [`crate::Session`], with the same semantics: the inputs that some output replaces
//! (`new.w` aliasing `w`, given by a [`Residency`]) are *resident* — the session owns a device-local buffer for each,
//! created at [`VulkanSession::new`] from the initial values (a missing `state` input starts at zero; any other missing
//! one is an error naming it). Each [`VulkanSession::step`] uploads only the other inputs (the data) and downloads only
//! the outputs that replace nothing (the loss, …); the updated values never leave the device.
//!
//! # How a step runs
//!
//! The session records **one command buffer** at creation and submits it once per step: copies of the data inputs
//! from the session's host-visible staging buffer into the executable's input buffers; the executable's dispatches,
//! bound through the session's own descriptor sets, which bind each resident input's session buffer in place of the
//! executable's; copies of the returned outputs into the staging buffer; then a device-side `vkCmdCopyBuffer` from
//! each aliased output's buffer over its input's resident buffer. Barriers order each phase after the one before
//! (shader writes → transfer reads; the returned outputs' and the aliased outputs' copies read before any resident
//! buffer is overwritten, so returned outputs hold the values *before* the update, as on the host, and
//! `new.a = b, new.b = a` swaps, through a device scratch buffer when an output is itself a resident input). The
//! next step's first barrier makes the copies visible to its shaders.
//!
//! The SPIR-V program gives every output its own buffer (the memory plan's in-place facts are not carried into a
//! [`ProgramDesc`](super::ProgramDesc)), so no kernel writes a resident buffer: updates are always the final copies.
//!
//! The outputs, temporaries and data-input buffers are the executable's: a step holds the executable's run lock
//! from submission to completion, so [`VulkanExecutable::run`] keeps working, unchanged, beside a session (its runs
//! never touch the session's resident buffers). [`VulkanSession::read`] and [`VulkanSession::write`] move one
//! resident tensor on demand, through a staging buffer made for the purpose.

use super::commands::{allocate_command_buffer, cmd_barrier};
use super::memory::{align, bytes_of, Allocation};
use super::{call, from_device_bytes, to_device_bytes, VulkanError, VulkanExecutable};
use ash::vk;
use kiln_ir::{Role, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// How long a step waits for the device before giving up.
const STEP_TIMEOUT_NS: u64 = 120_000_000_000;

/// Which outputs replace which inputs, and which inputs are optimizer state: what a [`VulkanSession`] needs beyond
/// the executable (a [`ProgramDesc`](super::ProgramDesc) names inputs and outputs only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Residency {
    /// `(output, input)`: after each step the output's value replaces the input's, which is therefore resident.
    pub aliases: Vec<(String, String)>,
    /// Inputs of role `state`: resident ones start at zero when no initial value is given.
    pub state: Vec<String>,
}

impl Residency {
    /// The aliases and `state` inputs of `graph` (the graph the executable was compiled from).
    pub fn of_graph(graph: &kiln_ir::Graph) -> Residency {
        Residency {
            aliases: graph
                .outputs()
                .iter()
                .filter_map(|o| Some((o.name.to_string(), o.aliases.as_deref()?.to_string())))
                .collect(),
            state: graph
                .inputs()
                .filter(|i| i.role == Role::State)
                .map(|i| i.name.to_string())
                .collect(),
        }
    }
}

/// Host ↔ device traffic of one [`VulkanSession::step`], in bytes of the device layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepBytes {
    /// The data inputs.
    pub upload: u64,
    /// The outputs that replace no input.
    pub download: u64,
}

/// A program on the device with its resident inputs; see the module doc.
pub struct VulkanSession {
    exe: Arc<VulkanExecutable>,
    /// Per input: its device buffer if it is resident.
    resident: Vec<Option<Allocation>>,
    /// The inputs fed each step, in input order, with their staging offsets.
    data_inputs: Vec<(usize, u64)>,
    /// The outputs each step returns (those replacing no input), in output order, with their staging offsets.
    returned: Vec<(usize, u64)>,
    staging: Allocation,
    /// Device scratch for aliased outputs that are themselves resident inputs (empty when none is).
    swap: Allocation,
    descriptor_pool: vk::DescriptorPool,
    command_pool: vk::CommandPool,
    command_buffer: vk::CommandBuffer,
    fence: vk::Fence,
    bytes: StepBytes,
}

impl std::fmt::Debug for VulkanSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulkanSession")
            .field("executable", &self.exe)
            .field("data inputs", &self.data_input_names())
            .field("bytes per step", &self.bytes)
            .finish()
    }
}

impl VulkanSession {
    /// A session on `exe`, whose outputs replace inputs as `residency` says, starting from `initial` values of the
    /// resident inputs (by name; other entries are ignored). A missing resident `state` input starts at zero; any
    /// other missing one, a value of the wrong type, or a `residency` naming what the program lacks is an error.
    pub fn new(
        exe: impl Into<Arc<VulkanExecutable>>,
        residency: &Residency,
        initial: &HashMap<String, Tensor>,
    ) -> Result<VulkanSession, VulkanError> {
        let exe = exe.into();
        let invalid = |message: String| VulkanError::Input {
            program: exe.name.clone(),
            message,
        };
        // Per output: the input it replaces.
        let mut alias_of: Vec<Option<usize>> = vec![None; exe.outputs.len()];
        for (output, input) in &residency.aliases {
            let o = exe
                .outputs
                .iter()
                .position(|(n, _)| n == output)
                .ok_or_else(|| invalid(format!("no output `{output}` (named as an alias)")))?;
            let i = exe
                .inputs
                .iter()
                .position(|(n, _)| n == input)
                .ok_or_else(|| invalid(format!("no input `{input}` (aliased by `{output}`)")))?;
            let (out_ty, in_ty) = (&exe.types[exe.outputs[o].1], &exe.types[exe.inputs[i].1]);
            if out_ty != in_ty {
                return Err(invalid(format!(
                    "output `{output}` ({out_ty}) cannot replace input `{input}` ({in_ty})"
                )));
            }
            if alias_of[o].is_some() || alias_of.contains(&Some(i)) {
                return Err(invalid(format!(
                    "alias `{output}` → `{input}` given twice or with another for the same input or output"
                )));
            }
            alias_of[o] = Some(i);
        }

        let mut session = VulkanSession {
            exe: Arc::clone(&exe),
            resident: (0..exe.inputs.len()).map(|_| None).collect(),
            data_inputs: Vec::new(),
            returned: Vec::new(),
            staging: Allocation::null(),
            swap: Allocation::null(),
            descriptor_pool: vk::DescriptorPool::null(),
            command_pool: vk::CommandPool::null(),
            command_buffer: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
            bytes: StepBytes {
                upload: 0,
                download: 0,
            },
        };
        // From here on, whatever was created is destroyed by `Drop` if a later step fails.
        let storage = vk::BufferUsageFlags::STORAGE_BUFFER
            | vk::BufferUsageFlags::TRANSFER_SRC
            | vk::BufferUsageFlags::TRANSFER_DST;
        let mut uploads = Vec::new();
        for i in alias_of.iter().flatten().copied() {
            let (name, b) = &exe.inputs[i];
            let ty = &exe.types[*b];
            let value = match initial.get(name) {
                Some(t) if t.ty() == ty => to_device_bytes(t),
                Some(t) => {
                    return Err(invalid(format!(
                        "initial value of `{name}` must be {ty}, got {}",
                        t.ty()
                    )))
                }
                None if residency.state.contains(name) => vec![0; bytes_of(ty) as usize],
                None => {
                    return Err(invalid(format!(
                        "no initial value for resident input `{name}`"
                    )))
                }
            };
            session.resident[i] = Some(exe.dev().allocate(
                bytes_of(ty),
                storage,
                vk::MemoryPropertyFlags::DEVICE_LOCAL,
                false,
            )?);
            uploads.push((i, value));
        }
        session.upload(uploads)?;

        // The staging buffer: every data input, then every returned output, each at an aligned offset.
        let mut offset = 0;
        for (i, (_, b)) in exe.inputs.iter().enumerate() {
            if session.resident[i].is_none() {
                session.data_inputs.push((i, offset));
                session.bytes.upload += bytes_of(&exe.types[*b]);
                offset = align(offset + bytes_of(&exe.types[*b]));
            }
        }
        for (o, (_, b)) in exe.outputs.iter().enumerate() {
            if alias_of[o].is_none() {
                session.returned.push((o, offset));
                session.bytes.download += bytes_of(&exe.types[*b]);
                offset = align(offset + bytes_of(&exe.types[*b]));
            }
        }
        let transfer = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
        session.staging =
            exe.dev()
                .allocate(offset, transfer, vk::MemoryPropertyFlags::HOST_CACHED, true)?;

        // Where each program buffer lives for the session: the resident inputs' buffers in place of the executable's.
        let mut views = exe.views.clone();
        for (i, (_, b)) in exe.inputs.iter().enumerate() {
            if let Some(a) = &session.resident[i] {
                views[*b] = (a.buffer, 0);
            }
        }
        // Aliased outputs whose buffer is a resident input's go through the scratch buffer, at these offsets.
        let mut swap_offsets = vec![None; exe.outputs.len()];
        let mut swap_bytes = 0;
        for (o, (_, b)) in exe.outputs.iter().enumerate() {
            let is_resident = exe
                .inputs
                .iter()
                .enumerate()
                .any(|(i, (_, ib))| ib == b && session.resident[i].is_some());
            if alias_of[o].is_some() && is_resident {
                swap_offsets[o] = Some(swap_bytes);
                swap_bytes = align(swap_bytes + bytes_of(&exe.types[*b]));
            }
        }
        if swap_bytes > 0 {
            session.swap = exe.dev().allocate(
                swap_bytes,
                transfer,
                vk::MemoryPropertyFlags::DEVICE_LOCAL,
                false,
            )?;
        }

        let d = &exe.dev().device;
        let info = vk::CommandPoolCreateInfo::default().queue_family_index(exe.dev().queue_family);
        // SAFETY: the device is live and the queue family exists.
        session.command_pool =
            unsafe { d.create_command_pool(&info, None) }.map_err(call("vkCreateCommandPool"))?;
        // SAFETY: the device is live.
        session.fence = unsafe { d.create_fence(&vk::FenceCreateInfo::default(), None) }
            .map_err(call("vkCreateFence"))?;
        let (pool, sets) = exe.descriptor_sets(&views)?;
        session.descriptor_pool = pool;
        session.record(&views, &sets, &alias_of, &swap_offsets)?;
        Ok(session)
    }

    /// Records the step (see the module doc).
    fn record(
        &mut self,
        views: &[(vk::Buffer, u64)],
        sets: &[vk::DescriptorSet],
        alias_of: &[Option<usize>],
        swap_offsets: &[Option<u64>],
    ) -> Result<(), VulkanError> {
        let exe = &self.exe;
        let d = &exe.dev().device;
        // SAFETY: the pool is live and only this session uses it.
        self.command_buffer = unsafe { allocate_command_buffer(d, self.command_pool)? };
        let cmd = self.command_buffer;
        let barrier =
            |src, dst, src_stage, dst_stage| cmd_barrier(d, cmd, src, dst, src_stage, dst_stage);
        let copy = |src: (vk::Buffer, u64), dst: (vk::Buffer, u64), size: u64| {
            if size > 0 {
                let region = [vk::BufferCopy::default()
                    .src_offset(src.1)
                    .dst_offset(dst.1)
                    .size(size)];
                // SAFETY: `cmd` is recording; both buffers are live and the region lies inside each.
                unsafe { d.cmd_copy_buffer(cmd, src.0, dst.0, &region) };
            }
        };
        let (transfer, compute, host) = (
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::COMPUTE_SHADER,
            vk::PipelineStageFlags::HOST,
        );
        let shader_rw = vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE;
        let staging = self.staging.buffer;
        // SAFETY: `cmd` was just allocated.
        unsafe { d.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default()) }
            .map_err(call("vkBeginCommandBuffer"))?;
        for &(i, off) in &self.data_inputs {
            let b = exe.inputs[i].1;
            copy((staging, off), views[b], bytes_of(&exe.types[b]));
        }
        // Also makes the previous step's (or a `write`'s) copies into the resident buffers visible to the shaders.
        barrier(
            vk::AccessFlags::TRANSFER_WRITE,
            shader_rw,
            transfer,
            compute,
        );
        exe.record_dispatches(cmd, sets, |_| {});
        barrier(
            vk::AccessFlags::SHADER_WRITE | vk::AccessFlags::TRANSFER_WRITE,
            vk::AccessFlags::TRANSFER_READ,
            compute | transfer,
            transfer,
        );
        for &(o, off) in &self.returned {
            let b = exe.outputs[o].1;
            copy(views[b], (staging, off), bytes_of(&exe.types[b]));
        }
        for (o, off) in swap_offsets.iter().enumerate() {
            if let Some(off) = *off {
                let b = exe.outputs[o].1;
                copy(views[b], (self.swap.buffer, off), bytes_of(&exe.types[b]));
            }
        }
        // Every read of a resident buffer above happens before it is overwritten below; the scratch copies are
        // visible to the reads below.
        barrier(
            vk::AccessFlags::TRANSFER_WRITE,
            vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE,
            transfer,
            transfer,
        );
        for (o, target) in alias_of.iter().enumerate() {
            let Some(i) = *target else { continue };
            let b = exe.outputs[o].1;
            let src = match swap_offsets[o] {
                Some(off) => (self.swap.buffer, off),
                None => views[b],
            };
            let dst = self.resident[i]
                .as_ref()
                .expect("aliased inputs are resident");
            copy(src, (dst.buffer, 0), bytes_of(&exe.types[b]));
        }
        barrier(
            vk::AccessFlags::TRANSFER_WRITE,
            vk::AccessFlags::HOST_READ,
            transfer,
            host,
        );
        // SAFETY: `cmd` is recording.
        unsafe { d.end_command_buffer(cmd) }.map_err(call("vkEndCommandBuffer"))
    }

    fn input_error(&self, message: String) -> VulkanError {
        VulkanError::Input {
            program: self.exe.name.clone(),
            message,
        }
    }

    /// The names of the inputs [`VulkanSession::step`] takes, in order.
    pub fn data_input_names(&self) -> Vec<&str> {
        self.data_inputs
            .iter()
            .map(|&(i, _)| self.exe.inputs[i].0.as_str())
            .collect()
    }

    /// The names of the outputs [`VulkanSession::step`] returns (those replacing no input), in order.
    pub fn output_names(&self) -> Vec<&str> {
        self.returned
            .iter()
            .map(|&(o, _)| self.exe.outputs[o].0.as_str())
            .collect()
    }

    /// The names of the resident inputs, in input order.
    pub fn resident_names(&self) -> Vec<&str> {
        self.exe
            .inputs
            .iter()
            .zip(&self.resident)
            .filter(|(_, r)| r.is_some())
            .map(|((name, _), _)| name.as_str())
            .collect()
    }

    /// What each step uploads and downloads: the data inputs and the returned outputs, nothing else.
    pub fn bytes_per_step(&self) -> StepBytes {
        self.bytes
    }

    pub fn executable(&self) -> &VulkanExecutable {
        &self.exe
    }

    /// Runs one step on `data` (the non-resident inputs, in [`data_input_names`](Self::data_input_names) order):
    /// uploads them, runs the program, replaces each resident input by its output on the device, and returns the
    /// other outputs (in [`output_names`](Self::output_names) order), as computed from the inputs before the update.
    pub fn step(&mut self, data: &[Tensor]) -> Result<Vec<Tensor>, VulkanError> {
        let exe = &self.exe;
        if data.len() != self.data_inputs.len() {
            return Err(self.input_error(format!(
                "a step takes {} data input(s) ({}), got {}",
                self.data_inputs.len(),
                self.data_input_names().join(", "),
                data.len()
            )));
        }
        for (&(i, _), t) in self.data_inputs.iter().zip(data) {
            let (name, b) = &exe.inputs[i];
            exe.check_input_type(name, *b, t)
                .map_err(|message| self.input_error(message))?;
        }
        let _one_at_a_time = exe.running.lock().unwrap_or_else(|e| e.into_inner());
        exe.upload_inputs(
            &self.staging,
            self.data_inputs.iter().map(|&(_, off)| off).zip(data),
        )?;
        // SAFETY: the command buffer was fully recorded at creation and is not pending (the previous step waited for
        // the fence; `&mut self` serialises steps); the fence is unsignalled (reset after every wait). The run lock is
        // held, so no run of the executable uses its buffers meanwhile, nor the queue from this executable.
        unsafe {
            exe.dev()
                .submit_and_wait(self.command_buffer, self.fence, STEP_TIMEOUT_NS)?
        };
        exe.dev().write_mapped(&self.staging, |mapped| {
            self.returned
                .iter()
                .map(|&(o, off)| {
                    let ty = &exe.types[exe.outputs[o].1];
                    let off = off as usize;
                    from_device_bytes(ty, &mapped[off..off + bytes_of(ty) as usize])
                })
                .collect()
        })
    }

    /// The input index of resident input `name`, or an error naming it.
    fn resident_index(&self, name: &str) -> Result<usize, VulkanError> {
        self.exe
            .inputs
            .iter()
            .position(|(n, _)| n == name)
            .filter(|&i| self.resident[i].is_some())
            .ok_or_else(|| self.input_error(format!("`{name}` is not a resident input")))
    }

    /// Downloads the current value of resident input `name` (a parameter or optimizer state).
    pub fn read(&self, name: &str) -> Result<Tensor, VulkanError> {
        let i = self.resident_index(name)?;
        let exe = &self.exe;
        let ty = &exe.types[exe.inputs[i].1];
        let size = bytes_of(ty);
        let src = self.resident[i].as_ref().expect("resident").buffer;
        let staging = exe.dev().allocate(
            size,
            vk::BufferUsageFlags::TRANSFER_DST,
            vk::MemoryPropertyFlags::HOST_CACHED,
            true,
        )?;
        let result = (|| {
            let _one_at_a_time = exe.running.lock().unwrap_or_else(|e| e.into_inner());
            let d = &exe.dev().device;
            exe.submit_once(|cmd| {
                // The last step's copies into the resident buffer are visible to this one.
                cmd_barrier(
                    d,
                    cmd,
                    vk::AccessFlags::TRANSFER_WRITE,
                    vk::AccessFlags::TRANSFER_READ,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::PipelineStageFlags::TRANSFER,
                );
                if size > 0 {
                    let region = [vk::BufferCopy::default().size(size)];
                    // SAFETY: `cmd` is recording; both buffers are live and `size` bytes long.
                    unsafe { d.cmd_copy_buffer(cmd, src, staging.buffer, &region) };
                }
                cmd_barrier(
                    d,
                    cmd,
                    vk::AccessFlags::TRANSFER_WRITE,
                    vk::AccessFlags::HOST_READ,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::PipelineStageFlags::HOST,
                );
            })?;
            exe.dev().write_mapped(&staging, |mapped| {
                from_device_bytes(ty, &mapped[..size as usize])
            })
        })();
        exe.dev().free(&staging);
        result
    }

    /// Uploads `value` as resident input `name`'s value for the following steps.
    pub fn write(&mut self, name: &str, value: &Tensor) -> Result<(), VulkanError> {
        let i = self.resident_index(name)?;
        let ty = &self.exe.types[self.exe.inputs[i].1];
        if value.ty() != ty {
            return Err(
                self.input_error(format!("input `{name}` must be {ty}, got {}", value.ty()))
            );
        }
        self.upload(vec![(i, to_device_bytes(value))])
    }

    /// Copies each `(input, bytes)` into that resident input's buffer, through one staging buffer and one submission.
    fn upload(&self, values: Vec<(usize, Vec<u8>)>) -> Result<(), VulkanError> {
        let exe = &self.exe;
        let values: Vec<(vk::Buffer, Vec<u8>)> = values
            .into_iter()
            .map(|(i, bytes)| (self.resident[i].as_ref().expect("resident").buffer, bytes))
            .collect();
        let _one_at_a_time = exe.running.lock().unwrap_or_else(|e| e.into_inner());
        exe.upload_to_buffers(&values)
    }
}

impl Drop for VulkanSession {
    fn drop(&mut self) {
        let exe = &self.exe;
        let d = &exe.dev().device;
        // No run of the executable submits to the queue while it is waited for.
        let _one_at_a_time = exe.running.lock().unwrap_or_else(|e| e.into_inner());
        // Steps wait for their fence before returning; waiting for the queue covers a step that failed half-way.
        exe.dev().wait_queue_idle();
        // SAFETY: nothing submitted is pending (above). Every handle was created on `d` (null handles are ignored).
        unsafe {
            d.destroy_descriptor_pool(self.descriptor_pool, None);
            d.destroy_command_pool(self.command_pool, None);
            d.destroy_fence(self.fence, None);
        }
        for a in self.resident.iter().flatten() {
            exe.dev().free(a);
        }
        exe.dev().free(&self.staging);
        exe.dev().free(&self.swap);
    }
}
