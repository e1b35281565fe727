//! The Vulkan backend within the device's limits (`DeviceLimits`): storage-buffer bindings, workgroup counts, size
//! and shared memory, buffer range — each with limits lowered below the device's, so every small-limit path runs on
//! any device (lavapipe in CI) and is compared with the graph interpreter — and a `VulkanExecutable` used from several
//! threads at once.
//!
//! Tests that need a device print why and return when there is none — unless `KILN_REQUIRE_VULKAN=1`.

use crate::support::random::random_inputs;
use crate::support::vulkan::device;
use kiln::backend::spirv::{self, Device, DeviceLimits, SpirvKernel, VulkanExecutable};
use kiln::compile::{compile_vulkan, compile_vulkan_with, vulkan_program};
use kiln::ir::{interp, Builder, DType, Graph, Tensor, TensorType, Value};
use kiln::Options;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

// ---- support ----

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= 1e-4 + 1e-4 * b.abs()
}

fn assert_match(graph: &Graph, expected: &[Tensor], actual: &[Tensor], what: &str) {
    assert_eq!(expected.len(), actual.len(), "{what}: output count");
    for ((o, e), a) in graph.outputs().iter().zip(expected).zip(actual) {
        assert_eq!(e.ty(), a.ty(), "{what}: output {} type", o.name);
        let (ev, av) = (e.to_f64_vec(), a.to_f64_vec());
        if let Some(i) = (0..ev.len()).find(|&i| !close(av[i], ev[i])) {
            panic!(
                "{what}: output {} element {i}: interpreter {}, Vulkan {}",
                o.name, ev[i], av[i]
            );
        }
    }
}

/// The device's options with `limits` changed by `lower`.
fn lowered(device: &Device, lower: impl FnOnce(&mut DeviceLimits)) -> spirv::Options {
    let mut options = spirv::Options::gpu_plans(device.info());
    lower(&mut options.limits);
    options
}

/// The shaders `compile_vulkan_with` would run for `graph` under `options` (fusion capped, then SPIR-V).
fn shaders(graph: &Graph, options: &spirv::Options) -> Vec<SpirvKernel> {
    let program = vulkan_program(graph, &Options::default(), options).unwrap();
    spirv::lower_with(&program, options).unwrap_or_else(|e| panic!("{}: {e}", graph.name))
}

/// Compiles `graph` under `options` and runs it on seeded inputs against the interpreter.
fn run_checked(device: &Device, graph: &Graph, options: &spirv::Options, seed: u64, what: &str) {
    let inputs = random_inputs(graph, seed);
    let expected = interp::run(graph, &inputs).unwrap();
    let exe = compile_vulkan_with(device, graph, &Options::default(), options)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let actual = exe.run(&inputs).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_match(graph, &expected, &actual, what);
}

/// `out = x0 + x1 + … + x{n-1}` (a left fold), every `xi` a distinct `f32[4]` input: one fused expression touching
/// `n + 1` buffers.
fn sum_of_inputs(n: usize) -> Graph {
    let mut b = Builder::new(format!("sum{n}"));
    let mut acc = b.data("x0", TensorType::f32(&[4])).unwrap();
    for i in 1..n {
        let x = b.data(&format!("x{i}"), TensorType::f32(&[4])).unwrap();
        acc = b.add(acc, x).unwrap();
    }
    b.output("out", acc).unwrap();
    b.finish()
}

