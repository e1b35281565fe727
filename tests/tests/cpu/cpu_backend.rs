//! The CPU backend: native code from the kernel IR, run through `kiln::compile` and `Executable::run` / `Session`.
//!
//! The backbone is differential: every `kiln::zoo` model, its gradient graph and its SGD / Adam training steps, and
//! random graphs from `kiln_tests::graph_gen`, compiled and run on the CPU must match the graph interpreter on the
//! same seeded inputs. "Match" for floats is `|a - b| <= 1e-5 + 1e-4·|b|` (NaN matches NaN, infinities must be
//! equal); integers and bools exactly. The transcendental functions are the interpreter's own, and the GEMM sums in
//! another order than the interpreter's dot products, hence the relative term.

use kiln::ir::{interp, Builder, DType, Graph, Role, Tensor, TensorType};
use kiln::zoo;
use kiln::{training_step, Adam, Executable, Optimizer, Options, Session, Sgd};
use kiln_tests::differential::{self, random_inputs_at_init_scale, Tolerance};
use kiln_tests::graph_gen::{self, arb_graph, arb_graph_with, seeded_graphs, GenConfig};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

// ---- helpers ----

/// CPU vs interpreter: `|a - b| <= 1e-5 + 1e-4·|b|` (GEMM summation order, the CLIF math library's few ulp).
const TOL: Tolerance = Tolerance {
    atol: 1e-5,
    rtol: 1e-4,
};

fn close(a: f64, b: f64) -> bool {
    TOL.close(a, b)
}

fn random_inputs(graph: &Graph, seed: u64) -> Vec<Tensor> {
    random_inputs_at_init_scale(graph, seed)
}

fn options(threads: usize) -> Options {
    Options {
        threads,
        ..Options::default()
    }
}

fn assert_outputs_match(graph: &Graph, expected: &[Tensor], actual: &[Tensor], what: &str) {
    differential::assert_outputs_match(graph, expected, actual, TOL, "cpu", || what.to_string());
}

/// Compiles `graph` for the CPU, runs it and the graph interpreter on seeded inputs, and compares every output.
fn assert_cpu_matches_interpreter(graph: &Graph, seed: u64, optimize: bool) -> Executable {
    let opts = Options {
        optimize,
        threads: 2,
        ..Options::default()
    };
    let exe = kiln::compile(graph, &opts)
        .unwrap_or_else(|e| panic!("{}: compiling failed: {e}", graph.name));
    let inputs = random_inputs(graph, seed);
    let expected = interp::run(graph, &inputs).expect("the graph runs");
    let actual = exe
        .run(&inputs)
        .unwrap_or_else(|e| panic!("{}: running failed: {e}", graph.name));
    assert_outputs_match(graph, &expected, &actual, &graph.name);
    exe
}

/// Every zoo model, its gradient graph, and its training step under each optimizer (`kiln::zoo::corpus`).
fn zoo_graphs() -> Vec<Graph> {
    zoo::corpus(&zoo::corpus_optimizers()).unwrap()
}

// ---- differential: zoo ----

#[test]
fn every_zoo_graph_matches_the_interpreter() {
    for graph in zoo_graphs() {
        for optimize in [true, false] {
            assert_cpu_matches_interpreter(&graph, 3, optimize);
        }
    }
}

// ---- differential: random graphs ----

proptest! {
    #![proptest_config(graph_gen::proptest_config(256))]

    /// Random graphs of every op and dtype (special floats included), optimized and not.
    #[test]
    fn random_graphs_match_the_interpreter(graph in arb_graph(), seed in 0u64..4) {
        assert_cpu_matches_interpreter(&graph, seed, seed % 2 == 0);
    }
}

