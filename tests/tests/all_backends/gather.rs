//! `gather` (SPEC §3.11) and the lookups built on it (§4 `take`, `embedding`, `scatter_add`): the interpreter against
//! direct loops, the out-of-range rule, every backend against the interpreter (forward and gradients), finite
//! differences (f64) of gather and scatter_add, grad-of-grad, and clear errors.
//!
//! Tolerances: backends against the interpreter in f32 within 1e-5 absolute + 1e-4 relative (a lookup is exact; the
//! gradient sums at most a few dozen terms); finite differences at `F64_TOLERANCE`.

use kiln::ir::text::{parse, print};
use kiln::ir::{interp, Builder, DType, Graph, Tensor, TensorType};
use kiln_tests::differential::{check_every_backend, random_inputs, Tolerance};
use kiln_tests::fd::{check_gradients, F64_TOLERANCE};

const F32_TOLERANCE: Tolerance = Tolerance {
    atol: 1e-5,
    rtol: 1e-4,
};

fn f32s(dims: &[usize], f: impl Fn(usize) -> f32) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_f32(dims, (0..n).map(f).collect()).unwrap()
}

/// `gather` along axis 1 of a [2, 4] table, with indices in range, negative and past the end.
#[test]
fn gather_reads_along_the_axis_and_zero_out_of_range() {
    let mut b = Builder::new("gather");
    let x = b.data("x", TensorType::new(DType::F32, [2, 4])).unwrap();
    let i = b.data("i", TensorType::new(DType::I32, [2, 3])).unwrap();
    let y = b.gather(x, i, -1).unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    let x = f32s(&[2, 4], |k| 10.0 * (k / 4) as f32 + (k % 4) as f32 + 1.0);
    let i = Tensor::from_i32(&[2, 3], vec![3, 0, -1, 4, 1, i32::MIN]).unwrap();
    let out = interp::run(&graph, &[x.clone(), i.clone()]).unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[4.0, 1.0, 0.0, 0.0, 12.0, 0.0]);
    check_every_backend(&graph, &[x, i], F32_TOLERANCE);
}

/// Embedding lookup by a [B, T] id tensor, out-of-range ids included: rows of the table, zero rows for bad ids.
fn embedding_graph(dtype: DType, v: usize, d: usize, ids: [usize; 2]) -> Graph {
    let mut b = Builder::new("embedding");
    let table = b.param("table", TensorType::new(dtype, [v, d])).unwrap();
    let tokens = b.data("tokens", TensorType::new(DType::I32, ids)).unwrap();
    let y = b.embedding(table, tokens).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

fn tokens(ids: &[i32], dims: [usize; 2]) -> Tensor {
    Tensor::from_i32(&dims, ids.to_vec()).unwrap()
}

#[test]
fn embedding_rows_and_zero_rows_for_bad_ids() {
    let graph = embedding_graph(DType::F32, 5, 3, [2, 3]);
    let table = f32s(&[5, 3], |k| k as f32);
    let ids = tokens(&[4, 0, 7, -2, 2, 4], [2, 3]);
    let out = interp::run(&graph, &[table.clone(), ids.clone()]).unwrap();
    assert_eq!(out[0].ty().dims(), &[2, 3, 3]);
    let want = [
        12.0, 13.0, 14.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 6.0, 7.0, 8.0, 12.0, 13.0,
        14.0,
    ];
    assert_eq!(out[0].as_f32().unwrap(), &want);
    check_every_backend(&graph, &[table, ids], F32_TOLERANCE);
}

/// The table's gradient: Σ over the positions holding each id of the output's cotangent; rows no id selects (and
/// out-of-range ids) contribute exactly 0.
#[test]
fn embedding_gradient_is_a_scatter_add_on_every_backend() {
    let graph = embedding_graph(DType::F32, 6, 4, [3, 5]);
    let mut b = Builder::from_graph(graph.clone());
    let y = graph.outputs()[0].value;
    let r = b.data("r", graph.ty(y).clone()).unwrap();
    let yr = b.mul(y, r).unwrap();
    let loss = b.reduce_sum(yr, &[0, 1, 2], false).unwrap();
    b.output("loss", loss).unwrap();
    let grads = kiln::grad(&b.finish(), "loss", &["table"]).unwrap().graph;
    let mut inputs = random_inputs(&grads, 5);
    let ids = [0, 1, 1, 5, 9, 1, 0, 3, -1, 3, 5, 5, 0, 1, 3];
    inputs[1] = tokens(&ids, [3, 5]);
    let out = interp::run(&grads, &inputs).unwrap();
    let g = out.last().unwrap().to_f64_vec();
    let r = inputs[2].to_f64_vec();
    let mut want = vec![0.0; 6 * 4];
    for (p, &id) in ids.iter().enumerate() {
        if (0..6).contains(&id) {
            for k in 0..4 {
                want[id as usize * 4 + k] += r[p * 4 + k];
            }
        }
    }
    for (a, b) in g.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6, "{g:?} vs {want:?}");
    }
    // Rows 2 and 4 are never selected: exactly zero.
    assert!(g[8..12].iter().chain(&g[16..20]).all(|&v| v == 0.0));
    check_every_backend(&grads, &inputs, F32_TOLERANCE);
}

