//! `log_softmax` and `cross_entropy` at logits of ±1e4 in f32, on every backend, against a float64 reference
//! computed here (the golden cases' style: an outside f64 computation, a stated tolerance).
//!
//! At |x| ≈ 1e4 the spacing of f32 is 2^-10 ≈ 9.8e-4, so the old expansion `x - (m + log s)` lost up to ~4.9e-4 to
//! the rounding of `m + log s`; SPEC's `(x - m) - log s` rounds only at the result's own scale. The tolerance below,
//! 2e-6 absolute + 1e-6 relative, holds for results of magnitude up to a few units (as these are) and fails the old
//! form by two orders of magnitude.

use kiln::ir::{interp, Builder, DType, Graph, Tensor, TensorType};
use kiln_tests::vulkan;

const ATOL: f64 = 2e-6;
const RTOL: f64 = 1e-6;

/// Rows of logits around ±1e4 whose log-softmax values are of order 1 (the case a large-scale model hits).
fn logits() -> (Vec<usize>, Vec<f32>) {
    let rows: [[f32; 5]; 4] = [
        [1e4, 10001.0, 9998.0, 10000.5, 9999.25],
        [-1e4, -10001.0, -9998.0, -10000.5, -9999.25],
        [10003.0, 10003.0, 10002.0, 9990.0, 10003.5],
        [-9999.5, -10000.0, -10002.0, -10000.25, -9999.0],
    ];
    (vec![4, 5], rows.iter().flatten().copied().collect())
}

/// The float64 reference: `x - m - ln Σ exp(x - m)` per row.
fn reference_log_softmax(dims: &[usize], x: &[f32]) -> Vec<f64> {
    let k = dims[1];
    x.chunks(k)
        .flat_map(|row| {
            let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            row.into_iter().map(move |v| v - m - lse)
        })
        .collect()
}

fn log_softmax_graph(dims: &[usize]) -> Graph {
    let mut b = Builder::new("log_softmax_large");
    let x = b.data("x", TensorType::f32(dims)).unwrap();
    let y = b.log_softmax(x, 1).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

fn cross_entropy_graph(dims: &[usize]) -> Graph {
    let mut b = Builder::new("cross_entropy_large");
    let z = b.param("z", TensorType::f32(dims)).unwrap();
    let l = b
        .data("labels", TensorType::new(DType::I32, [dims[0]]))
        .unwrap();
    let loss = b.cross_entropy(z, l).unwrap();
    b.output("loss", loss).unwrap();
    kiln::grad(&b.finish(), "loss", &["z"]).unwrap().graph
}

/// Runs `graph` on the interpreter, the CPU backend (1 and 3 threads) and Vulkan when there is a device, returning
/// each backend's name and outputs.
fn every_backend(graph: &Graph, inputs: &[Tensor]) -> Vec<(String, Vec<Tensor>)> {
    let mut runs = vec![("interp".to_string(), interp::run(graph, inputs).unwrap())];
    for threads in [1, 3] {
        let options = kiln::Options {
            threads,
            ..Default::default()
        };
        let exe = kiln::compile(graph, &options).unwrap();
        runs.push((format!("cpu/{threads}"), exe.run(inputs).unwrap()));
    }
    if let Some(device) = vulkan::device() {
        let exe = kiln::compile_vulkan(device, graph, &kiln::Options::default()).unwrap();
        runs.push(("vulkan".to_string(), exe.run(inputs).unwrap()));
    }
    runs
}

fn assert_close(what: &str, got: &Tensor, expected: &[f64]) {
    let got = got.to_f64_vec();
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(expected).enumerate() {
        let allowed = ATOL + RTOL * b.abs();
        assert!(
            (a - b).abs() <= allowed,
            "{what}[{i}]: got {a:e}, f64 reference {b:e}, error {:e} > {allowed:e}",
            (a - b).abs()
        );
    }
}

#[test]
fn log_softmax_of_logits_near_1e4_is_accurate_on_every_backend() {
    let (dims, x) = logits();
    let expected = reference_log_softmax(&dims, &x);
    let graph = log_softmax_graph(&dims);
    let inputs = [Tensor::from_f32(&dims, x).unwrap()];
    for (backend, outputs) in every_backend(&graph, &inputs) {
        assert_close(&format!("{backend} log_softmax"), &outputs[0], &expected);
    }
}

#[test]
fn cross_entropy_and_its_gradient_at_logits_near_1e4_are_accurate_on_every_backend() {
    let (dims, x) = logits();
    let (n, k) = (dims[0], dims[1]);
    let labels: Vec<i32> = vec![1, 3, 4, 0];
    let log_probs = reference_log_softmax(&dims, &x);
    // loss = -mean_n log_softmax[n, l_n]; d loss / d z = (softmax - one_hot) / N.
    let loss = -(0..n)
        .map(|r| log_probs[r * k + labels[r] as usize])
        .sum::<f64>()
        / n as f64;
    let grad: Vec<f64> = (0..n * k)
        .map(|i| {
            let hot = if i % k == labels[i / k] as usize {
                1.0
            } else {
                0.0
            };
            (log_probs[i].exp() - hot) / n as f64
        })
        .collect();
    let graph = cross_entropy_graph(&dims);
    let inputs = [
        Tensor::from_f32(&dims, x).unwrap(),
        Tensor::from_i32(&[n], labels).unwrap(),
    ];
    for (backend, outputs) in every_backend(&graph, &inputs) {
        assert_close(&format!("{backend} loss"), &outputs[0], &[loss]);
        assert_close(&format!("{backend} grad.z"), &outputs[1], &grad);
    }
}
