//! The accuracy table of `kiln::backend::cpu::math`: every f32 input of exp, log, tanh, logistic, erf, sin and cos
//! (all 2^32 bit patterns; sin and cos checked for accuracy in their domain only) against Rust's f64 functions, the f64 variants on 2^24 bit patterns spread over the whole range, and
//! f32 `pow` on a grid of pairs. Prints a Markdown table. Takes a few minutes: `cargo run --release --example
//! math_sweep` (`-- --quick` for every 17th f32 only, `-- --no-fma` for the fmul + fadd code of hosts without FMA,
//! `-- --only erf` for one function's f32 and f64 rows, without pow).
//!
//! `-- --wide` checks instead that the runtime's wide routines (`kiln_runtime::wide`) give the bits of the CLIF code
//! with FMA on all 2^32 inputs (NaN as any NaN), at every level the host runs (`scalar`, `avx2`, `avx512`), and
//! prints one row per function and level (with `--only`, `--quick` as above).

#[allow(dead_code)]
#[path = "../tests/support/math_check.rs"]
mod math_check;

use kiln::backend::cpu::jit::{JitModule, MapKernel};
use kiln::backend::cpu::math::MathEmitter;
use kiln_runtime::wide;
use math_check::{ulp_error_f32, Func, MathCheck, Worst};

const CHUNK: u64 = 1 << 22;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let no_fma = std::env::args().any(|a| a == "--no-fma");
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--only").map(|i| {
        args.get(i + 1)
            .expect("--only takes a function name")
            .as_str()
    });
    let funcs: Vec<Func> = Func::ALL
        .into_iter()
        .filter(|f| only.is_none_or(|name| f.name() == name))
        .collect();
    assert!(!funcs.is_empty(), "no function named {only:?}");
    let step: u64 = if quick { 17 } else { 1 };
    if std::env::args().any(|a| a == "--wide") {
        wide_table(&funcs, step);
        return;
    }
    println!("| function | type | domain | max ulp | where |");
    println!("|---|---|---|---|---|");
    for &func in &funcs {
        let worst = sweep_all_f32(func, step, no_fma);
        let mut domain = if quick {
            "every 17th f32"
        } else {
            "all 2^32 f32"
        }
        .to_owned();
        if no_fma {
            domain += ", no fma";
        }
        let bound = func.accurate_below(true, !no_fma);
        if bound.is_finite() {
            domain += &format!(" with |x| < {bound} (beyond: finite, in [-1, 1])");
        }
        println!(
            "| {} | f32 | {domain} | {:.2} | x = {:e} ({:#010x}): {:e}, want {:e} |",
            func.name(),
            worst.ulp,
            worst.input,
            worst.input.to_bits(),
            worst.got,
            worst.want
        );
    }
    for &func in &funcs {
        let mut jit = JitModule::new().expect("host JIT");
        let math = if no_fma {
            MathEmitter::with_fma(false)
        } else {
            jit.math()
        };
        let kernel = func.compile_with::<f64>(&mut jit, math);
        jit.finalize().expect("finalize");
        let inputs = math_check::spread_f64(1 << 24);
        let worst = math_check::worst_f64(&jit, &kernel, func, math.has_fma(), &inputs);
        println!(
            "| {} | f64 | 2^24 spread f64{}{} | {:.2} | x = {:e}: {:e}, want {:e} |",
            func.name(),
            if no_fma { ", no fma" } else { "" },
            match func.accurate_below(false, !no_fma) {
                b if b.is_finite() => format!(" with |x| < {b:e}"),
                _ => String::new(),
            },
            worst.ulp,
            worst.input,
            worst.got,
            worst.want
        );
    }
    if only.is_some() {
        return;
    }
    let (pairs, worst) = pow_grid_f64();
    print_pow_row("f64", pairs, &worst);
    let (pairs, worst) = pow_grid();
    print_pow_row("f32", pairs, &worst);
}

fn print_pow_row<T: std::fmt::LowerExp>(ty: &str, pairs: usize, w: &PowWorst<T>) {
    println!(
        "| pow | {ty} | {pairs} pairs of spread {ty} | {:.2} | x = {:e}, y = {:e}: {:e}, want {:e} |",
        w.ulp, w.x, w.y, w.got, w.want
    );
}

/// The worst error of `func` over the f32 bit patterns `0, step, 2·step, ..` on two threads.
fn sweep_all_f32(func: Func, step: u64, no_fma: bool) -> Worst<f32> {
    let chunks: Vec<u64> = (0..(1u64 << 32)).step_by(CHUNK as usize).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let chunks = &chunks;
                scope.spawn(move || {
                    let mut jit = JitModule::new().expect("host JIT");
                    let math = if no_fma {
                        MathEmitter::with_fma(false)
                    } else {
                        jit.math()
                    };
                    let kernel: MapKernel<f32> = func.compile_with(&mut jit, math);
                    jit.finalize().expect("finalize");
                    let mut worst = Worst::default();
                    for &start in chunks.iter().skip(t).step_by(threads) {
                        let inputs: Vec<f32> = (start..start + CHUNK)
                            .step_by(step as usize)
                            .map(|b| f32::from_bits(b as u32))
                            .collect();
                        worst.merge(math_check::worst_f32(
                            &jit,
                            &kernel,
                            func,
                            math.has_fma(),
                            &inputs,
                        ));
                    }
                    worst
                })
            })
            .collect();
        let mut worst = Worst::default();
        for handle in handles {
            worst.merge(handle.join().expect("sweep thread"));
        }
        worst
    })
}