proptest! {
    // Cheap: a kernel of no points compiles but never runs (64 cases in about 0.05 s, debug build).
    #![proptest_config(graph_gen::proptest_config(64))]

    /// Random graphs with zero-size dims (about one drawn dim in 6): empty inputs and constants, empty slices,
    /// reductions over empty axes, matmuls with a zero dim, concats with empty operands; optimized and not.
    #[test]
    fn random_graphs_with_zero_size_dims_match_the_interpreter(
        graph in arb_graph_with(GenConfig::with_zero_dims()),
        seed in 0u64..4,
    ) {
        assert_cpu_matches_interpreter(&graph, seed, seed % 2 == 0);
    }
}

/// Fixed zero-size-dim graphs (the same on every run, unlike the proptest's), optimized and not, also on 1 and 3
/// threads with one-point chunks; at least some of them compute something from empty values.
#[test]
fn fixed_graphs_with_zero_size_dims_match_the_interpreter() {
    let mut with_empties = 0;
    for (i, graph) in seeded_graphs(&GenConfig::with_zero_dims(), 24)
        .iter()
        .enumerate()
    {
        with_empties += usize::from(graph.ids().any(|id| graph.ty(id).numel() == 0));
        for optimize in [true, false] {
            let mut exe = assert_cpu_matches_interpreter(graph, i as u64, optimize);
            let inputs = random_inputs(graph, i as u64);
            let expected = interp::run(graph, &inputs).unwrap();
            exe.set_threads(1);
            assert_outputs_match(graph, &expected, &exe.run(&inputs).unwrap(), "1 thread");
            exe.set_threads(3);
            exe.set_min_chunk(1);
            assert_outputs_match(graph, &expected, &exe.run(&inputs).unwrap(), "3 threads");
        }
    }
    assert!(
        with_empties >= 8,
        "only {with_empties} of 24 graphs have an empty value"
    );
}

proptest! {
    #![proptest_config(graph_gen::proptest_config(256))]

    /// Wider rows, so that the f32x4 loops run, with scalar tails and chunks starting mid-row (3 threads).
    #[test]
    fn random_wide_graphs_match_the_interpreter(graph in arb_graph_with(GenConfig {
        max_dim: 11,
        max_rank: 2,
        ..GenConfig::all_ops()
    }), seed in 0u64..4) {
        let optimize = seed % 2 == 0;
        let mut exe = assert_cpu_matches_interpreter(&graph, seed, optimize);
        let inputs = random_inputs(&graph, seed);
        exe.set_threads(1);
        let serial = exe.run(&inputs).unwrap();
        exe.set_threads(3);
        exe.set_min_chunk(1);
        prop_assert_eq!(bits(&exe.run(&inputs).unwrap()), bits(&serial));
    }
}

// ---- training through a session ----

fn mlp_step(optimizer: &Optimizer, batch: usize) -> Graph {
    let model = zoo::mlp(
        "mlp_small",
        &[16, 32, 8],
        batch,
        kiln::nn::Activation::Relu,
        kiln::nn::Loss::CrossEntropy,
        DType::F32,
    )
    .unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    training_step(&model, "loss", &names, optimizer).unwrap()
}

/// A session's steps follow the interpreter's training loop (`step_on_interpreter`), parameter by parameter.
#[test]
fn session_training_matches_the_interpreter() {
    for optimizer in [
        Optimizer::Sgd(Sgd {
            lr: 0.1,
            momentum: 0.9,
            ..Sgd::default()
        }),
        Optimizer::Adam(Adam::default()),
    ] {
        let step = mlp_step(&optimizer, 8);
        let inputs = random_inputs(&step, 11);
        let mut values: HashMap<String, Tensor> = step
            .inputs()
            .zip(&inputs)
            .map(|(i, t)| (i.name.to_string(), t.clone()))
            .collect();
        let resident: HashMap<String, Tensor> = step
            .inputs()
            .filter(|i| i.role != Role::Data)
            .map(|i| (i.name.to_string(), values[i.name].clone()))
            .collect();
        let exe = kiln::compile(&step, &options(2)).unwrap();
        let mut session = Session::new(exe, &resident).unwrap();
        assert_eq!(session.data_input_names(), ["x", "y"]);
        let data = [values["x"].clone(), values["y"].clone()];
        for k in 0..5 {
            let expected = kiln::step_on_interpreter(&step, &mut values).unwrap();
            let loss = session.step(&data).unwrap();
            assert!(close(loss, expected), "step {k}: loss {loss} vs {expected}");
        }
        for (name, expected) in &values {
            if let Some(got) = session.get(name) {
                let (g, e) = (got.to_f64_vec(), expected.to_f64_vec());
                for (i, (a, b)) in g.iter().zip(&e).enumerate() {
                    assert!(close(*a, *b), "{name}[{i}] after 5 steps: {a} vs {b}");
                }
            }
        }
    }
}

