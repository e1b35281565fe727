//! Device memory shared by [`super::VulkanExecutable`] and [`super::VulkanSession`]: buffers with their memory
//! ([`Allocation`]), mapping host-visible ones, and the sizes and staging offsets of tensors in the device layout.
//!
//! These are operations of a [`DeviceInner`], not of an executable, so that the executable and the session both use
//! them from here instead of either reaching into the other's module.

use super::device::DeviceInner;
use super::{call, element_bytes, VulkanError};
use ash::vk;
use kiln_ir::TensorType;

/// Offsets in the staging buffer are aligned to this many bytes (≥ every `optimalBufferCopyOffsetAlignment` seen).
const STAGING_ALIGN: u64 = 256;

/// A buffer and the memory bound to it.
pub(super) struct Allocation {
    pub(super) buffer: vk::Buffer,
    pub(super) memory: vk::DeviceMemory,
    pub(super) size: u64,
}

impl Allocation {
    /// No buffer (freeing it does nothing).
    pub(super) fn null() -> Allocation {
        Allocation {
            buffer: vk::Buffer::null(),
            memory: vk::DeviceMemory::null(),
            size: 0,
        }
    }
}

/// Bytes of a tensor of type `ty` in the device layout.
pub(super) fn bytes_of(ty: &TensorType) -> u64 {
    (ty.numel() * element_bytes(ty.dtype)) as u64
}

/// `x` rounded up to the next staging offset: where the next tensor starts in a staging buffer.
pub(super) fn align(x: u64) -> u64 {
    x.div_ceil(STAGING_ALIGN) * STAGING_ALIGN
}

impl DeviceInner {
    /// Creates a buffer of `size` bytes (at least 4: Vulkan has no empty buffers) in memory with `required`
    /// properties (host-visible and coherent if `host`), preferring `preferred`.
    pub(super) fn allocate(
        &self,
        size: u64,
        usage: vk::BufferUsageFlags,
        preferred: vk::MemoryPropertyFlags,
        host: bool,
    ) -> Result<Allocation, VulkanError> {
        let d = &self.device;
        let info = vk::BufferCreateInfo::default()
            .size(size.max(4))
            .usage(usage)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        // SAFETY: the device is live; the create info is complete.
        let buffer = unsafe { d.create_buffer(&info, None) }.map_err(call("vkCreateBuffer"))?;
        // SAFETY: `buffer` was just created on this device.
        let req = unsafe { d.get_buffer_memory_requirements(buffer) };
        let required = if host {
            vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT
        } else {
            vk::MemoryPropertyFlags::empty()
        };
        let mem = &self.memory;
        let types = &mem.memory_types[..mem.memory_type_count as usize];
        let fits = |i: usize, flags: vk::MemoryPropertyFlags| {
            req.memory_type_bits & (1 << i) != 0 && types[i].property_flags.contains(flags)
        };
        let Some(type_index) = (0..types.len())
            .find(|&i| fits(i, required | preferred))
            .or_else(|| (0..types.len()).find(|&i| fits(i, required)))
        else {
            // SAFETY: `buffer` is unused.
            unsafe { d.destroy_buffer(buffer, None) };
            return Err(VulkanError::Unsupported {
                device: self.info.name.clone(),
                what: format!("no memory type for a buffer with flags {required:?}"),
            });
        };
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(type_index as u32);
        // SAFETY: the memory type index is one the buffer accepts; the size is its requirement.
        let memory = match unsafe { d.allocate_memory(&alloc, None) } {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: `buffer` is unused.
                unsafe { d.destroy_buffer(buffer, None) };
                return Err(VulkanError::Call {
                    call: "vkAllocateMemory",
                    result: e,
                });
            }
        };
        // SAFETY: `memory` is fresh, of a type the buffer accepts, and as large as it requires.
        if let Err(e) = unsafe { d.bind_buffer_memory(buffer, memory, 0) } {
            // SAFETY: both are unused.
            unsafe {
                d.destroy_buffer(buffer, None);
                d.free_memory(memory, None);
            }
            return Err(VulkanError::Call {
                call: "vkBindBufferMemory",
                result: e,
            });
        }
        Ok(Allocation {
            buffer,
            memory,
            size,
        })
    }

    /// Destroys `a`'s buffer and frees its memory.
    pub(super) fn free(&self, a: &Allocation) {
        // SAFETY: no submitted work uses `a` (callers wait for the fence or the device first); null handles are
        // ignored by Vulkan.
        unsafe {
            self.device.destroy_buffer(a.buffer, None);
            self.device.free_memory(a.memory, None);
        }
    }

    /// Maps a host-visible allocation and hands its bytes to `f`.
    pub(super) fn write_mapped<R>(
        &self,
        a: &Allocation,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, VulkanError> {
        if a.size == 0 {
            return Ok(f(&mut []));
        }
        let d = &self.device;
        // SAFETY: `a` is host-visible and coherent (allocated with `host = true`), not mapped elsewhere, and no
        // submitted work uses it (the fence was waited for); the slice covers exactly the mapped range and is
        // dropped before the unmap.
        unsafe {
            let ptr = d
                .map_memory(a.memory, 0, a.size, vk::MemoryMapFlags::empty())
                .map_err(call("vkMapMemory"))?;
            let r = f(std::slice::from_raw_parts_mut(
                ptr.cast::<u8>(),
                a.size as usize,
            ));
            d.unmap_memory(a.memory);
            Ok(r)
        }
    }
}
