//! What a [`ProgramDesc`] must satisfy before [`super::VulkanExecutable::new`] creates anything: the device's limits
//! and features, well-formed indices, and a consistent arena placement (with the factor that scales the plan's
//! offsets to the device; see the module doc of [`super`]). Pure functions of the description and the device's
//! info, so a bad program is refused without touching the device.

use super::device::{Device, DeviceInfo};
use super::memory::bytes_of;
use super::{ProgramDesc, VulkanError};

/// The factor the plan's arena offsets are scaled by on `device`, and the arena's size in bytes (see the module
/// doc). Checks that the placements are consistent: inside the plan's arena, at aligned offsets, each as large as its
/// tensor in the host layout, and that no input, output or constant is placed there.
pub(super) fn arena_layout(
    device: &DeviceInfo,
    program: &ProgramDesc,
) -> Result<(u64, u64), VulkanError> {
    let invalid = |message: String| VulkanError::InvalidProgram {
        program: program.name.clone(),
        message,
    };
    let placed: Vec<(usize, u64, u64)> = program
        .buffers
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.arena.map(|(o, s)| (i, o, s)))
        .collect();
    if placed.is_empty() {
        return Ok((1, 0));
    }
    let plan_align = program.arena_alignment;
    if !plan_align.is_power_of_two() {
        return Err(invalid(format!(
            "arena alignment {plan_align} is not a power of two"
        )));
    }
    let boundary: Vec<usize> = program
        .inputs
        .iter()
        .chain(&program.outputs)
        .map(|&(_, b)| b)
        .collect();
    let mut factor = 1u64;
    for &(i, offset, size) in &placed {
        let b = &program.buffers[i];
        if boundary.contains(&i) || b.constant.is_some() {
            return Err(invalid(format!(
                "buffer `{}` is an input, output or constant placed in the arena",
                b.name
            )));
        }
        let host = (b.ty.numel() * b.ty.dtype.size_bytes()) as u64;
        if !offset.is_multiple_of(plan_align)
            || size < host
            || offset
                .checked_add(size)
                .is_none_or(|end| end > program.arena_bytes)
        {
            return Err(invalid(format!(
                "buffer `{}` at arena [{offset}, +{size}) does not fit the plan ({} bytes, alignment {plan_align})",
                b.name, program.arena_bytes
            )));
        }
        // The device layout may be wider than the host's (bool: 1 → 4 bytes).
        while bytes_of(&b.ty) > size * factor {
            factor *= 2;
        }
    }
    let align = device.storage_offset_alignment;
    if !align.is_power_of_two() {
        return Err(VulkanError::Unsupported {
            device: device.name.clone(),
            what: format!("minStorageBufferOffsetAlignment {align} is not a power of two"),
        });
    }
    while !(plan_align * factor).is_multiple_of(align) {
        factor *= 2;
    }
    // Every view's range is at least 4 bytes, even an empty temporary's.
    let end = placed
        .iter()
        .map(|&(_, offset, _)| offset * factor + 4)
        .max()
        .unwrap_or(0);
    Ok((factor, (program.arena_bytes * factor).max(end)))
}

/// Rejects what the device can't run and malformed descriptions, before anything is created.
pub(super) fn check(device: &Device, program: &ProgramDesc) -> Result<(), VulkanError> {
    let info = device.info();
    let unsupported = |what: String| VulkanError::Unsupported {
        device: info.name.clone(),
        what,
    };
    let invalid = |message: String| VulkanError::InvalidProgram {
        program: program.name.clone(),
        message,
    };
    let n = program.buffers.len();
    for b in &program.buffers {
        if bytes_of(&b.ty) > info.max_buffer_bytes {
            return Err(unsupported(format!(
                "buffer `{}` ({}) is larger than maxStorageBufferRange ({} bytes)",
                b.name, b.ty, info.max_buffer_bytes
            )));
        }
        if let Some(c) = &b.constant {
            if c.ty() != &b.ty {
                return Err(invalid(format!(
                    "constant `{}` holds a {}, not {}",
                    b.name,
                    c.ty(),
                    b.ty
                )));
            }
        }
    }
    for (_, b) in program.inputs.iter().chain(&program.outputs) {
        if *b >= n {
            return Err(invalid(format!("buffer index {b} out of range")));
        }
    }
    for dispatch in &program.dispatches {
        if dispatch.uses_f64 && !info.float64 {
            return Err(unsupported(format!(
                "kernel `{}` computes in f64, and the device lacks shaderFloat64",
                dispatch.name
            )));
        }
        if dispatch.uses_float_controls && !info.preserves_nan.contains(&true) {
            return Err(unsupported(format!(
                "kernel `{}` asks for NaN-preserving floats (VK_KHR_shader_float_controls)",
                dispatch.name
            )));
        }
        if dispatch
            .groups
            .iter()
            .zip(info.max_workgroups)
            .any(|(&g, max)| g > max)
        {
            return Err(unsupported(format!(
                "kernel `{}` needs {:?} workgroups, the device allows {:?}",
                dispatch.name, dispatch.groups, info.max_workgroups
            )));
        }
        // A shader with more bindings than the device allows is undefined behaviour in the driver (lavapipe returned
        // zeros for 33 bindings and crashed for 34 or more): refuse it here, whatever produced the program.
        if dispatch.bindings.len() as u64 > info.limits.max_storage_buffers as u64 {
            return Err(unsupported(format!(
                "kernel `{}` binds {} storage buffers, the device allows {} \
                 (maxPerStageDescriptorStorageBuffers / maxDescriptorSetStorageBuffers)",
                dispatch.name,
                dispatch.bindings.len(),
                info.limits.max_storage_buffers
            )));
        }
        if let Some(b) = dispatch.bindings.iter().find(|&&b| b >= n) {
            return Err(invalid(format!(
                "kernel `{}` binds buffer {b}, out of range",
                dispatch.name
            )));
        }
    }
    Ok(())
}
