//! The CLIF math library (`kiln::backend::cpu::math`) run through the JIT harness: accuracy against f64 references,
//! the IR's edge cases bit for bit, the vector loop against its scalar tail, and the harness's own contracts.
//! The sweep over all 2^32 f32 inputs is `cargo run --release --example math_sweep`.

use crate::support::math_check::{self, specials_f32, ulp_error_f32, Func, MathCheck};
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use kiln::backend::cpu::jit::{JitModule, MapKernel};
use kiln::backend::cpu::math::MathEmitter;
use kiln::backend::BackendError;

/// Every 4099th f32 bit pattern (about a million, all exponents and both signs) plus the specials.
fn stride_sweep_f32() -> Vec<f32> {
    let mut inputs: Vec<f32> = (0..=u32::MAX).step_by(4099).map(f32::from_bits).collect();
    inputs.extend(specials_f32());
    inputs
}

#[test]
fn f32_functions_are_within_their_ulp_bounds_on_a_stride_sweep() {
    let inputs = stride_sweep_f32();
    let mut jit = JitModule::new().unwrap();
    // With FMA if the host has it, and without (fmul + fadd), as on a host without.
    let emitters = [jit.math(), MathEmitter::with_fma(false)];
    let kernels: Vec<_> = emitters
        .iter()
        .flat_map(|&math| Func::ALL.map(|f| (f, math)))
        .map(|(f, math)| (f, math, f.compile_with::<f32>(&mut jit, math)))
        .collect();
    jit.finalize().unwrap();
    for (func, math, kernel) in &kernels {
        let worst = math_check::worst_f32(&jit, kernel, *func, math.has_fma(), &inputs);
        assert!(
            worst.ulp <= func.f32_bound(),
            "{} ({math:?}): {} ulp at x = {:e} ({:#010x}): got {:e}, want {:e}",
            func.name(),
            worst.ulp,
            worst.input,
            worst.input.to_bits(),
            worst.got,
            worst.want
        );
    }
}

#[test]
fn f64_functions_are_within_their_ulp_bounds_on_a_spread_sweep() {
    let inputs = math_check::spread_f64(1 << 20);
    let mut jit = JitModule::new().unwrap();
    let fma = jit.math().has_fma();
    let kernels: Vec<_> = Func::ALL
        .iter()
        .map(|f| (*f, f.compile::<f64>(&mut jit)))
        .collect();
    jit.finalize().unwrap();
    for (func, kernel) in &kernels {
        let worst = math_check::worst_f64(&jit, kernel, *func, fma, &inputs);
        // The reference itself is within an ulp; see the table in math.rs for what is reached.
        let bound = match func {
            Func::Exp | Func::Log => 2.0,
            Func::Tanh | Func::Logistic => 4.0,
            Func::Erf | Func::Sin | Func::Cos => 2.0,
        };
        assert!(
            worst.ulp <= bound,
            "{} (f64): {} ulp at x = {:e}: got {:e}, want {:e}",
            func.name(),
            worst.ulp,
            worst.input,
            worst.got,
            worst.want
        );
    }
}

