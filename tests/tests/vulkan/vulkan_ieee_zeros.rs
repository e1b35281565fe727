//! Zeros as IEEE (and SPEC) define them, where backends and device compilers have taken shortcuts.
//!
//! 1. The sign of a zero matmul result, on every backend (SPEC §3.9): the sum starts from +0, so when every product
//!    is `-0` (a zero row of `a` against negative `b`) the result is `+0`, and `c / y` is `-inf` for a negative `c`,
//!    as in the interpreter and BLAS. `gemm`'s small-size path starts from its first product and gave `-0`; a
//!    random graph found it (an `iota` row of zeros times a negative input, then a division).
//! 2. Arithmetic with a constant zero on Vulkan: lavapipe (Mesa 22.3) folds `x · 0`, `0 / x` and `x / 0` to `+0`
//!    despite `SignedZeroInfNanPreserve`; `Options::hide_constant_zeros` (set for CPU-type devices) keeps the
//!    constants out of its reach, and a real GPU must get these right with plain constants.
//!
//! The Vulkan tests print why and returns without a device, unless `KILN_REQUIRE_VULKAN=1`.

use kiln::backend::spirv;
use kiln::fusion;
use kiln::ir::{interp, text, DType, Graph, Tensor};
use kiln::Options;
use kiln_tests::vulkan::{device, validate};

/// `y = zeros[m, k] @ b[k, n]` with every `b` negative, and `-7 / y`; in `dtype`.
fn graph(m: usize, k: usize, n: usize, dtype: DType) -> Graph {
    let t = match dtype {
        DType::F32 => "f32",
        DType::F64 => "f64",
        _ => unreachable!(),
    };
    let src = format!(
        "graph signed_zero {{
  %b = input{{role=data}} : {t}[{k},{n}]
  %zero = constant{{value=0.0}} : {t}[{m},{k}]
  %y = matmul %zero, %b : {t}[{m},{n}]
  %c = constant{{value=-7.0}} : {t}[{m},{n}]
  %q = div %c, %y : {t}[{m},{n}]
  output y = %y
  output q = %q
}}"
    );
    text::parse(&src).unwrap()
}

fn negative_b(k: usize, n: usize, dtype: DType) -> Tensor {
    let values: Vec<f64> = (0..k * n).map(|i| -1.0 - (i % 7) as f64).collect();
    Tensor::from_f64(&[k, n], values).unwrap().cast(dtype)
}

/// Every `y` is `+0` (bits, not `== 0`) and every `q` is `-inf`.
fn assert_positive_zeros(outputs: &[Tensor], backend: &str, case: &str) {
    let y = outputs[0].to_f64_vec();
    let q = outputs[1].to_f64_vec();
    for (i, (&y, &q)) in y.iter().zip(&q).enumerate() {
        assert!(
            y == 0.0 && y.is_sign_positive(),
            "{backend} {case}: y[{i}] = {y:?}, want +0"
        );
        assert_eq!(q, f64::NEG_INFINITY, "{backend} {case}: q[{i}]");
    }
}

/// (m, k, n): a single product (one tile, `gemm`'s small path), and a product cut into several tiles with a long k.
const SHAPES: [(usize, usize, usize); 3] = [(3, 1, 3), (5, 3, 4), (130, 64, 260)];

#[test]
fn an_all_negative_zero_sum_is_positive_zero_in_the_interpreter_and_on_cpu() {
    for dtype in [DType::F32, DType::F64] {
        for (m, k, n) in SHAPES {
            let case = format!("{dtype:?} {m}x{k}x{n}");
            let g = graph(m, k, n, dtype);
            let inputs = [negative_b(k, n, dtype)];
            assert_positive_zeros(&interp::run(&g, &inputs).unwrap(), "interpreter", &case);
            for threads in [1, 2] {
                let options = Options {
                    threads,
                    ..Options::default()
                };
                let exe = kiln::compile(&g, &options).unwrap();
                assert_positive_zeros(&exe.run(&inputs).unwrap(), "cpu", &case);
            }
        }
    }
}

