//! A program on a device: buffers, pipelines, and one recorded command buffer replayed per run.
//!
//! Memory, command buffers and the checks of a [`ProgramDesc`] are in [`super::memory`], [`super::commands`] and
//! [`super::validate`], which [`super::VulkanSession`] uses too. What a session needs of the executable itself — its
//! signature and views, its descriptor sets and dispatches, its one-off submissions under its run lock — is the
//! `pub(super)` part below: the session runs the executable's program, so it uses that, never private helpers.

use super::commands::{allocate_command_buffer, cmd_barrier};
use super::device::{Device, DeviceInner};
use super::memory::{align, bytes_of, Allocation};
use super::validate::{arena_layout, check};
use super::{call, from_device_bytes, to_device_bytes, ProgramDesc, VulkanError};
use ash::vk;
use kiln_ir::{Tensor, TensorType};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long [`VulkanExecutable::run`] waits for the device before giving up.
const RUN_TIMEOUT_NS: u64 = 120_000_000_000;

/// What one dispatch is recorded with: its pipeline (index into the executable's), the program buffers at its
/// bindings, and its workgroup counts.
struct DispatchPlan {
    pipeline: usize,
    bindings: Vec<usize>,
    groups: [u32; 3],
}

/// A compiled program on one device; [`run`](VulkanExecutable::run) it any number of times.
pub struct VulkanExecutable {
    device: Device,
    pub(super) name: String,
    pub(super) inputs: Vec<(String, usize)>,
    pub(super) outputs: Vec<(String, usize)>,
    pub(super) types: Vec<TensorType>,
    /// Per program buffer: it is a temporary placed in the arena (bound with its own range).
    in_arena: Vec<bool>,
    /// Per dispatch, in order.
    plan: Vec<DispatchPlan>,
    /// Owned allocations: one per program buffer outside the arena, then the arena (if any).
    buffers: Vec<Allocation>,
    /// Where each program buffer lives: a `VkBuffer` and a byte offset into it.
    pub(super) views: Vec<(vk::Buffer, u64)>,
    arena_bytes: u64,
    staging: Allocation,
    /// Staging offset of each input, then of each output.
    input_offsets: Vec<u64>,
    output_offsets: Vec<u64>,
    shader_modules: Vec<vk::ShaderModule>,
    set_layouts: Vec<vk::DescriptorSetLayout>,
    pipeline_layouts: Vec<vk::PipelineLayout>,
    pipelines: Vec<vk::Pipeline>,
    descriptor_pool: vk::DescriptorPool,
    command_pool: vk::CommandPool,
    command_buffer: vk::CommandBuffer,
    fence: vk::Fence,
    /// Timestamps around the dispatches (query 0 before the first, query `i + 1` after dispatch `i`); null when the
    /// queue cannot write timestamps.
    query_pool: vk::QueryPool,
    dispatches: usize,
    /// One run at a time: runs share the staging buffer, the command buffer and the fence — and with the steps of a
    /// [`VulkanSession`](super::VulkanSession), the outputs, temporaries and data inputs' device buffers.
    pub(super) running: Mutex<()>,
}

impl std::fmt::Debug for VulkanExecutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulkanExecutable")
            .field("name", &self.name)
            .field("device", &self.device.info().name)
            .field("dispatch pipelines", &self.pipelines.len())
            .finish()
    }
}

