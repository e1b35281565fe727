//! The GPU backend: kernel IR → SPIR-V → Vulkan, against the graph interpreter.
//!
//! Every module the backend emits must pass `spirv-val --target-env vulkan1.1`, and every program must compute
//! what the graph interpreter (`kiln_ir::interp`) computes on the same seeded inputs: integers and bools exactly,
//! floats within `|a − b| ≤ 1e-4 + 1e-4·|b|` (NaN equals NaN, infinities exactly). That tolerance is GLSL.std.450's:
//! Vulkan allows `exp` an error of `3 + 2|x|` ULP and `log` 3 ULP, and matmuls and sums may be reassociated by the
//! device compiler.
//!
//! Tests that need a device or `spirv-val` print why and return when there is none — unless `KILN_REQUIRE_VULKAN=1`
//! (set by CI, which runs Mesa's lavapipe), where a missing device or tool is a failure.

use crate::support::random::{random_inputs_at_init_scale as random_inputs, random_tensor};
use crate::support::vulkan::{device, validate};
use kiln::backend::spirv::{self, Device, SpirvKernel};
use kiln::ir::{interp, text, DType, Graph, Tensor, TensorType};
use kiln::kernel::KernelProgram;
use kiln::{fusion, training_step, zoo, Optimizer, Sgd};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;

// ---- comparison ----

const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-4;

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= ATOL + RTOL * b.abs()
}

/// Panics with the first element where `actual` and `expected` differ.
fn assert_outputs_match(graph: &Graph, expected: &[Tensor], actual: &[Tensor], what: &str) {
    assert_eq!(expected.len(), actual.len(), "{}: output count", graph.name);
    for ((o, e), a) in graph.outputs().iter().zip(expected).zip(actual) {
        assert_eq!(e.ty(), a.ty(), "{}: output {} type", graph.name, o.name);
        let (ev, av) = (e.to_f64_vec(), a.to_f64_vec());
        let exact = !e.dtype().is_float();
        if let Some(i) = (0..ev.len()).find(|&i| {
            if exact {
                ev[i] != av[i]
            } else {
                !close(av[i], ev[i])
            }
        }) {
            panic!(
                "{}: output {} element {i}: interpreter {}, {what} {}",
                graph.name, o.name, ev[i], av[i]
            );
        }
    }
}

/// Lowers `graph` to kernels and SPIR-V, validates every module, and — with a device — runs it on seeded random
/// inputs against the interpreter. Returns the program and its shaders.
fn check_graph(graph: &Graph, seed: u64) -> (KernelProgram, Vec<SpirvKernel>) {
    let program = fusion::lower(graph).unwrap_or_else(|e| panic!("{}: {e}", graph.name));
    let kernels = spirv::lower(&program).unwrap_or_else(|e| panic!("{}: {e}", graph.name));
    validate(&kernels);
    if let Some(device) = device() {
        let inputs = random_inputs(graph, seed);
        let expected = interp::run(graph, &inputs).unwrap();
        // The GPU plans (workgroup reductions, tiled matmuls) even on lavapipe, where `compile` would pick fewer.
        let options = spirv::Options::gpu_plans(device.info());
        let exe = spirv::compile_with(device, &program, &options)
            .unwrap_or_else(|e| panic!("{}: {e}", graph.name));
        let actual = exe
            .run(&inputs)
            .unwrap_or_else(|e| panic!("{}: {e}", graph.name));
        assert_outputs_match(graph, &expected, &actual, "Vulkan");
    }
    (program, kernels)
}

/// Runs `program` (lowered from `graph`) on `device` with `compile`'s default options and asserts that its outputs
/// on `inputs` match the interpreter's; returns them, for the tests of hand-picked special values that then check
/// particular elements (`check_graph` runs on random inputs and under the GPU plans instead).
fn run_against_interpreter(
    device: &Device,
    graph: &Graph,
    program: &KernelProgram,
    inputs: &[Tensor],
) -> Vec<Tensor> {
    let expected = interp::run(graph, inputs).unwrap();
    let actual = spirv::compile(device, program)
        .unwrap()
        .run(inputs)
        .unwrap();
    assert_outputs_match(graph, &expected, &actual, "Vulkan");
    actual
}

fn parse(src: &str) -> Graph {
    text::parse(src).unwrap_or_else(|e| panic!("{e}"))
}

// ---- tiny programs: one feature each ----

