//! The transformer composites (SPEC §4: `layer_norm`, `rms_norm`, `gelu`, `causal_mask`,
//! `scaled_dot_product_attention`, `multi_head_attention`, `token_cross_entropy`): the interpreter against plain f64
//! loops written from PyTorch's definitions, every backend against the interpreter (forward and gradient graphs),
//! stability at inputs of ±1e4, and the errors for inputs that do not fit. Whole GPT blocks, against an outside
//! oracle, are in `golden_nets::gpt_nets`.
//!
//! Tolerances: the loops and the interpreter in f64 agree to 1e-10 (the same maths in another order; the loops' erf
//! is a Taylor series, good to ~1e-11 for |x| < 4); the backends against the interpreter in f32 within 1e-5 absolute
//! + 1e-4 relative, as for convolutions (sums of ≤ 32 products reordered).

use kiln::ir::{
    interp, AttentionWeights, Builder, DType, GeluApprox, Graph, IrError, Role, Tensor, TensorType,
    Value,
};
use kiln_tests::differential::{
    check_every_backend, random_inputs_at_init_scale, with_gradients, Tolerance,
};

const F32_TOLERANCE: Tolerance = Tolerance {
    atol: 1e-5,
    rtol: 1e-4,
};

/// One input of a case: float inputs are params (so every gradient is checked), `labels` ones are i32 data.
struct Input {
    name: &'static str,
    dims: Vec<usize>,
    labels: bool,
}

fn float(name: &'static str, dims: &[usize]) -> Input {
    Input {
        name,
        dims: dims.to_vec(),
        labels: false,
    }
}

type Body = fn(&mut Builder, &[Value]) -> Result<Value, IrError>;
type Reference = Box<dyn Fn(&[Vec<f64>]) -> Vec<f64>>;

/// A composite applied to some inputs, with an independent f64 implementation of it.
struct Case {
    name: &'static str,
    inputs: Vec<Input>,
    body: Body,
    reference: Reference,
}

impl Case {
    fn graph(&self, dtype: DType) -> Graph {
        let mut b = Builder::new(self.name);
        let values: Vec<Value> = self
            .inputs
            .iter()
            .map(|i| {
                if i.labels {
                    b.data(i.name, TensorType::new(DType::I32, i.dims.clone()))
                } else {
                    b.input(i.name, Role::Param, TensorType::new(dtype, i.dims.clone()))
                }
                .unwrap()
            })
            .collect();
        let y = (self.body)(&mut b, &values)
            .unwrap_or_else(|e| panic!("{}: building failed: {e}", self.name));
        b.output("y", y).unwrap();
        b.finish()
    }
}

fn attention_weights(v: &[Value], biases: bool) -> AttentionWeights {
    let bias = |i: usize| biases.then(|| v[i]);
    AttentionWeights {
        q: (v[1], bias(5)),
        k: (v[2], bias(6)),
        v: (v[3], bias(7)),
        proj: (v[4], bias(8)),
    }
}