impl VulkanExecutable {
    /// Creates every device object `program` needs and records its command buffer. Fails if the program needs
    /// what the device lacks (f64, a too-large buffer or dispatch) or is malformed.
    pub fn new(device: &Device, program: ProgramDesc) -> Result<VulkanExecutable, VulkanError> {
        check(device, &program)?;
        let mut exe = VulkanExecutable {
            device: device.clone(),
            name: program.name.clone(),
            inputs: program.inputs.clone(),
            outputs: program.outputs.clone(),
            types: program.buffers.iter().map(|b| b.ty.clone()).collect(),
            in_arena: program.buffers.iter().map(|b| b.arena.is_some()).collect(),
            plan: Vec::new(),
            buffers: Vec::new(),
            views: Vec::new(),
            arena_bytes: 0,
            staging: Allocation::null(),
            input_offsets: Vec::new(),
            output_offsets: Vec::new(),
            shader_modules: Vec::new(),
            set_layouts: Vec::new(),
            pipeline_layouts: Vec::new(),
            pipelines: Vec::new(),
            descriptor_pool: vk::DescriptorPool::null(),
            command_pool: vk::CommandPool::null(),
            command_buffer: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
            query_pool: vk::QueryPool::null(),
            dispatches: program.dispatches.len(),
            running: Mutex::new(()),
        };
        // From here on, whatever was created is destroyed by `Drop` if a later step fails.
        exe.create(&program)?;
        Ok(exe)
    }

    pub(super) fn dev(&self) -> &DeviceInner {
        &self.device.inner
    }

    fn create(&mut self, program: &ProgramDesc) -> Result<(), VulkanError> {
        let storage = vk::BufferUsageFlags::STORAGE_BUFFER
            | vk::BufferUsageFlags::TRANSFER_SRC
            | vk::BufferUsageFlags::TRANSFER_DST;
        let (factor, arena_bytes) = arena_layout(&self.dev().info, program)?;
        for b in &program.buffers {
            if b.arena.is_some() {
                self.views.push((vk::Buffer::null(), 0));
                continue;
            }
            let a = self.dev().allocate(
                bytes_of(&b.ty),
                storage,
                vk::MemoryPropertyFlags::DEVICE_LOCAL,
                false,
            )?;
            self.views.push((a.buffer, 0));
            self.buffers.push(a);
        }
        if arena_bytes > 0 {
            let arena = self.dev().allocate(
                arena_bytes,
                storage,
                vk::MemoryPropertyFlags::DEVICE_LOCAL,
                false,
            )?;
            for (view, b) in self.views.iter_mut().zip(&program.buffers) {
                if let Some((offset, _)) = b.arena {
                    *view = (arena.buffer, offset * factor);
                }
            }
            self.arena_bytes = arena_bytes;
            self.buffers.push(arena);
        }

        // The staging buffer: every input, then every output, each at an aligned offset.
        let mut offset = 0;
        for &(_, b) in &program.inputs {
            self.input_offsets.push(offset);
            offset = align(offset + bytes_of(&self.types[b]));
        }
        for &(_, b) in &program.outputs {
            self.output_offsets.push(offset);
            offset = align(offset + bytes_of(&self.types[b]));
        }
        let transfer = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
        self.staging =
            self.dev()
                .allocate(offset, transfer, vk::MemoryPropertyFlags::HOST_CACHED, true)?;

        self.command_pool = {
            let info =
                vk::CommandPoolCreateInfo::default().queue_family_index(self.dev().queue_family);
            // SAFETY: the device is live and the queue family exists.
            unsafe { self.dev().device.create_command_pool(&info, None) }
                .map_err(call("vkCreateCommandPool"))?
        };
        // SAFETY: the device is live.
        self.fence = unsafe {
            self.dev()
                .device
                .create_fence(&vk::FenceCreateInfo::default(), None)
        }
        .map_err(call("vkCreateFence"))?;

        if self.dev().info.timestamp_bits > 0 {
            let info = vk::QueryPoolCreateInfo::default()
                .query_type(vk::QueryType::TIMESTAMP)
                .query_count(program.dispatches.len() as u32 + 1);
            // SAFETY: the device is live; timestamp query pools are core Vulkan 1.0.
            self.query_pool = unsafe { self.dev().device.create_query_pool(&info, None) }
                .map_err(call("vkCreateQueryPool"))?;
        }
        self.upload_constants(program)?;
        let dispatch_pipelines = self.create_pipelines(program)?;
        self.plan = program
            .dispatches
            .iter()
            .zip(dispatch_pipelines)
            .map(|(dispatch, pipeline)| DispatchPlan {
                pipeline,
                bindings: dispatch.bindings.clone(),
                groups: dispatch.groups,
            })
            .collect();
        let (pool, sets) = self.descriptor_sets(&self.views)?;
        self.descriptor_pool = pool;
        self.record(program, &sets)
    }