#[test]
fn elementwise_chain_is_one_valid_shader() {
    let g = parse(
        "graph ew {
          %x = input{role=data} : f32[4,8]
          %y = input{role=data} : f32[4,8]
          %1 = mul %x, %y : f32[4,8]
          %2 = exp %1 : f32[4,8]
          %3 = logistic %2 : f32[4,8]
          %4 = tanh %x : f32[4,8]
          %5 = max %3, %4 : f32[4,8]
          output out = %5
        }",
    );
    let (_, kernels) = check_graph(&g, 1);
    assert_eq!(kernels.len(), 1);
    assert_eq!(kernels[0].groups, [1, 1, 1]);
}

#[test]
fn every_scalar_op_on_special_values() {
    // Edge cases of SPEC.md §3: NaN, ±inf, ±0, i32 MIN / -1 and x / 0, saturating casts.
    let g = parse(
        "graph special {
          %a = input{role=data} : f32[12]
          %b = input{role=data} : f32[12]
          %i = input{role=data} : i32[12]
          %j = input{role=data} : i32[12]
          %1 = max %a, %b : f32[12]
          %2 = min %a, %b : f32[12]
          %3 = pow %a, %b : f32[12]
          %4 = div %i, %j : i32[12]
          %5 = cast{to=i32} %a : i32[12]
          %6 = cast{to=bool} %a : bool[12]
          %7 = compare{dir=ne} %a, %b : bool[12]
          %8 = compare{dir=ge} %a, %b : bool[12]
          %9 = tanh %a : f32[12]
          %10 = logistic %a : f32[12]
          %11 = abs %i : i32[12]
          %12 = neg %i : i32[12]
          %13 = max %i, %j : i32[12]
          %14 = recip %a : f32[12]
          %15 = sqrt %a : f32[12]
          %16 = cast{to=f32} %6 : f32[12]
          %17 = select %7, %a, %b : f32[12]
          %18 = log %a : f32[12]
          output max = %1
          output min = %2
          output pow = %3
          output div = %4
          output to_i32 = %5
          output to_bool = %6
          output ne = %7
          output ge = %8
          output tanh = %9
          output logistic = %10
          output abs = %11
          output neg = %12
          output imax = %13
          output recip = %14
          output sqrt = %15
          output from_bool = %16
          output select = %17
          output log = %18
        }",
    );
    let program = fusion::lower(&g).unwrap();
    let kernels = spirv::lower(&program).unwrap();
    validate(&kernels);
    let Some(device) = device() else { return };
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let a = [
        nan, 1.0, -0.0, 0.0, inf, -inf, -2.0, 3e9, -3e9, 2.5, 0.0, -8.0,
    ];
    let b = [
        1.0,
        nan,
        0.0,
        -0.0,
        2.0,
        3.0,
        3.0,
        0.5,
        1.0,
        -1.5,
        -1.0,
        1.0 / 3.0,
    ];
    let i = [i32::MIN, 7, -7, 0, 5, i32::MIN, 1, -1, 100, 3, -3, 9];
    let j = [-1, 0, 2, 0, -5, 1, 0, 1, 7, -3, 2, i32::MIN];
    let inputs = vec![
        Tensor::from_f32(&[12], a.to_vec()).unwrap(),
        Tensor::from_f32(&[12], b.to_vec()).unwrap(),
        Tensor::from_i32(&[12], i.to_vec()).unwrap(),
        Tensor::from_i32(&[12], j.to_vec()).unwrap(),
    ];
    let actual = run_against_interpreter(device, &g, &program, &inputs);
    // max/min order zeros like the interpreter: max(-0, +0) = +0, min(+0, -0) = -0.
    let max = actual[0].as_f32().unwrap();
    let min = actual[1].as_f32().unwrap();
    assert!(max[2].is_sign_positive() && max[3].is_sign_positive());
    assert!(min[2].is_sign_negative() && min[3].is_sign_negative());
}

/// C99 `pow` of a negative base: NaN for a finite base and a fractional exponent, but `|a|^b` for a base of -inf
/// (+inf for b > 0, +0 for b < 0); odd integer exponents keep the sign. (Found by the random-graph property.)
#[test]
fn pow_of_negative_infinity_and_fractions() {
    let g = parse(
        "graph pow_neg {
          %a = input{role=data} : f32[8]
          %b = input{role=data} : f32[8]
          %1 = pow %a, %b : f32[8]
          output pow = %1
        }",
    );
    let program = fusion::lower(&g).unwrap();
    let kernels = spirv::lower(&program).unwrap();
    validate(&kernels);
    let Some(device) = device() else { return };
    let inf = f32::INFINITY;
    let a = [-inf, -inf, -inf, -inf, -inf, -2.0, -2.0, -0.5];
    let b = [0.5, -0.5, 2.5, 3.0, -3.0, 0.5, 3.0, -inf];
    let inputs = vec![
        Tensor::from_f32(&[8], a.to_vec()).unwrap(),
        Tensor::from_f32(&[8], b.to_vec()).unwrap(),
    ];
    let actual = run_against_interpreter(device, &g, &program, &inputs);
    let got = actual[0].as_f32().unwrap();
    assert_eq!(got[0], inf);
    assert!(got[1] == 0.0 && got[1].is_sign_positive());
    assert_eq!(got[3], -inf);
    assert!(got[4] == 0.0 && got[4].is_sign_negative());
    assert!(got[5].is_nan());
}