/// `take` along a middle axis by a rank-2 index, and a rank-0 index (one slab, dim dropped).
#[test]
fn take_places_the_index_dims_at_the_axis() {
    let mut b = Builder::new("take");
    let x = b
        .param("x", TensorType::new(DType::F32, [2, 4, 3]))
        .unwrap();
    let i = b.data("i", TensorType::new(DType::I32, [2, 2])).unwrap();
    let s = b.data("s", TensorType::new(DType::I32, [])).unwrap();
    let y = b.take(x, i, 1).unwrap();
    let z = b.take(x, s, 1).unwrap();
    b.output("y", y).unwrap();
    b.output("z", z).unwrap();
    let graph = b.finish();
    assert_eq!(graph.ty(y).dims(), &[2, 2, 2, 3]);
    assert_eq!(graph.ty(z).dims(), &[2, 3]);
    let x = f32s(&[2, 4, 3], |k| k as f32);
    let i = Tensor::from_i32(&[2, 2], vec![3, 0, 2, 2]).unwrap();
    let s = Tensor::from_i32(&[], vec![1]).unwrap();
    let out = interp::run(&graph, &[x.clone(), i.clone(), s.clone()]).unwrap();
    let xs = x.to_f64_vec();
    let iv = [3, 0, 2, 2];
    let mut want = Vec::new();
    for a in 0..2 {
        for &row in &iv {
            for c in 0..3 {
                want.push(xs[a * 12 + row * 3 + c]);
            }
        }
    }
    assert_eq!(out[0].to_f64_vec(), want);
    assert_eq!(out[1].to_f64_vec(), vec![3.0, 4.0, 5.0, 15.0, 16.0, 17.0]);
    check_every_backend(&graph, &[x, i, s], F32_TOLERANCE);
}

#[test]
fn scatter_add_sums_in_index_order_and_drops_bad_indices() {
    let mut b = Builder::new("scatter_add");
    let s = b.data("s", TensorType::new(DType::F32, [2, 4])).unwrap();
    let i = b.data("i", TensorType::new(DType::I32, [2, 4])).unwrap();
    let y = b.scatter_add(s, i, 1, 3).unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    let s = Tensor::from_f32(&[2, 4], vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]).unwrap();
    let i = Tensor::from_i32(&[2, 4], vec![2, 0, 2, 3, -1, 1, 1, 1]).unwrap();
    let out = interp::run(&graph, &[s.clone(), i.clone()]).unwrap();
    assert_eq!(out[0].as_f32().unwrap(), &[2.0, 0.0, 5.0, 0.0, 224.0, 0.0]);
    check_every_backend(&graph, &[s, i], F32_TOLERANCE);
}