    /// Runs `record` in a one-off command buffer and waits for it.
    /// Callers other than creation hold `running` (the command pool and the fence are the runs').
    pub(super) fn submit_once(
        &self,
        record: impl FnOnce(vk::CommandBuffer),
    ) -> Result<(), VulkanError> {
        let d = &self.dev().device;
        // SAFETY: the pool is live and only used from this thread (creation is not shared).
        let cmd = unsafe { allocate_command_buffer(d, self.command_pool)? };
        let begin = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: `cmd` is fresh; `record` only records commands on it; the fence is unsignalled and waited for
        // before it is reset, and the command buffer is freed only after the wait.
        unsafe {
            let result = (|| {
                d.begin_command_buffer(cmd, &begin)
                    .map_err(call("vkBeginCommandBuffer"))?;
                record(cmd);
                d.end_command_buffer(cmd)
                    .map_err(call("vkEndCommandBuffer"))?;
                let cmds = [cmd];
                let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
                self.dev()
                    .submit(&submit, self.fence)
                    .map_err(call("vkQueueSubmit"))?;
                d.wait_for_fences(&[self.fence], true, RUN_TIMEOUT_NS)
                    .map_err(call("vkWaitForFences"))?;
                d.reset_fences(&[self.fence]).map_err(call("vkResetFences"))
            })();
            d.free_command_buffers(self.command_pool, &[cmd]);
            result
        }
    }

    fn upload_constants(&self, program: &ProgramDesc) -> Result<(), VulkanError> {
        let constants: Vec<(usize, Vec<u8>)> = program
            .buffers
            .iter()
            .enumerate()
            .filter_map(|(i, b)| Some((i, to_device_bytes(b.constant.as_ref()?))))
            .filter(|(_, bytes)| !bytes.is_empty())
            .collect();
        let values: Vec<(vk::Buffer, Vec<u8>)> = constants
            .into_iter()
            .map(|(b, bytes)| (self.views[b].0, bytes))
            .collect();
        self.upload_to_buffers(&values)
    }

