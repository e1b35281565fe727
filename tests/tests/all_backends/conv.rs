//! Convolution and pooling (SPEC §3.10's `pad`, `windows`, `overlap_add` and §4's composites): the interpreter against
//! a direct loop-nest implementation of PyTorch's definitions, every backend against the interpreter (forward and the
//! gradient graph), and finite differences of every new op's VJP, grad-of-grad of conv included.
//!
//! Tolerances: the direct implementation and the interpreter in f64 agree to 1e-12 (same products, other order);
//! the CPU and Vulkan against the interpreter in f32 within 1e-5 absolute + 1e-4 relative (sums of ≤ 600 products of
//! N(0,1) values reordered by a GEMM); finite differences at `F64_TOLERANCE`.

use kiln::ir::{interp, Builder, ConvSpec, DType, Graph, Tensor, TensorType};
use kiln_tests::differential::{check_every_backend, random_inputs, with_gradients, Tolerance};
use kiln_tests::fd::{check_gradients, F64_TOLERANCE};

const F32_TOLERANCE: Tolerance = Tolerance {
    atol: 1e-5,
    rtol: 1e-4,
};

/// One convolution case: input dims, weight dims, the spec.
struct Case {
    name: &'static str,
    x: Vec<usize>,
    w: Vec<usize>,
    spec: ConvSpec,
    bias: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "plain_3x3",
            x: vec![2, 3, 6, 5],
            w: vec![4, 3, 3, 3],
            spec: ConvSpec::new(2),
            bias: true,
        },
        Case {
            name: "stride_pad",
            x: vec![2, 2, 7, 6],
            w: vec![3, 2, 3, 3],
            spec: ConvSpec::new(2).stride(&[2, 2]).padding(&[1, 1]),
            bias: true,
        },
        Case {
            name: "dilation_groups",
            x: vec![1, 4, 7, 7],
            w: vec![6, 2, 3, 3],
            spec: ConvSpec::new(2)
                .dilation(&[2, 2])
                .groups(2)
                .padding(&[1, 2]),
            bias: false,
        },
        Case {
            name: "depthwise",
            x: vec![2, 3, 5, 5],
            w: vec![3, 1, 3, 3],
            spec: ConvSpec::new(2).groups(3).padding(&[1, 1]),
            bias: true,
        },
        Case {
            name: "nonsquare_asymmetric_pad",
            x: vec![2, 2, 7, 9],
            w: vec![3, 2, 3, 2],
            spec: ConvSpec::new(2)
                .stride(&[1, 2])
                .padding_low_high(&[(1, 0), (0, 2)]),
            bias: false,
        },
        Case {
            name: "pointwise_1x1",
            x: vec![2, 4, 3, 3],
            w: vec![5, 4, 1, 1],
            spec: ConvSpec::new(2),
            bias: true,
        },
        Case {
            name: "conv1d",
            x: vec![2, 3, 9],
            w: vec![2, 3, 4],
            spec: ConvSpec::new(1).stride(&[2]).padding(&[1]).dilation(&[2]),
            bias: true,
        },
        Case {
            name: "conv3d_grouped",
            x: vec![1, 4, 4, 5, 3],
            w: vec![2, 2, 2, 3, 2],
            spec: ConvSpec::new(3).groups(2).padding(&[1, 0, 1]),
            bias: true,
        },
    ]
}