#[test]
fn reductions_rows_columns_and_full() {
    let g = parse(
        "graph red {
          %x = input{role=data} : f32[33,70]
          %n = input{role=data} : i32[33,70]
          %1 = reduce_sum{axes=[1], keep_dims=false} %x : f32[33]
          %2 = reduce_max{axes=[0], keep_dims=true} %x : f32[1,70]
          %3 = reduce_sum{axes=[0,1], keep_dims=false} %x : f32[]
          %4 = reduce_max{axes=[1], keep_dims=false} %n : i32[33]
          %5 = reduce_sum{axes=[0], keep_dims=false} %n : i32[70]
          output rows = %1
          output cols = %2
          output all = %3
          output imax = %4
          output isum = %5
        }",
    );
    check_graph(&g, 2);
}

#[test]
fn matmul_with_transposed_operand_and_epilogue() {
    let g = parse(
        "graph mm {
          %x = input{role=data} : f32[2,37,19]
          %w = input{role=param} : f32[2,23,19]
          %b = input{role=param} : f32[2,37,23]
          %1 = transpose{perm=[0,2,1]} %w : f32[2,19,23]
          %2 = matmul %x, %1 : f32[2,37,23]
          %3 = add %2, %b : f32[2,37,23]
          %4 = tanh %3 : f32[2,37,23]
          output y = %4
        }",
    );
    let (program, _) = check_graph(&g, 3);
    assert!(matches!(
        program.kernels[0],
        kiln::kernel::Kernel::Matmul(_)
    ));
}

#[test]
fn f64_and_bool_buffers() {
    let g = parse(
        "graph wide {
          %x = input{role=data} : f64[5,6]
          %m = input{role=data} : bool[5,6]
          %1 = sqrt %x : f64[5,6]
          %2 = select %m, %1, %x : f64[5,6]
          %3 = reduce_sum{axes=[1], keep_dims=false} %2 : f64[5]
          %4 = compare{dir=gt} %x, %2 : bool[5,6]
          %5 = cast{to=f32} %3 : f32[5]
          output s = %3
          output gt = %4
          output narrowed = %5
        }",
    );
    let program = fusion::lower(&g).unwrap();
    let kernels = spirv::lower(&program).unwrap();
    assert!(kernels.iter().any(|k| k.uses_f64));
    validate(&kernels);
    let Some(device) = device() else { return };
    let inputs = random_inputs(&g, 4);
    match spirv::compile(device, &program) {
        Ok(exe) => {
            let expected = interp::run(&g, &inputs).unwrap();
            assert_outputs_match(&g, &expected, &exe.run(&inputs).unwrap(), "Vulkan");
        }
        Err(e) => {
            assert!(!device.info().float64, "{e}");
            assert!(e.to_string().contains("unsupported on this device"), "{e}");
        }
    }
}

