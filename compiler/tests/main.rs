//! The `kiln` crate's integration tests: one test binary (`cargo test -p kiln --test main`), one module per subject,
//! and their shared support code in `support/`.
//!
//! Filter by module path, e.g. `cargo test -p kiln --test main vulkan::spirv_backend::`. Snapshots live in
//! `snapshots/` beside each subject's files (named `main__<subject>__<file>__<name>.snap` after the module path).

/// Support shared by the test modules: running the `kiln` binary, the Vulkan device and `spirv-val`, seeded inputs,
/// the math library's accuracy checks, running a test alone in its own process.
mod support {
    pub mod alone;
    pub mod kiln_cli;
    #[allow(dead_code)] // shared with `examples/math_sweep.rs`, which uses the rest
    pub mod math_check;
    pub mod random;
    pub mod vulkan;
}

/// The `kiln` binary end to end: commands, exit codes and messages, files, `kiln bench`.
#[allow(clippy::module_inception)]
mod cli {
    mod bad_inputs;
    mod bench_cli;
    mod bench_vulkan_cli;
    mod cli;
    mod deep_cli;
    mod golden_cli;
    mod import_cli;
    mod output_files;
}

/// The CPU backend's CLIF math library, and the wide routines against it.
mod cpu {
    mod cpu_math;
    mod cpu_strips;
    mod cpu_trig;
    mod cpu_wide;
}

/// The Vulkan backend: SPIR-V, the device's limits, training sessions on the device.
mod vulkan {
    mod spirv_backend;
    mod spirv_erf;
    mod spirv_trig;
    mod vulkan_limits;
    mod vulkan_session;
}

/// Training end to end: the `kiln::nn` trainer, checkpoints, `kiln train` / `kiln predict`.
mod training {
    mod cnn;
    mod data_parallel;
    #[cfg(feature = "mpi")]
    mod data_parallel_mpi;
    mod data_parallel_seq;
    mod train;
    mod transformer;
}