/// exp scales by 2^n once where every lane of a vector has `|x| ≤ 86` (707 for f64), and with the full
/// reconstruction (clamp, two factors) otherwise; `math.rs` argues that both give the same bits where the short
/// path runs. Checked for exp and for tanh and logistic (which take `exp(-|x|)`) on every input: `x` in all lanes of
/// a vector (the short path where `|x|` is in range) against `x` beside out-of-range lanes (the full path for the
/// whole vector), bit for bit (NaN as any NaN), with and without FMA: over a stride sweep of all f32 bit patterns,
/// every f32 within 2 of the bound, the f32s where rounding `x·log2e` to `n` is a tie, and spread f64s plus f64s
/// near the bound on a fine grid.
#[test]
fn exp_short_path_has_the_bits_of_the_full_path() {
    let funcs = [Func::Exp, Func::Tanh, Func::Logistic];
    let mut inputs: Vec<f32> = (0..=u32::MAX).step_by(1021).map(f32::from_bits).collect();
    for edge in [86.0f32, -86.0] {
        // 2^17 f32s per unit here: [84, 88] and [-88, -84].
        let bits = i64::from(edge.to_bits());
        inputs.extend((-(1i64 << 18)..(1 << 18)).map(|k| f32::from_bits((bits + k) as u32)));
    }
    // Ties of the rounding to n without FMA: x whose f32 product x·log2e is exactly k + ½.
    let ties: Vec<f32> = (-127..127)
        .flat_map(|k| {
            let near = (k as f32 + 0.5) / std::f32::consts::LOG2_E;
            (-64..64).map(move |d| f32::from_bits((near.to_bits() as i32 + d) as u32))
        })
        .filter(|&x| (x * std::f32::consts::LOG2_E).fract().abs() == 0.5)
        .collect();
    assert!(ties.len() > 100, "{} ties", ties.len());
    inputs.extend(ties);
    inputs.extend(specials_f32());
    let mut jit = JitModule::new().unwrap();
    let emitters = [jit.math(), MathEmitter::with_fma(!jit.math().has_fma())];
    let kernels: Vec<(Func, MathEmitter, MapKernel<f32>)> = emitters
        .iter()
        .flat_map(|&math| funcs.map(|f| (f, math)))
        .map(|(f, math)| (f, math, f.compile_with::<f32>(&mut jit, math)))
        .collect();
    jit.finalize().unwrap();
    for (func, math, kernel) in &kernels {
        for chunk in inputs.chunks(1 << 16) {
            let same: Vec<f32> = chunk.iter().flat_map(|&x| [x; 4]).collect();
            let full: Vec<f32> = chunk
                .iter()
                .flat_map(|&x| [x, f32::INFINITY, -1e30, 100.0])
                .collect();
            let (mut short_out, mut full_out) = (vec![0.0; same.len()], vec![0.0; full.len()]);
            jit.run_map(kernel, &[&same], &mut short_out).unwrap();
            jit.run_map(kernel, &[&full], &mut full_out).unwrap();
            for (i, &x) in chunk.iter().enumerate() {
                let what = format!("{}({x:e}) ({math:?}): short path vs full path", func.name());
                assert_same(&what, short_out[4 * i], full_out[4 * i]);
            }
        }
    }

    let mut inputs = math_check::spread_f64(1 << 20);
    for edge in [707.0f64, -707.0] {
        inputs.extend((-(1i64 << 17)..(1 << 17)).map(|k| edge + k as f64 * 2f64.powi(-16)));
    }
    let mut jit = JitModule::new().unwrap();
    let kernels: Vec<(Func, MapKernel<f64>)> =
        funcs.iter().map(|&f| (f, f.compile(&mut jit))).collect();
    jit.finalize().unwrap();
    let same: Vec<f64> = inputs.iter().flat_map(|&x| [x; 2]).collect();
    let full: Vec<f64> = inputs.iter().flat_map(|&x| [x, f64::INFINITY]).collect();
    for (func, kernel) in &kernels {
        let (mut short_out, mut full_out) = (vec![0.0; same.len()], vec![0.0; full.len()]);
        jit.run_map(kernel, &[&same], &mut short_out).unwrap();
        jit.run_map(kernel, &[&full], &mut full_out).unwrap();
        for (i, &x) in inputs.iter().enumerate() {
            let (got, want) = (short_out[2 * i], full_out[2 * i]);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{}({x:e}) (f64): short path {got:e}, full path {want:e}",
                func.name()
            );
        }
    }
}

/// Runs `func` on `inputs` (f32) and returns the outputs.
fn run_f32(func: Func, inputs: &[f32]) -> Vec<f32> {
    let mut jit = JitModule::new().unwrap();
    let kernel = func.compile::<f32>(&mut jit);
    jit.finalize().unwrap();
    let mut out = vec![0.0; inputs.len()];
    jit.run_map(&kernel, &[inputs], &mut out).unwrap();
    out
}

/// Asserts `got` and `want` are the same float: equal bits, or both NaN.
#[track_caller]
fn assert_same(what: &str, got: f32, want: f32) {
    assert!(
        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
        "{what}: got {got:e}, want {want:e}"
    );
}

/// `(x, f(x))` pairs the IR specifies exactly, checked bit for bit (both NaN counts as equal).
fn assert_exact(func: Func, cases: &[(f32, f32)]) {
    let inputs: Vec<f32> = cases.iter().map(|c| c.0).collect();
    for (&(x, want), got) in cases.iter().zip(run_f32(func, &inputs)) {
        assert_same(&format!("{}({x:e})", func.name()), got, want);
    }
}