#[test]
fn an_all_negative_zero_sum_is_positive_zero_on_vulkan() {
    let Some(device) = device() else { return };
    for dtype in [DType::F32, DType::F64] {
        if dtype == DType::F64 && !device.info().float64 {
            eprintln!("f64 skipped: the device has no shaderFloat64");
            continue;
        }
        for (m, k, n) in SHAPES {
            let g = graph(m, k, n, dtype);
            let program = fusion::lower(&g).unwrap();
            let inputs = [negative_b(k, n, dtype)];
            // The per-point dot product and the tiled shader.
            for (plan, options) in [
                (
                    "per point",
                    spirv::Options {
                        tiled_matmul: false,
                        ..spirv::Options::for_device(device.info())
                    },
                ),
                ("tiled", spirv::Options::gpu_plans(device.info())),
            ] {
                let case = format!("{dtype:?} {m}x{k}x{n} {plan}");
                let exe = spirv::compile_with(device, &program, &options).unwrap();
                assert_positive_zeros(&exe.run(&inputs).unwrap(), "vulkan", &case);
            }
        }
    }
}

/// Every op of `x` with a constant `±0`, `inf` or NaN that a device compiler could fold: the outputs must equal the
/// interpreter's bit for bit (NaN for NaN), for `x` and `y` holding `±1`, `±0`, `±inf` and NaN.
const CONSTANT_ARITHMETIC: &str = "graph constant_zeros {
  %x = input{role=data} : f32[1,8]
  %y = input{role=data} : f32[1,8]
  %z = constant{value=0.0} : f32[1,8]
  %nz = constant{value=-0.0} : f32[1,8]
  %inf = constant{value=inf} : f32[1,8]
  %nan = constant{value=nan} : f32[1,8]
  %zero_row = iota{axis=0} : f32[1,8]
  %x_div_0 = div %x, %z : f32[1,8]
  %zero_div_x = div %z, %x : f32[1,8]
  %x_mul_0 = mul %x, %z : f32[1,8]
  %x_mul_neg0 = mul %x, %nz : f32[1,8]
  %x_add_0 = add %x, %z : f32[1,8]
  %x_add_neg0 = add %x, %nz : f32[1,8]
  %x_sub_0 = sub %x, %z : f32[1,8]
  %x_mul_inf = mul %x, %inf : f32[1,8]
  %x_add_nan = add %x, %nan : f32[1,8]
  %x_div_inf = div %x, %inf : f32[1,8]
  %x_div_iota = div %x, %zero_row : f32[1,8]
  %iota_mul_x = mul %zero_row, %x : f32[1,8]
  %x_sub_x = sub %x, %x : f32[1,8]
  %x_div_y = div %x, %y : f32[1,8]
  output x_div_0 = %x_div_0
  output zero_div_x = %zero_div_x
  output x_mul_0 = %x_mul_0
  output x_mul_neg0 = %x_mul_neg0
  output x_add_0 = %x_add_0
  output x_add_neg0 = %x_add_neg0
  output x_sub_0 = %x_sub_0
  output x_mul_inf = %x_mul_inf
  output x_add_nan = %x_add_nan
  output x_div_inf = %x_div_inf
  output x_div_iota = %x_div_iota
  output iota_mul_x = %iota_mul_x
  output x_sub_x = %x_sub_x
  output x_div_y = %x_div_y
}";

#[test]
fn arithmetic_with_constant_zeros_is_ieee_on_vulkan() {
    let g = text::parse(CONSTANT_ARITHMETIC).unwrap();
    let program = fusion::lower(&g).unwrap();
    // Both forms of every module are valid SPIR-V, with or without a device.
    for hide in [false, true] {
        let options = spirv::Options {
            hide_constant_zeros: hide,
            ..spirv::Options::default()
        };
        validate(&spirv::lower_with(&program, &options).unwrap());
    }
    let Some(device) = device() else { return };
    let specials = [
        -1.0,
        2.0,
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.5,
    ];
    let x = Tensor::from_f32(&[1, 8], specials.to_vec()).unwrap();
    let mut y_values = specials.to_vec();
    y_values.rotate_left(3);
    let y = Tensor::from_f32(&[1, 8], y_values).unwrap();
    let inputs = [x, y];
    let expected = interp::run(&g, &inputs).unwrap();
    // What the runtime picks for this device: hidden zeros on lavapipe, plain constants on a GPU.
    let options = spirv::Options::for_device(device.info());
    let got = spirv::compile_with(device, &program, &options)
        .unwrap()
        .run(&inputs)
        .unwrap();
    for ((out, want), got) in g.outputs().iter().zip(&expected).zip(&got) {
        let (want, got) = (want.as_f32().unwrap(), got.as_f32().unwrap());
        let same = want
            .iter()
            .zip(got)
            .all(|(w, g)| w.to_bits() == g.to_bits() || (w.is_nan() && g.is_nan()));
        assert!(
            same,
            "{} on {} (hide_constant_zeros = {}): got {got:?}, want {want:?}",
            out.name,
            device.info().name,
            options.hide_constant_zeros
        );
    }
}
