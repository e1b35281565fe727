//! The sign of a zero matmul result, on every backend (SPEC §3.9): the sum starts from +0, so when every product is
//! `-0` (a zero row of `a` against negative `b`) the result is `+0`, and `c / y` is `-inf` for a negative `c`, as
//! in the interpreter and BLAS. A GEMM that starts from its first product gives `-0` there, and lavapipe folds
//! `+0 + p` to `p` even under `SignedZeroInfNanPreserve`; a random graph found it (an `iota` row of zeros times a
//! negative input, then a division).
//!
//! The Vulkan half prints why and returns without a device, unless `KILN_REQUIRE_VULKAN=1`.

use kiln::backend::spirv::{self, Device};
use kiln::fusion;
use kiln::ir::{interp, text, DType, Graph, Tensor};
use kiln::Options;

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
    let device = match Device::open_best() {
        Ok(d) => d,
        Err(e) if std::env::var("KILN_REQUIRE_VULKAN").is_ok_and(|v| v == "1") => {
            panic!("KILN_REQUIRE_VULKAN=1 but no Vulkan device: {e}")
        }
        Err(e) => return eprintln!("skipped: no Vulkan device ({e})"),
    };
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
                let exe = spirv::compile_with(&device, &program, &options).unwrap();
                assert_positive_zeros(&exe.run(&inputs).unwrap(), "vulkan", &case);
            }
        }
    }
}
