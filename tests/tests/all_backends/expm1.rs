//! The `expm1` composite (SPEC §4), which Adam's bias correction `1 − β^t = −expm1(t·ln β)` is built on: its accuracy
//! against Rust's `exp_m1` on the interpreter (f32 and f64), every backend against the interpreter, f64 finite
//! differences, and the edge values the bias correction reaches (`β = 0` gives `t·ln β = −inf`).
//!
//! Tolerances, relative to `exp_m1` of the input (which is exact in f64 for an f32 input):
//! - interpreter f32: 3 × 2^-24 (the Taylor branch is within an ulp or two; `exp(x) − 1` at `x = ½` turns `exp`'s
//!   half-ulp into 1.3 ulp of the result);
//! - interpreter f64: 4 × 2^-53;
//! - every backend against the interpreter in f32: 2e-6 relative (Vulkan's `exp` is within `3 + 2·|x|` ulp, and the
//!   grid reaches |x| = 20).

use kiln::ir::{interp, Builder, DType, Graph, Tensor, TensorType};
use kiln_tests::differential::{check_every_backend, random_inputs, Tolerance};
use kiln_tests::fd::{check_gradients, F64_TOLERANCE};

fn expm1_graph(dtype: DType, n: usize, role_param: bool) -> Graph {
    let mut b = Builder::new("expm1");
    let ty = TensorType::new(dtype, [n]);
    let x = if role_param {
        b.param("x", ty).unwrap()
    } else {
        b.data("x", ty).unwrap()
    };
    let y = b.expm1(x).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

/// Points on both sides of the branch at |x| = ½, tiny values (where `exp(x) − 1` cancels entirely), zeros, and
/// values out to where the result saturates at −1 or overflows.
fn grid() -> Vec<f64> {
    let mut xs = vec![
        0.0,
        -0.0,
        0.5,
        -0.5,
        0.499_999_97,
        -0.499_999_97,
        1e-30,
        -1e-30,
        1e-8,
        -3e-4,
    ];
    for k in -2000..=2000 {
        xs.push(f64::from(k) * 0.01);
    }
    for e in -40..=4 {
        xs.push(1.7f64.powi(e));
        xs.push(-(1.3f64.powi(e)));
    }
    xs
}

fn assert_relative(got: &[f64], xs: &[f64], rtol: f64, what: &str) {
    for (&g, &x) in got.iter().zip(xs) {
        let want = x.exp_m1();
        let err = if want == 0.0 {
            g.abs()
        } else {
            ((g - want) / want).abs()
        };
        assert!(
            err <= rtol,
            "{what}: expm1({x:e}) = {g:e}, want {want:e} (relative error {err:e} > {rtol:e})"
        );
        assert_eq!(
            g.is_sign_negative(),
            want.is_sign_negative(),
            "{what}: sign of expm1({x:e})"
        );
    }
}

#[test]
fn expm1_is_accurate_on_the_interpreter() {
    let xs: Vec<f64> = grid().iter().map(|&x| f64::from(x as f32)).collect();
    let graph = expm1_graph(DType::F32, xs.len(), false);
    let x = Tensor::from_f32(&[xs.len()], xs.iter().map(|&x| x as f32).collect()).unwrap();
    let y = &interp::run(&graph, &[x]).unwrap()[0];
    let got: Vec<f64> = y.as_f32().unwrap().iter().map(|&v| f64::from(v)).collect();
    assert_relative(&got, &xs, 3.0 * 2f64.powi(-24), "f32");

    let xs = grid();
    let graph = expm1_graph(DType::F64, xs.len(), false);
    let x = Tensor::from_f64(&[xs.len()], xs.clone()).unwrap();
    let y = &interp::run(&graph, &[x]).unwrap()[0];
    assert_relative(y.as_f64().unwrap(), &xs, 4.0 * 2f64.powi(-53), "f64");
}

/// What the bias correction feeds it: `−inf` (β = 0) gives exactly −1, large `t·ln β` saturates at −1, NaN stays NaN.
#[test]
fn expm1_edge_values() {
    for dtype in [DType::F32, DType::F64] {
        let graph = expm1_graph(dtype, 4, false);
        let x = Tensor::from_f64_values(
            TensorType::new(dtype, [4]),
            &[f64::NEG_INFINITY, -200.0, f64::NAN, f64::INFINITY],
        )
        .unwrap();
        let y = interp::run(&graph, &[x]).unwrap()[0].cast(DType::F64);
        let y = y.as_f64().unwrap();
        assert_eq!(&y[..2], &[-1.0, -1.0], "{dtype:?}");
        assert!(y[2].is_nan(), "{dtype:?}: expm1(NaN) = {}", y[2]);
        assert_eq!(y[3], f64::INFINITY, "{dtype:?}");
    }
}

#[test]
fn expm1_matches_the_interpreter_on_every_backend() {
    let xs: Vec<f32> = grid().iter().map(|&x| x as f32).collect();
    let graph = expm1_graph(DType::F32, xs.len(), false);
    let x = Tensor::from_f32(&[xs.len()], xs).unwrap();
    check_every_backend(
        &graph,
        &[x],
        Tolerance {
            atol: 0.0,
            rtol: 2e-6,
        },
    );
}

#[test]
fn finite_differences_of_expm1() {
    let graph = expm1_graph(DType::F64, 12, true);
    let mut inputs = random_inputs(&graph, 5);
    // Both branches and the points beside the switch at |x| = ½.
    inputs[0] = Tensor::from_f64(
        &[12],
        vec![
            -3.0, -0.6, -0.51, -0.49, -0.1, 0.0, 1e-3, 0.2, 0.49, 0.51, 1.5, 4.0,
        ],
    )
    .unwrap();
    check_gradients(&graph, &inputs, F64_TOLERANCE, 7);
}