fn conv_graph(case: &Case, dtype: DType) -> Graph {
    let mut b = Builder::new(case.name);
    let x = b.data("x", TensorType::new(dtype, case.x.clone())).unwrap();
    let w = b
        .param("w", TensorType::new(dtype, case.w.clone()))
        .unwrap();
    let bias = case
        .bias
        .then(|| b.param("b", TensorType::new(dtype, [case.w[0]])).unwrap());
    let y = b.conv(x, w, bias, &case.spec).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

/// PyTorch's convolution written out: `y[n, o, p] = b[o] + Σ_{j, a} w[o, j, a] · xpad[n, g·Cg + j, p·s + a·d]`.
fn direct_conv(case: &Case, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let s = case.x.len() - 2;
    let (n, c) = (case.x[0], case.x[1]);
    let (o, cg) = (case.w[0], case.w[1]);
    let g = case.spec.groups;
    let og = o / g;
    let sizes = &case.x[2..];
    let window = &case.w[2..];
    let outs: Vec<usize> = (0..s)
        .map(|d| {
            let (lo, hi) = case.spec.padding[d];
            let span = case.spec.dilation[d] * (window[d] - 1) + 1;
            (sizes[d] + lo + hi - span) / case.spec.stride[d] + 1
        })
        .collect();
    let positions: usize = outs.iter().product();
    let taps: usize = window.iter().product();
    let unravel = |mut i: usize, dims: &[usize]| -> Vec<usize> {
        let mut out = vec![0; dims.len()];
        for d in (0..dims.len()).rev() {
            out[d] = i % dims[d];
            i /= dims[d];
        }
        out
    };
    let x_index = |ni: usize, ci: usize, at: &[usize]| -> usize {
        let mut i = ni * c + ci;
        for d in 0..s {
            i = i * sizes[d] + at[d];
        }
        i
    };
    let mut y = Vec::with_capacity(n * o * positions);
    for ni in 0..n {
        for oi in 0..o {
            let group = oi / og;
            for p in 0..positions {
                let pos = unravel(p, &outs);
                let mut acc = bias.map_or(0.0, |b| b[oi]);
                for j in 0..cg {
                    for t in 0..taps {
                        let a = unravel(t, window);
                        let mut at = Vec::with_capacity(s);
                        for d in 0..s {
                            let q = (pos[d] * case.spec.stride[d] + a[d] * case.spec.dilation[d])
                                as isize
                                - case.spec.padding[d].0 as isize;
                            at.push(q);
                        }
                        if at
                            .iter()
                            .zip(sizes)
                            .any(|(&q, &n)| q < 0 || q >= n as isize)
                        {
                            continue;
                        }
                        let at: Vec<usize> = at.iter().map(|&q| q as usize).collect();
                        let wv = w[(oi * cg + j) * taps + t];
                        acc += wv * x[x_index(ni, group * cg + j, &at)];
                    }
                }
                y.push(acc);
            }
        }
    }
    y
}

#[test]
fn interpreter_conv_matches_pytorch_definition() {
    for case in cases() {
        let graph = conv_graph(&case, DType::F64);
        let inputs = random_inputs(&graph, 7);
        let got = interp::run(&graph, &inputs).unwrap();
        let vals: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_f64_vec()).collect();
        let want = direct_conv(&case, &vals[0], &vals[1], vals.get(2).map(|v| v.as_slice()));
        let got = got[0].to_f64_vec();
        assert_eq!(got.len(), want.len(), "{}", case.name);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
                "{} element {i}: {g} vs {w}",
                case.name
            );
        }
    }
}

/// The forward graph (or a gradient graph) on every backend against the interpreter.
fn check_backends(graph: &Graph, seed: u64) {
    check_every_backend(graph, &random_inputs(graph, seed), F32_TOLERANCE);
}

#[test]
fn conv_forward_and_gradients_on_every_backend() {
    for case in cases() {
        let graph = conv_graph(&case, DType::F32);
        check_backends(&graph, 11);
        check_backends(&with_gradients(&graph, &["x"]), 12);
    }
}

fn pool_graph(name: &str, x: &[usize], window: &[usize], spec: &ConvSpec, kind: &str) -> Graph {
    let mut b = Builder::new(name);
    let xv = b
        .param("x", TensorType::new(DType::F32, x.to_vec()))
        .unwrap();
    let y = match kind {
        "max" => b.max_pool(xv, window, spec).unwrap(),
        "avg" => b.avg_pool(xv, window, spec, true).unwrap(),
        _ => b.avg_pool(xv, window, spec, false).unwrap(),
    };
    b.output("y", y).unwrap();
    b.finish()
}

#[test]
fn pooling_forward_and_gradients_on_every_backend() {
    let spec = ConvSpec::new(2).stride(&[2, 2]).padding(&[1, 1]);
    for kind in ["max", "avg", "avg_exclude_pad"] {
        let graph = pool_graph(kind, &[2, 3, 7, 6], &[3, 3], &spec, kind);
        check_backends(&graph, 21);
        let mut b = Builder::from_graph(graph.clone());
        let y = graph.outputs()[0].value;
        let r = b.data("r", graph.ty(y).clone()).unwrap();
        let yr = b.mul(y, r).unwrap();
        let loss = b.reduce_sum(yr, &[0, 1, 2, 3], false).unwrap();
        b.output("loss", loss).unwrap();
        let grads = kiln::grad(&b.finish(), "loss", &["x"]).unwrap().graph;
        check_backends(&grads, 22);
    }
}