#[test]
fn exp_edge_cases() {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    assert_exact(
        Func::Exp,
        &[
            (0.0, 1.0),
            (-0.0, 1.0),
            (inf, inf),
            (-inf, 0.0),
            (nan, nan),
            (88.72284, inf),
            (1e30, inf),
            (-103.98, 0.0),
            (-1e30, 0.0),
            (f32::from_bits(1), 1.0),
        ],
    );
    // The largest x with a finite e^x, within an ulp.
    let largest = run_f32(Func::Exp, &[88.72283])[0];
    let error = ulp_error_f32(largest, (88.72283f32 as f64).exp());
    assert!(
        largest.is_finite() && error <= 1.0,
        "exp(88.72283) = {largest:e}: {error} ulp"
    );
    // The subnormal range is kept, within an ulp of the subnormal spacing.
    let inputs = [-87.5f32, -95.0, -100.0, -103.0, -103.9];
    for (x, got) in inputs.iter().zip(run_f32(Func::Exp, &inputs)) {
        assert!(
            got > 0.0 && got < f32::MIN_POSITIVE,
            "exp({x}) = {got:e} is a subnormal"
        );
        assert!(
            ulp_error_f32(got, (*x as f64).exp()) <= 1.0,
            "exp({x}) = {got:e}"
        );
    }
}

#[test]
fn log_edge_cases() {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    assert_exact(
        Func::Log,
        &[
            (1.0, 0.0),
            (0.0, -inf),
            (-0.0, -inf),
            (inf, inf),
            (-inf, nan),
            (-1.0, nan),
            (-f32::from_bits(1), nan),
            (nan, nan),
        ],
    );
    let subnormals = [
        f32::from_bits(1),
        f32::from_bits(0x0040_0000),
        f32::from_bits(0x007f_ffff),
    ];
    for (x, got) in subnormals.iter().zip(run_f32(Func::Log, &subnormals)) {
        assert!(
            ulp_error_f32(got, (*x as f64).ln()) <= 2.0,
            "log({x:e}) = {got:e}"
        );
    }
}

#[test]
fn tanh_edge_cases() {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let tiny = f32::from_bits(1);
    assert_exact(
        Func::Tanh,
        &[
            (0.0, 0.0),
            (-0.0, -0.0),
            (inf, 1.0),
            (-inf, -1.0),
            (nan, nan),
            (1e30, 1.0),
            (-1e30, -1.0),
            (f32::MAX, 1.0),
            (tiny, tiny),
            (-tiny, -tiny),
            (20.0, 1.0),
        ],
    );
    // Never NaN for a finite input.
    let finite: Vec<f32> = (0..=u32::MAX)
        .step_by(65_537)
        .map(f32::from_bits)
        .filter(|x| x.is_finite())
        .collect();
    assert!(run_f32(Func::Tanh, &finite).iter().all(|y| !y.is_nan()));
}

#[test]
fn logistic_edge_cases() {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    assert_exact(
        Func::Logistic,
        &[
            (0.0, 0.5),
            (-0.0, 0.5),
            (inf, 1.0),
            (-inf, 0.0),
            (nan, nan),
            (1e30, 1.0),
            (-1e30, 0.0),
            (200.0, 1.0),
        ],
    );
    let finite: Vec<f32> = (0..=u32::MAX)
        .step_by(65_537)
        .map(f32::from_bits)
        .filter(|x| x.is_finite())
        .collect();
    let out = run_f32(Func::Logistic, &finite);
    assert!(
        out.iter().all(|y| (0.0..=1.0).contains(y)),
        "logistic stays in [0, 1] and never overflows"
    );
}

