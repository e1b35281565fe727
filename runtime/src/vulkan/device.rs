//! Instance and device creation, device listing.

use super::{call, VulkanError};
use ash::vk;
use std::sync::Arc;

/// The Vulkan version Kiln asks for: 1.1 runs SPIR-V 1.3, which the code generator emits.
const API_VERSION: u32 = vk::API_VERSION_1_1;

/// What kind of device a [`DeviceInfo`] describes, in order of preference.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum DeviceKind {
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A software implementation such as Mesa's lavapipe.
    Cpu,
    Other,
}

impl DeviceKind {
    fn from_vk(t: vk::PhysicalDeviceType) -> DeviceKind {
        match t {
            vk::PhysicalDeviceType::DISCRETE_GPU => DeviceKind::DiscreteGpu,
            vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::IntegratedGpu,
            vk::PhysicalDeviceType::VIRTUAL_GPU => DeviceKind::VirtualGpu,
            vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
            _ => DeviceKind::Other,
        }
    }
}

/// A Vulkan device able to run Kiln's compute shaders.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Index among the loader's physical devices (what [`Device::open`] takes).
    pub index: usize,
    pub name: String,
    pub kind: DeviceKind,
    /// `(major, minor, patch)`.
    pub api_version: (u32, u32, u32),
    /// The device can run f64 shaders (`shaderFloat64`).
    pub float64: bool,
    /// `maxComputeWorkGroupCount`.
    pub max_workgroups: [u32; 3],
    /// `maxStorageBufferRange`, in bytes: the largest buffer one binding can address.
    pub max_buffer_bytes: u64,
    /// Shaders may ask for IEEE NaN / infinity / signed-zero semantics on f32 / f64 (`VK_KHR_shader_float_controls`,
    /// `shaderSignedZeroInfNanPreserveFloat32/64`). Without it, a device compiler may fold `x - x` to 0 for a NaN.
    pub preserves_nan: [bool; 2],
    /// The subgroup size compute shaders run with (`VkPhysicalDeviceSubgroupProperties::subgroupSize`).
    pub subgroup_size: u32,
    /// Compute shaders may use subgroup shuffles (`supportedStages` has `COMPUTE` and `supportedOperations` has
    /// `BASIC` and `SHUFFLE`): what the code generator's subgroup reductions need.
    pub subgroup_shuffle: bool,
    /// `minStorageBufferOffsetAlignment`: a storage buffer bound at an offset must be bound at a multiple of this.
    pub storage_offset_alignment: u64,
    /// Nanoseconds per timestamp tick (`timestampPeriod`).
    pub timestamp_period_ns: f32,
    /// Valid bits of a timestamp written on the compute queue (`timestampValidBits`); 0: the queue cannot write
    /// timestamps, so dispatches cannot be timed on the device.
    pub timestamp_bits: u32,
    /// The limits a compute shader and its dispatch must respect (read once, when the device is listed).
    pub limits: DeviceLimits,
}

/// The device limits Kiln's shaders depend on (`VkPhysicalDeviceLimits`), as a plain value: the code generator takes
/// one ([`DeviceLimits::of`] a device, or lowered by hand to test the paths a small limit takes on any device).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DeviceLimits {
    /// Storage buffers one compute shader may bind: the smaller of `maxPerStageDescriptorStorageBuffers` and
    /// `maxDescriptorSetStorageBuffers` (Kiln binds every buffer of a kernel in one descriptor set, so
    /// `maxBoundDescriptorSets ≥ 1` is all it needs of that limit). Vulkan guarantees 4; lavapipe offers 32.
    pub max_storage_buffers: u32,
    /// `maxBoundDescriptorSets` (Kiln uses set 0 only).
    pub max_bound_descriptor_sets: u32,
    /// `maxComputeWorkGroupSize` (x, y, z; Kiln's workgroups are 1-D, so x counts).
    pub max_workgroup_size: [u32; 3],
    /// `maxComputeWorkGroupInvocations`: invocations per workgroup (Vulkan guarantees 128).
    pub max_workgroup_invocations: u32,
    /// `maxComputeWorkGroupCount` (x, y, z; Vulkan guarantees 65,535 each).
    pub max_workgroups: [u32; 3],
    /// `maxComputeSharedMemorySize`, in bytes: Workgroup-storage memory per workgroup (Vulkan guarantees 16 KiB).
    pub max_shared_memory_bytes: u32,
    /// `maxPushConstantsSize`, in bytes. Kiln's shaders use no push constants (shapes are constants in the code), so
    /// nothing depends on it; it is read for `kiln devices`.
    pub max_push_constants_bytes: u32,
    /// `maxStorageBufferRange`, in bytes: the largest range one storage-buffer binding can address.
    pub max_storage_buffer_range: u64,
}

