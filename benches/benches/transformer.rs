//! The transformer workloads W8, W9 and W10 of `../shared/peers/bench_peers.py`: W8 a layer norm over the rows of
//! [4096, 1024], W9 exact GELU on 16,777,216 floats (next to a memcpy of the same bytes, measured in the same run),
//! W10 one AdamW step of a pre-LN transformer block (B 8, T 128, D 256, 4 heads, MLP 1024, loss `mean(y²)`) with
//! the compile time of its step. onnxruntime's and JAX's figures come from the peers' script run back to back.
//!
//! `cargo bench -p kiln-benches --bench transformer` (about a minute); the end prints GB/s, steps/s and checks.

use criterion::{Criterion, SamplingMode};
use kiln::ir::GeluApprox;
use kiln::{Builder, Graph, IrError, Options, Session, Tensor, TensorType};
use kiln_benches::{normal, record, w10_block, w10_params, w10_step, W10_X};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

const W8_SHAPE: [usize; 2] = [4096, 1024];
const W8_EPS: f64 = 1e-5;
const W9_LEN: usize = 16_777_216;

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

/// `dst.copy_from_slice(src)` in two halves on two threads (Kiln's kernels run on both cores).
fn copy_two_threads(dst: &mut [f32], src: &[f32]) {
    let half = src.len() / 2;
    let (d0, d1) = dst.split_at_mut(half);
    let (s0, s1) = src.split_at(half);
    std::thread::scope(|scope| {
        scope.spawn(|| d1.copy_from_slice(s1));
        d0.copy_from_slice(s0);
    });
}

/// Seeded normal floats with mean `mean` and standard deviation `std`.
fn normal_f32(dims: &[usize], seed: u64, mean: f32, std: f32) -> Tensor {
    let values = normal(dims.iter().product(), seed, std)
        .into_iter()
        .map(|v| v + mean)
        .collect();
    Tensor::from_f32(dims, values).expect("the values fit the shape")
}

/// W8: `layer_norm(x, g, b, eps 1e-5)` over the last axis of `x` [4096, 1024].
fn w8_graph() -> Result<Graph, IrError> {
    let mut b = Builder::new("w8_layer_norm");
    let x = b.data("x", TensorType::f32(&W8_SHAPE))?;
    let g = b.data("g", TensorType::f32(&[W8_SHAPE[1]]))?;
    let bias = b.data("b", TensorType::f32(&[W8_SHAPE[1]]))?;
    let y = b.layer_norm(x, Some(g), Some(bias), W8_EPS)?;
    b.output("y", y)?;
    Ok(b.finish())
}

/// W9: exact GELU on 16,777,216 floats.
fn w9_graph() -> Result<Graph, IrError> {
    let mut b = Builder::new("w9_gelu");
    let x = b.data("x", TensorType::f32(&[W9_LEN]))?;
    let y = b.gelu(x, GeluApprox::None)?;
    b.output("y", y)?;
    Ok(b.finish())
}

/// The largest |kiln - f64 reference| of W8 over every `stride`-th row.
fn w8_max_error(x: &[f32], g: &[f32], b: &[f32], y: &[f32], stride: usize) -> f64 {
    let cols = W8_SHAPE[1];
    let mut worst = 0.0f64;
    for r in (0..W8_SHAPE[0]).step_by(stride) {
        let row = &x[r * cols..(r + 1) * cols];
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / cols as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / cols as f64;
        let inv = 1.0 / (var + W8_EPS).sqrt();
        for c in 0..cols {
            let want = (f64::from(row[c]) - mean) * inv * f64::from(g[c]) + f64::from(b[c]);
            worst = worst.max((f64::from(y[r * cols + c]) - want).abs());
        }
    }
    worst
}

