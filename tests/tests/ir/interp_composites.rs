//! The reference interpreter on the builder's composites (with hand-computed values), the forward loss of every
//! golden case, and its speed on an MLP; the helpers are `interp_ops.rs`'s.

use super::interp_ops::*;
use kiln_ir::interp;
use kiln_ir::{Builder, CmpDir, DType, TensorType};
use kiln_tests::golden;

// ---- composites ----

#[test]
fn relu_leaky_relu_heaviside() {
    let x = f32s(&[4], &[-1.0, -0.0, 0.0, 2.0]);
    let got = eval(&[&x], |b, v| b.relu(v[0]));
    assert_close(&got, &[0.0, 0.0, 0.0, 2.0], 0.0, 0.0);
    let got = eval(&[&x], |b, v| b.leaky_relu(v[0], 0.1));
    assert_close(&got, &[-0.1, 0.0, 0.0, 2.0], 1e-7, 0.0);
    let got = eval(&[&x], |b, v| b.heaviside(v[0]));
    assert_bits(&got, &f32s(&[4], &[0.0, 0.0, 0.0, 1.0]));
    let xi = i32s(&[3], &[-4, 0, 5]);
    let got = eval(&[&xi], |b, v| b.relu(v[0]));
    assert_bits(&got, &i32s(&[3], &[0, 0, 5]));
}

#[test]
fn softplus_never_overflows() {
    let x = f32s(&[5], &[100.0, -100.0, 0.0, 1.0, 1000.0]);
    let got = eval(&[&x], |b, v| b.softplus(v[0]));
    // softplus(-100) = log1p(exp(-100)) ≈ 3.7e-44; the expansion's `log(1 + e)` rounds 1 + 3.7e-44 to 1, giving 0,
    // which is right in absolute terms.
    assert_close(
        &got,
        &[
            100.0,
            3.720075976020836e-44,
            2f64.ln(),
            1.3132616875182228,
            1000.0,
        ],
        1e-6,
        1e-40,
    );
    let got = eval(&[&x.cast(DType::F64)], |b, v| b.softplus(v[0]));
    assert_close(
        &got,
        &[
            100.0,
            3.720075976020836e-44,
            2f64.ln(),
            1.3132616875182228,
            1000.0,
        ],
        1e-15,
        1e-40,
    );
}

#[test]
fn sigmoid_softmax_logsumexp_log_softmax() {
    let x = f64s(&[2], &[0.0, 3f64.ln()]);
    let got = eval(&[&x], |b, v| b.sigmoid(v[0]));
    assert_close(&got, &[0.5, 0.75], 1e-15, 0.0);

    // softmax([0, ln 2, ln 3]) = [1, 2, 3] / 6; a second row shifted by 1000 gives the same.
    let (l2, l3) = (2f32.ln(), 3f32.ln());
    let x = f32s(&[2, 3], &[0.0, l2, l3, 1000.0, 1000.0 + l2, 1000.0 + l3]);
    let got = eval(&[&x], |b, v| b.softmax(v[0], -1));
    let sixths = [1. / 6., 2. / 6., 3. / 6.];
    // The second row's logits are rounded to f32 at 1000, so it matches only to ~1e-4.
    assert_close(&got, &[sixths, sixths].concat(), 1e-4, 0.0);
    for row in got.to_f64_vec().chunks(3) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{row:?}");
    }

    // Logits of ±1e4: the naive form overflows (exp(1e4) = inf) or underflows to log(0).
    let x = f32s(&[3, 2], &[1e4, 1e4, -1e4, -1e4, 1e4, -1e4]);
    let got = eval(&[&x], |b, v| b.logsumexp(v[0], 1, false));
    let ln2 = 2f64.ln();
    assert_close(&got, &[1e4 + ln2, -1e4 + ln2, 1e4], 1e-7, 0.0);
    let got = eval(&[&x], |b, v| b.logsumexp(v[0], 1, true));
    assert_eq!(got.dims(), [3, 1]);
    let got = eval(&[&x.cast(DType::F64)], |b, v| b.logsumexp(v[0], -1, false));
    assert_close(&got, &[1e4 + ln2, -1e4 + ln2, 1e4], 1e-15, 0.0);

    // x - logsumexp(x): in f32, 1e4 + ln 2 carries only ~1e-3 absolute precision (the ulp of 1e4 is 2^-10).
    let want = [-ln2, -ln2, -ln2, -ln2, 0.0, -2e4];
    let got = eval(&[&x], |b, v| b.log_softmax(v[0], 1));
    assert_close(&got, &want, 1e-7, 1e-3);
    let got = eval(&[&x.cast(DType::F64)], |b, v| b.log_softmax(v[0], 1));
    assert_close(&got, &want, 1e-15, 1e-12);
}