fn mha_inputs(x: &[usize], biases: bool) -> Vec<Input> {
    let d = *x.last().unwrap();
    let mut inputs = vec![
        float("x", x),
        float("wq", &[d, d]),
        float("wk", &[d, d]),
        float("wv", &[d, d]),
        float("wproj", &[d, d]),
    ];
    if biases {
        for name in ["bq", "bk", "bv", "bproj"] {
            inputs.push(float(name, &[d]));
        }
    }
    inputs
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "layer_norm_affine",
            inputs: vec![float("x", &[3, 4, 8]), float("w", &[8]), float("b", &[8])],
            body: |b, v| b.layer_norm(v[0], Some(v[1]), Some(v[2]), 1e-5),
            reference: Box::new(|v| layer_norm_ref(&v[0], 8, Some(&v[1]), Some(&v[2]), 1e-5)),
        },
        Case {
            name: "layer_norm_plain",
            inputs: vec![float("x", &[5, 6])],
            body: |b, v| b.layer_norm(v[0], None, None, 1e-3),
            reference: Box::new(|v| layer_norm_ref(&v[0], 6, None, None, 1e-3)),
        },
        Case {
            name: "rms_norm",
            inputs: vec![float("x", &[3, 4, 8]), float("w", &[8])],
            body: |b, v| b.rms_norm(v[0], Some(v[1]), 1e-6),
            reference: Box::new(|v| rms_norm_ref(&v[0], 8, &v[1], 1e-6)),
        },
        Case {
            name: "gelu_erf",
            inputs: vec![float("x", &[4, 9])],
            body: |b, v| b.gelu(v[0], GeluApprox::None),
            reference: Box::new(|v| {
                v[0].iter()
                    .map(|&x| 0.5 * x * (1.0 + erf_ref(x / 2f64.sqrt())))
                    .collect()
            }),
        },
        Case {
            name: "gelu_tanh",
            inputs: vec![float("x", &[4, 9])],
            body: |b, v| b.gelu(v[0], GeluApprox::Tanh),
            reference: Box::new(|v| {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                v[0].iter()
                    .map(|&x| 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh()))
                    .collect()
            }),
        },
        Case {
            // Fewer queries than keys: the mask is aligned to the last query (lower right).
            name: "sdpa_causal_t4_s6",
            inputs: vec![
                float("q", &[2, 2, 4, 5]),
                float("k", &[2, 2, 6, 5]),
                float("v", &[2, 2, 6, 3]),
            ],
            body: |b, v| b.scaled_dot_product_attention(v[0], v[1], v[2], true),
            reference: Box::new(|v| attention_ref(&v[0], &v[1], &v[2], [4, 6, 5, 3], true)),
        },
        Case {
            name: "sdpa_full",
            inputs: vec![
                float("q", &[3, 4, 5]),
                float("k", &[3, 4, 5]),
                float("v", &[3, 4, 2]),
            ],
            body: |b, v| b.scaled_dot_product_attention(v[0], v[1], v[2], false),
            reference: Box::new(|v| attention_ref(&v[0], &v[1], &v[2], [4, 4, 5, 2], false)),
        },
        Case {
            name: "mha_causal_2heads",
            inputs: mha_inputs(&[2, 5, 8], true),
            body: |b, v| b.multi_head_attention(v[0], &attention_weights(v, true), 2, true),
            reference: Box::new(|v| mha_ref(v, [2, 5, 8], 2, true)),
        },
        Case {
            name: "mha_4heads_no_bias",
            inputs: mha_inputs(&[2, 3, 8], false),
            body: |b, v| b.multi_head_attention(v[0], &attention_weights(v, false), 4, false),
            reference: Box::new(|v| mha_ref(v, [2, 3, 8], 4, false)),
        },
        Case {
            name: "token_cross_entropy",
            inputs: vec![
                float("logits", &[2, 5, 11]),
                Input {
                    name: "targets",
                    dims: vec![2, 5],
                    labels: true,
                },
            ],
            body: |b, v| b.token_cross_entropy(v[0], v[1]),
            reference: Box::new(|v| vec![token_cross_entropy_ref(&v[0], &v[1], 11)]),
        },
    ]
}

// ---- f64 references, written from PyTorch's definitions ----

/// `nn.LayerNorm` over rows of `d`: `(x − μ)/sqrt(σ² + eps)·w + b`, biased variance.
fn layer_norm_ref(x: &[f64], d: usize, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let mu = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + eps).sqrt();
            (0..d).map(move |i| {
                (row[i] - mu) * inv * w.map_or(1.0, |w| w[i]) + b.map_or(0.0, |b| b[i])
            })
        })
        .collect()
}

/// `nn.RMSNorm`: `x/sqrt(mean(x²) + eps)·w`.
fn rms_norm_ref(x: &[f64], d: usize, w: &[f64], eps: f64) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let inv = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / d as f64 + eps).sqrt();
            (0..d).map(move |i| row[i] * inv * w[i])
        })
        .collect()
}