/// A seeded random wide graph: `inputs` inputs of `f32[rows, 8]` (and a few per-row `f32[rows, 1]`, broadcast)
/// combined by a random tree of elementwise ops into one output — one fused kernel without a cap — and, when
/// `reduce`, that output also summed per row (a reduction fused with the wide expression).
fn wide_graph(seed: u64, inputs: usize, rows: usize, reduce: bool) -> Graph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut b = Builder::new(format!("wide{seed}"));
    let mut pool: Vec<Value> = (0..inputs)
        .map(|i| {
            let cols = if rng.random_bool(0.2) { 1 } else { 8 };
            b.data(&format!("x{i}"), TensorType::f32(&[rows, cols]))
                .unwrap()
        })
        .collect();
    // Combine two random values until one is left (a random tree); the builder broadcasts `[rows, 1]`.
    while pool.len() > 1 {
        let i = rng.random_range(0..pool.len());
        let x = pool.swap_remove(i);
        let j = rng.random_range(0..pool.len());
        let y = pool.swap_remove(j);
        let z = match rng.random_range(0..4) {
            0 => b.add(x, y),
            1 => b.sub(x, y),
            2 => b.max(x, y),
            _ => {
                let t = b.tanh(x).unwrap();
                b.mul(t, y)
            }
        }
        .unwrap();
        pool.push(z);
    }
    let mut out = pool[0];
    if b.shape(out) != [rows, 8] {
        let eight = b.full(TensorType::f32(&[rows, 8]), 1.0).unwrap();
        out = b.mul(out, eight).unwrap();
    }
    b.output("out", out).unwrap();
    if reduce {
        let s = b.reduce_sum(out, &[1], false).unwrap();
        b.output("row_sum", s).unwrap();
    }
    b.finish()
}

// ---- bindings ----

/// The case: 40 distinct inputs in one fused expression. Before the binding cap it was one kernel binding 41
/// storage buffers, past lavapipe's 32: the run returned zeros with no error.
#[test]
fn forty_inputs_in_one_expression_match_the_interpreter() {
    let Some(device) = device() else { return };
    let graph = sum_of_inputs(40);
    let options = spirv::Options::for_device(device.info());
    let cap = options.limits.max_storage_buffers as usize;
    let kernels = shaders(&graph, &options);
    assert!(
        kernels.len() > 1 && kernels.iter().all(|k| k.bindings.len() <= cap),
        "bindings per kernel {:?}, limit {cap}",
        kernels.iter().map(|k| k.bindings.len()).collect::<Vec<_>>()
    );
    let inputs = random_inputs(&graph, 1);
    let expected = interp::run(&graph, &inputs).unwrap();
    let exe = compile_vulkan(device, &graph, &Options::default()).unwrap();
    let actual = exe.run(&inputs).unwrap();
    assert_match(&graph, &expected, &actual, "40 inputs");
    assert!(actual[0].to_f64_vec().iter().any(|&v| v != 0.0));
}

/// A program made without the cap (plain `fusion::lower`) is refused with an error naming the kernel and the limit
/// — by the code generator under the device's limits, and by the runtime whatever the generator was told — never
/// run to a silent wrong answer.
#[test]
fn a_kernel_over_the_binding_limit_is_an_error() {
    let graph = sum_of_inputs(40);
    let program = kiln::fusion::lower(&graph).unwrap();
    assert_eq!(program.kernels.len(), 1);
    let options = spirv::Options {
        limits: DeviceLimits {
            max_storage_buffers: 32,
            ..DeviceLimits::UNCHECKED
        },
        ..spirv::Options::default()
    };
    let e = spirv::lower_with(&program, &options)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("41 storage buffers") && e.contains("allows 32"),
        "{e}"
    );
    let Some(device) = device() else { return };
    // Lowered without any limit: the runtime checks the device's own.
    let kernels = spirv::lower(&program).unwrap();
    let desc = spirv::program_desc(&program, &kernels).unwrap();
    let limit = device.info().limits.max_storage_buffers;
    let created = VulkanExecutable::new(device, desc);
    if limit < 41 {
        let e = created.unwrap_err().to_string();
        assert!(
            e.contains("binds 41 storage buffers")
                && e.contains("maxPerStageDescriptorStorageBuffers"),
            "{e}"
        );
    }
}

/// The cut (rule 8 of fusion's cost model) fills each kernel up to the limit: a 40-input sum under a cap of 32 is a
/// 31-input partial sum (32 bindings with its output) and a kernel adding the other 9 (11 bindings); under a cap of
/// 8, a first kernel of 7 inputs, five adding 6 each to the running sum, and one adding the last 3.
#[test]
fn the_cut_fills_each_kernel_up_to_the_limit() {
    let graph = sum_of_inputs(40);
    let bindings = |cap: u32| {
        let options = spirv::Options {
            limits: DeviceLimits {
                max_storage_buffers: cap,
                ..DeviceLimits::UNCHECKED
            },
            ..spirv::Options::default()
        };
        shaders(&graph, &options)
            .iter()
            .map(|k| k.bindings.len())
            .collect::<Vec<_>>()
    };
    assert_eq!(bindings(32), [32, 11]);
    assert_eq!(bindings(8), [8, 8, 8, 8, 8, 8, 5]);
    assert_eq!(bindings(41), [41]);
}