#[test]
fn max_pool_gradient_goes_to_the_first_maximum_and_nan_propagates() {
    // One 2×2 window of equal values, one holding NaN, one holding two NaNs.
    let mut b = Builder::new("ties");
    let x = b
        .param("x", TensorType::new(DType::F32, [1, 1, 2, 6]))
        .unwrap();
    let y = b
        .max_pool(x, &[2, 2], &ConvSpec::new(2).stride(&[2, 2]))
        .unwrap();
    let axes = [0, 1, 2, 3];
    let loss = b.reduce_sum(y, &axes, false).unwrap();
    b.output("y", y).unwrap();
    b.output("loss", loss).unwrap();
    let graph = kiln::grad(&b.finish(), "loss", &["x"]).unwrap().graph;
    let nan = f32::NAN;
    let x = Tensor::from_f32(
        &[1, 1, 2, 6],
        vec![5.0, 5.0, 1.0, nan, nan, 0.0, 5.0, 5.0, 2.0, 3.0, 4.0, nan],
    )
    .unwrap();
    let out = interp::run(&graph, &[x]).unwrap();
    let y = out[0].as_f32().unwrap();
    assert_eq!(y[0], 5.0);
    assert!(y[1].is_nan() && y[2].is_nan());
    let g = out[2].as_f32().unwrap();
    assert_eq!(
        g,
        &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn finite_differences_of_pad_windows_overlap_add_and_conv() {
    for case in cases() {
        let graph = conv_graph(&case, DType::F64);
        let inputs = random_inputs(&graph, 3);
        check_gradients(&graph, &inputs, F64_TOLERANCE, 4);
    }
    // overlap_add alone (its VJP is windows) and pad alone.
    let mut b = Builder::new("overlap_add");
    let w = b
        .param("w", TensorType::new(DType::F64, [2, 3, 2, 2, 3]))
        .unwrap();
    let y = b.overlap_add(w, &[6, 7], &[2, 2], &[1, 2]).unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    check_gradients(&graph, &random_inputs(&graph, 5), F64_TOLERANCE, 6);
    let mut b = Builder::new("pad");
    let x = b.param("x", TensorType::new(DType::F64, [2, 3])).unwrap();
    let y = b.pad(x, &[1, 0], &[2, 3], 0.5).unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    check_gradients(&graph, &random_inputs(&graph, 7), F64_TOLERANCE, 8);
}

#[test]
fn conv_grad_of_grad_matches_finite_differences() {
    // The input gradient of a conv as a function of the weights: its own gradient is conv's second derivative.
    let case = &cases()[1];
    let graph = conv_graph(case, DType::F64);
    let first = with_gradients(&graph, &["x"]);
    let mut b = Builder::from_graph(first.clone());
    let gx = first
        .outputs()
        .iter()
        .find(|o| o.name == "grad.x")
        .unwrap()
        .value;
    let sq = b.mul(gx, gx).unwrap();
    let axes: Vec<isize> = (0..4).collect();
    let y = b.reduce_sum(sq, &axes, false).unwrap();
    let mut g = b.finish();
    g.clear_outputs();
    let mut b = Builder::from_graph(g);
    b.output("y", y).unwrap();
    let graph = b.finish();
    check_gradients(&graph, &random_inputs(&graph, 9), F64_TOLERANCE, 10);
}

#[test]
fn bad_convolutions_are_clear_errors() {
    let mut b = Builder::new("bad");
    let x = b
        .data("x", TensorType::new(DType::F32, [1, 4, 5, 5]))
        .unwrap();
    let w = b
        .param("w", TensorType::new(DType::F32, [6, 3, 3, 3]))
        .unwrap();
    let e = b
        .conv(x, w, None, &ConvSpec::new(2))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv") && e.contains("4 channels") && e.contains("[6,3,3,3]"),
        "{e}"
    );
    let w = b
        .param("w2", TensorType::new(DType::F32, [6, 2, 3, 3]))
        .unwrap();
    let e = b
        .conv(x, w, None, &ConvSpec::new(2).groups(4))
        .unwrap_err()
        .to_string();
    assert!(e.contains("groups"), "{e}");
    let w = b
        .param("w3", TensorType::new(DType::F32, [2, 4, 7, 7]))
        .unwrap();
    let e = b
        .conv(x, w, None, &ConvSpec::new(2))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("window 7") && e.contains("no output position"),
        "{e}"
    );
    let e = b
        .max_pool(x, &[6, 6], &ConvSpec::new(2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_pool") && e.contains("window 6"), "{e}");
    let e = b
        .avg_pool(x, &[2, 2], &ConvSpec::new(2).stride(&[0, 1]), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be positive"), "{e}");
}
