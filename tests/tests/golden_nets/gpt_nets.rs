//! The golden GPT cases (`tests/data/golden/nets/gpt_*.json`, computed in float64 by an outside autodiff system with
//! PyTorch's conventions; format in that folder's README) through the model API, on every backend: the reference
//! interpreter in f64 and f32, the CPU backend (`kiln::compile`, also through a `Session`) and Vulkan
//! (`kiln::compile_vulkan`, the SPIR-V backend; skipped without a device unless `KILN_REQUIRE_VULKAN=1`).
//!
//! The f32 graph is `kiln::nn::Gpt::new(GptConfig{..})` from the case's `model` fields and its `Module::forward` on
//! a `tokens` data input, then `token_cross_entropy` with `targets` (`GptNet::nn_graph`, as `nn::SeqTrainer` builds
//! it); its params must be the file's names and shapes. `nn::Gpt` declares its params f32, so the f64 check builds
//! the same model from the Builder's composites instead (`GptNet::composite_graph`: `embedding` over the `gather`
//! primitive, `layer_norm`, `multi_head_attention`, `gelu`, `linear`): it checks the composites to f64 precision,
//! and the f32 checks check `nn::Gpt` on top of them.
//!
//! For each case and backend (the checks are `kiln_tests::golden_nets::check`, shared with `conv_nets.rs`): the loss
//! and every gradient (`kiln::grad`), and the optimizer trajectory (Adam or AdamW, `kiln::training_step` run
//! `steps` times with every aliasing output written back: the loss before each step, the params after the last).
//! `model.zero_grad_params` (every `attn.k.bias`, whose exact gradient is 0) get the absolute gradient tolerance
//! only and are left out of `params_after`, as the README says: Adam turns their round-off into steps of ~lr.
//!
//! Tolerances, `|a − b| ≤ atol + rtol·|b|` per entry (losses: relative error only):
//! - f32 (the README's): losses rtol 1e-5; `expected.grads` atol 1e-6, rtol 1e-4; `params_after` atol 1e-5,
//!   rtol 1e-4.
//! - f64 (interpreter): losses rtol 1e-10; gradients atol 1e-12, rtol 1e-9; `params_after` atol 1e-11, rtol 1e-9.
//!
//! Each test prints every check's worst error as a fraction of its tolerance. Measured, worst over the three cases
//! (loss / gradients / zero_grad_params' gradients / losses before each step / params after):
//! - interpreter f64: 3.4e-6 / 3.5e-5 / 1.4e-6 / 4.0e-6 / 9.1e-6;
//! - interpreter f32, cpu f32 (compiled and through a `Session`) and vulkan f32 (lavapipe): at most 1.2e-2 / 1.7e-2 /
//!   1.8e-3 / 1.4e-2 / 2.1e-2.
//!
//! Adam's bias correction `1 − β^t` is `-expm1(t·ln β)` (SPEC §5). With `1 − pow(β, t)` the f32 trajectories came
//! to 0.15 of the loss tolerance on the CPU and 0.80 on Vulkan (GLSL's `pow`).

use kiln::ir::{Builder, DType, GeluApprox, TensorType};
use kiln::nn::{Gpt, GptConfig, Module};
use kiln::Optimizer;
use kiln_tests::golden_nets::check::{self, check_trajectory, Backend, Report};
use kiln_tests::golden_nets::{self, GptNet, NetCase};

fn cases() -> Vec<NetCase<GptNet>> {
    let cases = golden_nets::load_gpt_cases().expect("the GPT golden cases load");
    assert_eq!(cases.len(), 3, "expected the 3 gpt_* cases");
    cases
}

/// The loss and gradients of every case, and its trajectory when `trajectories`.
fn check_backend(backend: Backend, trajectories: bool) {
    check::check_backend("gpt", &cases(), backend, |_| trajectories);
}

