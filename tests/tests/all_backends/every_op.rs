//! Every elementwise op of the op table, on every dtype it is defined on, on the edge values of SPEC.md §3: the
//! CPU backend and the Vulkan backend against the reference interpreter.
//!
//! The ops come from `UnaryOp::ALL` and `BinaryOp::ALL` and their domains from the table (`float_only`,
//! `defined_on`), so a new op is tested here without being listed. Cheap ops must match bit for bit (NaN matches
//! NaN); transcendental ones (`Cost::Transcendental`: polynomials on every backend) within the ulp bound below.

use kiln::backend::spirv;
use kiln::ir::op::Cost;
use kiln::ir::{interp, BinaryOp, Builder, DType, Graph, Tensor, TensorType, UnaryOp};
use kiln_tests::vulkan::device;

/// Floats of SPEC's edge cases: NaN, signed zeros and infinities, subnormal and huge magnitudes, the points where
/// the math library's polynomials change range (0.625, 0.84375 for erf, 88 for f32 exp) and ordinary values.
const FLOATS: [f64; 26] = [
    f64::NAN,
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -0.5,
    0.625,
    0.84375,
    -1.25,
    2.5,
    -2.5,
    3.9,
    -6.0,
    1e-30,
    -1e-30,
    1e-40,
    10.0,
    -10.0,
    88.5,
    -88.5,
    1e30,
    -1e30,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1.0 / 3.0,
];

/// More arguments for `sin` and `cos`: multiples of π/2 (rounded to the dtype, so next to the true multiples where the
/// reduction cancels most), moderate and large arguments up to and past the end of the accurate domain.
const TRIG_FLOATS: [f64; 20] = [
    std::f64::consts::FRAC_PI_2,
    -std::f64::consts::FRAC_PI_2,
    std::f64::consts::PI,
    3.0 * std::f64::consts::FRAC_PI_2,
    std::f64::consts::TAU,
    -std::f64::consts::TAU,
    100.0 * std::f64::consts::FRAC_PI_2,
    4097.0 * std::f64::consts::FRAC_PI_2,
    0.785,
    0.786,
    1e4,
    -1e4,
    1e5,
    -1e5,
    1e6,
    3e6,
    1e7,
    1e15,
    -1e20,
    f32::MAX as f64,
];

/// Where `sin`/`cos` of `dtype` are accurate on the CPU (`fma`: the host has it) or on Vulkan: `|x|` below this
/// (SPEC §3.2, the Cody–Waite reduction's range); infinite for every other op.
fn accurate_below(op: UnaryOp, dtype: DType, gpu: bool, fma: bool) -> f64 {
    match (op, dtype == DType::F32, fma && !gpu) {
        (UnaryOp::Sin | UnaryOp::Cos, true, true) => 4_194_304.0,
        (UnaryOp::Sin | UnaryOp::Cos, true, false) => 8192.0,
        (UnaryOp::Sin | UnaryOp::Cos, false, true) => 1.125_899_906_842_624e15,
        (UnaryOp::Sin | UnaryOp::Cos, false, false) => 1_048_576.0,
        _ => f64::INFINITY,
    }
}

/// Integers of SPEC's edge cases; 31, 32 and 33 are the shift amounts where `b mod 32` wraps (as do -1 and MIN).
const INTS: [i32; 14] = [
    0,
    1,
    -1,
    2,
    -3,
    7,
    -7,
    31,
    32,
    33,
    100,
    i32::MAX,
    i32::MIN,
    i32::MIN + 1,
];

/// The ulp distance a transcendental op may have from the interpreter's (Rust's / libm's) result: the CPU math
/// library's bound is 2.4 ulp (its module doc's table) and `pow`'s f64 reduction loses a few more for large
/// exponents. Vulkan's f32 transcendentals are GLSL.std.450's, specified to a few ulp; lavapipe's are LLVM's.
const CPU_ULPS: u64 = 8;
const VULKAN_ULPS: u64 = 64;

fn values(dtype: DType) -> Vec<f64> {
    match dtype {
        DType::F32 => FLOATS.iter().map(|&v| v as f32 as f64).collect(),
        DType::F64 => FLOATS.to_vec(),
        DType::I32 => INTS.iter().map(|&v| v as f64).collect(),
        DType::Bool => vec![0.0, 1.0],
    }
}

fn defined(float_only: bool, dtype: DType) -> bool {
    dtype.is_float() || (dtype == DType::I32 && !float_only)
}

/// The distance in representable values between `a` and `b` of one float type (`-0` and `+0` are one apart).
fn ulps(a: f64, b: f64, dtype: DType) -> u64 {
    let key = |v: f64| -> i64 {
        let bits = if dtype == DType::F32 {
            (v as f32).to_bits() as i32 as i64
        } else {
            v.to_bits() as i64
        };
        if bits < 0 {
            i64::MIN - bits
        } else {
            bits
        }
    };
    key(a).abs_diff(key(b))
}