#[test]
fn erf_edge_cases() {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let tiny = f32::from_bits(1);
    assert_exact(
        Func::Erf,
        &[
            (0.0, 0.0),
            (-0.0, -0.0),
            (inf, 1.0),
            (-inf, -1.0),
            (nan, nan),
            (4.0, 1.0),
            (-4.0, -1.0),
            (1e30, 1.0),
            (-1e30, -1.0),
            (f32::MAX, 1.0),
            // erf(tiny) = 1.128·tiny rounds to tiny.
            (tiny, tiny),
            (-tiny, -tiny),
        ],
    );
    // Saturation: exactly ±1 from the first f32 whose reference rounds to 1 up to well past the clamp at 4.
    let first_one = (0x4000_0000u32..)
        .map(f32::from_bits)
        .find(|&x| libm::erf(x as f64) as f32 == 1.0)
        .unwrap();
    assert!((3.9..4.0).contains(&first_one), "{first_one}");
    let above: Vec<f32> = (first_one.to_bits()..=5.0f32.to_bits())
        .map(f32::from_bits)
        .collect();
    let out = run_f32(Func::Erf, &above);
    assert!(out.iter().all(|&y| y == 1.0));
    let below: Vec<f32> = above.iter().map(|x| -x).collect();
    assert!(run_f32(Func::Erf, &below).iter().all(|&y| y == -1.0));
    // Odd, bit for bit, and never NaN (nor outside [-1, 1]) for a finite input.
    let finite: Vec<f32> = (0..=0x7f7f_ffffu32)
        .step_by(4099)
        .map(f32::from_bits)
        .collect();
    let negated: Vec<f32> = finite.iter().map(|x| -x).collect();
    let (plus, minus) = (run_f32(Func::Erf, &finite), run_f32(Func::Erf, &negated));
    for ((x, y), z) in finite.iter().zip(&plus).zip(&minus) {
        assert_eq!((-y).to_bits(), z.to_bits(), "erf(-{x:e}) = -erf({x:e})");
        assert!((0.0..=1.0).contains(y), "erf({x:e}) = {y:e}");
    }
}

/// f64 erf on its edge cases, a spread of bit patterns and a fine grid over the pieces (and their seams at 1 and
/// the clamp at 6), with and without FMA, within 2 ulp of libm's erf; the f64x2 loop gives each element the bits the
/// scalar tail gives it.
#[test]
fn erf_f64_edge_cases_accuracy_and_lanes() {
    let (inf, nan, tiny) = (f64::INFINITY, f64::NAN, f64::from_bits(1));
    let exact = [
        (0.0, 0.0),
        (-0.0, -0.0),
        (inf, 1.0),
        (-inf, -1.0),
        (nan, nan),
        (6.0, 1.0),
        (-6.0, -1.0),
        (5.95, 1.0),
        // The first f64 whose erf rounds to 1.
        (5.921587195794507, 1.0),
        (1e300, 1.0),
        (tiny, tiny),
        (-tiny, -tiny),
    ];
    let mut inputs = math_check::spread_f64(1 << 18);
    inputs.extend((-(1 << 16)..(1 << 16)).map(|k| k as f64 * 2f64.powi(-13)));
    for seam in [1.0f64, 6.0] {
        inputs.extend((-512..512).map(|k| f64::from_bits((seam.to_bits() as i64 + k) as u64)));
    }
    inputs.extend(exact.iter().map(|c| c.0));
    let mut jit = JitModule::new().unwrap();
    let kernels: Vec<(MathEmitter, MapKernel<f64>)> = [true, false]
        .map(MathEmitter::with_fma)
        .map(|math| (math, Func::Erf.compile_with(&mut jit, math)))
        .into();
    jit.finalize().unwrap();
    for (math, kernel) in &kernels {
        let run = |xs: &[f64]| {
            let mut out = vec![0.0; xs.len()];
            jit.run_map(kernel, &[xs], &mut out).unwrap();
            out
        };
        let out = run(&inputs);
        for (&x, &y) in inputs.iter().zip(&out) {
            let ulp = math_check::ulp_error_f64(y, libm::erf(x));
            assert!(ulp <= 2.0, "erf({x:e}) ({math:?}) = {y:e}: {ulp} ulp");
        }
        for &(x, want) in &exact {
            let y = run(&[x])[0];
            assert!(
                y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                "erf({x:e}) ({math:?}) = {y:e}, want {want:e}"
            );
        }
        // One element at a time runs the scalar tail only.
        for (i, &x) in inputs.iter().enumerate().step_by(97) {
            let y = run(&[x])[0];
            assert!(
                y.to_bits() == out[i].to_bits() || (y.is_nan() && out[i].is_nan()),
                "erf({x:e}) ({math:?}): scalar {y:e}, f64x2 {:e}",
                out[i]
            );
        }
    }
}

