//! The workloads W1–W5 of the CPU-backend issue, as Kiln graphs, and the baselines the benchmarks in `benches/`
//! measure them against in the same run.
//!
//! The definitions follow `bench_peers.py` (the peer systems' script) so that the numbers compare: W1 is
//! `relu(x*a + b) * sigmoid(x) + tanh(x)*0.5` on 16,777,216 floats, W2 a row softmax of `[4096, 1024]`, W3 two
//! sgemms, W4 one SGD step of the 784-256-256-10 MLP at batch 128, W5 that MLP's forward pass with a softmax output.

mod record;

pub use record::{record, RECORD_VAR};

use kiln::ir::GeluApprox;
use kiln::ir::Value;
use kiln::nn::{Module, TransformerBlock};
use kiln::{Adam, Builder, DataParallel, Graph, IrError, Optimizer, Sgd, Tensor, TensorType};
use std::collections::HashMap;

pub const W1_LEN: usize = 16_777_216;
/// W1's scalars `a` and `b` (those of `bench_peers.py`).
pub const W1_A: f64 = 1.5;
pub const W1_B: f64 = 0.25;
pub const W2_SHAPE: [usize; 2] = [4096, 1024];
/// The MLP of W4 and W5.
pub const MLP_DIMS: [usize; 4] = [784, 256, 256, 10];
pub const W4_BATCH: usize = 128;
pub const W4_LR: f64 = 0.1;

/// W1: `y = relu(x*a + b) * sigmoid(x) + tanh(x)*0.5` on `len` floats.
pub fn w1_graph(len: usize) -> Result<Graph, IrError> {
    let mut b = Builder::new("w1");
    let x = b.data("x", TensorType::f32(&[len]))?;
    let affine = b.mul_scalar(x, W1_A)?;
    let affine = b.add_scalar(affine, W1_B)?;
    let gate = b.relu(affine)?;
    let s = b.sigmoid(x)?;
    let left = b.mul(gate, s)?;
    let t = b.tanh(x)?;
    let right = b.mul_scalar(t, 0.5)?;
    let y = b.add(left, right)?;
    b.output("y", y)?;
    Ok(b.finish())
}

/// W1 in plain Rust, element by element in f64 (the reference of the tests).
pub fn w1_reference(x: f32) -> f32 {
    let x = f64::from(x);
    let sigmoid = 1.0 / (1.0 + (-x).exp());
    ((x * W1_A + W1_B).max(0.0) * sigmoid + x.tanh() * 0.5) as f32
}

/// W2: softmax over the last axis of a `[rows, cols]` matrix.
pub fn softmax_graph(rows: usize, cols: usize) -> Result<Graph, IrError> {
    let mut b = Builder::new("w2");
    let x = b.data("x", TensorType::f32(&[rows, cols]))?;
    let y = b.softmax(x, -1)?;
    b.output("y", y)?;
    Ok(b.finish())
}

/// W2's baseline: a scalar row softmax (max, sum of exponentials, normalize), one row at a time on one thread.
pub fn softmax_rows(x: &[f32], cols: usize, y: &mut [f32]) {
    for (row, out) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for (o, &v) in out.iter_mut().zip(row) {
            *o = (v - max).exp();
            sum += *o;
        }
        let scale = 1.0 / sum;
        for o in out.iter_mut() {
            *o *= scale;
        }
    }
}

/// W3: `[m, k] @ [k, n]`.
pub fn matmul_graph(m: usize, k: usize, n: usize) -> Result<Graph, IrError> {
    let mut b = Builder::new("w3");
    let lhs = b.data("a", TensorType::f32(&[m, k]))?;
    let rhs = b.data("b", TensorType::f32(&[k, n]))?;
    let c = b.matmul(lhs, rhs)?;
    b.output("c", c)?;
    Ok(b.finish())
}

/// W3's baseline: `matrixmultiply::sgemm` called directly, row-major, `c = a @ b`.
pub fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    // SAFETY: the asserts above bound every view: a is m×k, b is k×n, c is m×n, all dense row-major.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// W4: one SGD step (lr 0.1) of [`kiln::zoo::mlp_784`].
pub fn w4_step() -> Result<Graph, IrError> {
    w4_step_with(None)
}

/// [`w4_step`], data-parallel when `dp` is given (`docs/distributed.md` measures it).
pub fn w4_step_with(dp: Option<DataParallel>) -> Result<Graph, IrError> {
    let model = kiln::zoo::mlp_784()?;
    let names = mlp_param_names();
    let params: Vec<&str> = names.iter().map(String::as_str).collect();
    let sgd = Sgd {
        lr: W4_LR,
        ..Sgd::default()
    };
    step_with(&model, &params, Optimizer::Sgd(sgd), dp)
}