/// The golden cases trained through a session follow the reference trajectories (tolerances of
/// `golden_autodiff.rs`: f32 losses rtol 1e-5, parameters atol 1e-6 + rtol 1e-4; f64 1e-9).
#[test]
fn golden_trajectories_through_a_session() {
    use kiln_tests::golden;
    let cases = golden::load_all().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        for (dtype, loss_rtol, atol, rtol) in [
            (DType::F32, 1e-5, 1e-6, 1e-4),
            (DType::F64, 1e-9, 1e-12, 1e-9),
        ] {
            let model = case.graph(dtype).unwrap();
            let params = kiln::autodiff::param_names(&model);
            let names: Vec<&str> = params.iter().map(String::as_str).collect();
            let step = training_step(&model, "loss", &names, &case.trajectory.optimizer).unwrap();
            let named = case.named_inputs(dtype);
            let exe = kiln::compile(&step, &options(2)).unwrap();
            let mut session = Session::new(exe, &named).unwrap();
            let data: Vec<Tensor> = session
                .data_input_names()
                .iter()
                .map(|n| named[*n].clone())
                .collect();
            let what = format!("{} ({dtype})", case.name);
            for (k, &expected) in case.trajectory.losses_before_each_step.iter().enumerate() {
                let loss = session.step(&data).unwrap();
                let rel = (loss - expected).abs() / expected.abs().max(f64::MIN_POSITIVE);
                assert!(
                    rel <= loss_rtol,
                    "{what} step {k}: loss {loss} vs {expected}"
                );
            }
            for (param, expected) in &case.trajectory.params_after {
                let got = session.get(param).unwrap().to_f64_vec();
                for (i, (a, b)) in got.iter().zip(expected.to_f64_vec()).enumerate() {
                    assert!(
                        (a - b).abs() <= atol + rtol * b.abs(),
                        "{what} {param}[{i}] after: {a:e} vs {b:e}"
                    );
                }
            }
        }
    }
}

// ---- threads ----

/// Every element's bits, with every NaN as one NaN: a NaN's sign and payload are not part of a result (x86 makes
/// a negative NaN where a vector `fmax` or the math library may pass a positive one through).
fn bits(tensors: &[Tensor]) -> Vec<Vec<u64>> {
    tensors
        .iter()
        .map(|t| {
            t.to_f64_vec()
                .iter()
                .map(|x| {
                    if x.is_nan() {
                        f64::NAN.to_bits()
                    } else {
                        x.to_bits()
                    }
                })
                .collect()
        })
        .collect()
}

/// Each point's result doesn't depend on how the parallel range is split, so any thread count gives the same bits
/// (NaNs aside, see [`bits`]).
#[test]
fn outputs_are_bit_identical_for_any_thread_count() {
    for graph in zoo_graphs() {
        let inputs = random_inputs(&graph, 5);
        let reference = bits(
            &kiln::compile(&graph, &options(1))
                .unwrap()
                .run(&inputs)
                .unwrap(),
        );
        for threads in [2, 3] {
            let mut exe = kiln::compile(&graph, &options(threads)).unwrap();
            // Chunks of single points: every way a thread's range can start and end in a row.
            exe.set_min_chunk(1);
            let got = exe.run(&inputs).unwrap();
            assert_eq!(bits(&got), reference, "{} on {threads} threads", graph.name);
        }
    }
}

