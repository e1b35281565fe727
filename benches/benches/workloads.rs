//! The CPU-backend issue's workloads W1–W5, each next to a baseline measured in the same run.
//!
//! Run with `cargo bench -p kiln-benches` (about two minutes; `-- W3` runs one group). Criterion prints each
//! measurement; at the end a table puts every workload's median time next to its baseline's, with the ratio.
//! Compiled graphs run through a `kiln::Session`, which feeds the inputs in place and keeps the outputs in buffers
//! it owns between steps, like onnxruntime's I/O binding in the peers' script.

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use kiln::{Options, Session, Tensor};
use kiln_benches::*;
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per benchmark id (`group/function`), the seconds per iteration of every sample Criterion took.
static SAMPLES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Benchmarks `f` as `group/name`, recording its time per iteration for the ratio table.
fn measure(group: &mut Group<'_>, group_name: &str, name: &str, mut f: impl FnMut()) {
    let id = format!("{group_name}/{name}");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                f();
            }
            let elapsed = started.elapsed();
            let mut samples = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
            samples
                .entry(id.clone())
                .or_default()
                .push(elapsed.as_secs_f64() / iters as f64);
            elapsed
        })
    });
}

/// The median seconds per iteration of `id`.
fn median(id: &str) -> Option<f64> {
    let samples = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = samples.get(id)?.clone();
    s.sort_by(f64::total_cmp);
    Some(s[s.len() / 2])
}

/// A session on a freshly compiled `graph` whose inputs are all fed each step (matmul epilogues in one pass after
/// the product, the default).
fn session(graph: &kiln::Graph, options: &Options) -> Session {
    session_with(graph, options, false)
}

/// A session like [`session`], with matmul epilogues on each tile (`in_tiles`) or in one pass after the product.
fn session_with(graph: &kiln::Graph, options: &Options, in_tiles: bool) -> Session {
    let mut exe = kiln::compile(graph, options).expect("the workload compiles");
    exe.set_epilogue_in_tiles(in_tiles);
    Session::new(exe, &HashMap::new()).expect("no resident inputs")
}

fn step(session: &mut Session, inputs: &[Tensor]) {
    session.step(black_box(inputs)).expect("inputs fit");
}