/// Checks `got` against the interpreter's `want`, element by element, naming the op and the operands on a mismatch.
/// Where an operand's magnitude reaches `accurate_below` (`sin`/`cos` only), the result need only be finite and in
/// [-1, 1].
fn compare(
    what: &str,
    (gpu, accurate_below): (bool, f64),
    cost: Cost,
    want: &Tensor,
    got: &Tensor,
    inputs: &[Tensor],
) {
    let backend = if gpu { "vulkan" } else { "cpu" };
    assert_eq!(want.ty(), got.ty(), "{what} on {backend}: result type");
    let dtype = want.dtype();
    let (want, got) = (want.to_f64_vec(), got.to_f64_vec());
    for (i, (&w, &g)) in want.iter().zip(&got).enumerate() {
        let operands: Vec<f64> = inputs.iter().map(|t| t.to_f64_vec()[i]).collect();
        if operands
            .iter()
            .any(|v| v.is_finite() && v.abs() >= accurate_below)
        {
            assert!(
                g.abs() <= 1.0,
                "{what} of {operands:?} on {backend}: got {g:e}, outside the accurate domain but not in [-1, 1]"
            );
            continue;
        }
        let subnormal = |v: f64| v != 0.0 && v.abs() < f32::MIN_POSITIVE as f64;
        // A GPU may flush subnormal operands to zero (SPEC §1), which changes what a transcendental op computes.
        if gpu && cost == Cost::Transcendental && operands.iter().any(|&v| subnormal(v)) {
            continue;
        }
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else if !dtype.is_float() {
            w == g
        } else if gpu && (w.abs() < f32::MIN_POSITIVE as f64 || g.abs() < f32::MIN_POSITIVE as f64)
        {
            // A GPU may flush subnormals (SPEC §1): anything below the smallest normal f32 counts as zero.
            (w - g).abs() < f32::MIN_POSITIVE as f64 * 2.0
        } else if cost == Cost::Transcendental {
            // `pow` = exp(b·log|a|) loses about |b·ln|a|| ulp to the rounding of b·log|a| (the math library's doc).
            let pow_loss = match operands[..] {
                [a, b] => (b * a.abs().ln()).abs().min(1e6) as u64,
                _ => 0,
            };
            let bound = if gpu { VULKAN_ULPS } else { CPU_ULPS } + pow_loss;
            ulps(w, g, dtype) <= bound
        } else {
            w.to_bits() == g.to_bits() || (gpu && w == g)
        };
        assert!(
            ok,
            "{what} of {operands:?} on {backend}: got {g:e}, the interpreter gives {w:e}"
        );
    }
}

/// Runs `graph` on the interpreter, the CPU and (where there is a device) Vulkan, and compares its one output;
/// `accurate_below(gpu)` is [`compare`]'s bound on each backend.
fn check(
    graph: &Graph,
    what: &str,
    cost: Cost,
    accurate_below: impl Fn(bool) -> f64,
    inputs: &[Tensor],
) {
    let want = interp::run(graph, inputs).unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let options = kiln::Options {
        threads: 1,
        ..kiln::Options::default()
    };
    let cpu = kiln::compile(graph, &options)
        .and_then(|exe| Ok(exe.run(inputs)?))
        .unwrap_or_else(|e| panic!("{what}: CPU: {e}"));
    compare(
        what,
        (false, accurate_below(false)),
        cost,
        &want[0],
        &cpu[0],
        inputs,
    );
    let program = kiln::fusion::lower(graph).unwrap_or_else(|e| panic!("{what}: fusion: {e}"));
    let kernels = spirv::lower(&program).unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
    kiln_tests::vulkan::validate(&kernels);
    if let Some(device) = device() {
        let gpu = spirv::compile(device, &program)
            .and_then(|exe| Ok(exe.run(inputs)?))
            .unwrap_or_else(|e| panic!("{what}: Vulkan: {e}"));
        compare(
            what,
            (true, accurate_below(true)),
            cost,
            &want[0],
            &gpu[0],
            inputs,
        );
    }
}

#[test]
fn every_unary_op_on_edge_values() {
    let fma = kiln::backend::cpu::jit::JitModule::new()
        .unwrap()
        .math()
        .has_fma();
    for op in UnaryOp::ALL {
        for dtype in [DType::F32, DType::F64, DType::I32] {
            if !defined(op.float_only(), dtype) {
                continue;
            }
            let mut xs = values(dtype);
            if matches!(op, UnaryOp::Sin | UnaryOp::Cos) {
                let round = |v: f64| {
                    if dtype == DType::F32 {
                        v as f32 as f64
                    } else {
                        v
                    }
                };
                xs.extend(TRIG_FLOATS.iter().map(|&v| round(v)));
            }
            let ty = TensorType::new(dtype, [xs.len()]);
            let mut b = Builder::new(format!("{}_{dtype}", op.name()));
            let x = b.data("x", ty.clone()).unwrap();
            let y = b.unary(op, x).unwrap();
            b.output("y", y).unwrap();
            let inputs = [Tensor::from_f64_values(ty, &xs).unwrap()];
            check(
                &b.finish(),
                &format!("{} ({dtype})", op.name()),
                op.cost(),
                |gpu| accurate_below(op, dtype, gpu, fma),
                &inputs,
            );
        }
    }
}

#[test]
fn every_binary_op_on_pairs_of_edge_values() {
    for op in BinaryOp::ALL {
        for dtype in [DType::F32, DType::F64, DType::I32] {
            if !op.defined_on(dtype) {
                continue;
            }
            let vs = values(dtype);
            let (a, c): (Vec<f64>, Vec<f64>) = vs
                .iter()
                .flat_map(|&a| vs.iter().map(move |&c| (a, c)))
                .unzip();
            let ty = TensorType::new(dtype, [a.len()]);
            let mut b = Builder::new(format!("{}_{dtype}", op.name()));
            let x = b.data("a", ty.clone()).unwrap();
            let z = b.data("b", ty.clone()).unwrap();
            let y = b.binary(op, x, z).unwrap();
            b.output("y", y).unwrap();
            let inputs = [
                Tensor::from_f64_values(ty.clone(), &a).unwrap(),
                Tensor::from_f64_values(ty, &c).unwrap(),
            ];
            check(
                &b.finish(),
                &format!("{} ({dtype})", op.name()),
                op.cost(),
                |_| f64::INFINITY,
                &inputs,
            );
        }
    }
}
