//! The transformer composites' gradients (layer and RMS norm, both GELUs, attention with and without the causal
//! mask, multi-head attention, the per-token cross-entropy) against central finite differences, in f64 on the
//! interpreter, and a gradient of a gradient through causal multi-head attention.
//! Tolerance: `kiln_tests::fd::F64_TOLERANCE` (rtol 1e-6, atol 1e-8, h = 1e-6·max(1, |x|)).

use kiln::ir::{AttentionWeights, Builder, DType, GeluApprox, Graph, IrError, TensorType, Value};
use kiln_tests::differential::{random_inputs, with_gradients};
use kiln_tests::fd::{check_gradients, F64_TOLERANCE};

/// A graph with an f64 param per `(name, dims)` and the output `y = body(params)`.
fn graph(
    name: &str,
    params: &[(&str, &[usize])],
    body: impl FnOnce(&mut Builder, &[Value]) -> Result<Value, IrError>,
) -> Graph {
    let mut b = Builder::new(name);
    let values: Vec<Value> = params
        .iter()
        .map(|&(n, dims)| b.param(n, TensorType::new(DType::F64, dims)).unwrap())
        .collect();
    let y = body(&mut b, &values).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

/// Checks every param's gradient at seeded N(0, 1) inputs (i32 inputs in `[0, 10)`).
fn check(graph: &Graph, seed: u64) {
    let report = check_gradients(graph, &random_inputs(graph, seed), F64_TOLERANCE, seed);
    assert!(report.checked > 0, "{}: nothing checked", graph.name);
}

#[test]
fn norms() {
    let g = graph(
        "layer_norm",
        &[("x", &[3, 6]), ("w", &[6]), ("b", &[6])],
        |b, v| b.layer_norm(v[0], Some(v[1]), Some(v[2]), 1e-5),
    );
    check(&g, 1);
    let g = graph("layer_norm_plain", &[("x", &[2, 3, 5])], |b, v| {
        b.layer_norm(v[0], None, None, 1e-3)
    });
    check(&g, 2);
    let g = graph("rms_norm", &[("x", &[3, 6]), ("w", &[6])], |b, v| {
        b.rms_norm(v[0], Some(v[1]), 1e-6)
    });
    check(&g, 3);
}

#[test]
fn gelus() {
    for (approx, seed) in [(GeluApprox::None, 4), (GeluApprox::Tanh, 5)] {
        let g = graph("gelu", &[("x", &[3, 5])], |b, v| b.gelu(v[0], approx));
        check(&g, seed);
    }
}

#[test]
fn scaled_dot_product_attention() {
    // Causal with fewer queries than keys; and unmasked with k and v broadcast over q's batch.
    let g = graph(
        "sdpa_causal",
        &[("q", &[2, 3, 4]), ("k", &[2, 5, 4]), ("v", &[2, 5, 3])],
        |b, v| b.scaled_dot_product_attention(v[0], v[1], v[2], true),
    );
    check(&g, 6);
    let g = graph(
        "sdpa_broadcast",
        &[("q", &[2, 3, 4]), ("k", &[5, 4]), ("v", &[5, 3])],
        |b, v| b.scaled_dot_product_attention(v[0], v[1], v[2], false),
    );
    check(&g, 7);
}

/// Causal multi-head attention over `x: [batch, t, d]` with biases, every input a param.
fn attention_graph(name: &str, [batch, t, d]: [usize; 3], heads: usize) -> Graph {
    let (x, w, bias) = ([batch, t, d], [d, d], [d]);
    let params: [(&str, &[usize]); 9] = [
        ("x", &x),
        ("wq", &w),
        ("wk", &w),
        ("wv", &w),
        ("wproj", &w),
        ("bq", &bias),
        ("bk", &bias),
        ("bv", &bias),
        ("bproj", &bias),
    ];
    graph(name, &params, |b, v| {
        let weights = AttentionWeights {
            q: (v[1], Some(v[5])),
            k: (v[2], Some(v[6])),
            v: (v[3], Some(v[7])),
            proj: (v[4], Some(v[8])),
        };
        b.multi_head_attention(v[0], &weights, heads, true)
    })
}

#[test]
fn causal_multi_head_attention_wrt_x_and_every_weight() {
    check(&attention_graph("mha", [2, 4, 8], 2), 8);
}

#[test]
fn token_cross_entropy() {
    let mut b = Builder::new("token_cross_entropy");
    let logits = b
        .param("logits", TensorType::new(DType::F64, [2, 3, 10]))
        .unwrap();
    let targets = b
        .data("targets", TensorType::new(DType::I32, [2, 3]))
        .unwrap();
    let y = b.token_cross_entropy(logits, targets).unwrap();
    b.output("y", y).unwrap();
    check(&b.finish(), 9);
}

#[test]
fn grad_of_grad_through_attention() {
    // y = Σ (∂L/∂x)² + Σ (∂L/∂W_v)² for L = Σ mha(x)·r: its gradient needs the second derivatives of the softmax,
    // the causal select and both matmuls.
    let first = with_gradients(&attention_graph("mha_grad", [1, 3, 4], 2), &[]);
    let gradient = |name: &str| {
        first
            .outputs()
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no output {name}"))
            .value
    };
    let (gx, gwv) = (gradient("grad.x"), gradient("grad.wv"));
    let mut stripped = first.clone();
    stripped.clear_outputs();
    let mut b = Builder::from_graph(stripped);
    let (sx, sw) = (sum_of_squares(&mut b, gx), sum_of_squares(&mut b, gwv));
    let y = b.add(sx, sw).unwrap();
    b.output("y", y).unwrap();
    check(&b.finish(), 10);
}

fn sum_of_squares(b: &mut Builder, v: Value) -> Value {
    let sq = b.mul(v, v).unwrap();
    b.sum_all(sq).unwrap()
}