/// The training step of `model`'s `loss`, data-parallel when `dp` is given.
pub fn step_with(
    model: &Graph,
    params: &[&str],
    optimizer: Optimizer,
    dp: Option<DataParallel>,
) -> Result<Graph, IrError> {
    match dp {
        Some(dp) => kiln::training_step_data_parallel(model, "loss", params, &optimizer, None, dp),
        None => kiln::training_step(model, "loss", params, &optimizer),
    }
}

/// `l0.weight, l0.bias, l1.weight, ...`: the parameter names of the zoo's MLPs, in input order.
pub fn mlp_param_names() -> Vec<String> {
    (0..MLP_DIMS.len() - 1)
        .flat_map(|i| [format!("l{i}.weight"), format!("l{i}.bias")])
        .collect()
}

/// W5: the MLP's forward pass at `batch` rows with a softmax output `probs`. Inputs: `x`, then the parameters.
pub fn mlp_forward(batch: usize) -> Result<Graph, IrError> {
    let mut b = Builder::new("mlp_forward");
    let mut h = b.data("x", TensorType::f32(&[batch, MLP_DIMS[0]]))?;
    let mut layers: Vec<(Value, Value)> = Vec::new();
    for (i, pair) in MLP_DIMS.windows(2).enumerate() {
        let w = b.param(
            &format!("l{i}.weight"),
            TensorType::f32(&[pair[1], pair[0]]),
        )?;
        let bias = b.param(&format!("l{i}.bias"), TensorType::f32(&[pair[1]]))?;
        layers.push((w, bias));
    }
    for (i, &(w, bias)) in layers.iter().enumerate() {
        h = b.linear(h, w, Some(bias))?;
        if i + 1 < layers.len() {
            h = b.relu(h)?;
        }
    }
    let probs = b.softmax(h, -1)?;
    b.output("probs", probs)?;
    Ok(b.finish())
}

/// W5's baseline: the same forward pass written by hand — `sgemm` per layer, then bias and ReLU (or the softmax)
/// in a loop — into `probs` (`[batch, 10]`), with `hidden` as scratch for the activations.
pub fn mlp_forward_reference(
    x: &[f32],
    params: &[Vec<f32>],
    batch: usize,
    hidden: &mut [Vec<f32>; 2],
    probs: &mut [f32],
) {
    let [h0, h1] = hidden;
    let [d0, d1, d2, d3] = MLP_DIMS;
    dense(x, &params[0], &params[1], batch, d0, d1, h0, true);
    dense(h0, &params[2], &params[3], batch, d1, d2, h1, true);
    dense(h1, &params[4], &params[5], batch, d2, d3, probs, false);
    let logits = probs.to_vec();
    softmax_rows(&logits, d3, probs);
}

/// `out = input @ wᵀ + bias`, then ReLU if `relu`; `w` is `[fan_out, fan_in]` (PyTorch's `Linear`).
#[allow(clippy::too_many_arguments)]
fn dense(
    input: &[f32],
    w: &[f32],
    bias: &[f32],
    batch: usize,
    fan_in: usize,
    fan_out: usize,
    out: &mut [f32],
    relu: bool,
) {
    let out = &mut out[..batch * fan_out];
    assert!(input.len() >= batch * fan_in && w.len() == fan_out * fan_in);
    // SAFETY: input is batch×fan_in, w is fan_out×fan_in read as its transpose (fan_in×fan_out through swapped
    // strides), out is batch×fan_out; the assert and the slice above bound all three.
    unsafe {
        matrixmultiply::sgemm(
            batch,
            fan_in,
            fan_out,
            1.0,
            input.as_ptr(),
            fan_in as isize,
            1,
            w.as_ptr(),
            1,
            fan_in as isize,
            0.0,
            out.as_mut_ptr(),
            fan_out as isize,
            1,
        );
    }
    for row in out.chunks_exact_mut(fan_out) {
        for (o, &b) in row.iter_mut().zip(bias) {
            *o += b;
            if relu {
                *o = o.max(0.0);
            }
        }
    }
}

/// Seeded standard-normal floats times `scale` (a SplitMix64 stream through Box–Muller; no dependencies).
pub fn normal(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32 * scale
        })
        .collect()
}

/// A seeded `[dims]` f32 tensor of standard-normal values times `scale`.
pub fn normal_tensor(dims: &[usize], seed: u64, scale: f32) -> Tensor {
    let values = normal(dims.iter().product(), seed, scale);
    Tensor::from_f32(dims, values).expect("the values fit the shape")
}