/// `erf` in f64 for the check: its Maclaurin series below 2.5, `1 - erfc` by erfc's continued fraction above.
fn erf64(x: f64) -> f64 {
    if x.abs() < 2.5 {
        // Maclaurin series: erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1)).
        let mut term = x;
        let mut sum = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc by its continued fraction (Lentz), for |x| ≥ 2.5.
        let a = x.abs();
        let mut f = a;
        let (mut c, mut d) = (a, 0.0f64);
        for n in 1..300 {
            let an = n as f64 / 2.0;
            d = 1.0 / (a + an * d);
            c = a + an / c;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        let erfc = (-a * a).exp() / (f * std::f64::consts::PI.sqrt());
        (1.0 - erfc).copysign(x)
    }
}

/// The largest |kiln - f64 reference| of W9 over every `stride`-th element.
fn w9_max_error(x: &[f32], y: &[f32], stride: usize) -> f64 {
    (0..x.len())
        .step_by(stride)
        .map(|i| {
            let v = f64::from(x[i]);
            let want = 0.5 * v * (1.0 + erf64(v / std::f64::consts::SQRT_2));
            (f64::from(y[i]) - want).abs()
        })
        .fold(0.0, f64::max)
}

fn group_config<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

fn transformer(c: &mut Criterion) {
    let mut report = Vec::new();

    // W8.
    let graph = w8_graph().expect("W8 builds");
    let exe = kiln::compile(&graph, &Options::default()).expect("W8 compiles");
    let compile_ms = exe.compile_time().as_secs_f64() * 1e3;
    let mut session = Session::new(exe, &HashMap::new()).expect("no resident inputs");
    let x = normal_f32(&W8_SHAPE, 11, 0.5, 2.0);
    let g = normal_f32(&[W8_SHAPE[1]], 111, 1.0, 0.1);
    let bias = normal_f32(&[W8_SHAPE[1]], 112, 0.0, 0.1);
    let inputs = [x.clone(), g.clone(), bias.clone()];
    session.step(&inputs).expect("W8 inputs fit");
    let y = session.output("y", &inputs).expect("W8 has y");
    let w8_err = w8_max_error(
        x.as_f32().unwrap(),
        g.as_f32().unwrap(),
        bias.as_f32().unwrap(),
        y.as_f32().unwrap(),
        7,
    );
    let bytes = 4 * W8_SHAPE[0] * W8_SHAPE[1];
    let src = x.as_f32().unwrap().to_vec();
    let mut dst = vec![0.0f32; src.len()];
    let mut group = group_config(c, "W8");
    group.bench_function("kiln layer_norm", |b| {
        b.iter(|| session.step(black_box(&inputs)).expect("inputs fit"))
    });
    group.bench_function("memcpy 16 MiB", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    group.finish();
    let kiln_s = median_secs(20, || {
        session.step(&inputs).expect("inputs fit");
    });
    let copy_s = median_secs(20, || dst.copy_from_slice(black_box(&src)));
    let copy2_s = median_secs(20, || copy_two_threads(&mut dst, black_box(&src)));
    let gbps = |bytes: usize, s: f64| 2.0 * bytes as f64 / s / 1e9;
    record("W8.ms", kiln_s * 1e3);
    record("W8.memcpy_ms", copy_s * 1e3);
    report.push(format!(
        "W8 layer norm [4096,1024]: kiln {:.3} ms ({:.1} GB/s; compile {compile_ms:.1} ms; max |err| vs f64 {w8_err:.2e}), memcpy of the same 16 MiB {:.3} ms ({:.1} GB/s) on one thread, {:.3} ms on two, kiln/memcpy {:.2} (one thread), {:.2} (two); vs onnxruntime 3.3 ms (issue, AVX2 host, not same run): {:.2}x (target <= 0.8)",
        kiln_s * 1e3,
        gbps(bytes, kiln_s),
        copy_s * 1e3,
        gbps(bytes, copy_s),
        copy2_s * 1e3,
        kiln_s / copy_s,
        kiln_s / copy2_s,
        kiln_s * 1e3 / 3.3,
    ));
    drop((session, src, dst));

    // W9.
    let graph = w9_graph().expect("W9 builds");
    let exe = kiln::compile(&graph, &Options::default()).expect("W9 compiles");
    let compile_ms = exe.compile_time().as_secs_f64() * 1e3;
    let mut session = Session::new(exe, &HashMap::new()).expect("no resident inputs");
    let x = normal_f32(&[W9_LEN], 12, 0.0, 3.0);
    let inputs = [x.clone()];
    session.step(&inputs).expect("W9 inputs fit");
    let y = session.output("y", &inputs).expect("W9 has y");
    let w9_err = w9_max_error(x.as_f32().unwrap(), y.as_f32().unwrap(), 97);
    drop(y);
    let bytes = 4 * W9_LEN;
    let src = x.as_f32().unwrap().to_vec();
    let mut dst = vec![0.0f32; src.len()];
    let mut group = group_config(c, "W9");
    group.bench_function("kiln gelu exact", |b| {
        b.iter(|| session.step(black_box(&inputs)).expect("inputs fit"))
    });
    group.bench_function("memcpy 64 MiB", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    group.finish();
    let kiln_s = median_secs(15, || {
        session.step(&inputs).expect("inputs fit");
    });
    let copy_s = median_secs(15, || dst.copy_from_slice(black_box(&src)));
    let copy2_s = median_secs(15, || copy_two_threads(&mut dst, black_box(&src)));
    record("W9.ms", kiln_s * 1e3);
    record("W9.memcpy_ms", copy_s * 1e3);
    record("W9.memcpy2_ms", copy2_s * 1e3);
    report.push(format!(
        "W9 exact GELU 16,777,216 f32: kiln {:.2} ms ({:.1} GB/s; compile {compile_ms:.1} ms; max |err| vs f64 {w9_err:.2e}), memcpy of the same 64 MiB {:.2} ms ({:.1} GB/s) on one thread, {:.2} ms on two, kiln/memcpy {:.2} (one thread), {:.2} (two) (target <= 1.5); vs onnxruntime 18.9-23.5 ms (issue, AVX2 host, not same run): {:.2}-{:.2}x (target <= 0.5)",
        kiln_s * 1e3,
        gbps(bytes, kiln_s),
        copy_s * 1e3,
        gbps(bytes, copy_s),
        copy2_s * 1e3,
        kiln_s / copy_s,
        kiln_s / copy2_s,
        kiln_s * 1e3 / 23.5,
        kiln_s * 1e3 / 18.9,
    ));
    drop((session, src, dst, x, inputs));

    // W10.
    let block = w10_block();
    let started = Instant::now();
    let step_graph = w10_step(&block, None).expect("W10 builds");
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    let nodes = step_graph.nodes().len();
    let started = Instant::now();
    let exe = kiln::compile(&step_graph, &Options::default()).expect("W10 compiles");
    let wall_compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let compile_ms = exe.compile_time().as_secs_f64() * 1e3;
    let params = w10_params(&block);
    let mut session = Session::new(exe, &params).expect("W10 params fit");
    let inputs = [normal_f32(&W10_X, 14, 0.0, 1.0)];
    let first_loss = session.step(&inputs).expect("W10 inputs fit");
    let mut group = group_config(c, "W10");
    group.bench_function("kiln AdamW step", |b| {
        b.iter(|| session.step(black_box(&inputs)).expect("inputs fit"))
    });
    group.finish();
    let step_s = median_secs(10, || {
        session.step(&inputs).expect("inputs fit");
    });
    let last_loss = session.step(&inputs).expect("inputs fit");
    record("W10.step_ms", step_s * 1e3);
    record("W10.compile_ms", compile_ms);
    record("W10.compile_wall_ms", wall_compile_ms);
    report.push(format!(
        "W10 pre-LN block AdamW step [8,128,256]: kiln {:.2} ms = {:.1} steps/s; vs JAX 79-134 ms (issue, AVX2 host, not same run): {:.2}-{:.2}x JAX's steps/s (target >= 1.5); compile {compile_ms:.1} ms (kiln::compile wall {wall_compile_ms:.1} ms; target < 50; XLA 1.3-1.9 s), training_step build {build_ms:.1} ms, {nodes} nodes; loss {first_loss:.6} at the first step, {last_loss:.6} after all",
        step_s * 1e3,
        1.0 / step_s,
        0.079 / step_s,
        0.134 / step_s,
    ));

    println!();
    for line in report {
        println!("{line}");
    }
}

criterion::criterion_group!(benches, transformer);
criterion::criterion_main!(benches);