/// erf by its Maclaurin series `2/√π Σ (−1)ⁿ x^(2n+1)/(n!(2n+1))`: independent of the `libm` the interpreter uses.
fn erf_ref(x: f64) -> f64 {
    assert!(x.abs() < 4.0, "the series loses too many digits beyond 4");
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// Attention over flattened batches: `q: [nb, T, d]`, `k: [nb, S, d]`, `v: [nb, S, dv]`, `[t, s, d, dv]`.
fn attention_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    [t, s, d, dv]: [usize; 4],
    causal: bool,
) -> Vec<f64> {
    let batches = q.len() / (t * d);
    let mut out = Vec::with_capacity(batches * t * dv);
    for n in 0..batches {
        for i in 0..t {
            // Query i is position i + (s − t) of the keys' sequence (the lower-right alignment).
            let visible = |u: usize| !causal || u <= i + s - t;
            let scores: Vec<f64> = (0..s)
                .map(|u| {
                    let dot: f64 = (0..d)
                        .map(|c| q[(n * t + i) * d + c] * k[(n * s + u) * d + c])
                        .sum();
                    if visible(u) {
                        dot / (d as f64).sqrt()
                    } else {
                        f64::NEG_INFINITY
                    }
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|z| (z - m).exp()).collect();
            let total: f64 = e.iter().sum();
            for c in 0..dv {
                let o: f64 = (0..s).map(|u| e[u] / total * v[(n * s + u) * dv + c]).sum();
                out.push(o);
            }
        }
    }
    out
}

/// `nn.Linear` on rows: `x: [rows, in]`, `w: [out, in]`.
fn linear_ref(x: &[f64], inputs: usize, w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let outputs = w.len() / inputs;
    x.chunks(inputs)
        .flat_map(|row| {
            (0..outputs).map(move |o| {
                let dot: f64 = (0..inputs).map(|i| row[i] * w[o * inputs + i]).sum();
                dot + b.map_or(0.0, |b| b[o])
            })
        })
        .collect()
}

/// Multi-head attention with the inputs in `mha_inputs`' order: head j takes features `j·D/H ..`.
fn mha_ref(v: &[Vec<f64>], [batch, t, d]: [usize; 3], heads: usize, causal: bool) -> Vec<f64> {
    let bias = |i: usize| v.get(i).map(Vec::as_slice);
    let (q, k, vv) = (
        linear_ref(&v[0], d, &v[1], bias(5)),
        linear_ref(&v[0], d, &v[2], bias(6)),
        linear_ref(&v[0], d, &v[3], bias(7)),
    );
    let dh = d / heads;
    // [B, T, D] → [B, H, T, D/H]
    let split = |z: &[f64]| -> Vec<f64> {
        let mut out = Vec::with_capacity(z.len());
        for n in 0..batch {
            for j in 0..heads {
                for i in 0..t {
                    out.extend_from_slice(&z[(n * t + i) * d + j * dh..][..dh]);
                }
            }
        }
        out
    };
    let o = attention_ref(&split(&q), &split(&k), &split(&vv), [t, t, dh, dh], causal);
    let mut joined = vec![0.0; batch * t * d];
    for n in 0..batch {
        for j in 0..heads {
            for i in 0..t {
                let from = ((n * heads + j) * t + i) * dh;
                joined[(n * t + i) * d + j * dh..][..dh].copy_from_slice(&o[from..from + dh]);
            }
        }
    }
    linear_ref(&joined, d, &v[4], bias(8))
}

/// `F.cross_entropy` of rows of `classes` logits, mean over the rows.
fn token_cross_entropy_ref(logits: &[f64], targets: &[f64], classes: usize) -> f64 {
    let rows = targets.len();
    let total: f64 = logits
        .chunks(classes)
        .zip(targets)
        .map(|(z, &target)| {
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            lse - z[target as usize]
        })
        .sum();
    total / rows as f64
}

fn values(inputs: &[Tensor]) -> Vec<Vec<f64>> {
    inputs.iter().map(Tensor::to_f64_vec).collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite() && (g - w).abs() <= atol + rtol * w.abs(),
            "{what} element {i}: got {g}, reference {w}"
        );
    }
}