/// `y1 = exp(x)`, `y{i} = y{i-1} + 1`, every `yi` a graph output: fusion makes one kernel writing all `n` of them
/// (rule 6's extra outputs), binding `n + 1` buffers, which only cutting a stored member can split.
fn chain_of_outputs(n: usize) -> Graph {
    let mut b = Builder::new(format!("outputs{n}"));
    let x = b.data("x", TensorType::f32(&[4])).unwrap();
    let one = b.full(TensorType::f32(&[4]), 1.0).unwrap();
    let mut y = b.exp(x).unwrap();
    b.output("y1", y).unwrap();
    for i in 2..=n {
        y = b.add(y, one).unwrap();
        b.output(&format!("y{i}"), y).unwrap();
    }
    b.finish()
}

/// A kernel over the cap because of its outputs (not its reads) is cut too, and still matches the interpreter.
#[test]
fn a_kernel_with_more_outputs_than_the_binding_limit_is_cut() {
    let graph = chain_of_outputs(40);
    for cap in [32, 8] {
        let options = spirv::Options {
            limits: DeviceLimits {
                max_storage_buffers: cap,
                ..DeviceLimits::UNCHECKED
            },
            ..spirv::Options::default()
        };
        let bindings: Vec<usize> = shaders(&graph, &options)
            .iter()
            .map(|k| k.bindings.len())
            .collect();
        assert!(
            bindings.len() > 1 && bindings.iter().all(|&b| b <= cap as usize),
            "cap {cap}: bindings per kernel {bindings:?}"
        );
        if let Some(device) = device() {
            let options = lowered(device, |l| l.max_storage_buffers = cap);
            run_checked(
                device,
                &graph,
                &options,
                3,
                &format!("40 outputs, cap {cap}"),
            );
        }
    }
}

/// Lowered binding limits (down to Vulkan's minimum, 4) on wide random graphs: every kernel fits and every result
/// matches the interpreter — the random-graph differential case for kernels wider than the binding limit.
#[test]
fn wide_random_graphs_under_lowered_binding_limits() {
    let dev = device();
    for seed in 0..12u64 {
        let inputs = 6 + (seed as usize * 7) % 30;
        let graph = wide_graph(seed, inputs, 5, seed % 3 == 0);
        // Without a cap, one kernel binds every input and the output.
        let uncapped = kiln::kernel_program(&graph, &Options::default()).unwrap();
        let widest = spirv::lower(&uncapped)
            .unwrap()
            .iter()
            .map(|k| k.bindings.len())
            .max()
            .unwrap();
        assert!(widest > inputs, "seed {seed}: {widest} bindings");
        for cap in [4u32, 5, 8, 13] {
            let options = match dev {
                Some(d) => lowered(d, |l| l.max_storage_buffers = cap),
                None => spirv::Options {
                    limits: DeviceLimits {
                        max_storage_buffers: cap,
                        ..DeviceLimits::UNCHECKED
                    },
                    ..spirv::Options::default()
                },
            };
            let kernels = shaders(&graph, &options);
            assert!(
                kernels.iter().all(|k| k.bindings.len() <= cap as usize),
                "seed {seed}, cap {cap}: bindings {:?}",
                kernels.iter().map(|k| k.bindings.len()).collect::<Vec<_>>()
            );
            if let Some(d) = dev {
                run_checked(
                    d,
                    &graph,
                    &options,
                    seed,
                    &format!("seed {seed} ({inputs} inputs), cap {cap}"),
                );
            }
            // A cap no kernel reaches changes nothing: the CPU's program.
            if widest <= cap as usize {
                assert_eq!(
                    vulkan_program(&graph, &Options::default(), &options).unwrap(),
                    uncapped,
                    "seed {seed}, cap {cap}"
                );
            }
        }
        assert_eq!(
            vulkan_program(&graph, &Options::default(), &spirv::Options::default()).unwrap(),
            uncapped,
            "seed {seed}"
        );
    }
}