/// `tanh(a·w + bias)` (a matmul with an epilogue) and the plain product `a·c` (written straight to its output), with
/// `w` and `c` stored transposed (`[n, k]`, read through swapped strides) when `transposed`.
fn tiled_matmul(batch: &[usize], m: usize, k: usize, n: usize, transposed: bool) -> Graph {
    let dims = |rest: [usize; 2]| -> Vec<usize> { batch.iter().copied().chain(rest).collect() };
    let mut b = Builder::new(format!("tiled_{batch:?}_{m}x{k}x{n}_t{transposed}"));
    let a = b.data("a", TensorType::f32(&dims([m, k]))).unwrap();
    let weight = |b: &mut Builder, name: &str| {
        if transposed {
            let stored = b.param(name, TensorType::f32(&dims([n, k]))).unwrap();
            b.transpose_last2(stored).unwrap()
        } else {
            b.param(name, TensorType::f32(&dims([k, n]))).unwrap()
        }
    };
    let w = weight(&mut b, "w");
    let c = weight(&mut b, "c");
    let bias = b.param("bias", TensorType::f32(&[n])).unwrap();
    let product = b.matmul(a, w).unwrap();
    let biased = b.add(product, bias).unwrap();
    let y = b.tanh(biased).unwrap();
    b.output("y", y).unwrap();
    let plain = b.matmul(a, c).unwrap();
    b.output("p", plain).unwrap();
    b.finish()
}

/// Matmuls run in fixed tiles, each one GEMM call and (by default) its epilogue right after: the results are
/// bit-identical for 1, 2 and 3 threads and for the epilogue on tiles or in one pass, and match the interpreter —
/// with edge tiles (m, n not multiples of the tile), transposed operands, and a batch.
#[test]
fn matmul_tiles_are_bit_identical_for_any_thread_count_and_match_the_interpreter() {
    let graphs = [
        tiled_matmul(&[], 200, 96, 300, false),
        tiled_matmul(&[], 130, 80, 150, true),
        tiled_matmul(&[3], 70, 64, 150, true),
    ];
    for graph in graphs {
        let inputs = random_inputs(&graph, 11);
        let expected = interp::run(&graph, &inputs).unwrap();
        let mut reference = None;
        for in_tiles in [true, false] {
            for threads in [1, 2, 3] {
                let mut exe = kiln::compile(&graph, &options(threads)).unwrap();
                exe.set_epilogue_in_tiles(in_tiles);
                let tilings: Vec<_> = exe
                    .steps()
                    .iter()
                    .filter_map(|s| match s {
                        kiln::compile::Step::Matmul { gemm, .. } => Some(gemm.tiling()),
                        kiln::compile::Step::Loop { .. }
                        | kiln::compile::Step::Collective { .. } => None,
                    })
                    .collect();
                assert!(
                    tilings.iter().any(|t| t.count() > 1),
                    "{}: every matmul is one tile: {tilings:?}",
                    graph.name
                );
                let what = format!(
                    "{} on {threads} threads, epilogue in tiles: {in_tiles}",
                    graph.name
                );
                let got = exe.run(&inputs).unwrap();
                assert_outputs_match(&graph, &expected, &got, &what);
                let got = bits(&got);
                match &reference {
                    None => reference = Some(got),
                    Some(r) => assert_eq!(&got, r, "{what}"),
                }
            }
        }
    }
    // The first graph's tiles have edges in both directions.
    let edges = kiln::compile::Tiling::new(1, 200, 300, 96);
    assert!(
        edges.count() > 1 && 200 % edges.tm != 0 && 300 % edges.tn != 0,
        "{edges:?}"
    );
}

