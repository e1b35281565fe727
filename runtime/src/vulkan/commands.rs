//! Command buffers shared by [`super::VulkanExecutable`] and [`super::VulkanSession`]: allocating one, recording a
//! global barrier, and submitting a prerecorded one and waiting for it.
//!
//! Like [`super::memory`], these belong to no executable: both the executable and the session record and submit
//! their own command buffers with them.

use super::device::DeviceInner;
use super::{call, VulkanError};
use ash::vk;

/// Allocates one primary command buffer from `pool`: for the recorded program of an executable and of a session, and
/// for one-off submissions.
///
/// # Safety
/// `pool` is a live pool of `d`, not used from another thread meanwhile.
pub(super) unsafe fn allocate_command_buffer(
    d: &ash::Device,
    pool: vk::CommandPool,
) -> Result<vk::CommandBuffer, VulkanError> {
    let info = vk::CommandBufferAllocateInfo::default()
        .command_pool(pool)
        .level(vk::CommandBufferLevel::PRIMARY)
        .command_buffer_count(1);
    // SAFETY: the caller's contract (above); exactly one buffer is asked for, so `[0]` exists.
    let buffers =
        unsafe { d.allocate_command_buffers(&info) }.map_err(call("vkAllocateCommandBuffers"))?;
    Ok(buffers[0])
}

/// Records a global memory barrier into `cmd` (recording).
pub(super) fn cmd_barrier(
    d: &ash::Device,
    cmd: vk::CommandBuffer,
    src: vk::AccessFlags,
    dst: vk::AccessFlags,
    src_stage: vk::PipelineStageFlags,
    dst_stage: vk::PipelineStageFlags,
) {
    let b = [vk::MemoryBarrier::default()
        .src_access_mask(src)
        .dst_access_mask(dst)];
    // SAFETY: the caller's `cmd` is in the recording state, outside any render pass.
    unsafe {
        d.cmd_pipeline_barrier(
            cmd,
            src_stage,
            dst_stage,
            vk::DependencyFlags::empty(),
            &b,
            &[],
            &[],
        )
    };
}

impl DeviceInner {
    /// Submits the prerecorded `command_buffer` on the queue, waits up to `timeout_ns` for `fence`, and resets it:
    /// how a run and a session step execute. If the wait fails the work may still be running, so the whole device
    /// is waited for before anything is reused or freed.
    ///
    /// # Safety
    /// `command_buffer` is fully recorded and not pending, `fence` is unsignalled, and the caller holds the run lock
    /// of the executable whose buffers the command buffer uses, so no other run uses them (or the queue from that
    /// executable) meanwhile.
    pub(super) unsafe fn submit_and_wait(
        &self,
        command_buffer: vk::CommandBuffer,
        fence: vk::Fence,
        timeout_ns: u64,
    ) -> Result<(), VulkanError> {
        let d = &self.device;
        let cmds = [command_buffer];
        let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
        // SAFETY: the caller's contract (above).
        unsafe {
            self.submit(&submit, fence).map_err(call("vkQueueSubmit"))?;
            if let Err(e) = d.wait_for_fences(&[fence], true, timeout_ns) {
                self.wait_device_idle();
                let _ = d.reset_fences(&[fence]);
                return Err(VulkanError::Call {
                    call: "vkWaitForFences",
                    result: e,
                });
            }
            d.reset_fences(&[fence]).map_err(call("vkResetFences"))
        }
    }
}