/// A concat of more operands than the limit cannot be cut: a clear error naming the kernel and the limit.
#[test]
fn a_concat_wider_than_the_binding_limit_is_an_error() {
    let mut b = Builder::new("cat");
    let xs: Vec<Value> = (0..6)
        .map(|i| b.data(&format!("x{i}"), TensorType::f32(&[2])).unwrap())
        .collect();
    let c = b.concat(&xs, 0).unwrap();
    b.output("out", c).unwrap();
    let graph = b.finish();
    let options = spirv::Options {
        limits: DeviceLimits {
            max_storage_buffers: 4,
            ..DeviceLimits::UNCHECKED
        },
        ..spirv::Options::default()
    };
    let program = vulkan_program(&graph, &Options::default(), &options).unwrap();
    let e = spirv::lower_with(&program, &options)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("7 storage buffers") && e.contains("allows 4"),
        "{e}"
    );
}

// ---- workgroup counts ----

/// Workgroup counts lowered so that a per-point kernel, a workgroup reduction and a tiled matmul need 3-D grids (or
/// fall back to per point): results match the interpreter, grids respect the limits.
#[test]
fn lowered_workgroup_counts_dispatch_in_three_dimensions() {
    // 5,000 points: 79 workgroups of 64 → x = 4, 20 rows → y = 3, z = 7 (21 rows, the last one guarded off).
    let elementwise = kiln::ir::text::parse(
        "graph ew {\n  %x = input{role=data} : f32[5000]\n  %y = tanh %x : f32[5000]\n  output y = %y\n}",
    )
    .unwrap();
    // 300 rows of 128, one workgroup per row: x = 4, 75 rows → y = 3, z = 25.
    let rows = kiln::ir::text::parse(
        "graph rows {\n  %x = input{role=data} : f32[300,128]\n  %s = reduce_sum{axes=[1], keep_dims=false} %x : f32[300]\n  output s = %s\n}",
    )
    .unwrap();
    let mut b = Builder::new("mm");
    let a = b.data("a", TensorType::f32(&[40, 24])).unwrap();
    let w = b.data("w", TensorType::f32(&[24, 70])).unwrap();
    let c = b.matmul(a, w).unwrap();
    b.output("c", c).unwrap();
    let matmul = b.finish();
    let limits = |l: &mut DeviceLimits| l.max_workgroups = [4, 3, 100];
    let options = |d: Option<&Device>, f: &dyn Fn(&mut DeviceLimits)| {
        let mut o = match d {
            Some(d) => spirv::Options::gpu_plans(d.info()),
            None => spirv::Options {
                workgroup_reductions: Some(64),
                tiled_matmul: true,
                ..spirv::Options::default()
            },
        };
        f(&mut o.limits);
        o
    };
    let dev = device();
    for graph in [&elementwise, &rows, &matmul] {
        let o = options(dev, &limits);
        let kernels = shaders(graph, &o);
        for k in &kernels {
            assert!(
                k.groups.iter().zip([4, 3, 100]).all(|(&g, max)| g <= max),
                "{}: {:?}",
                graph.name,
                k.groups
            );
        }
        if let Some(d) = dev {
            run_checked(d, graph, &o, 3, &graph.name);
        }
    }
    let o = options(dev, &limits);
    assert_eq!(shaders(&elementwise, &o)[0].groups, [4, 3, 7]);
    let row_kernel = &shaders(&rows, &o)[0];
    assert_eq!(
        (row_kernel.groups, row_kernel.local_size),
        ([4, 3, 25], 64),
        "one workgroup of 64 per row"
    );
    // The tiled matmul needs 5 column blocks, more than 4: per point instead.
    assert_eq!(shaders(&matmul, &o)[0].local_size, 64);
    // Too few workgroups for the points at all: an error naming the limit.
    let tiny = options(dev, &|l: &mut DeviceLimits| l.max_workgroups = [2, 2, 2]);
    let program = vulkan_program(&elementwise, &Options::default(), &tiny).unwrap();
    let e = spirv::lower_with(&program, &tiny).unwrap_err().to_string();
    assert!(e.contains("maxComputeWorkGroupCount"), "{e}");
}