/// The `--wide` table: for each function and level, how many of the swept inputs differ from the CLIF code.
fn wide_table(funcs: &[Func], step: u64) {
    println!("| function | level | inputs | differing | first differing input |");
    println!("|---|---|---|---|---|");
    for &func in funcs {
        for isa in wide::Isa::ALL {
            let Ok(routines) = wide::Routines::for_isa(isa) else {
                println!("| {} | {isa} | — | not on this host | |", func.name());
                continue;
            };
            let start = std::time::Instant::now();
            let (count, differing, first) = sweep_wide(func, routines, step);
            println!(
                "| {} | {isa} | {count} | {differing} | {} | ({:.0} s)",
                func.name(),
                first.map_or(String::new(), |(x, got, want)| format!(
                    "x = {x:e} ({:#010x}): wide {got:e}, CLIF {want:e}",
                    x.to_bits()
                )),
                start.elapsed().as_secs_f64()
            );
        }
    }
}

/// The wide routine of `func` against its CLIF kernel with FMA over the f32 bit patterns `0, step, ..`, on all
/// threads: (inputs, differing, the first differing (x, wide, CLIF)).
fn sweep_wide(
    func: Func,
    routines: &'static wide::Routines,
    step: u64,
) -> (u64, u64, Option<(f32, f32, f32)>) {
    let chunks: Vec<u64> = (0..(1u64 << 32)).step_by(CHUNK as usize).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let chunks = &chunks;
                scope.spawn(move || {
                    let mut jit = JitModule::new().expect("host JIT");
                    let kernel: MapKernel<f32> =
                        func.compile_with(&mut jit, MathEmitter::with_fma(true));
                    jit.finalize().expect("finalize");
                    let (mut count, mut differing, mut first) = (0u64, 0u64, None);
                    for &start in chunks.iter().skip(t).step_by(threads) {
                        let inputs: Vec<f32> = (start..start + CHUNK)
                            .step_by(step as usize)
                            .map(|b| f32::from_bits(b as u32))
                            .collect();
                        let mut want = vec![0.0; inputs.len()];
                        jit.run_map(&kernel, &[&inputs], &mut want).expect("run");
                        let mut got = vec![0.0; inputs.len()];
                        routines.apply(func, &inputs, &mut got);
                        count += inputs.len() as u64;
                        for ((&x, &g), &w) in inputs.iter().zip(&got).zip(&want) {
                            if g.to_bits() != w.to_bits() && !(g.is_nan() && w.is_nan()) {
                                differing += 1;
                                first.get_or_insert((x, g, w));
                            }
                        }
                    }
                    (count, differing, first)
                })
            })
            .collect();
        let mut total = (0, 0, None);
        for handle in handles {
            let (count, differing, first) = handle.join().expect("sweep thread");
            total.0 += count;
            total.1 += differing;
            total.2 = total.2.or(first);
        }
        total
    })
}

#[derive(Default)]
struct PowWorst<T> {
    ulp: f64,
    x: T,
    y: T,
    got: T,
    want: f64,
}

/// f32 `pow` on pairs of spread x and y (and half-integer y), against f64 `powf`.
fn pow_grid() -> (usize, PowWorst<f32>) {
    let xs: Vec<f32> = (0..4096u32)
        .map(|i| f32::from_bits(i.wrapping_mul(1_048_573)))
        .collect();
    let mut ys: Vec<f32> = (0..256u32)
        .map(|i| f32::from_bits(i.wrapping_mul(16_777_213)))
        .collect();
    ys.extend((-64..64).map(|i| i as f32 * 0.5));
    let (a, b): (Vec<f32>, Vec<f32>) = xs
        .iter()
        .flat_map(|&x| ys.iter().map(move |&y| (x, y)))
        .unzip();
    let mut jit = JitModule::new().expect("host JIT");
    let math = jit.math();
    let pow: MapKernel<f32> = jit
        .compile_map("pow", 2, |bld, args| math.pow(bld, args[0], args[1]))
        .expect("pow");
    jit.finalize().expect("finalize");
    let mut out = vec![0.0; a.len()];
    jit.run_map(&pow, &[&a, &b], &mut out).expect("run");
    let mut worst = PowWorst::default();
    for ((&x, &y), &got) in a.iter().zip(&b).zip(&out) {
        let want = (x as f64).powf(y as f64);
        let ulp = ulp_error_f32(got, want);
        if ulp > worst.ulp {
            worst = PowWorst {
                ulp,
                x,
                y,
                got,
                want,
            };
        }
    }
    (a.len(), worst)
}

/// f64 `pow` on pairs of spread x and y (and half-integer y), against Rust's `powf`.
fn pow_grid_f64() -> (usize, PowWorst<f64>) {
    let xs = math_check::spread_f64(4096);
    let mut ys = math_check::spread_f64(256);
    ys.extend((-64..64).map(|i| i as f64 * 0.5));
    let (a, b): (Vec<f64>, Vec<f64>) = xs
        .iter()
        .flat_map(|&x| ys.iter().map(move |&y| (x, y)))
        .unzip();
    let mut jit = JitModule::new().expect("host JIT");
    let math = jit.math();
    let pow: MapKernel<f64> = jit
        .compile_map("pow", 2, |bld, args| math.pow(bld, args[0], args[1]))
        .expect("pow");
    jit.finalize().expect("finalize");
    let mut out = vec![0.0; a.len()];
    jit.run_map(&pow, &[&a, &b], &mut out).expect("run");
    let mut worst = PowWorst::default();
    for ((&x, &y), &got) in a.iter().zip(&b).zip(&out) {
        let want = x.powf(y);
        let ulp = math_check::ulp_error_f64(got, want);
        if ulp > worst.ulp {
            worst = PowWorst {
                ulp,
                x,
                y,
                got,
                want,
            };
        }
    }
    (a.len(), worst)
}