/// Seeded class labels in `[0, classes)`.
pub fn labels(batch: usize, classes: usize, seed: u64) -> Tensor {
    let noise = normal(batch, seed, 1.0);
    let values = noise
        .iter()
        .map(|v| ((v.abs() * 1000.0) as usize % classes) as i32)
        .collect();
    Tensor::from_i32(&[batch], values).expect("one label per row")
}

/// The MLP's parameters at PyTorch's He scale (`w ~ N(0, 2/fan_in)`, `b = 0`), by name.
pub fn mlp_params(seed: u64) -> HashMap<String, Tensor> {
    let mut params = HashMap::new();
    for (i, pair) in MLP_DIMS.windows(2).enumerate() {
        let scale = (2.0 / pair[0] as f32).sqrt();
        let w = normal_tensor(&[pair[1], pair[0]], seed + i as u64, scale);
        let b = Tensor::from_f32(&[pair[1]], vec![0.0; pair[1]]).expect("one bias per unit");
        params.insert(format!("l{i}.weight"), w);
        params.insert(format!("l{i}.bias"), b);
    }
    params
}

/// W6: `relu(conv2d(x, W, pad 1) + b)`, x [16, 64, 32, 32], W [64, 64, 3, 3] (the peers' script's W6).
pub const W6_X: [usize; 4] = [16, 64, 32, 32];
pub const W6_W: [usize; 4] = [64, 64, 3, 3];

/// FLOPs of W6's convolution (bias and ReLU not counted, as the peers count).
pub fn w6_flops() -> f64 {
    2.0 * 16.0 * 64.0 * 32.0 * 32.0 * 64.0 * 9.0
}

pub fn w6_graph() -> Result<Graph, IrError> {
    let mut b = Builder::new("w6_conv");
    let x = b.data("x", TensorType::f32(&W6_X))?;
    let w = b.param("w", TensorType::f32(&W6_W))?;
    let bias = b.param("b", TensorType::f32(&[W6_W[0]]))?;
    let y = b.conv(
        x,
        w,
        Some(bias),
        &kiln::ir::ConvSpec::new(2).padding(&[1, 1]),
    )?;
    let y = b.relu(y)?;
    b.output("y", y)?;
    Ok(b.finish())
}

/// W6 by hand: zero-padded im2col into `cols` (`[C·9, H·W]` per image), then one `sgemm` per image, bias and ReLU.
pub fn w6_reference(x: &[f32], w: &[f32], bias: &[f32], cols: &mut [f32], y: &mut [f32]) {
    let [n, c, h, wd] = W6_X;
    let o = W6_W[0];
    let hw = h * wd;
    for img in 0..n {
        let xi = &x[img * c * hw..(img + 1) * c * hw];
        for ci in 0..c {
            for a in 0..3 {
                for bb in 0..3 {
                    let row = &mut cols[((ci * 3 + a) * 3 + bb) * hw..][..hw];
                    for r in 0..h {
                        let sr = r as isize + a as isize - 1;
                        for s in 0..wd {
                            let ss = s as isize + bb as isize - 1;
                            row[r * wd + s] =
                                if sr < 0 || ss < 0 || sr >= h as isize || ss >= wd as isize {
                                    0.0
                                } else {
                                    xi[ci * hw + sr as usize * wd + ss as usize]
                                };
                        }
                    }
                }
            }
        }
        let yi = &mut y[img * o * hw..(img + 1) * o * hw];
        sgemm(o, c * 9, hw, w, cols, yi);
        for (oi, row) in yi.chunks_mut(hw).enumerate() {
            for v in row {
                *v = (*v + bias[oi]).max(0.0);
            }
        }
    }
}

/// W7: the peers' CNN (conv 1→16, ReLU, maxpool 2, conv 16→32, ReLU, maxpool 2, flatten, `f @ W + b` to 10
/// classes, mean cross-entropy) on [128, 1, 28, 28], one SGD step of lr 0.01.
pub fn w7_step() -> Result<Graph, IrError> {
    w7_step_with(None)
}