/// f64 `exp`, `log`, `tanh`, `logistic` and `pow`, emitted as range reduction + polynomial (GLSL.std.450 has only
/// 32-bit versions), against the interpreter (the host's libm) on a sweep of ordinary values and on the edge cases.
/// Bound: relative error 1e-14 (about 45 ulp; measured far lower, printed), `pow` 1e-13 (its error grows with
/// `|b·ln|a||`, up to 709 here); edge cases exactly (NaN, ±inf, ±0, the pow cases of C99).
#[test]
fn f64_transcendentals_match_the_interpreter() {
    let n = 4096;
    let g = parse(&format!(
        "graph t64 {{
          %x = input{{role=data}} : f64[{n}]
          %p = input{{role=data}} : f64[{n}]
          %1 = exp %x : f64[{n}]
          %2 = log %x : f64[{n}]
          %3 = tanh %x : f64[{n}]
          %4 = logistic %x : f64[{n}]
          %5 = pow %x, %p : f64[{n}]
          output exp = %1
          output log = %2
          output tanh = %3
          output logistic = %4
          output pow = %5
        }}"
    ));
    let program = fusion::lower(&g).unwrap();
    let kernels = spirv::lower(&program).unwrap();
    assert!(kernels.iter().all(|k| k.uses_f64));
    validate(&kernels);
    let Some(device) = device() else { return };
    if !device.info().float64 {
        let e = spirv::compile(device, &program).unwrap_err();
        assert!(e.to_string().contains("shaderFloat64"), "{e}");
        return;
    }
    let special = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        1.0,
        -1.0,
        -2.0,
        5e-324,
        f64::MIN_POSITIVE,
        f64::MAX,
        709.7,
        710.0,
        -745.0,
        -746.0,
        1e-300,
        0.5,
        -3.0,
    ];
    // x: the specials, then a sweep over [-40, 40] and positive values spanning many binades; p: exponents that
    // hit every pow case (integers odd and even, fractions, ±0, ±inf, NaN, large).
    let mut x: Vec<f64> = special.to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    while x.len() < n {
        let z: f64 = StandardNormal.sample(&mut rng);
        x.push(match x.len() % 3 {
            0 => z * 15.0,
            1 => (z * 30.0).exp(),
            _ => z * 0.3,
        });
    }
    let pvals = [
        2.0,
        3.0,
        -1.0,
        0.5,
        -0.5,
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1e10,
        7.0,
        -2.5,
    ];
    let p: Vec<f64> = (0..n)
        .map(|i| {
            if i < 2 * special.len() {
                pvals[i % pvals.len()]
            } else {
                let z: f64 = StandardNormal.sample(&mut rng);
                // |p·ln|x|| stays ≤ 709 where the result is finite.
                (z * 3.0).clamp(-20.0, 20.0)
            }
        })
        .collect();
    let inputs = vec![
        Tensor::from_f64_values(TensorType::new(DType::F64, vec![n]), &x).unwrap(),
        Tensor::from_f64_values(TensorType::new(DType::F64, vec![n]), &p).unwrap(),
    ];
    let expected = interp::run(&g, &inputs).unwrap();
    let actual = spirv::compile(device, &program)
        .unwrap()
        .run(&inputs)
        .unwrap();
    for ((o, e), a) in g.outputs().iter().zip(&expected).zip(&actual) {
        let bound = if o.name == "pow" { 1e-13 } else { 1e-14 };
        let (ev, av) = (e.to_f64_vec(), a.to_f64_vec());
        let mut worst: f64 = 0.0;
        for i in 0..n {
            let (e, a) = (ev[i], av[i]);
            if e.is_nan()
                || a.is_nan()
                || e.is_infinite()
                || e == 0.0
                || e.abs() < f64::MIN_POSITIVE
            {
                // Exact, except that a device may flush a subnormal result to zero.
                let flushed = e.abs() < f64::MIN_POSITIVE && a == 0.0;
                assert!(
                    (e.is_nan() && a.is_nan()) || e.to_bits() == a.to_bits() || flushed,
                    "{}({}, {}): interpreter {e:e}, Vulkan {a:e}",
                    o.name,
                    x[i],
                    p[i]
                );
                continue;
            }
            let rel = ((a - e) / e).abs();
            worst = worst.max(rel);
            assert!(
                rel <= bound,
                "{}({:e}, {:e}): interpreter {e:e}, Vulkan {a:e}, relative error {rel:e}",
                o.name,
                x[i],
                p[i]
            );
        }
        println!("f64 {:<9} worst relative error {worst:.2e}", o.name);
    }
}

#[test]
fn large_tensors_use_a_2d_dispatch() {
    // 1M elements = 16,384 workgroups of 64: 1-D. 8M would be 2-D; the dispatch shape is checked on the numbers,
    // and the run on 4,194,305 points (65,537 groups: x = 65,535, y = 2), where the guard cuts the last row short.
    assert_eq!(spirv::dispatch_groups(1 << 20), [16_384, 1, 1]);
    assert_eq!(spirv::dispatch_groups(65_535 * 64 + 1), [65_535, 2, 1]);
    assert_eq!(spirv::dispatch_groups(0), [0, 0, 0]);
    let g = parse(
        "graph big {
          %x = input{role=data} : f32[4194305]
          %1 = constant{value=2.0} : f32[4194305]
          %2 = mul %x, %1 : f32[4194305]
          output y = %2
        }",
    );
    let (_, kernels) = check_graph(&g, 5);
    assert_eq!(kernels[0].groups, [65_535, 2, 1]);
}

#[test]
fn inputs_are_checked_by_name() {
    let g = parse(
        "graph one {
          %x = input{role=data} : f32[3]
          %1 = neg %x : f32[3]
          output y = %1
        }",
    );
    let Some(device) = device() else { return };
    let exe = spirv::compile(device, &fusion::lower(&g).unwrap()).unwrap();
    let err = exe
        .run(&[Tensor::from_f32(&[4], vec![0.0; 4]).unwrap()])
        .unwrap_err();
    assert!(
        err.to_string().contains("input `x` must be f32[3]"),
        "{err}"
    );
    let err = exe.run(&[]).unwrap_err();
    assert!(err.to_string().contains("takes 1 input(s), got 0"), "{err}");
}