/// f32 erf's f32x4 loop against its scalar tail, with and without FMA, on inputs around both pieces and the clamp.
#[test]
fn erf_f32_lanes_give_the_scalar_bits() {
    let inputs: Vec<f32> = (-3000..3000)
        .map(|k| k as f32 * 0.0017)
        .chain(specials_f32())
        .collect();
    let mut jit = JitModule::new().unwrap();
    let kernels: Vec<(MathEmitter, MapKernel<f32>)> = [true, false]
        .map(MathEmitter::with_fma)
        .map(|math| (math, Func::Erf.compile_with(&mut jit, math)))
        .into();
    jit.finalize().unwrap();
    for (math, kernel) in &kernels {
        let mut together = vec![0.0; inputs.len()];
        jit.run_map(kernel, &[&inputs], &mut together).unwrap();
        for (&x, &y) in inputs.iter().zip(&together) {
            let mut alone = [0.0f32];
            jit.run_map(kernel, &[&[x]], &mut alone).unwrap();
            assert_same(
                &format!("erf({x:e}) ({math:?}) scalar vs f32x4"),
                alone[0],
                y,
            );
        }
    }
}

/// A binary map kernel `out[i] = f(a[i], b[i])` on f32, run on every pair of `values`.
fn run_binary_f32(
    values: &[f32],
    f: impl Fn(&MathEmitter, &mut FunctionBuilder<'_>, Value, Value) -> Value,
) -> Vec<(f32, f32, f32)> {
    let (a, b): (Vec<f32>, Vec<f32>) = values
        .iter()
        .flat_map(|&a| values.iter().map(move |&b| (a, b)))
        .unzip();
    let mut jit = JitModule::new().unwrap();
    let math = jit.math();
    let kernel: MapKernel<f32> = jit
        .compile_map("binary", 2, |builder, args| {
            f(&math, builder, args[0], args[1])
        })
        .unwrap();
    jit.finalize().unwrap();
    let mut out = vec![0.0; a.len()];
    jit.run_map(&kernel, &[&a, &b], &mut out).unwrap();
    a.into_iter()
        .zip(b)
        .zip(out)
        .map(|((a, b), y)| (a, b, y))
        .collect()
}

/// Operands for the binary ops: signed zeros, infinities, NaN, subnormals, integers (odd and even), fractions.
fn binary_operands() -> Vec<f32> {
    let tiny = f32::from_bits(1);
    vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        tiny,
        -tiny,
        1.0,
        -1.0,
        2.0,
        -2.0,
        3.0,
        -3.0,
        0.5,
        -0.5,
        2.5,
        -2.5,
        10.0,
        -7.0,
        0.1,
        1e10,
        -1e10,
        16777215.0,
        16777218.0,
        f32::MAX,
    ]
}

#[test]
fn max_min_and_relu_have_the_ir_semantics() {
    // Kiln's max: NaN if either is NaN; max(-0, +0) = +0. min symmetrically.
    let kiln_max = |a: f32, b: f32| {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else if a > b || (a == b && a.is_sign_positive()) {
            a
        } else {
            b
        }
    };
    let kiln_min = |a: f32, b: f32| {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else if a < b || (a == b && a.is_sign_negative()) {
            a
        } else {
            b
        }
    };
    let operands = binary_operands();
    for (a, b, y) in run_binary_f32(&operands, |m, builder, a, b| m.max(builder, a, b)) {
        assert_same(&format!("max({a:e}, {b:e})"), y, kiln_max(a, b));
    }
    for (a, b, y) in run_binary_f32(&operands, |m, builder, a, b| m.min(builder, a, b)) {
        assert_same(&format!("min({a:e}, {b:e})"), y, kiln_min(a, b));
    }
    let mut jit = JitModule::new().unwrap();
    let math = jit.math();
    let relu: MapKernel<f32> = jit
        .compile_map("relu", 1, |b, args| math.relu(b, args[0]))
        .unwrap();
    jit.finalize().unwrap();
    let mut out = vec![0.0; operands.len()];
    jit.run_map(&relu, &[&operands], &mut out).unwrap();
    for (&x, &y) in operands.iter().zip(&out) {
        assert_same(&format!("relu({x:e})"), y, kiln_max(x, 0.0));
    }
}