impl DeviceLimits {
    /// The smallest limits Vulkan 1.1 allows a device to report (its spec's "Required Limits" table).
    pub const VULKAN_MIN: DeviceLimits = DeviceLimits {
        max_storage_buffers: 4,
        max_bound_descriptor_sets: 4,
        max_workgroup_size: [128, 128, 64],
        max_workgroup_invocations: 128,
        max_workgroups: [65_535; 3],
        max_shared_memory_bytes: 16_384,
        max_push_constants_bytes: 128,
        max_storage_buffer_range: 1 << 27,
    };

    /// No limit that a shader lowered without a device could hit: what a device-less lowering (`kiln dump --stage
    /// spirv`, the snapshot tests) assumes, the workgroup limits at what every desktop driver offers (1,024
    /// invocations, 65,535 groups per dimension, 16 KiB of shared memory). A device's own limits
    /// ([`DeviceLimits::of`]) are checked when it is compiled for.
    pub const UNCHECKED: DeviceLimits = DeviceLimits {
        max_storage_buffers: u32::MAX,
        max_bound_descriptor_sets: u32::MAX,
        max_workgroup_size: [1024, 1024, 64],
        max_workgroup_invocations: 1024,
        max_workgroups: [65_535; 3],
        max_shared_memory_bytes: 16_384,
        max_push_constants_bytes: 128,
        max_storage_buffer_range: u32::MAX as u64,
    };

    /// A device's limits, as reported by the driver.
    pub(crate) fn of(limits: &vk::PhysicalDeviceLimits) -> DeviceLimits {
        DeviceLimits {
            max_storage_buffers: limits
                .max_per_stage_descriptor_storage_buffers
                .min(limits.max_descriptor_set_storage_buffers),
            max_bound_descriptor_sets: limits.max_bound_descriptor_sets,
            max_workgroup_size: limits.max_compute_work_group_size,
            max_workgroup_invocations: limits.max_compute_work_group_invocations,
            max_workgroups: limits.max_compute_work_group_count,
            max_shared_memory_bytes: limits.max_compute_shared_memory_size,
            max_push_constants_bytes: limits.max_push_constants_size,
            max_storage_buffer_range: limits.max_storage_buffer_range as u64,
        }
    }
}

/// The loader and an instance; destroyed last.
pub(crate) struct InstanceHandle {
    // Keeps the loader library open as long as the instance lives.
    _entry: ash::Entry,
    pub(crate) instance: ash::Instance,
}

impl Drop for InstanceHandle {
    fn drop(&mut self) {
        // SAFETY: every object created from this instance (devices) holds an `Arc` to it, so none is alive now.
        unsafe { self.instance.destroy_instance(None) };
    }
}

fn create_instance() -> Result<InstanceHandle, VulkanError> {
    // SAFETY: loading the loader library runs its initialisers; `libvulkan.so.1` is the system's Vulkan loader,
    // whose initialisers are sound to run at any time.
    let entry = unsafe { ash::Entry::load() }.map_err(|e| {
        VulkanError::NoLoader(format!(
            "cannot load libvulkan.so.1 ({e}); install a Vulkan loader and driver \
             (e.g. Debian: libvulkan1 mesa-vulkan-drivers)"
        ))
    })?;
    // SAFETY: `entry` holds valid loader function pointers.
    let version = unsafe { entry.try_enumerate_instance_version() }
        .map_err(call("vkEnumerateInstanceVersion"))?
        .unwrap_or(vk::API_VERSION_1_0);
    if version < API_VERSION {
        return Err(VulkanError::NoDevice(format!(
            "the Vulkan loader supports {}.{}, Kiln needs 1.1",
            vk::api_version_major(version),
            vk::api_version_minor(version)
        )));
    }
    let app = vk::ApplicationInfo::default()
        .application_name(c"kiln")
        .engine_name(c"kiln")
        .api_version(API_VERSION);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: `info` and what it points to outlive the call; no layers or extensions are requested.
    let instance = unsafe { entry.create_instance(&info, None) }.map_err(|e| match e {
        vk::Result::ERROR_INCOMPATIBLE_DRIVER => {
            VulkanError::NoDevice("no Vulkan driver (ICD) is installed".into())
        }
        e => VulkanError::Call {
            call: "vkCreateInstance",
            result: e,
        },
    })?;
    Ok(InstanceHandle {
        _entry: entry,
        instance,
    })
}