// ---- workgroup reductions ----

/// The option sets the workgroup path is checked under: the shared-memory tree (forced, even on a device with
/// subgroups), the device's own (subgroup butterfly where it has shuffles), and sequential reductions.
fn reduction_variants(device: &Device) -> Vec<(&'static str, spirv::Options)> {
    let native = spirv::Options::gpu_plans(device.info());
    let mut out = vec![(
        "shared memory",
        spirv::Options {
            subgroup_size: None,
            ..native
        },
    )];
    if native.subgroup_size.is_some() {
        out.push(("subgroups", native));
    } else {
        eprintln!("the device has no subgroup shuffles: the subgroup path is only validated");
    }
    out.push((
        "sequential",
        spirv::Options {
            workgroup_reductions: None,
            ..native
        },
    ));
    out
}

/// Lowers `graph` under every variant (each module through spirv-val, with subgroups even without a device),
/// checks which kernels became workgroup kernels, and runs each variant twice against the interpreter: the two runs
/// must be bit-identical (the combination order is fixed).
fn check_reductions(graph: &Graph, inputs: &[Tensor], expect_workgroup: usize) {
    let program = fusion::lower(graph).unwrap();
    let subgroup_opts = spirv::Options {
        subgroup_size: Some(8),
        ..spirv::Options::default()
    };
    for opts in [spirv::Options::default(), subgroup_opts] {
        let kernels = spirv::lower_with(&program, &opts).unwrap();
        validate(&kernels);
        let workgroup = kernels
            .iter()
            .filter(|k| k.local_size != 64 || has_barrier(k))
            .count();
        assert_eq!(
            workgroup, expect_workgroup,
            "{}: workgroup kernels",
            graph.name
        );
    }
    let Some(device) = device() else { return };
    let expected = interp::run(graph, inputs).unwrap();
    for (what, opts) in reduction_variants(device) {
        let exe =
            spirv::compile_with(device, &program, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
        let first = exe.run(inputs).unwrap();
        assert_outputs_match(graph, &expected, &first, what);
        let second = exe.run(inputs).unwrap();
        for (a, b) in first.iter().zip(&second) {
            let bits =
                |t: &Tensor| -> Vec<u64> { t.to_f64_vec().iter().map(|v| v.to_bits()).collect() };
            assert_eq!(bits(a), bits(b), "{what}: two runs differ");
        }
    }
}

fn has_barrier(k: &SpirvKernel) -> bool {
    k.disassemble().contains("OpControlBarrier")
}

#[test]
fn workgroup_reductions_softmax_full_sum_columns_and_i32() {
    // A row softmax (max, sum of exponentials and the normalize in one workgroup per row), a full sum of 24,000
    // (256 invocations), a column max (strided over rows), i32 sums and maxima.
    let mut b = kiln::Builder::new("wg");
    let x = b.data("x", TensorType::f32(&[24, 1000])).unwrap();
    let c = b.data("c", TensorType::f32(&[300, 70])).unwrap();
    let n = b
        .data("n", TensorType::new(DType::I32, vec![40, 500]))
        .unwrap();
    let sm = b.softmax(x, -1).unwrap();
    let all = b.reduce_sum(x, &[0, 1], false).unwrap();
    let cols = b.reduce_max(c, &[0], false).unwrap();
    let isum = b.reduce_sum(n, &[1], false).unwrap();
    let imax = b.reduce_max(n, &[1], false).unwrap();
    for (name, v) in [
        ("sm", sm),
        ("all", all),
        ("cols", cols),
        ("isum", isum),
        ("imax", imax),
    ] {
        b.output(name, v).unwrap();
    }
    let g = b.finish();
    let program = fusion::lower(&g).unwrap();
    let kernels = spirv::lower(&program).unwrap();
    let softmax = kernels
        .iter()
        .filter(|k| k.groups == [24, 1, 1] && k.local_size == 64)
        .count();
    assert!(
        softmax >= 1,
        "the softmax is one workgroup per row:\n{}",
        kiln::kernel::print(&program)
    );
    assert!(kernels
        .iter()
        .any(|k| k.groups == [1, 1, 1] && k.local_size == 256));
    let inputs = random_inputs(&g, 11);
    check_reductions(
        &g,
        &inputs,
        kernels.iter().filter(|k| has_barrier(k)).count(),
    );
}

#[test]
fn workgroup_reductions_keep_signed_zero_nan_and_infinities() {
    // Row 0: all -0 (sum -0); row 1: one NaN (sum and max NaN); row 2: +inf and -inf (sum NaN, max +inf);
    // row 3: -inf only (max -inf); rows 4..: normal values.
    let (rows, cols) = (8usize, 300usize);
    let mut v: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    v[..cols].fill(-0.0);
    v[cols + 123] = f32::NAN;
    v[2 * cols + 7] = f32::INFINITY;
    v[2 * cols + 290] = f32::NEG_INFINITY;
    v[3 * cols..4 * cols].fill(f32::NEG_INFINITY);
    let g = parse(&format!(
        "graph special_rows {{
          %x = input{{role=data}} : f32[{rows},{cols}]
          %1 = reduce_sum{{axes=[1], keep_dims=false}} %x : f32[{rows}]
          %2 = reduce_max{{axes=[1], keep_dims=false}} %x : f32[{rows}]
          output s = %1
          output m = %2
        }}"
    ));
    let inputs = vec![Tensor::from_f32(&[rows, cols], v).unwrap()];
    check_reductions(&g, &inputs, 2);
    let Some(device) = device() else { return };
    let program = fusion::lower(&g).unwrap();
    for (what, opts) in reduction_variants(device) {
        let out = spirv::compile_with(device, &program, &opts)
            .unwrap()
            .run(&inputs)
            .unwrap();
        let s = out[0].as_f32().unwrap();
        assert!(
            s[0] == 0.0 && s[0].is_sign_negative(),
            "{what}: a sum of -0 is -0, got {}",
            s[0]
        );
        assert!(s[1].is_nan() && s[2].is_nan(), "{what}");
        let m = out[1].as_f32().unwrap();
        assert!(
            m[1].is_nan() && m[2] == f32::INFINITY && m[3] == f32::NEG_INFINITY,
            "{what}"
        );
    }
}