// ---- workgroup size and shared memory ----

/// A row softmax of 4,096-wide rows (a 256-invocation workgroup reduction), a 64-wide row sum (64 invocations) and
/// a matmul (the 256-invocation tiled plan) under lowered workgroup sizes and shared memory.
fn plan_graphs() -> Vec<Graph> {
    let parse = |src: &str| kiln::ir::text::parse(src).unwrap();
    let mut b = Builder::new("softmax");
    let x = b.data("x", TensorType::f32(&[3, 4096])).unwrap();
    let m = b.reduce_max(x, &[1], true).unwrap();
    let d = b.sub(x, m).unwrap();
    let e = b.exp(d).unwrap();
    let s = b.reduce_sum(e, &[1], true).unwrap();
    let y = b.div(e, s).unwrap();
    b.output("y", y).unwrap();
    let softmax = b.finish();
    let mut b = Builder::new("mm");
    let a = b.data("a", TensorType::f32(&[33, 40])).unwrap();
    let w = b.data("w", TensorType::f32(&[40, 17])).unwrap();
    let c = b.matmul(a, w).unwrap();
    b.output("c", c).unwrap();
    vec![
        softmax,
        parse(
            "graph rows {\n  %x = input{role=data} : f32[9,64]\n  %s = reduce_sum{axes=[1], keep_dims=false} %x : f32[9]\n  output s = %s\n}",
        ),
        b.finish(),
    ]
}

/// The GPU plans' options (workgroup reductions from 64 points, tiled matmuls), with or without a device.
fn gpu_options(dev: Option<&Device>) -> spirv::Options {
    match dev {
        Some(d) => spirv::Options::gpu_plans(d.info()),
        None => spirv::Options {
            workgroup_reductions: Some(64),
            tiled_matmul: true,
            ..spirv::Options::default()
        },
    }
}

#[test]
fn lowered_workgroup_sizes_shrink_the_plans() {
    let dev = device();
    let graphs = plan_graphs();
    // Local sizes of (softmax, row sum, matmul) per invocation limit.
    let cases: [(u32, [u32; 3]); 4] = [
        (1024, [256, 64, 256]),
        (128, [128, 64, 64]),
        (32, [32, 32, 32]),
        (1, [1, 1, 1]),
    ];
    for (max, expected) in cases {
        let mut o = gpu_options(dev);
        o.limits.max_workgroup_invocations = max;
        o.limits.max_workgroup_size[0] = max.max(2);
        // Without shuffles, so the shared-memory tree runs at every size.
        o.subgroup_size = None;
        for (graph, want) in graphs.iter().zip(expected) {
            let kernels = shaders(graph, &o);
            assert_eq!(kernels[0].local_size, want, "{} at {max}", graph.name);
            if let Some(d) = dev {
                run_checked(
                    d,
                    graph,
                    &o,
                    5,
                    &format!("{} at {max} invocations", graph.name),
                );
            }
        }
    }
}

#[test]
fn lowered_shared_memory_halves_the_workgroup_or_runs_per_point() {
    let dev = device();
    let graphs = plan_graphs();
    // (shared bytes, local sizes of softmax, row sum, matmul): the softmax's 256 invocations need 1 KiB of f32 per
    // shared array, the 64-wide sum 256 bytes, the tiled matmul two 16×16 f32 tiles (2 KiB).
    let cases: [(u32, [u32; 3]); 4] = [
        (16_384, [256, 64, 256]),
        (1024, [256, 64, 64]),
        (512, [128, 64, 64]),
        (0, [64, 64, 64]),
    ];
    for (bytes, expected) in cases {
        let mut o = gpu_options(dev);
        o.limits.max_shared_memory_bytes = bytes;
        o.subgroup_size = None;
        for (graph, want) in graphs.iter().zip(expected) {
            let kernels = shaders(graph, &o);
            assert_eq!(
                kernels[0].local_size, want,
                "{} at {bytes} bytes",
                graph.name
            );
            if let Some(d) = dev {
                run_checked(d, graph, &o, 6, &format!("{} at {bytes} bytes", graph.name));
            }
        }
    }
}