#[test]
fn one_hot_and_linear() {
    let labels = i32s(&[3], &[2, 0, 1]);
    let got = eval(&[&labels], |b, v| b.one_hot(v[0], 3, DType::F32));
    assert_bits(&got, &f32s(&[3, 3], &[0., 0., 1., 1., 0., 0., 0., 1., 0.]));
    let got = eval(&[&labels], |b, v| b.one_hot(v[0], 2, DType::I32));
    assert_bits(&got, &i32s(&[3, 2], &[0, 0, 1, 0, 0, 1]));

    // x = [[1,2,3],[4,5,6]], W = [[1,0,-1],[0.5,0.5,0.5]], b = [10, 20]:
    // x Wᵀ = [[1-3, 0.5+1+1.5], [4-6, 2+2.5+3]] = [[-2, 3], [-2, 7.5]]; + b = [[8, 23], [8, 27.5]].
    let x = f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let w = f32s(&[2, 3], &[1., 0., -1., 0.5, 0.5, 0.5]);
    let bias = f32s(&[2], &[10., 20.]);
    let got = eval(&[&x, &w, &bias], |b, v| b.linear(v[0], v[1], Some(v[2])));
    assert_bits(&got, &f32s(&[2, 2], &[8., 23., 8., 27.5]));
    let got = eval(&[&x, &w], |b, v| b.linear(v[0], v[1], None));
    assert_bits(&got, &f32s(&[2, 2], &[-2., 3., -2., 7.5]));
    // Leading dims [1,2] are flattened and restored.
    let x3 = x.reshape(&[1, 2, 3]).unwrap().cast(DType::F64);
    let got = eval(
        &[&x3, &w.cast(DType::F64), &bias.cast(DType::F64)],
        |b, v| b.linear(v[0], v[1], Some(v[2])),
    );
    assert_bits(&got, &f64s(&[1, 2, 2], &[8., 23., 8., 27.5]));
}

#[test]
fn losses_match_hand_computed_values() {
    // mse([1,2,3], [1,1,1]) = (0 + 1 + 4) / 3.
    let got = eval(
        &[&f64s(&[3, 1], &[1., 2., 3.]), &f64s(&[3, 1], &[1., 1., 1.])],
        |b, v| b.mse_loss(v[0], v[1]),
    );
    assert_close(&got, &[5.0 / 3.0], 1e-15, 0.0);

    // bce([0.9, 0.2], [1, 0]) = -(ln 0.9 + ln 0.8) / 2.
    let want = -(0.9f64.ln() + 0.8f64.ln()) / 2.0;
    let got = eval(
        &[&f64s(&[2], &[0.9, 0.2]), &f64s(&[2], &[1., 0.])],
        |b, v| b.bce_loss(v[0], v[1]),
    );
    assert_close(&got, &[want], 1e-15, 0.0);
    let got = eval(
        &[&f32s(&[2], &[0.9, 0.2]), &f32s(&[2], &[1., 0.])],
        |b, v| b.bce_loss(v[0], v[1]),
    );
    assert_close(&got, &[want], 1e-6, 0.0);
    // p = 0 against y = 1, and p = 1 against y = 0: each log is clamped at -100.
    let got = eval(
        &[&f32s(&[2], &[0.0, 1.0]), &f32s(&[2], &[1., 0.])],
        |b, v| b.bce_loss(v[0], v[1]),
    );
    assert_close(&got, &[100.0], 0.0, 0.0);

    // bce_with_logits([0, 2, -1000], [1, 0, 0]) = mean(ln 2, 2 + ln(1 + e^-2), 0).
    let want = (2f64.ln() + 2.0 + (-2f64).exp().ln_1p()) / 3.0;
    let got = eval(
        &[&f32s(&[3], &[0., 2., -1000.]), &f32s(&[3], &[1., 0., 0.])],
        |b, v| b.bce_with_logits(v[0], v[1]),
    );
    assert_close(&got, &[want], 1e-6, 0.0);

    // cross_entropy([[0,0],[ln 3,0]], [0,0]) = (ln 2 - ln(3/4)) / 2.
    let want = (2f64.ln() - 0.75f64.ln()) / 2.0;
    let logits = f64s(&[2, 2], &[0.0, 0.0, 3f64.ln(), 0.0]);
    let labels = i32s(&[2], &[0, 0]);
    let got = eval(&[&logits, &labels], |b, v| b.cross_entropy(v[0], v[1]));
    assert_close(&got, &[want], 1e-15, 0.0);
    // A confident right answer at logits 1e4 costs 0; a confident wrong one costs 1e4.
    let logits = f32s(&[2, 2], &[1e4, -1e4, 1e4, -1e4]);
    let labels = i32s(&[2], &[0, 1]);
    let got = eval(&[&logits, &labels], |b, v| b.cross_entropy(v[0], v[1]));
    assert_close(&got, &[1e4], 1e-7, 0.0);
}

// ---- golden models ----

