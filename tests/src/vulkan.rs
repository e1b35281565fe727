//! The Vulkan side of the integration tests: the device they run on and `spirv-val`.
//!
//! Both are optional on a developer's machine (the tests print why and skip) and required in CI, where
//! `KILN_REQUIRE_VULKAN=1` turns a missing device or a missing `spirv-val` into a failure.

use kiln::backend::spirv::{Device, SpirvKernel};
use std::process::Command;
use std::sync::OnceLock;

/// `KILN_REQUIRE_VULKAN=1`: a missing device or `spirv-val` fails instead of skipping.
pub fn required() -> bool {
    std::env::var("KILN_REQUIRE_VULKAN").is_ok_and(|v| v == "1")
}

/// The best Vulkan device, opened once per test binary; `None` (after printing why) without one, unless required.
pub fn device() -> Option<&'static Device> {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    match DEVICE.get_or_init(|| Device::open_best().map_err(|e| e.to_string())) {
        Ok(d) => Some(d),
        Err(e) if required() => panic!("KILN_REQUIRE_VULKAN=1 but no Vulkan device: {e}"),
        Err(e) => {
            eprintln!("no Vulkan device ({e}); skipping the Vulkan runs");
            None
        }
    }
}

/// Runs `spirv-val --target-env vulkan1.1` on every module and panics with its message and the disassembly on a
/// rejection; `false` (nothing validated) when the tool is missing and not required.
pub fn validate(kernels: &[SpirvKernel]) -> bool {
    let available = Command::new("spirv-val")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            !required(),
            "KILN_REQUIRE_VULKAN=1 but spirv-val is not on PATH"
        );
        return false;
    }
    for k in kernels {
        // A scratch file per kernel (tests run on parallel threads), removed when dropped, even by a failed assert.
        let mut file = tempfile::Builder::new()
            .prefix("kiln-spv-")
            .suffix(".spv")
            .tempfile()
            .unwrap();
        let bytes: Vec<u8> = k.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        let out = Command::new("spirv-val")
            .args(["--target-env", "vulkan1.1"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spirv-val rejects `{}`: {}\n{}",
            k.name,
            String::from_utf8_lossy(&out.stderr),
            k.disassemble()
        );
    }
    true
}