// ---- the tiled matmul ----

/// Lowers `graph`, checks that it has `tiled` tiled matmul kernels (256 invocations, 16×16 blocks), and runs it
/// with the tiled shader and with the per-point one against the interpreter.
fn check_tiled(graph: &Graph, seed: u64, tiled: usize) {
    let program = fusion::lower(graph).unwrap();
    let kernels = spirv::lower(&program).unwrap();
    validate(&kernels);
    let found = kernels
        .iter()
        .zip(&program.kernels)
        .filter(|(s, k)| matches!(k, kiln::kernel::Kernel::Matmul(_)) && s.local_size == 256)
        .count();
    assert_eq!(
        found,
        tiled,
        "{}: tiled kernels\n{}",
        graph.name,
        kiln::kernel::print(&program)
    );
    let Some(device) = device() else { return };
    let inputs = random_inputs(graph, seed);
    let expected = interp::run(graph, &inputs).unwrap();
    for tiled_matmul in [true, false] {
        let opts = spirv::Options {
            tiled_matmul,
            ..spirv::Options::gpu_plans(device.info())
        };
        let actual = spirv::compile_with(device, &program, &opts)
            .unwrap()
            .run(&inputs)
            .unwrap();
        let what = if tiled_matmul { "tiled" } else { "per point" };
        assert_outputs_match(graph, &expected, &actual, what);
    }
}

#[test]
fn tiled_matmul_odd_sizes_batched_transposed_with_bias_relu() {
    // m, n, k not multiples of 16; batch 3; B read through a transposed view; bias + relu in the epilogue.
    let g = parse(
        "graph tiled {
          %x = input{role=data} : f32[3,37,45]
          %w = input{role=param} : f32[3,29,45]
          %b = input{role=param} : f32[3,37,29]
          %1 = transpose{perm=[0,2,1]} %w : f32[3,45,29]
          %2 = matmul %x, %1 : f32[3,37,29]
          %3 = add %2, %b : f32[3,37,29]
          %4 = constant{value=0.0} : f32[3,37,29]
          %5 = max %3, %4 : f32[3,37,29]
          output y = %5
        }",
    );
    check_tiled(&g, 21, 1);
}

#[test]
fn tiled_matmul_transposed_a_with_the_backward_select() {
    // Aᵀ·B with A stored [k, m], and relu's backward `select(z > 0, g, 0)` fused after it; k = 70 is four full
    // tiles and a partial one.
    let g = parse(
        "graph tiled_select {
          %a = input{role=data} : f32[70,50]
          %g = input{role=data} : f32[70,17]
          %z = input{role=data} : f32[50,17]
          %1 = transpose{perm=[1,0]} %a : f32[50,70]
          %2 = matmul %1, %g : f32[50,17]
          %3 = constant{value=0.0} : f32[50,17]
          %4 = compare{dir=gt} %z, %3 : bool[50,17]
          %5 = select %4, %2, %3 : f32[50,17]
          output dx = %5
        }",
    );
    check_tiled(&g, 22, 1);
}