/// For workloads of a few milliseconds or more: ten samples of equal iteration counts.
fn big(group: &mut Group<'_>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// For workloads well under a millisecond.
fn small(group: &mut Group<'_>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn unfused() -> Options {
    Options {
        fuse: false,
        ..Options::default()
    }
}

fn w1(c: &mut Criterion) {
    let graph = w1_graph(W1_LEN).expect("W1 builds");
    let x = normal_tensor(&[W1_LEN], 1, 1.0);
    let inputs = [x.clone()];
    let mut group = c.benchmark_group("W1");
    big(&mut group);
    group.throughput(Throughput::Bytes(8 * W1_LEN as u64));
    let mut fused = session(&graph, &Options::default());
    measure(&mut group, "W1", "kiln fused", || step(&mut fused, &inputs));
    drop(fused);
    let mut each_op = session(&graph, &unfused());
    measure(&mut group, "W1", "kiln unfused", || {
        step(&mut each_op, &inputs)
    });
    drop(each_op);
    let source = x.as_f32().expect("f32").to_vec();
    let mut copy = vec![0.0f32; W1_LEN];
    measure(&mut group, "W1", "memcpy", || {
        copy.copy_from_slice(black_box(&source));
        black_box(&mut copy);
    });
    group.finish();
}

fn w2(c: &mut Criterion) {
    let [rows, cols] = W2_SHAPE;
    let graph = softmax_graph(rows, cols).expect("W2 builds");
    let x = normal_tensor(&W2_SHAPE, 2, 3.0);
    let inputs = [x.clone()];
    let mut group = c.benchmark_group("W2");
    big(&mut group);
    group.throughput(Throughput::Bytes(8 * (rows * cols) as u64));
    let mut kiln = session(&graph, &Options::default());
    measure(&mut group, "W2", "kiln", || step(&mut kiln, &inputs));
    let source = x.as_f32().expect("f32");
    let mut y = vec![0.0f32; rows * cols];
    measure(&mut group, "W2", "scalar loop", || {
        softmax_rows(black_box(source), cols, &mut y);
        black_box(&mut y);
    });
    group.finish();
}

const W3_SIZES: [(usize, usize, usize); 2] = [(1024, 1024, 1024), (256, 784, 256)];

fn w3_name(m: usize, k: usize, n: usize) -> String {
    format!("W3 {m}x{k}x{n}")
}

fn w3(c: &mut Criterion) {
    for (m, k, n) in W3_SIZES {
        let name = w3_name(m, k, n);
        let graph = matmul_graph(m, k, n).expect("W3 builds");
        let a = normal_tensor(&[m, k], 3, 1.0);
        let b = normal_tensor(&[k, n], 4, 1.0);
        let inputs = [a.clone(), b.clone()];
        let mut group = c.benchmark_group(&name);
        small(&mut group);
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let mut kiln = session(&graph, &Options::default());
        measure(&mut group, &name, "kiln", || step(&mut kiln, &inputs));
        let (a, b) = (a.as_f32().expect("f32"), b.as_f32().expect("f32"));
        let mut out = vec![0.0f32; m * n];
        measure(&mut group, &name, "sgemm", || {
            sgemm(m, k, n, black_box(a), black_box(b), &mut out);
            black_box(&mut out);
        });
        group.finish();
    }
}

fn w4(c: &mut Criterion) {
    let graph = w4_step().expect("W4 builds");
    let inputs = [
        normal_tensor(&[W4_BATCH, MLP_DIMS[0]], 5, 1.0),
        labels(W4_BATCH, 10, 6),
    ];
    let mut group = c.benchmark_group("W4");
    small(&mut group);
    group.throughput(Throughput::Elements(1));
    let train = |options: &Options, in_tiles: bool| {
        let mut exe = kiln::compile(&graph, options).expect("W4 compiles");
        exe.set_epilogue_in_tiles(in_tiles);
        let compile_ms = exe.compile_time().as_secs_f64() * 1e3;
        let session = Session::new(exe, &mlp_params(7)).expect("the parameters fit");
        (session, compile_ms)
    };
    let (mut fused, compile_ms) = train(&Options::default(), false);
    println!("W4: compile_time() of the step: {compile_ms:.1} ms");
    record("W4.compile_ms", compile_ms);
    measure(&mut group, "W4", "kiln step", || step(&mut fused, &inputs));
    drop(fused);
    let (mut tiles, _) = train(&Options::default(), true);
    measure(&mut group, "W4", "kiln step, epilogue in tiles", || {
        step(&mut tiles, &inputs)
    });
    drop(tiles);
    let (mut each_op, _) = train(&unfused(), false);
    measure(&mut group, "W4", "kiln unfused step", || {
        step(&mut each_op, &inputs)
    });
    group.finish();

    let mut group = c.benchmark_group("W4 compile");
    big(&mut group);
    measure(&mut group, "W4 compile", "kiln::compile", || {
        black_box(kiln::compile(black_box(&graph), &Options::default()).expect("W4 compiles"));
    });
    group.finish();
}

fn w5(c: &mut Criterion) {
    let params = mlp_params(8);
    let names = mlp_param_names();
    let flat: Vec<Vec<f32>> = names
        .iter()
        .map(|n| params[n].as_f32().expect("f32").to_vec())
        .collect();
    for batch in [1, 1024] {
        let name = format!("W5 batch {batch}");
        let graph = mlp_forward(batch).expect("W5 builds");
        let x = normal_tensor(&[batch, MLP_DIMS[0]], 9, 1.0);
        let mut inputs = vec![x.clone()];
        inputs.extend(names.iter().map(|n| params[n].clone()));
        let mut group = c.benchmark_group(&name);
        small(&mut group);
        group.throughput(Throughput::Elements(batch as u64));
        let mut kiln = session(&graph, &Options::default());
        measure(&mut group, &name, "kiln", || step(&mut kiln, &inputs));
        drop(kiln);
        let mut tiles = session_with(&graph, &Options::default(), true);
        measure(&mut group, &name, "kiln, epilogue in tiles", || {
            step(&mut tiles, &inputs)
        });
        drop(tiles);
        let exe = kiln::compile(&graph, &Options::default()).expect("W5 compiles");
        measure(&mut group, &name, "kiln Executable::run", || {
            black_box(exe.run(black_box(&inputs)).expect("inputs fit"));
        });
        let x = x.as_f32().expect("f32");
        let mut hidden = [vec![0.0; batch * 256], vec![0.0; batch * 256]];
        let mut probs = vec![0.0; batch * 10];
        measure(&mut group, &name, "hand-written sgemm", || {
            mlp_forward_reference(black_box(x), &flat, batch, &mut hidden, &mut probs);
            black_box(&mut probs);
        });
        group.finish();
    }
}

/// One line of the ratio table: `kiln` against `baseline`, with `rate` turning seconds into the workload's unit.
fn row(label: &str, kiln: &str, baseline: &str, unit: &str, rate: &dyn Fn(f64) -> f64) {
    let (Some(k), Some(b)) = (median(kiln), median(baseline)) else {
        return;
    };
    println!(
        "{label:<24} {:>12.3} ms {:>10.2} {unit:<9} | {baseline:<34} {:>12.3} ms {:>10.2} {unit:<9} | time ratio {:.2}",
        k * 1e3,
        rate(k),
        b * 1e3,
        rate(b),
        k / b
    );
}

/// The medians `scripts/bench_table.py` reads ([`record`]).
fn record_medians() {
    let ms = |id: &str| median(id).map(|s| s * 1e3);
    let keys = [
        ("W1.fused_ms", "W1/kiln fused"),
        ("W1.unfused_ms", "W1/kiln unfused"),
        ("W1.memcpy_ms", "W1/memcpy"),
        ("W2.ms", "W2/kiln"),
        ("W4.step_ms", "W4/kiln step"),
        ("W4.compile_wall_ms", "W4 compile/kiln::compile"),
        ("W5.b1_ms", "W5 batch 1/kiln"),
        ("W5.b1024_ms", "W5 batch 1024/kiln"),
    ];
    for (key, id) in keys {
        if let Some(v) = ms(id) {
            record(key, v);
        }
    }
    for (m, k, n) in W3_SIZES {
        let name = w3_name(m, k, n);
        if let Some(s) = median(&format!("{name}/kiln")) {
            record(
                &format!("W3.{m}x{k}x{n}.gflops"),
                2.0 * (m * k * n) as f64 / s / 1e9,
            );
        }
    }
}

fn summary() {
    record_medians();
    let gbps = |bytes: f64| move |s: f64| bytes / s / 1e9;
    let w1_bytes = 8.0 * W1_LEN as f64;
    println!("\nmedian time per iteration; time ratio = kiln / baseline (below 1: kiln is faster)");
    row(
        "W1 fused",
        "W1/kiln fused",
        "W1/kiln unfused",
        "GB/s",
        &gbps(w1_bytes),
    );
    row(
        "W1 fused",
        "W1/kiln fused",
        "W1/memcpy",
        "GB/s",
        &gbps(w1_bytes),
    );
    let w2_bytes = 8.0 * (W2_SHAPE[0] * W2_SHAPE[1]) as f64;
    row(
        "W2 softmax",
        "W2/kiln",
        "W2/scalar loop",
        "GB/s",
        &gbps(w2_bytes),
    );
    for (m, k, n) in W3_SIZES {
        let name = w3_name(m, k, n);
        let flops = 2.0 * (m * k * n) as f64;
        let gflops = move |s: f64| flops / s / 1e9;
        row(
            &name,
            &format!("{name}/kiln"),
            &format!("{name}/sgemm"),
            "GFLOP/s",
            &gflops,
        );
    }
    let per_s = |s: f64| 1.0 / s;
    for baseline in ["kiln unfused step", "kiln step, epilogue in tiles"] {
        row(
            "W4 step",
            "W4/kiln step",
            &format!("W4/{baseline}"),
            "steps/s",
            &per_s,
        );
    }
    if let Some(s) = median("W4 compile/kiln::compile") {
        println!("W4 kiln::compile wall time {:.1} ms", s * 1e3);
    }
    for batch in [1usize, 1024] {
        let name = format!("W5 batch {batch}");
        let samples = move |s: f64| batch as f64 / s;
        for baseline in [
            "hand-written sgemm",
            "kiln Executable::run",
            "kiln, epilogue in tiles",
        ] {
            row(
                &name,
                &format!("{name}/kiln"),
                &format!("{name}/{baseline}"),
                "samples/s",
                &samples,
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    w1(&mut c);
    w2(&mut c);
    w3(&mut c);
    w4(&mut c);
    w5(&mut c);
    c.final_summary();
    summary();
}
