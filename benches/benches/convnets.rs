//! The conv-net workloads W6 and W7 of `../shared/peers/bench_peers.py`, each next to a baseline measured in the same
//! run: W6 beside a hand-written im2col + `sgemm` (what the peers' numpy row does) and W3's GEMM peak, W7 as steps/s
//! with the compile time of its step. onnxruntime's and JAX's figures come from the peers' script run back to back.
//!
//! `cargo bench -p kiln-benches --bench convnets` (about a minute); the end prints GFLOP/s and the ratios.

use criterion::{Criterion, SamplingMode};
use kiln::{Options, Session};
use kiln_benches::*;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The median seconds per call of `f` over `reps` calls after one warm-up.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}

fn convnets(c: &mut Criterion) {
    // W6.
    let graph = w6_graph().expect("W6 builds");
    let x = normal_tensor(&W6_X, 8, 1.0);
    let w = normal_tensor(&W6_W, 9, (2.0f32 / 576.0).sqrt());
    let bias = normal_tensor(&[W6_W[0]], 10, 0.1);
    let exe = kiln::compile(&graph, &Options::default()).expect("W6 compiles");
    let compile_ms = exe.compile_time().as_secs_f64() * 1e3;
    // A forward graph: every input is fed each run (read in place by the session, as onnxruntime's I/O binding).
    let mut session = Session::new(exe, &HashMap::new()).expect("no resident inputs");
    let inputs = [x.clone(), w.clone(), bias.clone()];
    let mut group = c.benchmark_group("W6");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("kiln", |b| {
        b.iter(|| session.step(black_box(&inputs)).expect("inputs fit"))
    });
    let (xs, ws, bs) = (
        x.as_f32().unwrap().to_vec(),
        w.as_f32().unwrap().to_vec(),
        bias.as_f32().unwrap().to_vec(),
    );
    let mut cols = vec![0.0f32; W6_X[1] * 9 * W6_X[2] * W6_X[3]];
    let mut y = vec![0.0f32; W6_X[0] * W6_W[0] * W6_X[2] * W6_X[3]];
    group.bench_function("im2col + sgemm", |b| {
        b.iter(|| w6_reference(black_box(&xs), &ws, &bs, &mut cols, &mut y))
    });
    group.finish();
    let kiln_s = median_secs(10, || {
        session.step(&inputs).expect("inputs fit");
    });
    let reference_s = median_secs(5, || w6_reference(&xs, &ws, &bs, &mut cols, &mut y));
    let gemm = matmul_graph(1024, 1024, 1024).expect("W3 builds");
    let gemm_exe = kiln::compile(&gemm, &Options::default()).expect("W3 compiles");
    let (a, bm) = (
        normal_tensor(&[1024, 1024], 3, 1.0),
        normal_tensor(&[1024, 1024], 4, 1.0),
    );
    let gemm_s = median_secs(10, || {
        gemm_exe.run(&[a.clone(), bm.clone()]).expect("inputs fit");
    });
    let gflops = |flops: f64, s: f64| flops / s / 1e9;
    record("W6.ms", kiln_s * 1e3);
    record("W6.reference_ms", reference_s * 1e3);
    record("W6.gemm_peak_gflops", gflops(2.0 * 1024f64.powi(3), gemm_s));
    println!(
        "W6 conv 3x3 64->64 [16,64,32,32]: kiln {:.2} ms ({:.1} GFLOP/s; compile {compile_ms:.1} ms), im2col+sgemm {:.2} ms ({:.1} GFLOP/s), kiln/reference {:.2}; W3 1024^3 GEMM peak {:.1} GFLOP/s (conv at {:.0} % of it)",
        kiln_s * 1e3,
        gflops(w6_flops(), kiln_s),
        reference_s * 1e3,
        gflops(w6_flops(), reference_s),
        kiln_s / reference_s,
        gflops(2.0 * 1024f64.powi(3), gemm_s),
        100.0 * gflops(w6_flops(), kiln_s) / gflops(2.0 * 1024f64.powi(3), gemm_s),
    );

    // W7.
    let step_graph = w7_step().expect("W7 builds");
    let started = Instant::now();
    let exe = kiln::compile(&step_graph, &Options::default()).expect("W7 compiles");
    let wall_compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let compile_ms = exe.compile_time().as_secs_f64() * 1e3;
    let mut session = Session::new(exe, &w7_params(9)).expect("W7 params fit");
    let inputs = [
        normal_tensor(&[128, 1, 28, 28], 20, 1.0),
        labels(128, 10, 21),
    ];
    let mut group = c.benchmark_group("W7");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("kiln step", |b| {
        b.iter(|| session.step(black_box(&inputs)).expect("inputs fit"))
    });
    group.finish();
    let step_s = median_secs(10, || {
        session.step(&inputs).expect("inputs fit");
    });
    record("W7.step_ms", step_s * 1e3);
    record("W7.compile_ms", compile_ms);
    record("W7.compile_wall_ms", wall_compile_ms);
    println!(
        "W7 CNN SGD step [128,1,28,28]: kiln {:.2} ms = {:.1} steps/s; compile {compile_ms:.1} ms (kiln::compile wall {wall_compile_ms:.1} ms)",
        step_s * 1e3,
        1.0 / step_s
    );
}

criterion::criterion_group!(benches, convnets);
criterion::criterion_main!(benches);