#[test]
fn interpreter_matches_loop_references() {
    for case in cases() {
        let graph = case.graph(DType::F64);
        let inputs = random_inputs_at_init_scale(&graph, 1);
        let got = interp::run(&graph, &inputs).unwrap()[0].to_f64_vec();
        let want = (case.reference)(&values(&inputs));
        assert_close(case.name, &got, &want, 1e-10, 1e-10);
    }
}

#[test]
fn causal_mask_is_lower_right_triangular() {
    let mut b = Builder::new("mask");
    let square = b.causal_mask(3, 3).unwrap();
    let wide = b.causal_mask(2, 4).unwrap();
    b.output("square", square).unwrap();
    b.output("wide", wide).unwrap();
    let out = interp::run(&b.finish(), &[]).unwrap();
    assert_eq!(out[0].ty(), &TensorType::new(DType::Bool, [3, 3]));
    let bits = |t: &Tensor| -> Vec<u8> { t.to_f64_vec().iter().map(|&v| v as u8).collect() };
    assert_eq!(bits(&out[0]), [1, 0, 0, 1, 1, 0, 1, 1, 1]);
    assert_eq!(bits(&out[1]), [1, 1, 1, 0, 1, 1, 1, 1]);
}

#[test]
fn token_cross_entropy_of_no_positions_is_zero() {
    // SPEC §4: the mean over N = 0 positions is 0 (`mean`'s factor for an empty reduction is 1), not NaN.
    let mut b = Builder::new("empty");
    let logits = b
        .param("logits", TensorType::new(DType::F32, [2, 0, 5]))
        .unwrap();
    let targets = b
        .data("targets", TensorType::new(DType::I32, [2, 0]))
        .unwrap();
    let loss = b.token_cross_entropy(logits, targets).unwrap();
    b.output("loss", loss).unwrap();
    let inputs = [
        Tensor::from_f64_values(TensorType::new(DType::F32, [2, 0, 5]), &[]).unwrap(),
        Tensor::from_f64_values(TensorType::new(DType::I32, [2, 0]), &[]).unwrap(),
    ];
    let out = interp::run(&b.finish(), &inputs).unwrap();
    assert_eq!(out[0].to_f64_vec(), [0.0]);
}

#[test]
fn every_backend_matches_the_interpreter() {
    for case in cases() {
        let graph = case.graph(DType::F32);
        check_every_backend(
            &graph,
            &random_inputs_at_init_scale(&graph, 2),
            F32_TOLERANCE,
        );
        let grads = with_gradients(&graph, &[]);
        check_every_backend(
            &grads,
            &random_inputs_at_init_scale(&grads, 3),
            F32_TOLERANCE,
        );
    }
}

// ---- stability at ±1e4 ----

/// `dims`-shaped f32 values `offset + scale·N(0, 1)` (seeded), rounded to f32.
fn scaled_f32(dims: &[usize], offset: f64, scale: f64, seed: u64) -> Tensor {
    let ty = TensorType::new(DType::F32, dims.to_vec());
    let z = kiln_tests::fd::random_tensor(&ty, &mut kiln_tests::fd::rng(seed)).to_f64_vec();
    let v: Vec<f64> = z.iter().map(|z| offset + scale * z).collect();
    Tensor::from_f64_values(ty, &v).unwrap()
}

