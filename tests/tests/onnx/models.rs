//! Whole models (`tests/fixtures/onnx/models/`, written by `scripts/onnx_models.py`): an MLP, a LeNet, a ResNet
//! basic block with batch norm and a pre-LN GPT block with causal attention, each with a symbolic batch dim `N`.
//! Each is imported at batch 1 and 4 (`ImportOptions::dim("N", b)`), run on the interpreter, the CPU backend and
//! Vulkan (when there is a device; `KILN_REQUIRE_VULKAN=1` requires one) on the committed input, and compared with
//! onnxruntime's output for it.

use super::node_tests::{read_protos, run_on, to_tensors, Backend};
use kiln::ir::Tensor;
use kiln::onnx::ImportOptions;
use kiln_tests::differential::Tolerance;
use std::path::{Path, PathBuf};

/// Both sides compute in f32 with other summation orders and their own `exp`/`erf`/`rsqrt`, so they differ by
/// rounding, not by a fixed bound: a dot product of K terms of size ~1 rounds to within about √K·2⁻²⁴ ≈ 1e-6 (K ≤ 256
/// here: the LeNet's 256-wide Gemm, the ResNet's 144-term 3×3 convolutions), a few layers compound it to a few 1e-6
/// on outputs of size ~1, and each normalisation (batch/layer norm, softmax) adds a few ulp. The worst error measured
/// is 7.2e-7 (the ResNet block on the CPU; each test prints its own with `--nocapture`), under 1 % of this tolerance:
/// the headroom is for Vulkan on real GPUs, whose `exp`, `erf` and `inversesqrt` may be several ulp off and whose
/// reductions run in other orders (these runs were on llvmpipe). A wrong translation (a dropped bias, a transposed
/// weight, a mask off by one, batch norm's mean and variance swapped) is off by ≥ 1e-2, far above it.
const TOLERANCE: Tolerance = Tolerance {
    atol: 1e-4,
    rtol: 1e-4,
};

/// The batch sizes of the fixtures (`batch_<b>/`).
const BATCHES: [usize; 2] = [1, 4];

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/onnx/models")
        .join(name)
}

/// The worst absolute error and the worst error as a fraction of [`TOLERANCE`] at that element (> 1 fails).
fn worst_error(want: &Tensor, got: &Tensor) -> (f64, f64) {
    let (wv, gv) = (want.to_f64_vec(), got.to_f64_vec());
    gv.iter()
        .zip(&wv)
        .fold((0.0f64, 0.0f64), |(abs, frac), (&g, &w)| {
            let e = if g.is_nan() || w.is_nan() {
                f64::INFINITY
            } else {
                (g - w).abs()
            };
            (
                abs.max(e),
                frac.max(e / (TOLERANCE.atol + TOLERANCE.rtol * w.abs())),
            )
        })
}

/// Imports `name` at each batch size and checks every backend's output against onnxruntime's.
fn check_model(name: &str) {
    let dir = model_dir(name);
    let bytes =
        std::fs::read(dir.join("model.onnx")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut failures = Vec::new();
    for batch in BATCHES {
        let options = ImportOptions::default().dim("N", batch);
        let graph = kiln::onnx::import(&bytes, &options)
            .unwrap_or_else(|e| panic!("{name} at batch {batch}: {e}"));
        let data = dir.join(format!("batch_{batch}"));
        let read = |prefix| to_tensors(&read_protos(&data, prefix)?);
        let (inputs, want) = read("input_")
            .and_then(|i| Ok((i, read("output_")?)))
            .unwrap_or_else(|e| panic!("{name} at batch {batch}: {e}"));
        assert_eq!(want.len(), 1, "{name}: one output");
        for backend in Backend::ALL {
            let Some(got) = run_on(backend, &graph, &inputs) else {
                continue;
            };
            let at = format!("{name} at batch {batch} on {}", backend.name());
            let got = match got {
                Ok(got) => got,
                Err(e) => {
                    failures.push(format!("{at}: {e}"));
                    continue;
                }
            };
            if got.len() != 1 || got[0].ty() != want[0].ty() {
                let types: Vec<String> = got.iter().map(|t| t.ty().to_string()).collect();
                failures.push(format!(
                    "{at}: outputs {types:?}, expected [{}]",
                    want[0].ty()
                ));
                continue;
            }
            let (abs, frac) = worst_error(&want[0], &got[0]);
            eprintln!("{at}: worst |error| {abs:.2e}, {frac:.3} of the tolerance");
            if frac > 1.0 {
                failures.push(format!(
                    "{at}: worst |error| {abs:.2e} is {frac:.1}× the tolerance"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mlp_matches_onnxruntime() {
    check_model("mlp");
}

#[test]
fn lenet_matches_onnxruntime() {
    check_model("lenet");
}

#[test]
fn resnet_block_matches_onnxruntime() {
    check_model("resnet_block");
}

#[test]
fn gpt_block_matches_onnxruntime() {
    check_model("gpt_block");
}