    /// Copies each `(buffer, bytes)` to the start of that device buffer, through one host-visible staging buffer
    /// (each value at an aligned offset) and one [`submit_once`](Self::submit_once): the upload of the constants at
    /// creation and of a session's resident values. Callers other than creation hold `running`.
    pub(super) fn upload_to_buffers(
        &self,
        values: &[(vk::Buffer, Vec<u8>)],
    ) -> Result<(), VulkanError> {
        let mut offsets = Vec::new();
        let mut total = 0;
        for (_, bytes) in values {
            offsets.push(total);
            total = align(total + bytes.len() as u64);
        }
        if total == 0 {
            return Ok(());
        }
        let staging = self.dev().allocate(
            total,
            vk::BufferUsageFlags::TRANSFER_SRC,
            vk::MemoryPropertyFlags::empty(),
            true,
        )?;
        let result = (|| {
            self.dev().write_mapped(&staging, |mapped| {
                for ((_, bytes), &off) in values.iter().zip(&offsets) {
                    mapped[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
                }
            })?;
            self.submit_once(|cmd| {
                for ((dst, bytes), &off) in values.iter().zip(&offsets) {
                    if bytes.is_empty() {
                        continue;
                    }
                    let region = [vk::BufferCopy::default()
                        .src_offset(off)
                        .size(bytes.len() as u64)];
                    // SAFETY: `cmd` is recording; both buffers are live and the region lies inside each. No run or
                    // step is pending (both wait for completion), so nothing reads the destination meanwhile.
                    unsafe {
                        self.dev()
                            .device
                            .cmd_copy_buffer(cmd, staging.buffer, *dst, &region)
                    };
                }
            })
        })();
        self.dev().free(&staging);
        result
    }

    /// The message for input `name` (of buffer `buffer`) given a tensor `t` of another type, or `Ok` when `t` fits:
    /// a run and a session step check their inputs alike.
    pub(super) fn check_input_type(
        &self,
        name: &str,
        buffer: usize,
        t: &Tensor,
    ) -> Result<(), String> {
        let ty = &self.types[buffer];
        if t.ty() != ty {
            return Err(format!("input `{name}` must be {ty}, got {}", t.ty()));
        }
        Ok(())
    }

    /// Writes each tensor's device bytes at its offset in the host-visible `staging` allocation: the upload of a
    /// run's inputs and of a session step's data inputs.
    pub(super) fn upload_inputs<'t>(
        &self,
        staging: &Allocation,
        inputs: impl IntoIterator<Item = (u64, &'t Tensor)>,
    ) -> Result<(), VulkanError> {
        self.dev().write_mapped(staging, |mapped| {
            for (off, t) in inputs {
                let bytes = to_device_bytes(t);
                mapped[off as usize..off as usize + bytes.len()].copy_from_slice(&bytes);
            }
        })
    }

    /// One pipeline per distinct SPIR-V module; returns each dispatch's pipeline index.
    fn create_pipelines(&mut self, program: &ProgramDesc) -> Result<Vec<usize>, VulkanError> {
        let mut cache: HashMap<&[u32], usize> = HashMap::new();
        let mut per_dispatch = Vec::new();
        for dispatch in &program.dispatches {
            if let Some(&p) = cache.get(dispatch.spirv.as_slice()) {
                per_dispatch.push(p);
                continue;
            }
            let d = &self.device.inner.device;
            let module_info = vk::ShaderModuleCreateInfo::default().code(&dispatch.spirv);
            // SAFETY: the words are a SPIR-V module the code generator validated against Vulkan 1.1's rules.
            let module = unsafe { d.create_shader_module(&module_info, None) }
                .map_err(call("vkCreateShaderModule"))?;
            self.shader_modules.push(module);
            let bindings: Vec<vk::DescriptorSetLayoutBinding> = (0..dispatch.bindings.len())
                .map(|i| {
                    vk::DescriptorSetLayoutBinding::default()
                        .binding(i as u32)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .descriptor_count(1)
                        .stage_flags(vk::ShaderStageFlags::COMPUTE)
                })
                .collect();
            let layout_info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
            // SAFETY: the device is live; the bindings are distinct.
            let set_layout = unsafe { d.create_descriptor_set_layout(&layout_info, None) }
                .map_err(call("vkCreateDescriptorSetLayout"))?;
            self.set_layouts.push(set_layout);
            let set_layouts = [set_layout];
            let pl_info = vk::PipelineLayoutCreateInfo::default().set_layouts(&set_layouts);
            // SAFETY: `set_layout` is live.
            let pipeline_layout = unsafe { d.create_pipeline_layout(&pl_info, None) }
                .map_err(call("vkCreatePipelineLayout"))?;
            self.pipeline_layouts.push(pipeline_layout);
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main");
            let info = [vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(pipeline_layout)];
            // SAFETY: the module declares a GLCompute entry point `main` whose bindings match the layout.
            let pipeline =
                unsafe { d.create_compute_pipelines(vk::PipelineCache::null(), &info, None) }
                    .map_err(|(_, e)| VulkanError::Call {
                        call: "vkCreateComputePipelines",
                        result: e,
                    })?[0];
            self.pipelines.push(pipeline);
            cache.insert(&dispatch.spirv, self.pipelines.len() - 1);
            per_dispatch.push(self.pipelines.len() - 1);
        }
        Ok(per_dispatch)
    }

    /// A descriptor pool and one set per dispatch binding the program's buffers where `views` says they live (the
    /// executable's own views, or a session's with its resident inputs swapped in). The caller owns the pool.
    pub(super) fn descriptor_sets(
        &self,
        views: &[(vk::Buffer, u64)],
    ) -> Result<(vk::DescriptorPool, Vec<vk::DescriptorSet>), VulkanError> {
        let total: usize = self.plan.iter().map(|d| d.bindings.len()).sum();
        if self.plan.is_empty() || total == 0 {
            return Ok((
                vk::DescriptorPool::null(),
                vec![vk::DescriptorSet::null(); self.plan.len()],
            ));
        }
        let d = &self.device.inner.device;
        let sizes = [vk::DescriptorPoolSize::default()
            .ty(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(total as u32)];
        let pool_info = vk::DescriptorPoolCreateInfo::default()
            .max_sets(self.plan.len() as u32)
            .pool_sizes(&sizes);
        // SAFETY: the device is live.
        let pool = unsafe { d.create_descriptor_pool(&pool_info, None) }
            .map_err(call("vkCreateDescriptorPool"))?;
        let layouts: Vec<vk::DescriptorSetLayout> = self
            .plan
            .iter()
            .map(|p| self.set_layouts[p.pipeline])
            .collect();
        let alloc = vk::DescriptorSetAllocateInfo::default()
            .descriptor_pool(pool)
            .set_layouts(&layouts);
        // SAFETY: the pool holds exactly enough sets and descriptors for these layouts.
        let sets = match unsafe { d.allocate_descriptor_sets(&alloc) } {
            Ok(sets) => sets,
            Err(e) => {
                // SAFETY: the pool is unused.
                unsafe { d.destroy_descriptor_pool(pool, None) };
                return Err(VulkanError::Call {
                    call: "vkAllocateDescriptorSets",
                    result: e,
                });
            }
        };
        let infos: Vec<Vec<vk::DescriptorBufferInfo>> = self
            .plan
            .iter()
            .map(|dispatch| {
                dispatch
                    .bindings
                    .iter()
                    .map(|&b| {
                        let (buffer, offset) = views[b];
                        // An arena view gets its own range (at least 4 bytes: a range is never empty; the arena
                        // has room, see `arena_layout`); an own buffer the whole of it.
                        let range = if self.in_arena[b] {
                            bytes_of(&self.types[b]).max(4)
                        } else {
                            vk::WHOLE_SIZE
                        };
                        vk::DescriptorBufferInfo::default()
                            .buffer(buffer)
                            .offset(offset)
                            .range(range)
                    })
                    .collect()
            })
            .collect();
        let writes: Vec<vk::WriteDescriptorSet> = sets
            .iter()
            .zip(&infos)
            .flat_map(|(&set, infos)| {
                infos.iter().enumerate().map(move |(i, info)| {
                    vk::WriteDescriptorSet::default()
                        .dst_set(set)
                        .dst_binding(i as u32)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .buffer_info(std::slice::from_ref(info))
                })
            })
            .collect();
        // SAFETY: every set, binding and buffer named is live, and no command buffer using the sets is pending.
        unsafe { d.update_descriptor_sets(&writes, &[]) };
        Ok((pool, sets))
    }

    /// Records every dispatch into `cmd` (recording) with `sets` (from [`Self::descriptor_sets`]), a shader-write →
    /// shader-read/write barrier after each; `after(i)` runs after dispatch `i` (and its barrier) is recorded.
    pub(super) fn record_dispatches(
        &self,
        cmd: vk::CommandBuffer,
        sets: &[vk::DescriptorSet],
        mut after: impl FnMut(u32),
    ) {
        let d = &self.device.inner.device;
        let shader_rw = vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE;
        for (i, (dispatch, &set)) in self.plan.iter().zip(sets).enumerate() {
            // No points, or no buffers (a kernel whose rows are all empty): nothing to do. A program without
            // bindings has null sets (`descriptor_sets`), which must not be bound.
            if dispatch.groups.contains(&0) || dispatch.bindings.is_empty() {
                after(i as u32);
                continue;
            }
            let p = dispatch.pipeline;
            // SAFETY: `cmd` is recording; the pipeline, its layout and the set (written with live buffers that
            // match the shader's bindings) are live.
            unsafe {
                d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, self.pipelines[p]);
                d.cmd_bind_descriptor_sets(
                    cmd,
                    vk::PipelineBindPoint::COMPUTE,
                    self.pipeline_layouts[p],
                    0,
                    &[set],
                    &[],
                );
                let [x, y, z] = dispatch.groups;
                d.cmd_dispatch(cmd, x, y, z);
            }
            // A kernel sees every store of the kernels before it.
            cmd_barrier(
                d,
                cmd,
                vk::AccessFlags::SHADER_WRITE,
                shader_rw,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::COMPUTE_SHADER,
            );
            after(i as u32);
        }
    }

    /// Records the whole program: upload copies, dispatches with barriers between them, download copies.
    fn record(
        &mut self,
        program: &ProgramDesc,
        sets: &[vk::DescriptorSet],
    ) -> Result<(), VulkanError> {
        let d = &self.device.inner.device;
        // SAFETY: the pool is live.
        self.command_buffer = unsafe { allocate_command_buffer(d, self.command_pool)? };
        let cmd = self.command_buffer;
        let barrier = |src: vk::AccessFlags,
                       dst: vk::AccessFlags,
                       src_stage: vk::PipelineStageFlags,
                       dst_stage: vk::PipelineStageFlags| {
            cmd_barrier(d, cmd, src, dst, src_stage, dst_stage)
        };
        let copy =
            |src: vk::Buffer, src_offset: u64, dst: vk::Buffer, dst_offset: u64, size: u64| {
                if size > 0 {
                    let region = [vk::BufferCopy::default()
                        .src_offset(src_offset)
                        .dst_offset(dst_offset)
                        .size(size)];
                    // SAFETY: `cmd` is recording; both buffers are live and the region lies inside each.
                    unsafe { d.cmd_copy_buffer(cmd, src, dst, &region) };
                }
            };
        let (transfer, compute, host) = (
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::COMPUTE_SHADER,
            vk::PipelineStageFlags::HOST,
        );
        let shader_rw = vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE;
        // SAFETY: `cmd` was just allocated.
        unsafe { d.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default()) }
            .map_err(call("vkBeginCommandBuffer"))?;
        for (&(_, b), &off) in program.inputs.iter().zip(&self.input_offsets) {
            copy(
                self.staging.buffer,
                off,
                self.views[b].0,
                self.views[b].1,
                bytes_of(&self.types[b]),
            );
        }
        barrier(
            vk::AccessFlags::TRANSFER_WRITE,
            shader_rw,
            transfer,
            compute,
        );
        let timed = self.query_pool != vk::QueryPool::null();
        let stamp = |query: u32| {
            if timed {
                // SAFETY: `cmd` is recording; the pool is live, has `dispatches + 1` queries and was reset (below)
                // before this command in the same command buffer. COMPUTE_SHADER: the timestamp is written once
                // the compute work before it (ordered by the barriers) has finished.
                unsafe {
                    d.cmd_write_timestamp(
                        cmd,
                        vk::PipelineStageFlags::COMPUTE_SHADER,
                        self.query_pool,
                        query,
                    )
                };
            }
        };
        if timed {
            // SAFETY: `cmd` is recording, outside any render pass; the pool is live.
            unsafe {
                d.cmd_reset_query_pool(cmd, self.query_pool, 0, program.dispatches.len() as u32 + 1)
            };
        }
        stamp(0);
        self.record_dispatches(cmd, sets, |i| stamp(i + 1));
        barrier(
            vk::AccessFlags::SHADER_WRITE | vk::AccessFlags::TRANSFER_WRITE,
            vk::AccessFlags::TRANSFER_READ,
            compute | transfer,
            transfer,
        );
        for (&(_, b), &off) in program.outputs.iter().zip(&self.output_offsets) {
            copy(
                self.views[b].0,
                self.views[b].1,
                self.staging.buffer,
                off,
                bytes_of(&self.types[b]),
            );
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

    /// The device this executable runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes of the device arena holding the temporaries (0 when the program places none there).
    pub fn arena_bytes(&self) -> u64 {
        self.arena_bytes
    }

    /// The queue writes timestamps: [`run_profiled`](VulkanExecutable::run_profiled) times each dispatch.
    pub fn has_timestamps(&self) -> bool {
        self.query_pool != vk::QueryPool::null()
    }

    /// Runs the program on `inputs` (in program input order); returns its outputs (in output order).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, VulkanError> {
        Ok(self.run_profiled(inputs)?.0)
    }

    /// [`run`](VulkanExecutable::run), plus each dispatch's device time from the timestamps written around it
    /// (`vkCmdWriteTimestamp` × `timestampPeriod`), in dispatch order (0 for an empty dispatch) — `None` when the
    /// queue has no timestamps ([`has_timestamps`](VulkanExecutable::has_timestamps)).
    pub fn run_profiled(
        &self,
        inputs: &[Tensor],
    ) -> Result<(Vec<Tensor>, Option<Vec<std::time::Duration>>), VulkanError> {
        let input_error = |message: String| VulkanError::Input {
            program: self.name.clone(),
            message,
        };
        if inputs.len() != self.inputs.len() {
            return Err(input_error(format!(
                "takes {} input(s), got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        for ((name, b), t) in self.inputs.iter().zip(inputs) {
            self.check_input_type(name, *b, t).map_err(input_error)?;
        }
        let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        self.upload_inputs(
            &self.staging,
            self.input_offsets.iter().copied().zip(inputs),
        )?;
        let d = &self.dev().device;
        // SAFETY: the command buffer was fully recorded at creation and is not pending (the previous run waited
        // for the fence, and `running` serialises runs); the fence is unsignalled (reset after every wait).
        unsafe {
            self.dev()
                .submit_and_wait(self.command_buffer, self.fence, RUN_TIMEOUT_NS)?
        };
        let times = if self.has_timestamps() {
            let mut ticks = vec![0u64; self.dispatches + 1];
            // SAFETY: the pool has `dispatches + 1` queries, all written by the submission just waited for; 64-bit
            // results fill `ticks` exactly.
            unsafe {
                d.get_query_pool_results(
                    self.query_pool,
                    0,
                    &mut ticks,
                    vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
                )
            }
            .map_err(call("vkGetQueryPoolResults"))?;
            let info = &self.dev().info;
            let mask = if info.timestamp_bits >= 64 {
                u64::MAX
            } else {
                (1u64 << info.timestamp_bits) - 1
            };
            Some(
                ticks
                    .windows(2)
                    .map(|w| {
                        // Only the valid bits count; a counter that wrapped between the two still subtracts right.
                        let dt = (w[1] & mask).wrapping_sub(w[0] & mask) & mask;
                        std::time::Duration::from_nanos(
                            (dt as f64 * info.timestamp_period_ns as f64) as u64,
                        )
                    })
                    .collect(),
            )
        } else {
            None
        };
        let outputs = self.dev().write_mapped(&self.staging, |mapped| {
            self.outputs
                .iter()
                .zip(&self.output_offsets)
                .map(|((_, b), &off)| {
                    let ty = &self.types[*b];
                    let off = off as usize;
                    from_device_bytes(ty, &mapped[off..off + bytes_of(ty) as usize])
                })
                .collect()
        })?;
        Ok((outputs, times))
    }
}

impl Drop for VulkanExecutable {
    fn drop(&mut self) {
        let inner = &self.device.inner;
        let d = &inner.device;
        // Runs wait for their fence before returning; waiting for the queue covers a run that failed half-way.
        inner.wait_queue_idle();
        // SAFETY: nothing submitted is pending (above). Every handle was created on `d` (null handles are ignored).
        unsafe {
            for &p in &self.pipelines {
                d.destroy_pipeline(p, None);
            }
            for &l in &self.pipeline_layouts {
                d.destroy_pipeline_layout(l, None);
            }
            for &l in &self.set_layouts {
                d.destroy_descriptor_set_layout(l, None);
            }
            for &m in &self.shader_modules {
                d.destroy_shader_module(m, None);
            }
            d.destroy_descriptor_pool(self.descriptor_pool, None);
            d.destroy_command_pool(self.command_pool, None);
            d.destroy_fence(self.fence, None);
            d.destroy_query_pool(self.query_pool, None);
        }
        for a in &self.buffers {
            self.dev().free(a);
        }
        self.dev().free(&self.staging);
    }
}
