//! `matrixmultiply` against `gemm` (faer's) on the shapes Kiln's matmul kernels call, each call single-threaded as
//! the runtime's matmul tiles make it (run with `MATMUL_NUM_THREADS=1` so that `matrixmultiply` starts no threads of
//! its own; `gemm` gets `Parallelism::None`).
//!
//! `cargo bench -p kiln-benches --bench gemm_crates` prints one line per shape: the median time of each crate over
//! interleaved rounds (both measured in the same process) and the time ratio `gemm / matrixmultiply`.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// One product `C[m, n] = A[m, k] · B[k, n]` with A and B possibly transposed in memory (a stride swap).
struct Shape {
    what: &'static str,
    m: usize,
    k: usize,
    n: usize,
    /// A is stored `[k, m]` (read through strides `(1, m)`).
    a_t: bool,
    /// B is stored `[n, k]` (read through strides `(1, k)`): `x Wᵀ` with `W` as `[out, in]`.
    b_t: bool,
}

const SHAPES: &[Shape] = &[
    Shape {
        what: "W3 1024³",
        m: 1024,
        k: 1024,
        n: 1024,
        a_t: false,
        b_t: false,
    },
    Shape {
        what: "W3 256x784x256",
        m: 256,
        k: 784,
        n: 256,
        a_t: false,
        b_t: false,
    },
    Shape {
        what: "W4 x·W1ᵀ",
        m: 128,
        k: 784,
        n: 256,
        a_t: false,
        b_t: true,
    },
    Shape {
        what: "W4 h·W2ᵀ",
        m: 128,
        k: 256,
        n: 256,
        a_t: false,
        b_t: true,
    },
    Shape {
        what: "W4 h·W3ᵀ",
        m: 128,
        k: 256,
        n: 10,
        a_t: false,
        b_t: true,
    },
    Shape {
        what: "W4 dy·W2",
        m: 128,
        k: 256,
        n: 256,
        a_t: false,
        b_t: false,
    },
    Shape {
        what: "W4 dyᵀ·x (dW1)",
        m: 256,
        k: 128,
        n: 784,
        a_t: true,
        b_t: false,
    },
    Shape {
        what: "W4 dyᵀ·h (dW2)",
        m: 256,
        k: 128,
        n: 256,
        a_t: true,
        b_t: false,
    },
    Shape {
        what: "W5 b=1 x·W1ᵀ",
        m: 1,
        k: 784,
        n: 256,
        a_t: false,
        b_t: true,
    },
    Shape {
        what: "W5 b=1 h·W2ᵀ",
        m: 1,
        k: 256,
        n: 256,
        a_t: false,
        b_t: true,
    },
    Shape {
        what: "W5 b=1 h·W3ᵀ",
        m: 1,
        k: 256,
        n: 10,
        a_t: false,
        b_t: true,
    },
    Shape {
        what: "W5 b=1024 x·W1ᵀ",
        m: 1024,
        k: 784,
        n: 256,
        a_t: false,
        b_t: true,
    },
    Shape {
        what: "tile 128x784x128",
        m: 128,
        k: 784,
        n: 128,
        a_t: false,
        b_t: false,
    },
    Shape {
        what: "tile 128x1024x128",
        m: 128,
        k: 1024,
        n: 128,
        a_t: false,
        b_t: false,
    },
    Shape {
        what: "tile 64x784x128 Bᵀ",
        m: 64,
        k: 784,
        n: 128,
        a_t: false,
        b_t: true,
    },
];

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32
                - 0.5
        })
        .collect()
}

struct Operands {
    a: Vec<f32>,
    b: Vec<f32>,
    /// (row stride, column stride) of A and B.
    sa: (isize, isize),
    sb: (isize, isize),
}

fn operands(s: &Shape) -> Operands {
    let (m, k, n) = (s.m as isize, s.k as isize, s.n as isize);
    Operands {
        a: values(s.m * s.k, 1),
        b: values(s.k * s.n, 2),
        sa: if s.a_t { (1, m) } else { (k, 1) },
        sb: if s.b_t { (1, k) } else { (n, 1) },
    }
}

fn with_matrixmultiply(s: &Shape, o: &Operands, c: &mut [f32]) {
    // SAFETY: `operands` sized A as m·k and B as k·n, and the strides address exactly those elements; C is m·n.
    unsafe {
        matrixmultiply::sgemm(
            s.m,
            s.k,
            s.n,
            1.0,
            o.a.as_ptr(),
            o.sa.0,
            o.sa.1,
            o.b.as_ptr(),
            o.sb.0,
            o.sb.1,
            0.0,
            c.as_mut_ptr(),
            s.n as isize,
            1,
        )
    }
}

fn with_gemm(s: &Shape, o: &Operands, c: &mut [f32]) {
    // SAFETY: as for `with_matrixmultiply`; `gemm` takes column stride before row stride.
    unsafe {
        gemm::gemm(
            s.m,
            s.n,
            s.k,
            c.as_mut_ptr(),
            1,
            s.n as isize,
            false,
            o.a.as_ptr(),
            o.sa.1,
            o.sa.0,
            o.b.as_ptr(),
            o.sb.1,
            o.sb.0,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Seconds per call of `f`, timed over batches of about 2 ms.
fn time(f: &mut dyn FnMut()) -> f64 {
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < Duration::from_millis(2) || calls == 0 {
        f();
        calls += 1;
    }
    started.elapsed().as_secs_f64() / f64::from(calls)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!(
        "x86-64 avx512f detected: {}",
        std::arch::is_x86_feature_detected!("avx512f")
    );
    println!(
        "{:<22} {:>12} {:>9} | {:>12} {:>9} | gemm / mm",
        "shape", "mm µs", "GFLOP/s", "gemm µs", "GFLOP/s"
    );
    for s in SHAPES {
        if filter
            .as_ref()
            .is_some_and(|f| !s.what.contains(f.as_str()))
        {
            continue;
        }
        let o = operands(s);
        let (mut c1, mut c2) = (vec![0.0f32; s.m * s.n], vec![0.0f32; s.m * s.n]);
        with_matrixmultiply(s, &o, &mut c1);
        with_gemm(s, &o, &mut c2);
        let worst = c1
            .iter()
            .zip(&c2)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-3 * s.k as f32,
            "{}: the crates disagree by {worst}",
            s.what
        );
        let (mut mm, mut gm) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            mm.push(time(&mut || {
                with_matrixmultiply(s, black_box(&o), black_box(&mut c1))
            }));
            gm.push(time(&mut || {
                with_gemm(s, black_box(&o), black_box(&mut c2))
            }));
        }
        let (mm, gm) = (median(mm), median(gm));
        let flops = 2.0 * (s.m * s.k * s.n) as f64;
        println!(
            "{:<22} {:>12.2} {:>9.1} | {:>12.2} {:>9.1} | {:.2}",
            s.what,
            mm * 1e6,
            flops / mm / 1e9,
            gm * 1e6,
            flops / gm / 1e9,
            gm / mm
        );
    }
}