/// [`w7_step`], data-parallel when `dp` is given.
pub fn w7_step_with(dp: Option<DataParallel>) -> Result<Graph, IrError> {
    use kiln::ir::ConvSpec;
    let mut b = Builder::new("w7_cnn");
    let x = b.data("x", TensorType::f32(&[128, 1, 28, 28]))?;
    let labels = b.data("labels", TensorType::new(kiln::DType::I32, [128]))?;
    let same = ConvSpec::new(2).padding(&[1, 1]);
    let pool = ConvSpec::new(2).stride(&[2, 2]);
    let w1 = b.param("c1.weight", TensorType::f32(&[16, 1, 3, 3]))?;
    let b1 = b.param("c1.bias", TensorType::f32(&[16]))?;
    let w2 = b.param("c2.weight", TensorType::f32(&[32, 16, 3, 3]))?;
    let b2 = b.param("c2.bias", TensorType::f32(&[32]))?;
    let wf = b.param("fc.weight", TensorType::f32(&[1568, 10]))?;
    let bf = b.param("fc.bias", TensorType::f32(&[10]))?;
    let h = b.conv(x, w1, Some(b1), &same)?;
    let h = b.relu(h)?;
    let h = b.max_pool(h, &[2, 2], &pool)?;
    let h = b.conv(h, w2, Some(b2), &same)?;
    let h = b.relu(h)?;
    let h = b.max_pool(h, &[2, 2], &pool)?;
    let f = b.flatten(h)?;
    let z = b.matmul(f, wf)?;
    let z = b.add(z, bf)?;
    let loss = b.cross_entropy(z, labels)?;
    b.output("loss", loss)?;
    let model = b.finish();
    let sgd = Sgd {
        lr: 0.01,
        ..Sgd::default()
    };
    step_with(&model, &W7_PARAMS, Optimizer::Sgd(sgd), dp)
}

/// W7's parameter names, in input order.
pub const W7_PARAMS: [&str; 6] = [
    "c1.weight",
    "c1.bias",
    "c2.weight",
    "c2.bias",
    "fc.weight",
    "fc.bias",
];

/// W7's parameters: He-normal weights (std √(2/fan_in)), zero biases.
pub fn w7_params(seed: u64) -> HashMap<String, Tensor> {
    let shapes: [(&str, Vec<usize>, usize); 6] = [
        ("c1.weight", vec![16, 1, 3, 3], 9),
        ("c1.bias", vec![16], 0),
        ("c2.weight", vec![32, 16, 3, 3], 144),
        ("c2.bias", vec![32], 0),
        ("fc.weight", vec![1568, 10], 1568),
        ("fc.bias", vec![10], 0),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (name, dims, fan_in))| {
            let scale = if fan_in == 0 {
                0.0
            } else {
                (2.0 / fan_in as f32).sqrt()
            };
            (
                name.to_string(),
                normal_tensor(&dims, seed + i as u64, scale),
            )
        })
        .collect()
}

/// W10's input `x`: [B, T, D].
pub const W10_X: [usize; 3] = [8, 128, 256];
pub const W10_HEADS: usize = 4;
pub const W10_HIDDEN: usize = 1024;

/// W10's block: `nn::TransformerBlock` (pre-LN, causal, exact GELU) and `loss = mean(y²)` over all of `y`.
pub fn w10_block() -> TransformerBlock {
    TransformerBlock::new("block", W10_X[2], W10_HEADS, W10_HIDDEN, GeluApprox::None)
}

/// W10 (data-parallel when `dp` is given): one AdamW step (lr 1e-3, betas 0.9/0.999, eps 1e-8, decoupled weight decay 0.01 on every parameter).
pub fn w10_step(block: &TransformerBlock, dp: Option<DataParallel>) -> Result<Graph, IrError> {
    let mut b = Builder::new("w10_transformer_block");
    let x = b.data("x", TensorType::f32(&W10_X))?;
    let y = block.forward(&mut b, x)?;
    let squares = b.mul(y, y)?;
    let loss = b.mean_all(squares)?;
    b.output("loss", loss)?;
    let model = b.finish();
    let names: Vec<String> = block.parameters().into_iter().map(|p| p.name).collect();
    let params: Vec<&str> = names.iter().map(String::as_str).collect();
    let adamw = Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    step_with(&model, &params, Optimizer::AdamW(adamw), dp)
}

