//! The Vulkan environment of the device tests (`tests/spirv_backend.rs`, `tests/vulkan_session.rs`, `tests/cli.rs`,
//! `tests/bench_vulkan_cli.rs`), in one place so that every test binary skips — or, under `KILN_REQUIRE_VULKAN=1`
//! (CI, on Mesa's lavapipe), fails — the same way when there is no device.

use kiln::backend::spirv::Device;
use std::sync::OnceLock;

/// Whether a missing device (or tool) is a failure rather than a skip: `KILN_REQUIRE_VULKAN=1`.
pub fn required() -> bool {
    std::env::var("KILN_REQUIRE_VULKAN").is_ok_and(|v| v == "1")
}

/// The preferred Vulkan device, opened once per test binary; `None` (after saying why) when there is none and it
/// isn't required.
pub fn device() -> Option<&'static Device> {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    match DEVICE.get_or_init(|| Device::open_best().map_err(|e| e.to_string())) {
        Ok(d) => Some(d),
        Err(e) if required() => panic!("KILN_REQUIRE_VULKAN=1 but no Vulkan device: {e}"),
        Err(e) => {
            eprintln!("skipped: no Vulkan device ({e})");
            None
        }
    }
}

/// Whether a Vulkan device is listed (saying why not when there is none), for the CLI tests that run the `kiln`
/// binary rather than open a device themselves.
pub fn vulkan_available() -> bool {
    match kiln::backend::spirv::devices() {
        Ok(found) if !found.is_empty() => true,
        outcome => {
            let why = outcome.map_or_else(|e| e.to_string(), |_| "no device listed".into());
            assert!(
                !required(),
                "KILN_REQUIRE_VULKAN=1 but no Vulkan device: {why}"
            );
            eprintln!("skipped: no Vulkan device ({why})");
            false
        }
    }
}