/// A buffer larger than `maxStorageBufferRange` is an error naming the buffer and the limit.
#[test]
fn a_buffer_past_the_storage_buffer_range_is_an_error() {
    let graph = kiln::ir::text::parse(
        "graph big {\n  %x = input{role=data} : f32[512]\n  %y = exp %x : f32[512]\n  output y = %y\n}",
    )
    .unwrap();
    let options = spirv::Options {
        limits: DeviceLimits {
            max_storage_buffer_range: 1024,
            ..DeviceLimits::UNCHECKED
        },
        ..spirv::Options::default()
    };
    let program = vulkan_program(&graph, &Options::default(), &options).unwrap();
    let e = spirv::lower_with(&program, &options)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2048 bytes") && e.contains("maxStorageBufferRange (1024 bytes)"),
        "{e}"
    );
}

/// The device's limits are read, at least Vulkan's required minimums.
#[test]
fn device_limits_are_at_least_vulkans_minimums() {
    let Some(device) = device() else { return };
    let (l, min) = (device.info().limits, DeviceLimits::VULKAN_MIN);
    assert!(l.max_storage_buffers >= min.max_storage_buffers, "{l:?}");
    assert!(l.max_bound_descriptor_sets >= min.max_bound_descriptor_sets);
    assert!(l.max_workgroup_invocations >= min.max_workgroup_invocations);
    assert!(l.max_shared_memory_bytes >= min.max_shared_memory_bytes);
    assert!(l.max_storage_buffer_range >= min.max_storage_buffer_range);
    for i in 0..3 {
        assert!(l.max_workgroups[i] >= min.max_workgroups[i]);
        assert!(l.max_workgroup_size[i] >= min.max_workgroup_size[i]);
    }
    assert_eq!(l.max_workgroups, device.info().max_workgroups);
}

// ---- threads ----

fn assert_send_sync<T: Send + Sync>() {}

/// A small training step (matmuls, ReLU, MSE, Adam): several kernels and a dozen buffers.
fn training_graph() -> Graph {
    let model = kiln::zoo::mlp(
        "mlp",
        &[12, 16, 4],
        8,
        kiln::nn::Activation::Relu,
        kiln::nn::Loss::Mse,
        DType::F32,
    )
    .unwrap();
    let params: Vec<String> = model
        .inputs()
        .filter(|i| i.role == kiln::Role::Param)
        .map(|i| i.name.to_string())
        .collect();
    let params: Vec<&str> = params.iter().map(String::as_str).collect();
    kiln::training_step(
        &model,
        "loss",
        &params,
        &kiln::Optimizer::Adam(kiln::Adam::default()),
    )
    .unwrap()
}

/// Runs each of `exes` from `threads` threads at once, `runs` times each, every thread with its own inputs: every
/// result must have the bits of a run of the same inputs alone.
fn assert_concurrent_runs_agree(
    exes: &[Arc<VulkanExecutable>],
    graphs: &[Graph],
    threads: u64,
    runs: usize,
) {
    let mut handles = Vec::new();
    for (e, (exe, graph)) in exes.iter().zip(graphs).enumerate() {
        for t in 0..threads {
            let inputs = random_inputs(graph, 100 * e as u64 + t);
            let alone: Vec<Vec<u64>> = bits(&exe.run(&inputs).unwrap());
            let exe = Arc::clone(exe);
            handles.push(std::thread::spawn(move || {
                for r in 0..runs {
                    let got = bits(&exe.run(&inputs).unwrap());
                    assert_eq!(got, alone, "executable {e}, thread {t}, run {r}");
                }
            }));
        }
    }
    for h in handles {
        h.join().unwrap();
    }
}