/// The largest `|got − want|` over every element, after checking that `got` is finite.
fn worst_error(what: &str, got: &[f64], want: &[f64]) -> f64 {
    assert!(
        got.iter().all(|g| g.is_finite()),
        "{what}: non-finite output"
    );
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn layer_norm_is_stable_at_1e4() {
    let mut b = Builder::new("layer_norm_1e4");
    let x = b.param("x", TensorType::new(DType::F32, [4, 16])).unwrap();
    let w = b.param("w", TensorType::new(DType::F32, [16])).unwrap();
    let bias = b.param("b", TensorType::new(DType::F32, [16])).unwrap();
    let y = b.layer_norm(x, Some(w), Some(bias), 1e-5).unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    // Values of ±1e4, and values near 1e4 with a spread of 10, where `E[x²] − E[x]²` would cancel to nothing in f32.
    for (offset, scale, allowed) in [(0.0, 1e4, 1e-5), (1e4, 10.0, 3e-4)] {
        let inputs = vec![
            scaled_f32(&[4, 16], offset, scale, 6),
            scaled_f32(&[16], 0.0, 1.0, 7),
            scaled_f32(&[16], 0.0, 1.0, 8),
        ];
        let v = values(&inputs);
        let want = layer_norm_ref(&v[0], 16, Some(&v[1]), Some(&v[2]), 1e-5);
        let got = interp::run(&graph, &inputs).unwrap()[0].to_f64_vec();
        let worst = worst_error("layer_norm at 1e4", &got, &want);
        eprintln!("layer_norm at offset {offset}, scale {scale}: worst error {worst:e}");
        assert!(worst <= allowed, "offset {offset}: {worst:e} > {allowed:e}");
        let tol = Tolerance {
            atol: allowed,
            rtol: 1e-4,
        };
        check_every_backend(&graph, &inputs, tol);
    }
}

#[test]
fn attention_is_stable_at_1e4() {
    // Scores of ~1e8: the softmax saturates to the best key; without the max subtracted exp would overflow.
    let mut b = Builder::new("sdpa_1e4");
    let ty = |dims: [usize; 3]| TensorType::new(DType::F32, dims);
    let q = b.param("q", ty([2, 5, 4])).unwrap();
    let k = b.param("k", ty([2, 5, 4])).unwrap();
    let v = b.param("v", ty([2, 5, 3])).unwrap();
    let y = b.scaled_dot_product_attention(q, k, v, true).unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    let inputs = vec![
        scaled_f32(&[2, 5, 4], 0.0, 1e4, 9),
        scaled_f32(&[2, 5, 4], 0.0, 1e4, 10),
        scaled_f32(&[2, 5, 3], 0.0, 1e4, 11),
    ];
    let vals = values(&inputs);
    let want = attention_ref(&vals[0], &vals[1], &vals[2], [5, 5, 4, 3], true);
    let got = interp::run(&graph, &inputs).unwrap()[0].to_f64_vec();
    let worst = worst_error("attention at 1e4", &got, &want);
    eprintln!("attention at 1e4: worst error {worst:e}");
    // 1e-4 of the values' scale.
    assert!(worst <= 1.0, "{worst:e}");
    let tol = Tolerance {
        atol: 1.0,
        rtol: 1e-4,
    };
    check_every_backend(&graph, &inputs, tol);

    // A pre-LN attention layer fed ±1e4: the layer norm brings it back to unit scale.
    let mut b = Builder::new("ln_mha_1e4");
    let x = b
        .param("x", TensorType::new(DType::F32, [2, 5, 8]))
        .unwrap();
    let mut mha = vec![x];
    for name in ["wq", "wk", "wv", "wproj"] {
        mha.push(b.param(name, TensorType::new(DType::F32, [8, 8])).unwrap());
    }
    let h = b.layer_norm(x, None, None, 1e-5).unwrap();
    let y = b
        .multi_head_attention(h, &attention_weights(&mha, false), 2, true)
        .unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    let mut inputs = random_inputs_at_init_scale(&graph, 12);
    inputs[0] = scaled_f32(&[2, 5, 8], 0.0, 1e4, 13);
    let mut vals = values(&inputs);
    vals[0] = layer_norm_ref(&vals[0], 8, None, None, 1e-5);
    let want = mha_ref(&vals, [2, 5, 8], 2, true);
    let got = interp::run(&graph, &inputs).unwrap()[0].to_f64_vec();
    let worst = worst_error("layer_norm + attention at 1e4", &got, &want);
    eprintln!("layer_norm + attention at 1e4: worst error {worst:e}");
    assert!(worst <= 1e-5, "{worst:e}");
    check_every_backend(&graph, &inputs, F32_TOLERANCE);
}

// ---- inputs that do not fit ----

fn error_of(f: impl FnOnce(&mut Builder) -> Result<Value, IrError>) -> String {
    let mut b = Builder::new("bad");
    f(&mut b).expect_err("the call should fail").to_string()
}

fn f32_input(b: &mut Builder, name: &str, dims: &[usize]) -> Value {
    b.param(name, TensorType::new(DType::F32, dims.to_vec()))
        .unwrap()
}

/// `x: [2, 5, 8]` and four `[8, 8]` weights, the q weight replaced by `wq_dims`.
fn mha_with(b: &mut Builder, wq_dims: &[usize], heads: usize) -> Result<Value, IrError> {
    let x = f32_input(b, "x", &[2, 5, 8]);
    let mut v = vec![x, f32_input(b, "wq", wq_dims)];
    for name in ["wk", "wv", "wproj"] {
        v.push(f32_input(b, name, &[8, 8]));
    }
    b.multi_head_attention(x, &attention_weights(&v, false), heads, true)
}

#[test]
fn bad_inputs_are_clear_errors() {
    let e = error_of(|b| mha_with(b, &[8, 8], 3));
    assert_eq!(
        e,
        "multi_head_attention: 3 heads do not divide the model width 8"
    );
    let e = error_of(|b| mha_with(b, &[8, 8], 0));
    assert_eq!(
        e,
        "multi_head_attention: 0 heads do not divide the model width 8"
    );
    let e = error_of(|b| mha_with(b, &[8, 4], 2));
    assert_eq!(
        e,
        "multi_head_attention: q weight f32[8,4] does not fit input f32[2,5,8] (expected f32[8,8])"
    );
    let e = error_of(|b| {
        let x = f32_input(b, "x", &[2, 5, 8]);
        let w = f32_input(b, "w", &[7]);
        b.layer_norm(x, Some(w), None, 1e-5)
    });
    assert_eq!(
        e,
        "layer_norm: weight f32[7] does not fit the last dim of f32[2,5,8] (expected f32[8])"
    );
    for eps in [0.0, -1.0, f64::NAN] {
        let e = error_of(|b| {
            let x = f32_input(b, "x", &[2, 8]);
            b.layer_norm(x, None, None, eps)
        });
        assert!(
            e.starts_with("layer_norm: eps") && e.ends_with("must be positive"),
            "{e}"
        );
    }
    let e = error_of(|b| {
        let x = b.data("x", TensorType::new(DType::I32, [2, 8])).unwrap();
        b.rms_norm(x, None, 1e-5)
    });
    assert_eq!(
        e,
        "rms_norm: input i32[2,8] must be a float [..., D] tensor"
    );
    let e = error_of(|b| {
        let q = f32_input(b, "q", &[2, 4, 5]);
        let k = f32_input(b, "k", &[2, 6, 4]);
        let v = f32_input(b, "v", &[2, 6, 3]);
        b.scaled_dot_product_attention(q, k, v, false)
    });
    assert!(
        e.starts_with("scaled_dot_product_attention: q f32[2,4,5], k f32[2,6,4] and v f32[2,6,3]"),
        "{e}"
    );
    let e = error_of(|b| {
        let logits = f32_input(b, "logits", &[2, 5, 7]);
        let targets = b.data("t", TensorType::new(DType::I32, [2, 4])).unwrap();
        b.token_cross_entropy(logits, targets)
    });
    assert!(
        e.starts_with("token_cross_entropy:") && e.ends_with("got f32[2,5,7] and i32[2,4]"),
        "{e}"
    );
    let e = error_of(|b| {
        let logits = f32_input(b, "logits", &[2, 5, 7]);
        let targets = f32_input(b, "t", &[2, 5]);
        b.token_cross_entropy(logits, targets)
    });
    assert!(e.ends_with("got f32[2,5,7] and f32[2,5]"), "{e}");
    let e = error_of(|b| {
        let x = b.data("x", TensorType::new(DType::I32, [3])).unwrap();
        b.gelu(x, GeluApprox::None)
    });
    assert_eq!(e, "gelu: input i32[3] must be float");
}