/// The physical devices able to run Kiln's shaders, with their facts.
fn list(
    instance: &ash::Instance,
) -> Result<Vec<(vk::PhysicalDevice, DeviceInfo, u32)>, VulkanError> {
    // SAFETY: `instance` is a live instance.
    let physical = unsafe { instance.enumerate_physical_devices() }
        .map_err(call("vkEnumeratePhysicalDevices"))?;
    let mut out = Vec::new();
    for (index, &pd) in physical.iter().enumerate() {
        // SAFETY: `pd` was just enumerated from `instance`.
        let (props, features, queues) = unsafe {
            (
                instance.get_physical_device_properties(pd),
                instance.get_physical_device_features(pd),
                instance.get_physical_device_queue_family_properties(pd),
            )
        };
        let Some(queue_family) = queues
            .iter()
            .position(|q| q.queue_flags.contains(vk::QueueFlags::COMPUTE))
        else {
            continue;
        };
        if props.api_version < API_VERSION {
            continue;
        }
        // SAFETY: `pd` belongs to `instance`.
        let float_controls = unsafe { instance.enumerate_device_extension_properties(pd) }
            .map_err(call("vkEnumerateDeviceExtensionProperties"))?
            .iter()
            .any(|e| e.extension_name_as_c_str() == Ok(ash::khr::shader_float_controls::NAME));
        let mut preserves_nan = [false; 2];
        if float_controls {
            let mut fc = vk::PhysicalDeviceFloatControlsProperties::default();
            let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut fc);
            // SAFETY: `pd` belongs to `instance` (Vulkan 1.1, so the call is core); the chain is one struct the
            // extension, which the device offers, defines.
            unsafe { instance.get_physical_device_properties2(pd, &mut props2) };
            preserves_nan = [
                fc.shader_signed_zero_inf_nan_preserve_float32 == vk::TRUE,
                fc.shader_signed_zero_inf_nan_preserve_float64 == vk::TRUE,
            ];
        }
        let mut subgroup = vk::PhysicalDeviceSubgroupProperties::default();
        let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut subgroup);
        // SAFETY: `pd` belongs to `instance` and reports Vulkan ≥ 1.1 (checked above), where both the call and the
        // chained struct are core.
        unsafe { instance.get_physical_device_properties2(pd, &mut props2) };
        let subgroup_shuffle = subgroup
            .supported_stages
            .contains(vk::ShaderStageFlags::COMPUTE)
            && subgroup
                .supported_operations
                .contains(vk::SubgroupFeatureFlags::BASIC | vk::SubgroupFeatureFlags::SHUFFLE);
        let name = props
            .device_name_as_c_str()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "?".into());
        let v = props.api_version;
        out.push((
            pd,
            DeviceInfo {
                index,
                name,
                kind: DeviceKind::from_vk(props.device_type),
                api_version: (
                    vk::api_version_major(v),
                    vk::api_version_minor(v),
                    vk::api_version_patch(v),
                ),
                float64: features.shader_float64 == vk::TRUE,
                max_workgroups: props.limits.max_compute_work_group_count,
                max_buffer_bytes: props.limits.max_storage_buffer_range as u64,
                preserves_nan,
                subgroup_size: subgroup.subgroup_size,
                subgroup_shuffle,
                storage_offset_alignment: props.limits.min_storage_buffer_offset_alignment.max(1),
                timestamp_period_ns: props.limits.timestamp_period,
                timestamp_bits: if props.limits.timestamp_period > 0.0 {
                    queues[queue_family].timestamp_valid_bits
                } else {
                    0
                },
                limits: DeviceLimits::of(&props.limits),
            },
            queue_family as u32,
        ));
    }
    Ok(out)
}

/// Every Vulkan device able to run Kiln's compute shaders, the preferred one (a discrete GPU, if any) first.
pub fn devices() -> Result<Vec<DeviceInfo>, VulkanError> {
    let handle = create_instance()?;
    let mut found: Vec<DeviceInfo> = list(&handle.instance)?
        .into_iter()
        .map(|(_, info, _)| info)
        .collect();
    found.sort_by_key(|d| (d.kind, d.index));
    Ok(found)
}

/// An opened device with one compute queue. Cheap to clone (shared); executables keep it alive.
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<DeviceInner>,
}

pub(crate) struct DeviceInner {
    pub(crate) info: DeviceInfo,
    pub(crate) device: ash::Device,
    pub(crate) queue: vk::Queue,
    pub(crate) queue_family: u32,
    pub(crate) memory: vk::PhysicalDeviceMemoryProperties,
    /// Held around every use of `queue` from the host (`vkQueueSubmit`, `vkQueueWaitIdle`, `vkDeviceWaitIdle`), which
    /// Vulkan requires to be externally synchronized: every executable and session of the device shares the queue,
    /// and each may be used from its own thread. Only the call is under the lock, never the wait for a fence, so runs
    /// of different executables overlap on the device.
    queue_lock: std::sync::Mutex<()>,
    // Declared last: dropped after `device` is destroyed (see `Drop`).
    pub(crate) _instance: InstanceHandle,
}