#[test]
fn tiled_matmul_i32_and_single_row() {
    // Integer products are exact on every path; m = 1 uses one row of a tile.
    let g = parse(
        "graph tiled_i32 {
          %a = input{role=data} : i32[1,40]
          %b = input{role=data} : i32[40,33]
          %1 = matmul %a, %b : i32[1,33]
          output y = %1
        }",
    );
    check_tiled(&g, 23, 1);
}

// ---- the zoo ----

/// Every zoo model, its gradient graph and its SGD step (`kiln::zoo::corpus`).
fn zoo_graphs() -> Vec<Graph> {
    zoo::corpus(&zoo::corpus_optimizers()[..1]).unwrap()
}

#[test]
fn every_zoo_graph_runs_the_same_on_vulkan() {
    for (seed, graph) in zoo_graphs().into_iter().enumerate() {
        let start = std::time::Instant::now();
        let (program, _) = check_graph(&graph, 100 + seed as u64);
        println!(
            "{:<24} {:>3} kernels  {:>6.0} ms",
            graph.name,
            program.kernels.len(),
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}

#[test]
fn ten_sgd_steps_of_twolayer_match_the_interpreter() {
    let model = zoo::twolayer().unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let step = training_step(&model, "loss", &names, &Optimizer::Sgd(Sgd::default())).unwrap();
    let program = fusion::lower(&step).unwrap();
    let Some(device) = device() else { return };
    let exe =
        spirv::compile_with(device, &program, &spirv::Options::gpu_plans(device.info())).unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut reference: HashMap<String, Tensor> = step
        .inputs()
        .map(|i| (i.name.to_string(), random_tensor(i.ty, &mut rng)))
        .collect();
    let mut on_gpu = reference.clone();
    for i in 0..10 {
        let expected = kiln::step_on_interpreter(&step, &mut reference).unwrap();
        let inputs: Vec<Tensor> = step.inputs().map(|i| on_gpu[i.name].clone()).collect();
        let outputs = exe.run(&inputs).unwrap();
        let mut loss = f64::NAN;
        for (o, v) in step.outputs().iter().zip(outputs) {
            if o.name == "loss" {
                loss = v.scalar_value().unwrap();
            }
            if let Some(target) = &o.aliases {
                on_gpu.insert(target.clone(), v);
            }
        }
        println!("step {i}: interpreter {expected:.6}, Vulkan {loss:.6}");
        assert!(close(loss, expected), "step {i}: loss {loss} vs {expected}");
    }
}

// ---- the memory plan's arena ----

/// The arena size the runtime must give `program` on `device`: the peak of the memory plan made with the device's
/// element sizes (bool: 4 bytes, 1 on the host) times the smallest power of two `f` that makes `64·f` a multiple of
/// the device's `minStorageBufferOffsetAlignment` (1 on every common GPU and on lavapipe).
fn expected_arena(device: &Device, program: &KernelProgram) -> (u64, usize) {
    let plan = kiln::memory::plan_for(program, spirv::element_bytes);
    let temps = plan
        .placements
        .iter()
        .filter(|p| matches!(p, kiln::memory::BufferPlacement::Arena { .. }))
        .count();
    let mut factor = 1u64;
    while !(kiln::memory::ALIGNMENT as u64 * factor)
        .is_multiple_of(device.info().storage_offset_alignment)
    {
        factor *= 2;
    }
    (plan.peak_bytes as u64 * factor, temps)
}

#[test]
fn temporaries_share_the_planned_arena() {
    let Some(device) = device() else { return };
    // A training step (many temporaries with disjoint lifetimes) and a graph with a bool temporary.
    let model = zoo::twolayer().unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let step = training_step(&model, "loss", &names, &Optimizer::Sgd(Sgd::default())).unwrap();
    let masked = parse(
        "graph masked {
          %x = input{role=data} : f32[64,300]
          %0 = constant{value=0.0} : f32[64,300]
          %1 = compare{dir=gt} %x, %0 : bool[64,300]
          %2 = transpose{perm=[1,0]} %1 : bool[300,64]
          %3 = cast{to=f32} %2 : f32[300,64]
          %4 = matmul %x, %3 : f32[64,64]
          output y = %4
        }",
    );
    for graph in [&step, &masked] {
        let program = fusion::lower(graph).unwrap();
        let plan = kiln::memory::plan(&program);
        let (expected, temps) = expected_arena(device, &program);
        let exe = spirv::compile(device, &program).unwrap();
        println!(
            "{}: {temps} temporaries, plan peak {} B (without reuse {} B), device arena {} B (alignment {})",
            graph.name,
            plan.peak_bytes,
            plan.sum_of_temps_bytes,
            exe.arena_bytes(),
            device.info().storage_offset_alignment
        );
        assert_eq!(exe.arena_bytes(), expected, "{}", graph.name);
        // And the results are the interpreter's (check_graph runs the same program with the GPU plans).
        check_graph(graph, 31);
    }
    let program = fusion::lower(&step).unwrap();
    let plan = kiln::memory::plan(&program);
    assert!(
        plan.peak_bytes < plan.sum_of_temps_bytes,
        "the step's temporaries reuse memory"
    );
}

// ---- the shaders, reviewed ----

fn disassembly(src: &str) -> String {
    let program = fusion::lower(&parse(src)).unwrap();
    let kernels = spirv::lower(&program).unwrap();
    validate(&kernels);
    assert_eq!(kernels.len(), 1);
    kernels[0].disassemble()
}

#[test]
fn snapshot_fused_elementwise_kernel() {
    insta::assert_snapshot!(
        "spirv__fused_elementwise_relu_of_sum",
        disassembly(
            "graph ew {
              %x = input{role=data} : f32[128]
              %b = input{role=param} : f32[128]
              %1 = add %x, %b : f32[128]
              %2 = constant{value=0.0} : f32[128]
              %3 = max %1, %2 : f32[128]
              output y = %3
            }"
        )
    );
}