/// Runs `graph` (compiled for 2 threads) from `threads` threads at once, `runs` times each: every result must have the
/// bits of a run alone.
fn assert_concurrent_runs_agree(graph: &Graph, seed: u64, threads: usize, runs: usize) {
    let exe = Arc::new(kiln::compile(graph, &options(2)).unwrap());
    let inputs = Arc::new(random_inputs(graph, seed));
    let reference = bits(&exe.run(&inputs).unwrap());
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (exe, inputs) = (Arc::clone(&exe), Arc::clone(&inputs));
            std::thread::spawn(move || {
                (0..runs)
                    .map(|_| bits(&exe.run(&inputs).unwrap()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for got in h.join().unwrap() {
            assert_eq!(got, reference);
        }
    }
}

/// Runs from several threads at once on a pool of 2: one run at a time uses the workers, the others run alone on
/// their own thread; every result has the same bits.
#[test]
fn concurrent_runs_share_the_pool_safely() {
    assert_concurrent_runs_agree(&tiled_matmul(&[], 200, 96, 300, false), 3, 3, 30);
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn an_executable_runs_from_four_threads_at_once() {
    assert_send_sync::<Executable>();
    assert_concurrent_runs_agree(&mlp_step(&Optimizer::Adam(Adam::default()), 32), 9, 4, 20);
}

// ---- errors ----

#[test]
fn wrong_inputs_are_errors_naming_the_input() {
    let graph = zoo::twolayer().unwrap();
    let exe = kiln::compile(&graph, &options(1)).unwrap();
    let inputs = random_inputs(&graph, 1);
    let err = exe.run(&inputs[1..]).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "takes {} input(s), got {}",
            inputs.len(),
            inputs.len() - 1
        )),
        "{err}"
    );

    let first = graph.inputs().next().unwrap();
    let mut wrong_dtype = inputs.clone();
    wrong_dtype[0] = wrong_dtype[0].cast(DType::F64);
    let err = exe.run(&wrong_dtype).unwrap_err().to_string();
    assert!(
        err.contains(&format!("input `{}`", first.name)) && err.contains("f64"),
        "{err}"
    );

    let mut wrong_shape = inputs.clone();
    let n = wrong_shape[0].numel();
    wrong_shape[0] = Tensor::from_f32(&[n], vec![0.0; n]).unwrap();
    let err = exe.run(&wrong_shape).unwrap_err().to_string();
    assert!(
        err.contains(&format!("input `{}` must be {}", first.name, first.ty)),
        "{err}"
    );
}

// ---- CLIF snapshots ----

/// The CLIF of the first kernel of `graph` (optimized and lowered) that stores to a buffer named `stores`.
fn clif_of_kernel_storing(graph: &Graph, stores: &str) -> String {
    let optimized = kiln::optimize(graph).unwrap();
    let program = kiln::fusion::lower(&optimized).unwrap();
    let k = program
        .kernels
        .iter()
        .position(|k| {
            k.writes()
                .iter()
                .any(|b| program.buffers[b.index()].name == stores)
        })
        .unwrap_or_else(|| {
            panic!(
                "no kernel stores `{stores}`\n{}",
                kiln::kernel::print(&program)
            )
        });
    let kernel_ir = kiln::kernel::print(&program);
    let header = kernel_ir
        .split("\n\n")
        .find(|section| section.starts_with(&format!("kernel k{k} ")))
        .unwrap_or_default();
    let clif = kiln::backend::cpu::codegen::clif_text(&program, k).unwrap();
    format!("{header}\n\n{clif}")
}

/// `tanh(x · s + b)` with `b` broadcast along rows: one f32x4 loop (b and s loaded per row and splatted, x stride 1,
/// tanh once per lane), then the scalar tail.
#[test]
fn clif_fused_elementwise_chain() {
    let mut b = Builder::new("chain");
    let x = b.data("x", TensorType::f32(&[8, 18])).unwrap();
    let s = b.param("s", TensorType::f32(&[8, 1])).unwrap();
    let bias = b.param("b", TensorType::f32(&[18])).unwrap();
    let xs = b.mul(x, s).unwrap();
    let h = b.add(xs, bias).unwrap();
    let y = b.tanh(h).unwrap();
    b.output("y", y).unwrap();
    insta::assert_snapshot!(
        "clif__fused_elementwise_chain",
        clif_of_kernel_storing(&b.finish(), "y")
    );
}

/// Row softmax: one point per row, after `kernel::materialize`: `reduce.max` (maxps with a NaN mask, and the exact
/// `fmax` rerun behind a branch), a `for` that stores `exp(x - max)` into the row, `reduce.sum` over the stored row, and
/// the in-place rescale `y = y · (1 / sum)` (f32x4, with the division where the reciprocal is not exact); bottom-tested
/// loops with the accumulators in block parameters.
#[test]
fn clif_row_softmax() {
    let mut b = Builder::new("softmax");
    let x = b.data("x", TensorType::f32(&[4, 10])).unwrap();
    let y = b.softmax(x, -1).unwrap();
    b.output("y", y).unwrap();
    insta::assert_snapshot!(
        "clif__row_softmax",
        clif_of_kernel_storing(&b.finish(), "y")
    );
}

/// `relu(x Wᵀ + b)`: the epilogue reads the GEMM's product from the scratch (table slot past the last buffer),
/// adds the bias and stores both the activation and the ReLU mask the backward pass would read.
#[test]
fn clif_matmul_epilogue() {
    let model = zoo::mlp(
        "linear_relu",
        &[16, 32, 8],
        8,
        kiln::nn::Activation::Relu,
        kiln::nn::Loss::Mse,
        DType::F32,
    )
    .unwrap();
    insta::assert_snapshot!(
        "clif__matmul_epilogue",
        clif_of_kernel_storing(&model, "h0")
    );
}

/// The Adam update of a bias, fused with the column sum that is its gradient: the moments and the parameter are
/// read and written in place.
#[test]
fn clif_adam_update() {
    let model = zoo::twolayer().unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let step = training_step(&model, "loss", &names, &Optimizer::Adam(Adam::default())).unwrap();
    insta::assert_snapshot!(
        "clif__adam_update",
        clif_of_kernel_storing(&step, "new.l0.bias")
    );
}

/// A causal attention softmax: the mask's `index k <= index q` runs as i32x4 lanes inside the row's reductions and
/// its `for`, so the kernel stays a vector at a time (with `index` scalar-only it ran one point at a time, 5× slower
/// at T = 128), and matches the interpreter at lengths that leave a remainder for the scalar tail.
#[test]
fn causal_softmax_runs_its_mask_a_vector_at_a_time() {
    let graph = |t: usize| {
        let mut b = Builder::new("causal_softmax");
        let ty = TensorType::f32(&[2, t, 8]);
        let q = b.data("q", ty.clone()).unwrap();
        let k = b.data("k", ty.clone()).unwrap();
        let v = b.data("v", ty).unwrap();
        let y = b.scaled_dot_product_attention(q, k, v, true).unwrap();
        b.output("y", y).unwrap();
        b.finish()
    };
    // Not `kiln::optimize`d: at this size constant folding would store the mask as a bool constant.
    let program = kiln::fusion::lower(&graph(16)).unwrap();
    let clif: Vec<String> = (0..program.kernels.len())
        .map(|k| kiln::backend::cpu::codegen::clif_text(&program, k).unwrap())
        .collect();
    let masked = clif
        .iter()
        .find(|c| c.contains("icmp sle") || c.contains("icmp sge"))
        .expect("a kernel compares indices");
    assert!(
        // `vconst.i32x4` is the lanes' index steps [0, 1, 2, 3]·stride.
        masked.contains("vconst.i32x4") && masked.contains("load.f32x4"),
        "the mask is not vectorized:\n{masked}"
    );
    for t in [5, 16, 37] {
        let graph = graph(t);
        let inputs = differential::random_inputs(&graph, t as u64);
        let tol = Tolerance {
            atol: 1e-6,
            rtol: 1e-5,
        };
        differential::check_every_backend(&graph, &inputs, tol);
    }
}