fn bits(ts: &[Tensor]) -> Vec<Vec<u64>> {
    ts.iter()
        .map(|t| t.to_f64_vec().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// One executable shared by four threads, each running its own inputs: runs are serialized on the executable's
/// staging buffer, command buffer and fence (its run lock), so no thread sees another's inputs or outputs.
#[test]
fn an_executable_runs_from_four_threads_at_once() {
    assert_send_sync::<VulkanExecutable>();
    let Some(device) = device() else { return };
    let graph = training_graph();
    let exe = Arc::new(compile_vulkan(device, &graph, &Options::default()).unwrap());
    // The shared executable agrees with the interpreter, then with itself from every thread.
    let inputs = random_inputs(&graph, 7);
    assert_match(
        &graph,
        &interp::run(&graph, &inputs).unwrap(),
        &exe.run(&inputs).unwrap(),
        "training step",
    );
    assert_concurrent_runs_agree(&[exe], &[graph], 4, 25);
}

/// Three executables on one device, each from two threads at once: they share the device's one queue, whose
/// submissions the device serializes (Vulkan requires a queue to be used by one thread at a time).
#[test]
fn executables_on_one_device_run_from_several_threads_at_once() {
    let Some(device) = device() else { return };
    let graphs = vec![training_graph(), sum_of_inputs(40), plan_graphs().remove(0)];
    let exes: Vec<Arc<VulkanExecutable>> = graphs
        .iter()
        .map(|g| Arc::new(compile_vulkan(device, g, &Options::default()).unwrap()))
        .collect();
    assert_concurrent_runs_agree(&exes, &graphs, 2, 25);
}

/// Executables created and dropped on some threads while others run: creation uploads constants through the
/// shared queue, and dropping waits for it.
#[test]
fn creating_and_dropping_executables_beside_running_ones() {
    let Some(device) = device() else { return };
    let graph = training_graph();
    let exe = Arc::new(compile_vulkan(device, &graph, &Options::default()).unwrap());
    let inputs = random_inputs(&graph, 11);
    let alone = bits(&exe.run(&inputs).unwrap());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..20 {
                    assert_eq!(bits(&exe.run(&inputs).unwrap()), alone);
                }
            });
        }
        for t in 0..2u64 {
            s.spawn(move || {
                // A constant buffer (a dense literal) is uploaded at creation.
                let mut b = Builder::new("k");
                let x = b.data("x", TensorType::f32(&[6])).unwrap();
                let c = b
                    .literal(
                        TensorType::f32(&[6]),
                        (0..6).map(|i| (i + t) as f64).collect(),
                    )
                    .unwrap();
                let y = b.mul(x, c).unwrap();
                b.output("y", y).unwrap();
                let g = b.finish();
                for i in 0..5 {
                    let inputs = random_inputs(&g, i);
                    let exe = compile_vulkan(device, &g, &Options::default()).unwrap();
                    assert_match(
                        &g,
                        &interp::run(&g, &inputs).unwrap(),
                        &exe.run(&inputs).unwrap(),
                        "k",
                    );
                }
            });
        }
    });
}

// ---- the CLI ----

/// The reproduction: `kiln run` of a 40-input sum on Vulkan prints what the interpreter prints (it printed
/// zeros, or crashed in the driver, before the binding cap), and `kiln devices` shows the limits.
#[test]
fn kiln_run_of_forty_inputs_on_vulkan_matches_the_interpreter() {
    use crate::support::kiln_cli::kiln;
    if !crate::support::vulkan::vulkan_available() {
        return;
    }
    let file = tempfile::Builder::new()
        .prefix("kiln-limits-sum40-")
        .suffix(".kir")
        .tempfile()
        .unwrap();
    let path = file.path();
    std::fs::write(path, kiln::ir::text::print(&sum_of_inputs(40))).unwrap();
    let run = |backend: &str| {
        let args = [
            std::ffi::OsStr::new("run"),
            path.as_os_str(),
            "--backend".as_ref(),
            backend.as_ref(),
        ];
        kiln(&args).ok()
    };
    let (interp, vulkan) = (run("interp"), run("vulkan"));
    assert_eq!(vulkan, interp);
    assert!(!interp.contains("[0, 0, 0, 0]"), "{interp}");
    let devices = kiln(&["devices"]).ok();
    assert!(
        devices.contains("storage buffers per shader") && devices.contains("B shared memory"),
        "{devices}"
    );
}
