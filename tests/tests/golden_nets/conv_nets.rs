//! The convolutional golden reference cases (`tests/data/golden/nets/cnn_*.json`, an outside float64 autodiff
//! system; format and semantics in that folder's README) on every backend: the reference interpreter in f64 and
//! f32, the CPU backend (`kiln::compile`) and Vulkan (`kiln::compile_vulkan`, the SPIR-V backend; skipped without a
//! device unless `KILN_REQUIRE_VULKAN=1`).
//!
//! For each case and backend: the loss and every gradient (`kiln::grad` of the model graph), the batch-norm running
//! statistics after that one training-mode forward (the model's aliasing outputs), and the optimizer trajectory
//! (`kiln::training_step` run `steps` times, every aliasing output written back over its input: the loss before
//! each step, the params and running statistics after the last). The checks are `kiln_tests::golden_nets::check`,
//! shared with `gpt_nets.rs`.
//!
//! Tolerances, `|a − b| ≤ atol + rtol·|b|` per entry (losses: relative error only):
//! - f32 (the README's): losses rtol 1e-5; `expected.grads` and `expected.buffers` atol 1e-6, rtol 1e-4;
//!   `params_after` and `buffers_after` atol 1e-5, rtol 1e-4. No case has `zero_grad_params`.
//! - f64 (interpreter): losses rtol 1e-10; gradients and running statistics atol 1e-12, rtol 1e-9; trajectory
//!   params and statistics atol 1e-11, rtol 1e-9 — the oracle computed in float64 too, so only summation order
//!   differs.
//!
//! Each test prints every check's worst error as a fraction of its tolerance. Measured: f64 ≤ 6e-5 of it; in f32
//! the gradients and running statistics ≤ 0.07 on every backend, the SGD trajectories ≤ 0.08; the Adam
//! trajectories 0.04 on the interpreter and the CPU but 0.59 for `cnn_bn_nonsquare_maxpool_pad_ce_adam`'s last
//! loss: `training_step`'s Adam moments use `1 − β` rounded from f64 while its bias corrections use `1 − β^t` from
//! β rounded to f32 (a 1.3e-5 relative mismatch in `v̂` at t = 1). On Vulkan, whose f32 `pow` is looser still, that
//! case's losses leave the tolerance: see `vulkan_adam_trajectories_match_the_reference`.

use kiln::ir::DType;
use kiln_tests::golden_nets::check::{self, check_trajectory, is_adam, Backend, Report};
use kiln_tests::golden_nets::{self, NetCase};
use std::collections::HashMap;

fn cases() -> Vec<NetCase> {
    let cases = golden_nets::load_conv_cases().expect("the conv golden cases load");
    assert_eq!(cases.len(), 4, "expected the 4 cnn_* cases");
    cases
}

/// Gradients and running statistics of every case; the trajectories of the cases `trajectories` selects.
fn check_backend(backend: Backend, trajectories: impl Fn(&NetCase) -> bool) {
    check::check_backend("conv", &cases(), backend, trajectories);
}

#[test]
fn cases_load_and_build_with_the_stated_shapes() {
    let mut covered: HashMap<&str, usize> = HashMap::new();
    let cases = cases();
    for case in &cases {
        assert!(
            case.oracle.contains("float64"),
            "{}: oracle {}",
            case.name,
            case.oracle
        );
        for dtype in [DType::F32, DType::F64] {
            // `graph` checks every layer's output shape against `model.activation_shapes`.
            let graph = case.graph(dtype).unwrap();
            kiln::ir::verify(&graph).unwrap();
            let aliased: Vec<&str> = graph
                .outputs()
                .iter()
                .filter_map(|o| o.aliases.as_deref())
                .collect();
            let buffers: Vec<&str> = case.buffers.keys().map(String::as_str).collect();
            assert_eq!(aliased, buffers, "{}: running-statistic updates", case.name);
        }
        for layer in &case.model.layers {
            *covered.entry(layer_kind(layer)).or_default() += 1;
        }
    }
    for kind in [
        "conv2d",
        "batchnorm2d",
        "maxpool2d",
        "avgpool2d",
        "flatten",
        "linear",
        "relu",
        "leaky_relu",
        "tanh",
        "sigmoid",
        "softplus",
    ] {
        assert!(covered.contains_key(kind), "no case has a `{kind}` layer");
    }
}

fn layer_kind(layer: &golden_nets::Layer) -> &'static str {
    use golden_nets::Layer::*;
    match layer {
        Conv2d { .. } => "conv2d",
        BatchNorm2d { .. } => "batchnorm2d",
        MaxPool2d { .. } => "maxpool2d",
        AvgPool2d { .. } => "avgpool2d",
        Flatten => "flatten",
        Linear { .. } => "linear",
        Relu => "relu",
        LeakyRelu { .. } => "leaky_relu",
        Tanh => "tanh",
        Sigmoid => "sigmoid",
        Softplus => "softplus",
    }
}

#[test]
fn interpreter_f64_matches_the_reference() {
    check_backend(Backend::Interpreter(DType::F64), |_| true);
}

#[test]
fn interpreter_f32_matches_the_reference() {
    check_backend(Backend::Interpreter(DType::F32), |_| true);
}

#[test]
fn cpu_matches_the_reference() {
    check_backend(Backend::Cpu, |_| true);
}

/// The trajectories through a CPU `Session`: params, optimizer state and running statistics resident and updated
/// in place (the memory plan writes aliased outputs over their inputs).
#[test]
fn cpu_session_trajectories_match_the_reference() {
    let mut report = Report::default();
    for case in cases() {
        check::check_session_trajectory(&case, &mut report);
    }
    report.finish("golden conv nets on a cpu session (f32)");
}

/// Gradients and running statistics of every case and the SGD-momentum trajectories on Vulkan; the Adam
/// trajectories are `vulkan_adam_trajectories_match_the_reference`.
#[test]
fn vulkan_matches_the_reference() {
    if let Some(device) = kiln_tests::vulkan::device() {
        check_backend(Backend::Vulkan(device), |case| !is_adam(case));
    }
}

/// The Adam trajectories on Vulkan. Adam's bias correction is `-expm1(t·ln β)`, not `1 − pow(β, t)`: GLSL's `Pow`
/// (`exp2(t·log2 β)`) gave `1 − 0.999^1` 1.1e-4 relative off on lavapipe, and the losses drifted to 2.7e-5 relative.
#[test]
fn vulkan_adam_trajectories_match_the_reference() {
    if let Some(device) = kiln_tests::vulkan::device() {
        let mut report = Report::default();
        for case in cases().iter().filter(|c| is_adam(c)) {
            check_trajectory(case, Backend::Vulkan(device), &mut report);
        }
        report.finish("golden conv nets on vulkan f32, Adam trajectories");
    }
}