/// An elementwise op of the math library on one operand, with its Rust reference.
struct UnaryCase {
    name: &'static str,
    emit: fn(&MathEmitter, &mut FunctionBuilder<'_>, Value) -> Value,
    reference: fn(f32) -> f32,
}

#[test]
fn cheap_unary_ops_are_the_ieee_operations() {
    let cases = [
        UnaryCase {
            name: "sqrt",
            emit: |m, b, x| m.sqrt(b, x),
            reference: f32::sqrt,
        },
        UnaryCase {
            name: "recip",
            emit: |m, b, x| m.recip(b, x),
            reference: |x| 1.0 / x,
        },
        UnaryCase {
            name: "abs",
            emit: |m, b, x| m.abs(b, x),
            reference: f32::abs,
        },
        UnaryCase {
            name: "neg",
            emit: |m, b, x| m.neg(b, x),
            reference: |x| -x,
        },
    ];
    let operands = binary_operands();
    let mut jit = JitModule::new().unwrap();
    let math = jit.math();
    let kernels: Vec<MapKernel<f32>> = cases
        .iter()
        .map(|case| {
            jit.compile_map(case.name, 1, |b, args| (case.emit)(&math, b, args[0]))
                .unwrap()
        })
        .collect();
    jit.finalize().unwrap();
    for (case, kernel) in cases.iter().zip(&kernels) {
        let mut out = vec![0.0; operands.len()];
        jit.run_map(kernel, &[&operands], &mut out).unwrap();
        for (&x, &y) in operands.iter().zip(&out) {
            assert_same(&format!("{}({x:e})", case.name), y, (case.reference)(x));
        }
    }
}

#[test]
fn pow_follows_c99_and_is_accurate_in_f32() {
    let mut operands = binary_operands();
    operands.extend([
        0.3f32, 1.7, -0.9, 100.0, 1e-30, 3.5e37, 7.0, 0.999, 1.001, -1e-45,
    ]);
    for (x, y, got) in run_binary_f32(&operands, |m, builder, x, y| m.pow(builder, x, y)) {
        // Rust's powf is C's: the special cases bit for bit, the rest within the error bound.
        let want = (x as f64).powf(y as f64);
        let want_f32 = x.powf(y);
        let what = format!("pow({x:e}, {y:e}) = {got:e}, want {want_f32:e}");
        if want_f32.is_nan() || want_f32.is_infinite() || want_f32 == 0.0 || want_f32 == 1.0 {
            assert_same(&what, got, want_f32);
        } else {
            assert!(ulp_error_f32(got, want) <= 1.0, "{what}");
        }
    }
}

#[test]
fn pow_is_accurate_where_y_ln_x_is_large() {
    // exp(y·ln x) in f32 would lose |y·ln x| ulps here; computing it in f64 keeps the result within an ulp.
    let xs: Vec<f32> = (1..2000).map(|i| 0.05 * i as f32).collect();
    let ys: Vec<f32> = xs
        .iter()
        .map(|&x| 80.0 / (x.ln().abs() + 0.01) * if x < 1.0 { -1.0 } else { 1.0 })
        .collect();
    let mut jit = JitModule::new().unwrap();
    let math = jit.math();
    let pow: MapKernel<f32> = jit
        .compile_map("pow", 2, |b, args| math.pow(b, args[0], args[1]))
        .unwrap();
    jit.finalize().unwrap();
    let mut out = vec![0.0; xs.len()];
    jit.run_map(&pow, &[&xs, &ys], &mut out).unwrap();
    for ((&x, &y), &got) in xs.iter().zip(&ys).zip(&out) {
        let want = (x as f64).powf(y as f64);
        assert!(
            ulp_error_f32(got, want) <= 1.0,
            "pow({x:e}, {y:e}) = {got:e}, want {want:e}"
        );
    }
}

#[test]
fn vector_lanes_and_scalar_tail_agree() {
    // Lengths 0..=9 cover an empty loop, tails only, vectors only and both; each element must not depend on which
    // loop computed it.
    let values: Vec<f32> = (0..9).map(|i| -4.0 + 1.37 * i as f32).collect();
    for func in Func::ALL {
        let alone: Vec<u32> = values
            .iter()
            .map(|&x| run_f32(func, &[x])[0].to_bits())
            .collect();
        for n in 0..=values.len() {
            let together: Vec<u32> = run_f32(func, &values[..n])
                .iter()
                .map(|y| y.to_bits())
                .collect();
            assert_eq!(together, alone[..n], "{} on {n} elements", func.name());
        }
    }
}

#[test]
fn map_kernels_check_their_calls() {
    let mut jit = JitModule::new().unwrap();
    let math = jit.math();
    let exp: MapKernel<f32> = jit
        .compile_map("exp", 1, |b, args| math.exp(b, args[0]))
        .unwrap();
    let mut out = [0.0f32; 3];
    let not_finalized = jit.run_map(&exp, &[&[1.0, 2.0, 3.0]], &mut out);
    assert!(matches!(not_finalized, Err(BackendError::NotFinalized(name)) if name == "exp"));
    jit.finalize().unwrap();
    assert!(matches!(
        jit.run_map(&exp, &[&[1.0, 2.0]], &mut out),
        Err(BackendError::BadCall { .. })
    ));
    assert!(matches!(
        jit.run_map(&exp, &[], &mut out),
        Err(BackendError::BadCall { .. })
    ));
    let other = JitModule::new().unwrap();
    assert!(matches!(
        other.run_map(&exp, &[&[1.0, 2.0, 3.0]], &mut out),
        Err(BackendError::BadCall { .. })
    ));
    jit.run_map(&exp, &[&[0.0, 1.0, -1.0]], &mut out).unwrap();
    assert_eq!(out[0], 1.0);
}

#[test]
fn map_kernel_bodies_may_not_touch_memory() {
    let mut jit = JitModule::new().unwrap();
    let result = jit.compile_map::<f32>("sneaky", 1, |b, args| {
        let ty = b.func.dfg.value_type(args[0]);
        let address = b.ins().iconst(types::I64, 0x1000);
        b.ins().load(ty, MemFlagsData::new(), address, 0)
    });
    assert!(
        matches!(&result, Err(BackendError::ImpureBody { opcode, .. }) if opcode == "load"),
        "{result:?}"
    );
}

#[test]
fn compile_function_gives_a_callable_pointer() {
    let mut jit = JitModule::new().unwrap();
    let mut signature = jit.make_signature();
    signature.params.push(AbiParam::new(types::F32));
    signature.returns.push(AbiParam::new(types::F32));
    let math = jit.math();
    let id = jit
        .compile_function("exp_scalar", signature, |b| {
            let block = b.create_block();
            b.append_block_params_for_function_params(block);
            b.switch_to_block(block);
            let x = b.block_params(block)[0];
            let y = math.exp(b, x);
            b.ins().return_(&[y]);
        })
        .unwrap();
    assert!(matches!(jit.get(id), Err(BackendError::NotFinalized(_))));
    jit.finalize().unwrap();
    assert!(!jit.get(id).unwrap().is_null());
}

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Run in a process of its own (`support::alone`), so that no other test allocates while the resident set is
/// measured.
#[test]
fn jit_memory_is_freed_on_drop() {
    if !crate::support::alone::in_own_process(module_path!(), "jit_memory_is_freed_on_drop") {
        return;
    }
    let cycle = || {
        let mut jit = JitModule::new().unwrap();
        let math = jit.math();
        let kernel: MapKernel<f32> = jit
            .compile_map("relu", 1, |b, args| math.relu(b, args[0]))
            .unwrap();
        jit.finalize().unwrap();
        let mut out = [0.0f32; 5];
        jit.run_map(&kernel, &[&[-2.0, -1.0, 0.0, 1.0, 2.0]], &mut out)
            .unwrap();
        assert_eq!(out, [0.0, 0.0, 0.0, 1.0, 2.0]);
    };
    // Warm up allocators and lazily initialized state first, then measure 1,000 more cycles.
    (0..50).for_each(|_| cycle());
    let Some(before) = resident_bytes() else {
        return;
    };
    (0..1000).for_each(|_| cycle());
    let after = resident_bytes().unwrap();
    // Each module maps at least a page of code; leaking them would add 4 MB or more.
    let growth = after.saturating_sub(before);
    assert!(
        growth < 2 << 20,
        "RSS grew by {growth} bytes over 1,000 JIT modules"
    );
}
