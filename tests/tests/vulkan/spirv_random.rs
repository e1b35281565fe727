//! Random graphs on the GPU backend: every generated graph (every op, f32 / i32 / bool, special float values) is
//! fused, lowered to SPIR-V, validated with `spirv-val --target-env vulkan1.1` and run on Vulkan; its outputs must
//! equal the graph interpreter's on seeded inputs — integers and bools exactly, floats within
//! `|a − b| ≤ 1e-4 + 1e-4·|b|` (GLSL.std.450's `exp` / `log` / `pow` accuracy; NaN equals NaN, infinities exactly).
//!
//! A second property forces every reduction onto the workgroup path (shared memory or subgroups).
//!
//! f64 inputs are not generated (f64 values appear through casts and are checked like the rest);
//! `compiler/tests/vulkan/spirv_backend.rs` holds the f64 transcendentals to 1e-14. Like the backend's own tests, these
//! print why and return without a device or `spirv-val`, unless `KILN_REQUIRE_VULKAN=1`.

use kiln::backend::spirv;
use kiln::fusion;
use kiln::ir::{interp, DType, Graph};
use kiln_tests::differential::{first_mismatch, random_inputs, Tolerance};
use kiln_tests::graph_gen::{self, arb_graph_with, seeded_graphs, GenConfig};
use kiln_tests::vulkan::{device, validate};
use proptest::prelude::*;

/// GLSL.std.450's `exp` / `log` / `pow` accuracy.
const TOL: Tolerance = Tolerance {
    atol: 1e-4,
    rtol: 1e-4,
};

fn check(graph: &Graph, seed: u64) -> Result<(), TestCaseError> {
    check_with(graph, seed, None)
}

/// `options`: `None` for the GPU plans on the device (without one: the defaults, with zeros hidden for even seeds
/// so that both forms go through `spirv-val`). The modules that run are the ones validated.
fn check_with(
    graph: &Graph,
    seed: u64,
    options: Option<spirv::Options>,
) -> Result<(), TestCaseError> {
    let program = fusion::lower(graph).unwrap();
    let device = device();
    // The GPU plans even on lavapipe (`Options::for_device` keeps a CPU device mostly per point).
    let options = options.unwrap_or_else(|| match device {
        Some(d) => spirv::Options::gpu_plans(d.info()),
        None => spirv::Options {
            hide_constant_zeros: seed.is_multiple_of(2),
            ..spirv::Options::default()
        },
    });
    let kernels = match spirv::lower_with(&program, &options) {
        Ok(k) => k,
        Err(e) => return Err(TestCaseError::fail(e.to_string())),
    };
    validate(&kernels);
    let Some(device) = device else {
        return Ok(());
    };
    let inputs = random_inputs(graph, seed);
    let expected = interp::run(graph, &inputs).unwrap();
    let actual = spirv::compile_with(device, &program, &options)
        .and_then(|exe| Ok(exe.run(&inputs)?))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mismatch = first_mismatch(graph, &expected, &actual, TOL, "Vulkan");
    prop_assert!(
        mismatch.is_none(),
        "{}\n{}",
        mismatch.unwrap_or_default(),
        kiln::ir::text::print(graph)
    );
    Ok(())
}

fn config() -> GenConfig {
    GenConfig {
        dtypes: vec![DType::F32, DType::I32, DType::Bool],
        ..GenConfig::all_ops()
    }
}

proptest! {
    // Each case creates pipelines on the device (a few ms on lavapipe); 48 graphs of ≤ 24 steps cover every op.
    #![proptest_config(graph_gen::proptest_config(48))]

    #[test]
    fn random_graphs_run_the_same_on_vulkan(graph in arb_graph_with(config()), seed in 0u64..1000) {
        check(&graph, seed)?;
    }
}

/// [`config`] with about one drawn dim in 6 zero-sized (`GenConfig::with_zero_dims`).
fn zero_dims_config() -> GenConfig {
    GenConfig {
        zero_dims: GenConfig::with_zero_dims().zero_dims,
        ..config()
    }
}

proptest! {
    // Cheap: a dispatch of no points is never recorded (12 cases in about 0.6 s on lavapipe, debug build).
    #![proptest_config(graph_gen::proptest_config(12))]

    /// Empty inputs, constants and slices, reductions over empty axes, matmuls with a zero dim: no zero-size
    /// buffer or dispatch of no points may trip the device.
    #[test]
    fn random_graphs_with_zero_size_dims_run_the_same_on_vulkan(
        graph in arb_graph_with(zero_dims_config()),
        seed in 0u64..1000,
    ) {
        check(&graph, seed)?;
    }
}

/// Fixed zero-size-dim graphs (the same on every run), on the default and the workgroup-reduction plans.
#[test]
fn fixed_graphs_with_zero_size_dims_run_the_same_on_vulkan() {
    let graphs = seeded_graphs(&zero_dims_config(), 8);
    assert!(graphs
        .iter()
        .any(|g| g.ids().any(|id| g.ty(id).numel() == 0)));
    for (i, graph) in graphs.iter().enumerate() {
        let seed = i as u64;
        check(graph, seed).unwrap();
        let options = device().map(|d| spirv::Options {
            workgroup_reductions: Some(1),
            ..spirv::Options::gpu_plans(d.info())
        });
        check_with(graph, seed, options).unwrap();
    }
}

proptest! {
    // The generated tensors are small, so every reduction is made a workgroup reduction (threshold 1), through
    // shared memory or (odd seeds, where the device has shuffles) subgroups.
    #![proptest_config(graph_gen::proptest_config(24))]

    #[test]
    fn random_graphs_with_workgroup_reductions(graph in arb_graph_with(config()), seed in 0u64..1000) {
        // Without a device the subgroup modules are still validated (size 8 is only what they are built for).
        let (native, subgroups) = match device() {
            Some(d) => {
                let o = spirv::Options::gpu_plans(d.info());
                (o, o.subgroup_size)
            }
            None => (spirv::Options::default(), Some(8)),
        };
        let subgroup_size = if seed % 2 == 1 { subgroups } else { None };
        let options = spirv::Options {
            workgroup_reductions: Some(1),
            subgroup_size,
            ..native
        };
        check_with(&graph, seed, Some(options))?;
    }
}
