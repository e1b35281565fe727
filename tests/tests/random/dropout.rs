//! `dropout` (SPEC §4): the kept fraction, the scaling, the same mask on every backend, the gradient through the mask
//! (by autodiff, no finite differences: the mask is piecewise constant), and its identities and errors.

use super::everywhere;
use kiln::ir::{interp, DType};
use kiln::{Builder, Graph, Tensor, TensorType};

const SHAPE: [usize; 2] = [256, 1024];

/// `y = dropout(x, p, seed, offset, training)` with `x`, `seed` and `offset` inputs, and `loss = sum_all(y)`.
fn dropout_graph(dtype: DType, p: f64, training: bool) -> Graph {
    let mut b = Builder::new("dropout");
    let x = b.data("x", TensorType::new(dtype, SHAPE.to_vec())).unwrap();
    let seed = b.data("seed", TensorType::scalar(DType::I32)).unwrap();
    let offset = b.data("offset", TensorType::scalar(DType::I32)).unwrap();
    let y = b.dropout(x, p, seed, offset, training).unwrap();
    b.output("y", y).unwrap();
    let loss = b.sum_all(y).unwrap();
    b.output("loss", loss).unwrap();
    b.finish()
}

/// Nonzero values (so a zero in the result is a dropped element), different per element.
fn inputs(dtype: DType, seed: i32, offset: i32) -> Vec<Tensor> {
    let n: usize = SHAPE.iter().product();
    let xs: Vec<f64> = (0..n).map(|i| 1.0 + (i % 97) as f64 * 0.25).collect();
    vec![
        Tensor::from_f64_values(TensorType::new(dtype, SHAPE.to_vec()), &xs).unwrap(),
        Tensor::from_i32(&[], vec![seed]).unwrap(),
        Tensor::from_i32(&[], vec![offset]).unwrap(),
    ]
}

#[test]
fn dropout_keeps_1_minus_p_scales_by_its_inverse_and_agrees_everywhere() {
    for (dtype, p) in [(DType::F32, 0.3), (DType::F32, 0.5), (DType::F64, 0.1)] {
        let graph = dropout_graph(dtype, p, true);
        let ins = inputs(dtype, 2024, 1);
        let runs = everywhere(&graph, &ins);
        let x = ins[0].to_f64_vec();
        let y = runs[0].1[0].to_f64_vec();
        for (backend, out) in &runs[1..] {
            let same = out[0]
                .to_f64_vec()
                .iter()
                .zip(&y)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{dtype} dropout({p}) on {backend}: another mask");
        }
        // Kept values are x · (1/(1-p)) rounded to the dtype, exactly; the rest are +0.
        let scale = 1.0 / (1.0 - p);
        let mut kept = 0usize;
        for (&xi, &yi) in x.iter().zip(&y) {
            let want = match dtype {
                DType::F32 => (xi as f32 * scale as f32) as f64,
                _ => xi * scale,
            };
            if yi == 0.0 {
                assert!(yi.is_sign_positive());
            } else {
                assert_eq!(yi, want, "{dtype} dropout({p}) of {xi}");
                kept += 1;
            }
        }
        // The kept count is binomial(n, 1-p): within 5 standard deviations (≈ 0.0045 of the fraction at p = 0.3).
        let n = x.len() as f64;
        let sigma = (n * p * (1.0 - p)).sqrt();
        assert!(
            (kept as f64 - n * (1.0 - p)).abs() < 5.0 * sigma,
            "{dtype} dropout({p}): kept {kept} of {n}"
        );
        if p == 0.5 {
            // 1/(1-p) = 2 exactly: kept values are exactly 2x.
            assert!(x
                .iter()
                .zip(&y)
                .all(|(&xi, &yi)| yi == 0.0 || yi == 2.0 * xi));
        }
    }
}

#[test]
fn the_gradient_is_the_mask_over_1_minus_p() {
    let p = 0.25;
    let graph = dropout_graph(DType::F32, p, true);
    let grad = kiln::grad(&graph, "loss", &["x"]).unwrap().graph;
    let ins = inputs(DType::F32, 7, 0);
    let y = interp::run(&graph, &ins).unwrap()[0].to_f64_vec();
    let scale = (1.0 / (1.0 - p)) as f32 as f64;
    let want: Vec<f64> = y
        .iter()
        .map(|&v| if v != 0.0 { scale } else { 0.0 })
        .collect();
    for (backend, out) in everywhere(&grad, &ins) {
        let position = grad
            .outputs()
            .iter()
            .position(|o| o.name == "grad.x")
            .expect("a grad.x output");
        assert_eq!(out[position].to_f64_vec(), want, "d loss / dx on {backend}");
    }
}

#[test]
fn a_new_offset_or_seed_draws_a_new_mask() {
    let graph = dropout_graph(DType::F32, 0.5, true);
    let mask = |seed, offset| -> Vec<bool> {
        let y = interp::run(&graph, &inputs(DType::F32, seed, offset)).unwrap();
        y[0].to_f64_vec().iter().map(|&v| v != 0.0).collect()
    };
    let base = mask(1, 0);
    assert_eq!(base, mask(1, 0));
    for other in [mask(1, 1), mask(2, 0)] {
        // Two independent masks at p = 1/2 agree on half the elements.
        let agree = base.iter().zip(&other).filter(|(a, b)| a == b).count() as f64;
        let n = base.len() as f64;
        assert!(
            (agree / n - 0.5).abs() < 0.01,
            "masks agree on {agree} of {n}"
        );
    }
}

#[test]
fn dropout_is_the_identity_outside_training_and_at_p_0() {
    for (p, training) in [(0.5, false), (0.0, true), (0.0, false)] {
        let mut b = Builder::new("identity");
        let x = b.data("x", TensorType::f32(&[4])).unwrap();
        let seed = b.data("seed", TensorType::scalar(DType::I32)).unwrap();
        let y = b.dropout(x, p, seed, seed, training).unwrap();
        assert_eq!(y, x, "dropout({p}, training = {training}) adds nothing");
    }
}

#[test]
fn a_probability_outside_0_1_is_an_error_naming_dropout_and_p() {
    let mut b = Builder::new("bad");
    let x = b.data("x", TensorType::f32(&[4])).unwrap();
    let seed = b.data("seed", TensorType::scalar(DType::I32)).unwrap();
    for p in [1.0, 1.5, -0.1, f64::NAN, f64::INFINITY] {
        for training in [true, false] {
            let err = b
                .dropout(x, p, seed, seed, training)
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!("dropout: p = {p} is a dropout probability outside [0, 1)")
            );
        }
    }
    let i = b.data("i", TensorType::i32(&[4])).unwrap();
    let err = b.dropout(i, 0.5, seed, seed, true).unwrap_err().to_string();
    assert_eq!(err, "dropout: needs a float operand, got i32[4]");
}