impl DeviceInner {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data: a panic while it was held leaves nothing inconsistent.
        self.queue_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `vkQueueSubmit` on the device's queue, under the queue lock.
    ///
    /// # Safety
    /// `submits` name command buffers of this device that are fully recorded and not pending, and `fence` (if not
    /// null) is an unsignalled fence of this device.
    pub(crate) unsafe fn submit(
        &self,
        submits: &[vk::SubmitInfo],
        fence: vk::Fence,
    ) -> Result<(), vk::Result> {
        let _queue = self.lock_queue();
        // SAFETY: the caller's contract; the lock makes this thread the queue's only host user for the call.
        unsafe { self.device.queue_submit(self.queue, submits, fence) }
    }

    /// Waits until the queue is idle (`vkQueueWaitIdle`, under the queue lock; errors ignored: callers are about to
    /// free objects and have no better recovery).
    pub(crate) fn wait_queue_idle(&self) {
        let _queue = self.lock_queue();
        // SAFETY: the queue is this device's; the lock makes this thread its only host user for the call.
        let _ = unsafe { self.device.queue_wait_idle(self.queue) };
    }

    /// Waits until the whole device is idle (`vkDeviceWaitIdle`, under the queue lock, since it uses every queue).
    pub(crate) fn wait_device_idle(&self) {
        let _queue = self.lock_queue();
        // SAFETY: the lock makes this thread the only host user of the device's one queue for the call.
        let _ = unsafe { self.device.device_wait_idle() };
    }
}

impl Drop for DeviceInner {
    fn drop(&mut self) {
        // SAFETY: every object created on this device (executables) holds an `Arc<DeviceInner>`, so none is alive;
        // waiting for idle first makes sure no submitted work still uses the device.
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device.destroy_device(None);
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("info", &self.inner.info)
            .finish()
    }
}

impl Device {
    /// Opens the preferred device: the first of [`devices`].
    pub fn open_best() -> Result<Device, VulkanError> {
        Device::open_where(|all| {
            all.iter()
                .min_by_key(|(_, d, _)| (d.kind, d.index))
                .map(|x| x.1.index)
        })
    }

    /// Opens the physical device with this index (see [`DeviceInfo::index`]).
    pub fn open(index: usize) -> Result<Device, VulkanError> {
        Device::open_where(|all| {
            all.iter()
                .find(|(_, d, _)| d.index == index)
                .map(|x| x.1.index)
        })
    }

    fn open_where(
        pick: impl FnOnce(&[(vk::PhysicalDevice, DeviceInfo, u32)]) -> Option<usize>,
    ) -> Result<Device, VulkanError> {
        let handle = create_instance()?;
        let all = list(&handle.instance)?;
        let chosen = pick(&all).ok_or_else(|| {
            VulkanError::NoDevice(if all.is_empty() {
                "the loader lists no device with Vulkan 1.1 and a compute queue".into()
            } else {
                "no device with that index".into()
            })
        })?;
        let (pd, info, queue_family) = all
            .into_iter()
            .find(|(_, d, _)| d.index == chosen)
            .expect("picked from the list");
        let priorities = [1.0f32];
        let queue_info = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(queue_family)
            .queue_priorities(&priorities)];
        let features = vk::PhysicalDeviceFeatures::default().shader_float64(info.float64);
        let extensions = [ash::khr::shader_float_controls::NAME.as_ptr()];
        let enabled = if info.preserves_nan.contains(&true) {
            &extensions[..]
        } else {
            &[]
        };
        let device_info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queue_info)
            .enabled_extension_names(enabled)
            .enabled_features(&features);
        // SAFETY: `pd` belongs to `handle.instance`; the create info (one queue of a family that exists, features
        // the device reports) and what it points to outlive the call.
        let device = unsafe { handle.instance.create_device(pd, &device_info, None) }
            .map_err(call("vkCreateDevice"))?;
        // SAFETY: queue 0 of `queue_family` was requested above; `pd` belongs to the instance.
        let (queue, memory) = unsafe {
            (
                device.get_device_queue(queue_family, 0),
                handle.instance.get_physical_device_memory_properties(pd),
            )
        };
        Ok(Device {
            inner: Arc::new(DeviceInner {
                info,
                device,
                queue,
                queue_family,
                memory,
                queue_lock: std::sync::Mutex::new(()),
                _instance: handle,
            }),
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }
}
