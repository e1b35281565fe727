//! The runtime's wide math routines (`kiln_runtime::wide`) against the CLIF math library's f32x4 map kernels
//! (`JitModule::compile_map`, with FMA), on 64 Ki f32 (256 KiB in and out: in L2), one thread.
//!
//! `cargo bench -p kiln-benches --bench wide` (about a minute; `-- exp` for one function). Criterion prints each
//! measurement; at the end a table gives ns per element and the speed-up of each level over CLIF.
//!
//! Then W1, W2 and W9 compiled with and without `Options::wide_math` (strip-mined kernels calling the routines),
//! run alternately in the same process (so that both see the same machine load), with the median time of each and
//! their ratio (`-- --no-workloads` skips them; `-- --only-workloads` runs only them).

use criterion::{Criterion, Throughput};
use kiln::backend::cpu::jit::{JitModule, MapKernel};
use kiln::backend::cpu::math::MathEmitter;
use kiln::{Options, Session, Tensor};
use kiln_benches::{normal_tensor, softmax_graph, w1_graph, W1_LEN, W2_SHAPE};
use kiln_runtime::wide::{self, Isa, Routines};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const N: usize = 64 * 1024;

/// Per benchmark id (`function/variant`), the seconds per iteration of every sample Criterion took.
static SAMPLES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// The CLIF kernel of `func` with FMA.
fn clif_kernel(jit: &mut JitModule, func: wide::Func) -> MapKernel<f32> {
    let math = MathEmitter::with_fma(true);
    jit.compile_map(func.name(), 1, |b, args| {
        let x = args[0];
        match func {
            wide::Func::Exp => math.exp(b, x),
            wide::Func::Log => math.log(b, x),
            wide::Func::Tanh => math.tanh(b, x),
            wide::Func::Logistic => math.logistic(b, x),
            wide::Func::Erf => math.erf(b, x),
            wide::Func::Sin => math.sin(b, x),
            wide::Func::Cos => math.cos(b, x),
        }
    })
    .expect("the math kernels compile")
}

/// Inputs where each function does its usual work: softmax-like arguments for exp (≤ 0), positive ones for log,
/// activations in [-8, 8] for the others.
fn inputs(func: wide::Func) -> Vec<f32> {
    (0..N)
        .map(|i| {
            let u = (i as f32 * 0.618_034).fract();
            match func {
                wide::Func::Exp => -20.0 * u,
                wide::Func::Log => 1e-3 + 100.0 * u,
                _ => 16.0 * u - 8.0,
            }
        })
        .collect()
}

fn median(id: &str) -> Option<f64> {
    let samples = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = samples.get(id)?.clone();
    s.sort_by(f64::total_cmp);
    Some(s[s.len() / 2])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--no-workloads") {
        workloads();
    }
    if args.iter().any(|a| a == "--only-workloads") {
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let levels: Vec<&Routines> = Isa::ALL
        .into_iter()
        .filter_map(|isa| Routines::for_isa(isa).ok())
        .collect();
    let mut jit = JitModule::new().expect("host JIT");
    let kernels: Vec<_> = wide::Func::ALL
        .into_iter()
        .map(|f| (f, clif_kernel(&mut jit, f)))
        .collect();
    jit.finalize().expect("finalize");
    for (func, kernel) in &kernels {
        let x = inputs(*func);
        let mut y = vec![0.0f32; N];
        let mut group = c.benchmark_group(func.name());
        group.throughput(Throughput::Elements(N as u64));
        let mut measure = |name: &str, f: &mut dyn FnMut(&[f32], &mut [f32])| {
            let id = format!("{}/{name}", func.name());
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    for _ in 0..iters {
                        f(black_box(&x), black_box(&mut y));
                    }
                    let elapsed = started.elapsed();
                    SAMPLES
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(id.clone())
                        .or_default()
                        .push(elapsed.as_secs_f64() / iters as f64);
                    elapsed
                })
            });
        };
        measure("clif f32x4", &mut |x, y| {
            jit.run_map(kernel, &[x], y).expect("run")
        });
        for routines in &levels {
            measure(routines.isa().name(), &mut |x, y| {
                routines.apply(*func, x, y)
            });
        }
        group.finish();
    }
    c.final_summary();

    println!("\nns per element (median), and the speed-up over the CLIF f32x4 kernel");
    print!("{:<10} {:>12}", "function", "clif f32x4");
    for routines in &levels {
        print!(" {:>18}", routines.isa().name());
    }
    println!();
    for func in wide::Func::ALL {
        let Some(clif) = median(&format!("{}/clif f32x4", func.name())) else {
            continue;
        };
        print!("{:<10} {:>12.3}", func.name(), clif * 1e9 / N as f64);
        for routines in &levels {
            if let Some(t) = median(&format!("{}/{}", func.name(), routines.isa().name())) {
                print!(" {:>10.3} ({:>4.2}×)", t * 1e9 / N as f64, clif / t);
            }
        }
        println!();
    }
}

/// W1, W2 and W9 (exact GELU on 16,777,216 f32) with `Options::wide_math` off and on: `ROUNDS` runs of each,
/// alternating, then the medians.
fn workloads() {
    const ROUNDS: usize = 30;
    let gelu = {
        let mut b = kiln::Builder::new("w9");
        let x = b
            .data("x", kiln::TensorType::f32(&[W1_LEN]))
            .expect("W9 builds");
        let y = b.gelu(x, kiln::ir::GeluApprox::None).expect("W9 builds");
        b.output("y", y).expect("W9 builds");
        b.finish()
    };
    let cases = [
        (
            "W1 fused",
            w1_graph(W1_LEN).expect("W1 builds"),
            normal_tensor(&[W1_LEN], 1, 1.0),
        ),
        (
            "W2 softmax",
            softmax_graph(W2_SHAPE[0], W2_SHAPE[1]).expect("W2 builds"),
            normal_tensor(&W2_SHAPE, 2, 1.0),
        ),
        ("W9 GELU", gelu, normal_tensor(&[W1_LEN], 3, 3.0)),
    ];
    let isa = wide::isa().map_or_else(|e| e.to_string(), |isa| isa.name().to_owned());
    println!("strip-mined kernels (Options::wide_math, routines: {isa}) against the CLIF kernels, {ROUNDS} alternating runs each, median ms:");
    for (name, graph, x) in cases {
        let session = |wide_math: bool| {
            let options = Options {
                wide_math,
                ..Options::default()
            };
            let exe = kiln::compile(&graph, &options).expect("the workload compiles");
            Session::new(exe, &HashMap::new()).expect("no resident inputs")
        };
        let (mut clif, mut strips) = (session(false), session(true));
        let inputs: [Tensor; 1] = [x];
        let mut times = [Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for (k, s) in [&mut clif, &mut strips].into_iter().enumerate() {
                let started = Instant::now();
                s.step(black_box(&inputs)).expect("inputs fit");
                times[k].push(started.elapsed().as_secs_f64());
            }
        }
        let [a, b] = times.map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        });
        println!(
            "{name:<12} CLIF {:>8.3} ms   strips {:>8.3} ms   time ratio {:.2}",
            a * 1e3,
            b * 1e3,
            b / a
        );
    }
}