/// W10's initialization (the peers' seed 13 stream is numpy's; these are the same distributions): linear weights
/// `N(0, 0.02²)`, biases 0, layer-norm gains 1 and biases 0.
pub fn w10_params(block: &TransformerBlock) -> HashMap<String, Tensor> {
    block
        .parameters()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let dims = p.ty.shape.dims().to_vec();
            let n: usize = dims.iter().product();
            let values = if dims.len() == 2 {
                normal(n, 13 + i as u64, 0.02)
            } else if p.name.contains(".ln") && p.name.ends_with(".weight") {
                vec![1.0; n]
            } else {
                vec![0.0; n]
            };
            let t = Tensor::from_f32(&dims, values).expect("the values fit the shape");
            (p.name, t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(fuse: bool) -> kiln::Options {
        kiln::Options {
            fuse,
            ..kiln::Options::default()
        }
    }

    fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32) {
        assert_eq!(actual.len(), expected.len());
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() <= tolerance * (1.0 + e.abs()),
                "element {i}: {a} vs {e}"
            );
        }
    }

    #[test]
    fn w1_fused_and_unfused_compute_the_formula() {
        let graph = w1_graph(4096).unwrap();
        let x = normal_tensor(&[4096], 1, 3.0);
        let expected: Vec<f32> = x
            .as_f32()
            .unwrap()
            .iter()
            .map(|&v| w1_reference(v))
            .collect();
        let fused = kiln::compile(&graph, &options(true)).unwrap();
        let unfused = kiln::compile(&graph, &options(false)).unwrap();
        assert_eq!(fused.steps().len(), 1, "W1 is one kernel");
        // x*a, +b, relu, sigmoid, *, tanh, *0.5, + (relu and sigmoid may lower to more than one op each).
        assert!(
            unfused.steps().len() >= 8,
            "{} kernels",
            unfused.steps().len()
        );
        for exe in [fused, unfused] {
            let y = exe.run(std::slice::from_ref(&x)).unwrap();
            assert_close(y[0].as_f32().unwrap(), &expected, 1e-5);
        }
    }

    #[test]
    fn scalar_softmax_matches_kiln() {
        let (rows, cols) = (8, 100);
        let x = normal_tensor(&[rows, cols], 2, 3.0);
        let exe = kiln::compile(&softmax_graph(rows, cols).unwrap(), &options(true)).unwrap();
        let y = exe.run(std::slice::from_ref(&x)).unwrap();
        let mut expected = vec![0.0; rows * cols];
        softmax_rows(x.as_f32().unwrap(), cols, &mut expected);
        assert_close(y[0].as_f32().unwrap(), &expected, 1e-5);
    }

    #[test]
    fn direct_sgemm_matches_kiln() {
        let (m, k, n) = (17, 33, 9);
        let a = normal_tensor(&[m, k], 3, 1.0);
        let b = normal_tensor(&[k, n], 4, 1.0);
        let exe = kiln::compile(&matmul_graph(m, k, n).unwrap(), &options(true)).unwrap();
        let c = exe.run(&[a.clone(), b.clone()]).unwrap();
        let mut expected = vec![0.0; m * n];
        sgemm(
            m,
            k,
            n,
            a.as_f32().unwrap(),
            b.as_f32().unwrap(),
            &mut expected,
        );
        assert_close(c[0].as_f32().unwrap(), &expected, 1e-4);
    }

    #[test]
    fn hand_written_forward_matches_kiln() {
        let batch = 5;
        let params = mlp_params(7);
        let x = normal_tensor(&[batch, MLP_DIMS[0]], 8, 1.0);
        let mut inputs = vec![x.clone()];
        inputs.extend(mlp_param_names().iter().map(|n| params[n].clone()));
        let exe = kiln::compile(&mlp_forward(batch).unwrap(), &options(true)).unwrap();
        let probs = exe.run(&inputs).unwrap();
        let flat: Vec<Vec<f32>> = mlp_param_names()
            .iter()
            .map(|n| params[n].as_f32().unwrap().to_vec())
            .collect();
        let mut hidden = [vec![0.0; batch * 256], vec![0.0; batch * 256]];
        let mut expected = vec![0.0; batch * 10];
        mlp_forward_reference(
            x.as_f32().unwrap(),
            &flat,
            batch,
            &mut hidden,
            &mut expected,
        );
        assert_close(probs[0].as_f32().unwrap(), &expected, 1e-4);
    }

    #[test]
    fn unfused_training_step_trains_like_the_fused_one() {
        let step = w4_step().unwrap();
        let x = normal_tensor(&[W4_BATCH, MLP_DIMS[0]], 9, 1.0);
        let y = labels(W4_BATCH, 10, 10);
        let mut losses = Vec::new();
        for fuse in [true, false] {
            let exe = kiln::compile(&step, &options(fuse)).unwrap();
            let mut session = kiln::Session::new(exe, &mlp_params(11)).unwrap();
            let first = session.step(&[x.clone(), y.clone()]).unwrap();
            let second = session.step(&[x.clone(), y.clone()]).unwrap();
            assert!(second < first, "a step lowers the loss on its batch");
            losses.push((first, second));
        }
        assert!(
            (losses[0].0 - losses[1].0).abs() < 1e-4 && (losses[0].1 - losses[1].1).abs() < 1e-4
        );
    }
}
