//! Kiln's integration, property and snapshot tests: one test binary (`cargo test -p kiln-tests --test main`), one
//! module per subject. Each linked the whole compiler when it was a binary of its own; together they link it once.
//!
//! Filter by module path, e.g. `cargo test -p kiln-tests --test main passes::fusion::` or `-- cpu::`. Snapshots
//! live in `snapshots/` beside each subject's files (named `main__<subject>__<file>__<name>.snap` after the module
//! path), proptest regressions beside their test file. A test that needs the whole process to itself (the resident
//! set, the thread count) reruns itself alone in a child process: `kiln_tests::alone`.
//!
//! Shared helpers (random inputs, tolerances, graph generators, the Vulkan device and `spirv-val`) are the
//! `kiln_tests` library, `tests/src/`.

/// The `.kir` text format, the builder, the graph interpreter, DOT export, SPEC's type limits, the parser fuzzer and
/// the shipped examples.
mod ir {
    mod builder;
    mod dot_export;
    mod examples;
    mod fuzz_text;
    mod interp_composites;
    mod interp_ops;
    mod shape_limits;
    mod text_format;
}

/// Gradients against finite differences and the golden cases, and training on the interpreter.
mod autodiff {
    mod autodiff_fd;
    mod golden_autodiff;
    mod training;
    mod transformer_fd;
}

/// The golden reference nets (`tests/data/golden/nets/`) on the interpreter, the CPU and Vulkan.
mod golden_nets {
    mod conv_nets;
    mod gpt_nets;
}

/// Graph passes, fusion and the kernel IR's passes.
#[allow(clippy::module_inception)]
mod passes {
    mod fusion;
    mod materialize;
    mod passes;
}

/// The CPU backend: differential tests, code generation, JIT memory, the compile cache.
mod cpu {
    mod compile_cache;
    mod cpu_backend;
    mod cpu_codegen;
    mod cpu_jit_memory;
    mod golden_data_parallel;
}

/// The Vulkan backend: random graphs, IEEE zeros.
mod vulkan {
    mod spirv_random;
    mod vulkan_ieee_zeros;
}

/// Cases run through every stage and backend: every op on edge values, zero-size tensors, large logits, million-op
/// graphs.
mod all_backends {
    mod conv;
    mod conv_snapshots;
    mod deep_graphs;
    mod every_op;
    mod expm1;
    mod gather;
    mod large_logits;
    mod transformer;
    mod zero_size;
}

/// ONNX import and export: small models written in the tests, ONNX's backend node tests and whole models against
/// onnxruntime's outputs, on every backend.
mod onnx {
    mod export;
    mod fine_tune;
    mod import;
    mod models;
    mod node_tests;
}

/// Counter-based random numbers (Philox4x32-10, uniform floats, dropout) on every backend.
mod random;