/// f64 finite differences: gather (its VJP is scatter_add) and scatter_add (whose gradient is gather-like), and the
/// gradient of a function of the embedding gradient (grad-of-grad).
#[test]
fn finite_differences_of_gather_and_scatter_add() {
    let graph = embedding_graph(DType::F64, 5, 3, [2, 4]);
    let mut inputs = random_inputs(&graph, 3);
    inputs[1] = tokens(&[0, 4, 4, 2, 6, 1, 0, -3], [2, 4]);
    check_gradients(&graph, &inputs, F64_TOLERANCE, 4);

    let mut b = Builder::new("scatter");
    let s = b.param("s", TensorType::new(DType::F64, [3, 4])).unwrap();
    let i = b.data("i", TensorType::new(DType::I32, [3, 4])).unwrap();
    let y = b.scatter_add(s, i, 0, 5).unwrap();
    let y = b.mul(y, y).unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    let mut inputs = random_inputs(&graph, 5);
    inputs[1] = Tensor::from_i32(&[3, 4], vec![0, 4, 4, 2, 6, 1, 0, -3, 2, 2, 1, 0]).unwrap();
    check_gradients(&graph, &inputs, F64_TOLERANCE, 6);

    // y = Σ (d loss/d table)², loss = Σ tanh(embedding)·r: the gradient of a gradient through gather.
    let mut b = Builder::new("grad_of_grad");
    let table = b
        .param("table", TensorType::new(DType::F64, [4, 3]))
        .unwrap();
    let ids = b.data("ids", TensorType::new(DType::I32, [2, 3])).unwrap();
    let r = b.data("r", TensorType::new(DType::F64, [2, 3, 3])).unwrap();
    let e = b.embedding(table, ids).unwrap();
    let t = b.tanh(e).unwrap();
    let tr = b.mul(t, r).unwrap();
    let loss = b.reduce_sum(tr, &[0, 1, 2], false).unwrap();
    b.output("loss", loss).unwrap();
    let with_grad = kiln::grad(&b.finish(), "loss", &["table"]).unwrap().graph;
    let gt = with_grad.outputs().last().unwrap().value;
    let mut b = Builder::from_graph(with_grad);
    let sq = b.mul(gt, gt).unwrap();
    let y = b.reduce_sum(sq, &[0, 1], false).unwrap();
    let mut g = b.finish();
    g.clear_outputs();
    let mut b = Builder::from_graph(g);
    b.output("y", y).unwrap();
    let graph = b.finish();
    let mut inputs = random_inputs(&graph, 7);
    let ids_at = graph.inputs().position(|i| i.name == "ids").unwrap();
    inputs[ids_at] = tokens(&[3, 0, 3, 1, 1, 3], [2, 3]);
    check_gradients(&graph, &inputs, F64_TOLERANCE, 8);
}

#[test]
fn gather_round_trips_through_text() {
    let graph = embedding_graph(DType::F32, 5, 3, [2, 3]);
    let text = print(&graph);
    assert!(text.contains("gather{axis=0}"), "{text}");
    let back = parse(&text).unwrap();
    assert_eq!(print(&back), text);
}

#[test]
fn bad_lookups_are_clear_errors() {
    let mut b = Builder::new("bad");
    let x = b.data("x", TensorType::new(DType::F32, [4, 3])).unwrap();
    let f = b.data("f", TensorType::new(DType::F32, [2, 3])).unwrap();
    let i = b.data("i", TensorType::new(DType::I32, [2, 2])).unwrap();
    let e = b.gather(x, f, 0).unwrap_err().to_string();
    assert!(
        e.contains("gather's index must be i32") && e.contains("f32[2,3]"),
        "{e}"
    );
    let e = b.gather(x, i, 0).unwrap_err().to_string();
    assert!(
        e.contains("dims other than the axis must be equal")
            && e.contains("f32[4,3]")
            && e.contains("i32[2,2]"),
        "{e}"
    );
    let e = b.embedding(x, f).unwrap_err().to_string();
    assert!(e.contains("take") && e.contains("index must be i32"), "{e}");
    let e = b.scatter_add(x, i, 0, 3).unwrap_err().to_string();
    assert!(e.contains("scatter_add") && e.contains("same shape"), "{e}");
    let e = b.gather(x, i, 2).unwrap_err().to_string();
    assert!(e.contains("axis"), "{e}");
}
