//! The Vulkan environment of the device tests (`vulkan::spirv_backend`, `vulkan::vulkan_limits`,
//! `vulkan::vulkan_session`, `training::train`, `cli::cli`, `cli::bench_vulkan_cli`), in one place so that every
//! test skips — or, under `KILN_REQUIRE_VULKAN=1` (CI, on Mesa's lavapipe), fails — the same way when there is no
//! device or no `spirv-val`.

use kiln::backend::spirv::{Device, SpirvKernel};
use std::sync::OnceLock;

/// Whether a missing device (or tool) is a failure rather than a skip: `KILN_REQUIRE_VULKAN=1`.
pub fn required() -> bool {
    std::env::var("KILN_REQUIRE_VULKAN").is_ok_and(|v| v == "1")
}

/// The preferred Vulkan device, opened once per test binary (and named on stderr then); `None` (after saying why)
/// when there is none and it isn't required.
pub fn device() -> Option<&'static Device> {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    let opened = DEVICE.get_or_init(|| {
        let d = Device::open_best().map_err(|e| e.to_string())?;
        let info = d.info();
        eprintln!(
            "Vulkan device: {} ({:?}, f64: {})",
            info.name, info.kind, info.float64
        );
        Ok(d)
    });
    match opened {
        Ok(d) => Some(d),
        Err(e) if required() => panic!("KILN_REQUIRE_VULKAN=1 but no Vulkan device: {e}"),
        Err(e) => {
            eprintln!("skipped: no Vulkan device ({e})");
            None
        }
    }
}

/// A backend's creation, for the tests that go through `kiln::nn::Backend` rather than a [`Device`]: `None` (after
/// saying why) on an error, unless `KILN_REQUIRE_VULKAN=1`.
pub fn or_skip<T, E: std::fmt::Display>(created: Result<T, E>) -> Option<T> {
    match created {
        Ok(t) => Some(t),
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

fn spirv_val_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        std::process::Command::new("spirv-val")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs `spirv-val --target-env vulkan1.1` on every module and panics with its message and the disassembly on a
/// rejection; says so and returns when the tool is missing and not required.
pub fn validate(kernels: &[SpirvKernel]) {
    if !spirv_val_available() {
        assert!(
            !required(),
            "KILN_REQUIRE_VULKAN=1 but spirv-val is not on PATH (Debian: spirv-tools)"
        );
        eprintln!("not validated: spirv-val is not on PATH");
        return;
    }
    for k in kernels {
        // A scratch file per kernel (tests run on parallel threads), removed when dropped, even by a failed assert.
        let mut file = tempfile::Builder::new()
            .prefix("kiln-spirv-")
            .suffix(".spv")
            .tempfile()
            .unwrap();
        let bytes: Vec<u8> = k.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        let out = std::process::Command::new("spirv-val")
            .args(["--target-env", "vulkan1.1"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spirv-val rejects kernel `{}`:\n{}{}\n{}",
            k.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            k.disassemble()
        );
    }
}
