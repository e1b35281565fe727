//! A quick timing of the CLIF math library against Rust's scalar f32 functions: ns per element on 1M f32,
//! best of 30 runs. `cargo run --release --example math_bench`. Not a benchmark suite: no statistics, no
//! assertions.

use std::hint::black_box;
use std::time::Instant;

use cranelift_codegen::ir::Value;
use cranelift_frontend::FunctionBuilder;
use kiln::backend::cpu::jit::{JitModule, MapKernel};
use kiln::backend::cpu::math::MathEmitter;

const N: usize = 1 << 20;
const RUNS: usize = 30;

/// A function of the math library and Rust's f32 version of it.
struct Case {
    name: &'static str,
    emit: fn(&MathEmitter, &mut FunctionBuilder<'_>, Value) -> Value,
    reference: fn(f32) -> f32,
}

/// The best time of `RUNS` calls of `f`, in ns per element.
fn best_ns(mut f: impl FnMut()) -> f64 {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e9 / N as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut jit = JitModule::new().expect("host JIT");
    let math = jit.math();
    println!(
        "host: {}, fma: {}",
        jit.isa().triple(),
        jit.isa().has_native_fma()
    );
    let cases = [
        Case {
            name: "exp",
            emit: |m, b, x| m.exp(b, x),
            reference: f32::exp,
        },
        Case {
            name: "log",
            emit: |m, b, x| m.log(b, x),
            reference: f32::ln,
        },
        Case {
            name: "tanh",
            emit: |m, b, x| m.tanh(b, x),
            reference: f32::tanh,
        },
        Case {
            name: "logistic",
            emit: |m, b, x| m.logistic(b, x),
            reference: |x| 1.0 / (1.0 + (-x).exp()),
        },
        Case {
            name: "relu",
            emit: |m, b, x| m.relu(b, x),
            reference: |x| x.max(0.0),
        },
    ];
    let kernels: Vec<MapKernel<f32>> = cases
        .iter()
        .map(|case| {
            jit.compile_map(case.name, 1, |b, args| (case.emit)(&math, b, args[0]))
                .expect("compile")
        })
        .collect();
    jit.finalize().expect("finalize");

    // Inputs where every function is in its interesting range (log gets |x|).
    let inputs: Vec<f32> = (0..N)
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 40.0)
        .collect();
    let positive: Vec<f32> = inputs.iter().map(|x| x.abs() + 1e-3).collect();
    let mut out = vec![0.0f32; N];
    println!("| function | CLIF (ns/elem) | Rust f32 loop (ns/elem) |");
    println!("|---|---|---|");
    for (case, kernel) in cases.iter().zip(&kernels) {
        let input = if case.name == "log" {
            &positive
        } else {
            &inputs
        };
        let jit_ns = best_ns(|| {
            jit.run_map(kernel, &[black_box(input)], &mut out)
                .expect("run")
        });
        let rust_ns = best_ns(|| {
            for (y, &x) in out.iter_mut().zip(black_box(input)) {
                *y = (case.reference)(x);
            }
            black_box(&out);
        });
        println!("| {} | {jit_ns:.2} | {rust_ns:.2} |", case.name);
    }
}