#[test]
fn snapshot_row_reduction() {
    insta::assert_snapshot!(
        "spirv__row_sum",
        disassembly(
            "graph red {
              %x = input{role=data} : f32[16,10]
              %1 = reduce_sum{axes=[1], keep_dims=false} %x : f32[16]
              output y = %1
            }"
        )
    );
}

/// A row softmax as one workgroup kernel (shared-memory path): strided max, strided sum of exponentials, each
/// combined by the barrier tree, then the strided normalize.
#[test]
fn snapshot_row_softmax_workgroup() {
    let mut b = kiln::Builder::new("softmax");
    let x = b.data("x", TensorType::f32(&[4, 128])).unwrap();
    let y = b.softmax(x, -1).unwrap();
    b.output("y", y).unwrap();
    let program = fusion::lower(&b.finish()).unwrap();
    let kernels = spirv::lower(&program).unwrap();
    validate(&kernels);
    assert_eq!(kernels.len(), 1, "{}", kiln::kernel::print(&program));
    assert_eq!((kernels[0].groups, kernels[0].local_size), ([4, 1, 1], 64));
    insta::assert_snapshot!("spirv__row_softmax_workgroup", kernels[0].disassemble());
}

/// A row sum combined through subgroups: the shuffle-xor butterfly, then the per-subgroup partials in order.
#[test]
fn snapshot_row_sum_subgroups() {
    let program = fusion::lower(&parse(
        "graph red {
          %x = input{role=data} : f32[4,128]
          %1 = reduce_sum{axes=[1], keep_dims=false} %x : f32[4]
          output y = %1
        }",
    ))
    .unwrap();
    let options = spirv::Options {
        subgroup_size: Some(32),
        ..spirv::Options::default()
    };
    let kernels = spirv::lower_with(&program, &options).unwrap();
    validate(&kernels);
    insta::assert_snapshot!("spirv__row_sum_subgroups", kernels[0].disassemble());
}

/// The tiled matmul (16×16 blocks through shared memory) with its bias epilogue; m, n, k not multiples of 16.
#[test]
fn snapshot_tiled_matmul_with_bias_epilogue() {
    insta::assert_snapshot!(
        "spirv__tiled_matmul_bias",
        disassembly(
            "graph mm {
              %x = input{role=data} : f32[20,17]
              %w = input{role=param} : f32[17,18]
              %b = input{role=param} : f32[20,18]
              %1 = matmul %x, %w : f32[20,18]
              %2 = add %1, %b : f32[20,18]
              output y = %2
            }"
        )
    );
}

#[test]
fn snapshot_matmul_with_bias_epilogue() {
    insta::assert_snapshot!(
        "spirv__matmul_bias",
        disassembly(
            "graph mm {
              %x = input{role=data} : f32[8,4]
              %w = input{role=param} : f32[4,3]
              %b = input{role=param} : f32[8,3]
              %1 = matmul %x, %w : f32[8,3]
              %2 = add %1, %b : f32[8,3]
              output y = %2
            }"
        )
    );
}