#[test]
fn golden_forward_losses_match_in_f32_and_f64() {
    let cases = golden::load_all().unwrap();
    assert!(cases.len() >= 7, "found {} golden cases", cases.len());
    let start = std::time::Instant::now();
    for case in &cases {
        assert_eq!(case.trajectory.losses_before_each_step[0], case.loss);
        for (dtype, rtol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            let graph = case.graph(dtype).unwrap();
            let outs = interp::run(&graph, &case.inputs(dtype)).unwrap();
            let loss_index = graph
                .outputs()
                .iter()
                .position(|o| o.name == golden::LOSS_OUTPUT)
                .unwrap();
            let loss_tensor = &outs[loss_index];
            assert_eq!(loss_tensor.dtype(), dtype);
            let loss = loss_tensor.scalar_value().unwrap();
            let rel = (loss - case.loss).abs() / case.loss.abs();
            assert!(
                rel <= rtol,
                "{} in {dtype}: loss {loss}, expected {} (relative error {rel:e})",
                case.name,
                case.loss
            );
            let named = interp::run_named(&graph, &case.named_inputs(dtype)).unwrap();
            assert_eq!(&named[golden::LOSS_OUTPUT], loss_tensor);
        }
    }
    eprintln!(
        "golden forward: {} cases x 2 dtypes in {:?}",
        cases.len(),
        start.elapsed()
    );
}

// ---- speed ----

/// Deterministic values in [-scale, scale) (a 32-bit LCG), exactly representable in f32.
fn pseudo_random(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The course's MLP 784-256-256-10 at batch 128: forward (relu, cross-entropy) and a hand-written backward pass,
/// the same matmuls autodiff will produce. The interpreter must stay fast enough to be the oracle for it.
#[test]
fn mlp_784_256_256_10_forward_and_backward_runs_quickly() {
    let (n, widths) = (128, [784, 256, 256, 10]);
    let mut b = Builder::new("mlp");
    let x = b.data("x", TensorType::f32(&[n, widths[0]])).unwrap();
    let labels = b.data("y", TensorType::i32(&[n])).unwrap();
    let mut params = Vec::new();
    for (i, w) in widths.windows(2).enumerate() {
        let weight = b
            .param(&format!("l{i}.weight"), TensorType::f32(&[w[1], w[0]]))
            .unwrap();
        let bias = b
            .param(&format!("l{i}.bias"), TensorType::f32(&[w[1]]))
            .unwrap();
        params.push((weight, bias));
    }
    // Forward, keeping each layer's input and pre-activation.
    let mut acts = vec![x];
    let mut pre = Vec::new();
    for (i, &(w, bias)) in params.iter().enumerate() {
        let z = b.linear(*acts.last().unwrap(), w, Some(bias)).unwrap();
        pre.push(z);
        if i + 1 < params.len() {
            acts.push(b.relu(z).unwrap());
        }
    }
    let logits = *pre.last().unwrap();
    let loss = b.cross_entropy(logits, labels).unwrap();
    b.output("loss", loss).unwrap();
    // Backward: d logits = (softmax - one_hot) / N; dW = dzᵀ a; db = Σ_rows dz; da = dz W; dz = da · [z > 0].
    let p = b.softmax(logits, 1).unwrap();
    let t = b.one_hot(labels, widths[3], DType::F32).unwrap();
    let diff = b.sub(p, t).unwrap();
    let mut dz = b.mul_scalar(diff, 1.0 / n as f64).unwrap();
    for i in (0..params.len()).rev() {
        let (w, _) = params[i];
        let dz_t = b.transpose(dz, &[1, 0]).unwrap();
        let dw = b.matmul(dz_t, acts[i]).unwrap();
        let db = b.reduce_sum(dz, &[0], false).unwrap();
        b.output(&format!("grad.l{i}.weight"), dw).unwrap();
        b.output(&format!("grad.l{i}.bias"), db).unwrap();
        if i > 0 {
            let da = b.matmul(dz, w).unwrap();
            let positive = b.compare_scalar(CmpDir::Gt, pre[i - 1], 0.0).unwrap();
            let zero = b.zeros_like(da).unwrap();
            dz = b.select(positive, da, zero).unwrap();
        }
    }
    let g = b.finish();

    let mut inputs = vec![
        f32s(&[n, widths[0]], &pseudo_random(n * widths[0], 1, 1.0)),
        i32s(&[n], &(0..n as i32).map(|i| i * 7 % 10).collect::<Vec<_>>()),
    ];
    for (i, w) in widths.windows(2).enumerate() {
        let scale = 1.0 / (w[0] as f32).sqrt();
        inputs.push(f32s(
            &[w[1], w[0]],
            &pseudo_random(w[0] * w[1], 10 + i as u32, scale),
        ));
        inputs.push(f32s(&[w[1]], &pseudo_random(w[1], 20 + i as u32, scale)));
    }
    let start = std::time::Instant::now();
    let outs = interp::run(&g, &inputs).unwrap();
    let elapsed = start.elapsed();
    eprintln!("MLP 784-256-256-10, batch {n}, forward + backward: {elapsed:?}");

    // With small random weights the logits are near 0, so the loss is near ln 10.
    let loss = outs[0].scalar_value().unwrap();
    assert!((loss - 10f64.ln()).abs() < 0.5, "loss {loss}");
    // Each row of d logits sums to 0, so the last bias gradient does too.
    let last_db: f64 = outs[2].to_f64_vec().iter().sum();
    assert!(last_db.abs() < 1e-5, "Σ grad.l2.bias = {last_db}");
    assert_eq!(outs[5].dims(), [256, 784]);
}