#[test]
fn cases_load_and_build_with_the_stated_shapes() {
    let cases = cases();
    for case in &cases {
        assert!(
            case.oracle.contains("float64"),
            "{}: oracle {}",
            case.name,
            case.oracle
        );
        assert!(
            matches!(
                case.trajectory.optimizer,
                Optimizer::Adam(_) | Optimizer::AdamW(_)
            ),
            "{}: the GPT cases are Adam or AdamW",
            case.name
        );
        assert!(
            !case.zero_grad_params.is_empty(),
            "{}: every attn.k.bias has an exactly zero gradient",
            case.name
        );
        // Both builders check their params against `model.param_shapes` (names and shapes).
        for dtype in [DType::F32, DType::F64] {
            let graph = case.graph(dtype).unwrap();
            kiln::ir::verify(&graph).unwrap();
        }
        let composite = case.model.composite_graph(&case.name, DType::F32).unwrap();
        kiln::ir::verify(&composite).unwrap();
    }
    // What the three cases are there to cover between them.
    let models: Vec<&GptNet> = cases.iter().map(|c| &c.model).collect();
    assert!(models.iter().any(|m| m.gelu == GeluApprox::None));
    assert!(models.iter().any(|m| m.gelu == GeluApprox::Tanh));
    assert!(models.iter().any(|m| m.seq_len < m.block_size));
    assert!(models.iter().any(|m| m.n_heads > 1) && models.iter().any(|m| m.n_heads == 1));
    assert!(models.iter().any(|m| m.n_blocks > 1));
}

#[test]
fn interpreter_f64_matches_the_reference() {
    check_backend(Backend::Interpreter(DType::F64), true);
}

#[test]
fn interpreter_f32_matches_the_reference() {
    check_backend(Backend::Interpreter(DType::F32), true);
}

#[test]
fn cpu_matches_the_reference() {
    check_backend(Backend::Cpu, true);
}

/// The trajectories through a CPU `Session`: params and Adam moments resident and updated in place.
#[test]
fn cpu_session_trajectories_match_the_reference() {
    let mut report = Report::default();
    for case in cases() {
        check::check_session_trajectory(&case, &mut report);
    }
    report.finish("golden gpt nets on a cpu session (f32)");
}

/// The loss and gradients on Vulkan; the trajectories are `vulkan_trajectories_match_the_reference`.
#[test]
fn vulkan_gradients_match_the_reference() {
    if let Some(device) = kiln_tests::vulkan::device() {
        check_backend(Backend::Vulkan(device), false);
    }
}

/// The Adam and AdamW trajectories on Vulkan.
#[test]
fn vulkan_trajectories_match_the_reference() {
    if let Some(device) = kiln_tests::vulkan::device() {
        let mut report = Report::default();
        for case in cases() {
            check_trajectory(&case, Backend::Vulkan(device), &mut report);
        }
        report.finish("golden gpt nets on vulkan f32, trajectories");
    }
}

/// A GPT with `config` reading `t` tokens per sequence: the build's error message, or `None` if it builds.
fn build_error(config: GptConfig, t: usize) -> Option<String> {
    let mut b = Builder::new("gpt");
    let tokens = b
        .data("tokens", TensorType::new(DType::I32, [2, t]))
        .unwrap();
    Gpt::new(config)
        .forward(&mut b, tokens)
        .err()
        .map(|e| e.to_string())
}

/// Impossible shapes are errors that say what is wrong, not panics (a panic would fail the test too).
#[test]
fn gpt_rejects_sequences_past_the_block_size_and_heads_not_dividing_the_width() {
    let config = GptConfig::new(7, 5, 8, 2, 1);
    config.validate().unwrap();
    assert_eq!(build_error(config, 5), None, "a full block builds");

    let message = build_error(config, 6).expect("6 tokens with 5 position rows");
    assert!(
        message.contains("6 tokens") && message.contains("5 rows"),
        "{message}"
    );

    let heads = GptConfig::new(7, 5, 8, 3, 1);
    let message = heads.validate().expect_err("3 heads do not divide 8");
    assert!(
        message.contains("--heads 3") && message.contains("8"),
        "{message}"
    );
    // Built without validating first, the attention layer refuses the split rather than panicking.
    let message = build_error(heads, 5).expect("3 heads over 8 features");
    assert!(
        message.contains("3 heads do not divide the model width 8"),
        "{message}"
    );
}
