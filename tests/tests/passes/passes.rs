//! Graph passes: each pass on the smallest graph that shows a rule (exact node counts and ops afterwards), and the
//! default pipeline on every `kiln::zoo` model, its gradient graph and its training steps, whose interpreter outputs
//! must not change.
//!
//! "Unchanged" means bit-for-bit, except that a zero may change sign: `simplify` applies `x + 0 → x` (see its module
//! doc), which turns `-0.0 + 0.0 = +0.0` into `-0.0`. Every other rewrite is exact on the interpreter: identities,
//! movement chains, `(A B)ᵀ = Bᵀ Aᵀ` (same products summed in the same order), CSE and DCE (nothing recomputed
//! differently), constant folding (computed by the interpreter itself).

use kiln::ir::{
    interp, text, BinaryOp, Builder, CmpDir, DType, Graph, Literal, NodeId, Op, Shape, Tensor,
    TensorType,
};
use kiln::passes::{const_fold, cse, dce, simplify, PassFn, PassManager, PassStats};
use kiln::zoo;
use kiln::{training_step, Optimizer, Sgd};
use kiln_tests::fd::{random_tensor, rng};
use kiln_tests::graph_gen::{self, arb_graph};
use proptest::prelude::*;

// ---- helpers ----

/// `pass` then `dce`, so counts show what the pass made dead.
fn after(pass: PassFn, graph: &Graph) -> Graph {
    let g = pass(graph).expect("the pass succeeds");
    kiln::ir::verify(&g).expect("the pass's result verifies");
    dce::run(&g).expect("dce succeeds")
}

fn mnemonics(graph: &Graph) -> Vec<&'static str> {
    graph.nodes().iter().map(|n| n.op.mnemonic()).collect()
}

fn out(graph: &Graph, name: &str) -> NodeId {
    graph
        .output(name)
        .unwrap_or_else(|| panic!("no output {name}"))
        .value
}

fn input(graph: &Graph, name: &str) -> NodeId {
    graph
        .input(name)
        .unwrap_or_else(|| panic!("no input {name}"))
        .id
}

fn f32s(dims: &[usize]) -> TensorType {
    TensorType::f32(dims)
}

/// Equal elements, bit for bit, but `-0.0 == +0.0` and any NaN equals any NaN.
fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0) || (a.is_nan() && b.is_nan())
}

/// Runs both graphs on the same random inputs and checks every output is the same (see [`same_value`]).
fn assert_same_outputs(original: &Graph, optimized: &Graph, seed: u64) {
    let names = |g: &Graph| {
        g.inputs()
            .map(|i| (i.name.to_string(), i.role, i.ty.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(original),
        names(optimized),
        "{}: the inputs changed",
        original.name
    );
    assert_eq!(original.outputs().len(), optimized.outputs().len());
    for (a, b) in original.outputs().iter().zip(optimized.outputs()) {
        assert_eq!(
            (&a.name, &a.aliases),
            (&b.name, &b.aliases),
            "{}: the outputs changed",
            original.name
        );
    }
    let mut r = rng(seed);
    let inputs: Vec<Tensor> = original
        .inputs()
        .map(|i| random_tensor(i.ty, &mut r))
        .collect();
    let expected = interp::run(original, &inputs).expect("the original runs");
    let actual = interp::run(optimized, &inputs).expect("the optimized graph runs");
    for ((o, e), a) in original.outputs().iter().zip(&expected).zip(&actual) {
        assert_eq!(
            e.ty(),
            a.ty(),
            "{}: output {} changed type",
            original.name,
            o.name
        );
        let (ev, av) = (e.to_f64_vec(), a.to_f64_vec());
        if let Some(i) = (0..ev.len()).find(|&i| !same_value(ev[i], av[i])) {
            panic!(
                "{}: output {} element {i}: {} before, {} after optimizing",
                original.name, o.name, ev[i], av[i]
            );
        }
    }
}

// ---- dce ----

#[test]
fn dce_drops_unreachable_nodes_but_keeps_unused_inputs() {
    let mut b = Builder::new("dce");
    let x = b.data("x", f32s(&[3])).unwrap();
    b.data("unused", f32s(&[2])).unwrap();
    let dead = b.exp(x).unwrap();
    b.neg(dead).unwrap();
    let live = b.tanh(x).unwrap();
    b.name(live, "t").unwrap();
    b.output("y", live).unwrap();
    let g = dce::run(&b.finish()).unwrap();
    assert_eq!(mnemonics(&g), ["input", "input", "tanh"]);
    assert_eq!(
        g.inputs().map(|i| i.name).collect::<Vec<_>>(),
        ["x", "unused"]
    );
    assert_eq!(g.label(out(&g, "y")), "t", "names survive");
}

#[test]
fn dce_keeps_aliases_and_outputs_that_are_inputs() {
    let mut b = Builder::new("dce_alias");
    let p = b.param("p", f32s(&[2])).unwrap();
    let x = b.data("x", f32s(&[2])).unwrap();
    b.exp(x).unwrap();
    b.output_aliasing("new.p", p, "p").unwrap();
    b.output("x_again", x).unwrap();
    let g = dce::run(&b.finish()).unwrap();
    assert_eq!(mnemonics(&g), ["input", "input"]);
    assert_eq!(g.output("new.p").unwrap().aliases.as_deref(), Some("p"));
    assert_eq!(out(&g, "x_again"), input(&g, "x"));
}

// ---- cse ----

#[test]
fn cse_merges_equal_nodes_but_not_inputs() {
    let mut b = Builder::new("cse");
    let x = b.data("x", f32s(&[4])).unwrap();
    let x2 = b.data("x2", f32s(&[4])).unwrap();
    let e1 = b.exp(x).unwrap();
    let e2 = b.exp(x).unwrap();
    let s1 = b.add(e1, x2).unwrap();
    let s2 = b.add(e2, x2).unwrap();
    let y = b.mul(s1, s2).unwrap();
    b.output("y", y).unwrap();
    let original = b.finish();
    let g = after(cse::run, &original);
    assert_eq!(mnemonics(&g), ["input", "input", "exp", "add", "mul"]);
    let mul = g.node(out(&g, "y"));
    assert_eq!(
        mul.operands[0], mul.operands[1],
        "both factors are the one add"
    );
    assert_same_outputs(&original, &g, 1);
}

#[test]
fn cse_merges_constants_by_bit_pattern() {
    let mut b = Builder::new("cse_constants");
    let ty = f32s(&[2]);
    let ones = [
        b.full(ty.clone(), 1.0).unwrap(),
        b.full(ty.clone(), 1.0).unwrap(),
    ];
    let zeros = [
        b.full(ty.clone(), 0.0).unwrap(),
        b.full(ty.clone(), -0.0).unwrap(),
    ];
    let nans = [
        b.full(ty.clone(), f64::NAN).unwrap(),
        b.full(ty.clone(), f64::NAN).unwrap(),
    ];
    let dense = b.literal(ty.clone(), vec![1.0, 1.0]).unwrap();
    for (i, v) in ones
        .iter()
        .chain(&zeros)
        .chain(&nans)
        .chain([&dense])
        .enumerate()
    {
        b.output(&format!("c{i}"), *v).unwrap();
    }
    let g = after(cse::run, &b.finish());
    // 1.0 and 1.0 merge; +0.0 and -0.0 do not; NaN and NaN do; a dense literal is not a splat.
    assert_eq!(g.len(), 5);
    assert_eq!(out(&g, "c0"), out(&g, "c1"));
    assert_ne!(out(&g, "c2"), out(&g, "c3"));
    assert_eq!(out(&g, "c4"), out(&g, "c5"));
    assert_ne!(out(&g, "c0"), out(&g, "c6"));
}

#[test]
fn cse_merges_whole_chains_in_one_run() {
    let mut b = Builder::new("cse_chain");
    let x = b.data("x", f32s(&[2, 3])).unwrap();
    let mut ys = Vec::new();
    for _ in 0..3 {
        let t = b.transpose(x, &[1, 0]).unwrap();
        let e = b.exp(t).unwrap();
        ys.push(b.reduce_sum(e, &[0], false).unwrap());
    }
    let s = b.add(ys[0], ys[1]).unwrap();
    let s = b.add(s, ys[2]).unwrap();
    b.output("y", s).unwrap();
    let g = after(cse::run, &b.finish());
    assert_eq!(
        mnemonics(&g),
        ["input", "transpose", "exp", "reduce_sum", "add", "add"]
    );
}

// ---- const_fold ----

#[test]
fn const_fold_keeps_broadcasts_and_movements_of_splats_splat() {
    let mut b = Builder::new("fold_splat");
    let c = b.scalar(2.0, DType::F32).unwrap();
    let big = b.broadcast(c, &[1000, 1000]).unwrap();
    let r = b.reshape(big, &[1_000_000]).unwrap();
    let s = b.slice(r, &[10], &[20]).unwrap();
    b.output("big", big).unwrap();
    b.output("s", s).unwrap();
    let g = after(const_fold::run, &b.finish());
    assert_eq!(mnemonics(&g), ["constant", "constant"]);
    for (name, dims) in [("big", vec![1000, 1000]), ("s", vec![10])] {
        let node = g.node(out(&g, name));
        assert_eq!(
            node.op,
            Op::Constant {
                ty: f32s(&dims),
                value: Literal::Splat(2.0)
            }
        );
    }
}

#[test]
fn const_fold_evaluates_elementwise_ops_of_splats_once() {
    let mut b = Builder::new("fold_elementwise");
    let ty = f32s(&[512, 512]);
    let two = b.full(ty.clone(), 2.0).unwrap();
    let e = b.exp(two).unwrap();
    let three = b.full(ty.clone(), 3.0).unwrap();
    let s = b.sub(e, three).unwrap();
    let cmp = b.compare(CmpDir::Gt, s, three).unwrap();
    b.output("s", s).unwrap();
    b.output("cmp", cmp).unwrap();
    let original = b.finish();
    let g = after(const_fold::run, &original);
    assert_eq!(mnemonics(&g), ["constant", "constant"]);
    let value = |name| match &g.node(out(&g, name)).op {
        Op::Constant {
            value: Literal::Splat(v),
            ..
        } => *v,
        other => panic!("{name} is {other:?}, not a splat"),
    };
    assert_eq!(value("s"), (2f32.exp() - 3.0) as f64);
    assert_eq!(value("cmp"), 1.0);
    assert_same_outputs(&original, &g, 2);
}

#[test]
fn const_fold_folds_small_results_dense_and_leaves_large_ones() {
    let mut b = Builder::new("fold_dense");
    let small = b.iota(TensorType::i32(&[2, 3]), 1).unwrap();
    let one = b.full(TensorType::i32(&[2, 3]), 1.0).unwrap();
    let y = b.add(small, one).unwrap();
    let large = b.iota(f32s(&[2000]), 0).unwrap();
    let z = b.mul_scalar(large, 2.0).unwrap();
    b.output("y", y).unwrap();
    b.output("z", z).unwrap();
    b.output("iota", small).unwrap();
    let original = b.finish();
    let g = after(const_fold::run, &original);
    assert_eq!(
        g.node(out(&g, "y")).op,
        Op::Constant {
            ty: TensorType::i32(&[2, 3]),
            value: Literal::Dense(vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
        }
    );
    assert_eq!(
        g.node(out(&g, "z")).op.mnemonic(),
        "mul",
        "2000 elements is too many to fold dense"
    );
    assert_eq!(
        g.node(out(&g, "iota")).op.mnemonic(),
        "iota",
        "an iota alone stays an iota"
    );
    assert_same_outputs(&original, &g, 3);
}

#[test]
fn const_fold_reductions_and_matmuls_of_splats_stay_splat() {
    let mut b = Builder::new("fold_reduce");
    let ones = b.full(f32s(&[128, 784]), 1.0).unwrap();
    let rows = b.reduce_sum(ones, &[1], false).unwrap();
    let halves = b.full(f32s(&[784, 300]), 0.5).unwrap();
    let mm = b.matmul(ones, halves).unwrap();
    let mx = b.reduce_max(halves, &[0], true).unwrap();
    b.output("rows", rows).unwrap();
    b.output("mm", mm).unwrap();
    b.output("mx", mx).unwrap();
    let original = b.finish();
    let g = after(const_fold::run, &original);
    assert_eq!(mnemonics(&g), ["constant", "constant", "constant"]);
    assert_eq!(
        g.node(out(&g, "rows")).op,
        Op::Constant {
            ty: f32s(&[128]),
            value: Literal::Splat(784.0)
        }
    );
    assert_eq!(
        g.node(out(&g, "mm")).op,
        Op::Constant {
            ty: f32s(&[128, 300]),
            value: Literal::Splat(392.0)
        }
    );
    assert_eq!(
        g.node(out(&g, "mx")).op,
        Op::Constant {
            ty: f32s(&[1, 300]),
            value: Literal::Splat(0.5)
        }
    );
    assert_same_outputs(&original, &g, 4);
}

#[test]
fn const_fold_leaves_nodes_with_an_input_operand() {
    let mut b = Builder::new("fold_input");
    let x = b.data("x", f32s(&[3])).unwrap();
    let y = b.add_scalar(x, 1.0).unwrap();
    b.output("y", y).unwrap();
    let original = b.finish();
    assert_eq!(const_fold::run(&original).unwrap(), original);
}

// ---- simplify ----

/// One binary op `x (op) c` or `c (op) x` with a splat `c`; returns the graph.
fn with_constant(op: BinaryOp, c: f64, constant_first: bool) -> Graph {
    let mut b = Builder::new("rule");
    let x = b.data("x", f32s(&[2, 3])).unwrap();
    let c = b.full(f32s(&[2, 3]), c).unwrap();
    let operands = if constant_first { [c, x] } else { [x, c] };
    let y = b.op(Op::Binary(op), &operands).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

#[test]
fn simplify_removes_arithmetic_identities() {
    use BinaryOp::*;
    for (op, c, constant_first) in [
        (Mul, 1.0, false), // x * 1 == x
        (Mul, 1.0, true),  // 1 * x == x
        (Add, 0.0, false), // x + 0 == x
        (Add, 0.0, true),  // 0 + x == x
        (Add, -0.0, false),
        (Sub, 0.0, false), // x - 0 == x
        (Div, 1.0, false), // x / 1 == x
    ] {
        let original = with_constant(op, c, constant_first);
        let g = after(simplify::run, &original);
        assert_eq!(
            mnemonics(&g),
            ["input"],
            "{op:?} with {c} first={constant_first}"
        );
        assert_eq!(out(&g, "y"), input(&g, "x"));
        assert_same_outputs(&original, &g, 5);
    }
}

#[test]
fn simplify_keeps_rewrites_that_are_not_exact() {
    use BinaryOp::*;
    for (op, c, constant_first) in [
        (Mul, 0.0, false), // x * 0 is NaN for x = inf or NaN
        (Sub, 0.0, true),  // 0 - x is -x, not x
        (Div, 1.0, true),  // 1 / x
        (Mul, 2.0, false),
        (Pow, 1.0, false), // pow(x, 1) == x, but pow is not required to be exact; left alone
    ] {
        let original = with_constant(op, c, constant_first);
        let g = after(simplify::run, &original);
        assert_eq!(
            mnemonics(&g),
            ["input", "constant", op.name()],
            "{op:?} with {c} first={constant_first}"
        );
    }
}

#[test]
fn simplify_sees_ones_through_broadcasts() {
    let mut b = Builder::new("rule");
    let x = b.data("x", f32s(&[2, 3])).unwrap();
    let one = b.scalar(1.0, DType::F32).unwrap();
    let y = b.mul(x, one).unwrap(); // the builder broadcasts the scalar
    b.output("y", y).unwrap();
    let original = b.finish();
    assert_eq!(
        mnemonics(&original),
        ["input", "constant", "broadcast", "mul"]
    );
    let g = after(simplify::run, &original);
    assert_eq!(out(&g, "y"), input(&g, "x"));
}

#[test]
fn simplify_neg_rules() {
    let mut b = Builder::new("neg");
    let x = b.data("x", f32s(&[4])).unwrap();
    let y = b.data("y", f32s(&[4])).unwrap();
    let nx = b.neg(x).unwrap();
    let nnx = b.neg(nx).unwrap(); // neg(neg x) == x
    let ny = b.neg(y).unwrap();
    let add = b.add(x, ny).unwrap(); // x + (-y) == x - y
    let add_rev = b.add(ny, x).unwrap(); // (-y) + x == x - y
    let sub = b.sub(x, ny).unwrap(); // x - (-y) == x + y
    for (name, v) in [
        ("nnx", nnx),
        ("add", add),
        ("add_rev", add_rev),
        ("sub", sub),
    ] {
        b.output(name, v).unwrap();
    }
    let original = b.finish();
    let g = after(simplify::run, &original);
    assert_eq!(out(&g, "nnx"), input(&g, "x"));
    let (x, y) = (input(&g, "x"), input(&g, "y"));
    let expect = |name: &str, op: BinaryOp| {
        let n = g.node(out(&g, name));
        assert_eq!(
            (&n.op, n.operands.as_slice()),
            (&Op::Binary(op), &[x, y][..]),
            "{name}"
        );
    };
    expect("add", BinaryOp::Sub);
    expect("add_rev", BinaryOp::Sub);
    expect("sub", BinaryOp::Add);
    assert!(!mnemonics(&g).contains(&"neg"));
    assert_same_outputs(&original, &g, 6);
}

#[test]
fn simplify_select_and_cast_identities() {
    let mut b = Builder::new("select_cast");
    let x = b.data("x", f32s(&[4])).unwrap();
    let c = b.compare_scalar(CmpDir::Gt, x, 0.0).unwrap();
    let sel = b.select(c, x, x).unwrap(); // select(c, x, x) == x
    let cast = b.op(Op::Cast { to: DType::F32 }, &[x]).unwrap(); // cast(x: f32, f32) == x
    let widen = b.cast(x, DType::F64).unwrap();
    b.output("sel", sel).unwrap();
    b.output("cast", cast).unwrap();
    b.output("widen", widen).unwrap();
    let g = after(simplify::run, &b.finish());
    assert_eq!(out(&g, "sel"), input(&g, "x"));
    assert_eq!(out(&g, "cast"), input(&g, "x"));
    assert_eq!(mnemonics(&g), ["input", "cast"]);
}

#[test]
fn simplify_collapses_reshape_and_broadcast_chains() {
    let mut b = Builder::new("movement");
    let x = b.data("x", f32s(&[2, 3, 4])).unwrap();
    let r1 = b.reshape(x, &[6, 4]).unwrap();
    let r2 = b.reshape(r1, &[24]).unwrap(); // reshape(reshape(x)) == one reshape
    let back = b.reshape(r2, &[2, 3, 4]).unwrap(); // ... and to x's own shape == x
    let same = b
        .op(
            Op::Reshape {
                shape: Shape::new(&[2, 3, 4]),
            },
            &[x],
        )
        .unwrap();
    let v = b.data("v", f32s(&[4])).unwrap();
    let b1 = b.broadcast(v, &[3, 4]).unwrap();
    let b2 = b.broadcast(b1, &[2, 3, 4]).unwrap(); // broadcast(broadcast(v)) == one broadcast
    let bsame = b
        .op(
            Op::Broadcast {
                shape: Shape::new(&[4]),
            },
            &[v],
        )
        .unwrap();
    for (name, value) in [
        ("r2", r2),
        ("back", back),
        ("same", same),
        ("b2", b2),
        ("bsame", bsame),
    ] {
        b.output(name, value).unwrap();
    }
    let original = b.finish();
    let g = after(simplify::run, &original);
    assert_eq!(mnemonics(&g), ["input", "reshape", "input", "broadcast"]);
    assert_eq!(g.node(out(&g, "r2")).operands[0], input(&g, "x"));
    assert_eq!(out(&g, "back"), input(&g, "x"));
    assert_eq!(out(&g, "same"), input(&g, "x"));
    assert_eq!(g.node(out(&g, "b2")).operands[0], input(&g, "v"));
    assert_eq!(out(&g, "bsame"), input(&g, "v"));
    assert_same_outputs(&original, &g, 7);
}

#[test]
fn simplify_composes_transposes() {
    let mut b = Builder::new("transposes");
    let x = b.data("x", f32s(&[2, 3, 4])).unwrap();
    let t1 = b.transpose(x, &[1, 2, 0]).unwrap();
    let t2 = b.transpose(t1, &[1, 2, 0]).unwrap(); // two rotations: one transpose [2, 0, 1]
    let t3 = b.transpose(t2, &[1, 2, 0]).unwrap(); // three: the identity
    let id = b
        .op(
            Op::Transpose {
                perm: vec![0, 1, 2],
            },
            &[x],
        )
        .unwrap();
    for (name, value) in [("t2", t2), ("t3", t3), ("id", id)] {
        b.output(name, value).unwrap();
    }
    let original = b.finish();
    let g = after(simplify::run, &original);
    assert_eq!(mnemonics(&g), ["input", "transpose"]);
    let t2 = g.node(out(&g, "t2"));
    assert_eq!(
        (&t2.op, t2.operands[0]),
        (
            &Op::Transpose {
                perm: vec![2, 0, 1]
            },
            input(&g, "x")
        )
    );
    assert_eq!(out(&g, "t3"), input(&g, "x"));
    assert_eq!(out(&g, "id"), input(&g, "x"));
    assert_same_outputs(&original, &g, 8);
}

#[test]
fn simplify_turns_an_overlap_add_of_tiles_into_a_transpose() {
    let mut b = Builder::new("tiles");
    // A 2x2 / stride-2 pool's gradient: windows [2, 3, 2, 2] of [5, 7] (the last row and column in no window).
    let w = b.data("w", f32s(&[4, 2, 3, 2, 2])).unwrap();
    let tiles = b.overlap_add(w, &[5, 7], &[2, 2], &[1, 1]).unwrap();
    // Exactly tiled, 1-D, three taps.
    let v = b.data("v", f32s(&[4, 3])).unwrap();
    let exact = b.overlap_add(v, &[12], &[3], &[1]).unwrap();
    // Overlapping (stride 1) or dilated windows keep their overlap_add.
    let overlapping = b.overlap_add(w, &[3, 4], &[1, 1], &[1, 1]).unwrap();
    let dilated = b.overlap_add(v, &[16], &[3], &[2]).unwrap();
    for (name, value) in [
        ("tiles", tiles),
        ("exact", exact),
        ("overlapping", overlapping),
        ("dilated", dilated),
    ] {
        b.output(name, value).unwrap();
    }
    let original = b.finish();
    let g = after(simplify::run, &original);
    let chain = |name: &str| {
        let mut ops = Vec::new();
        let mut at = out(&g, name);
        while !matches!(g.node(at).op, Op::Input { .. }) {
            ops.push(g.node(at).op.mnemonic());
            at = g.node(at).operands[0];
        }
        ops
    };
    assert_eq!(chain("tiles"), ["pad", "reshape", "transpose"]);
    assert_eq!(chain("exact"), ["reshape", "transpose"]);
    assert_eq!(chain("overlapping"), ["overlap_add"]);
    assert_eq!(chain("dilated"), ["overlap_add"]);
    // Values equal the overlap_adds' (up to the sign of a zero).
    assert_same_outputs(&original, &g, 9);
}

/// `transpose(matmul(a', b))` with `a' = transpose(a)` where `a_t`, else `a`; the matmul also output if `shared`.
fn transposed_matmul(a_t: bool, b_t: bool, shared: bool) -> Graph {
    let mut b = Builder::new("matmul_t");
    let x = b.data("a", f32s(&[2, 4, 3])).unwrap();
    let y = b.data("b", f32s(&[2, 4, 5])).unwrap();
    let x = if a_t {
        b.transpose_last2(x).unwrap()
    } else {
        b.reshape(x, &[2, 3, 4]).unwrap()
    };
    let y = if b_t {
        let r = b.reshape(y, &[2, 5, 4]).unwrap();
        b.transpose_last2(r).unwrap()
    } else {
        y
    };
    let m = b.matmul(x, y).unwrap();
    let t = b.transpose_last2(m).unwrap();
    b.output("t", t).unwrap();
    if shared {
        b.output("m", m).unwrap();
    }
    b.finish()
}

#[test]
fn simplify_moves_a_transpose_through_matmul_only_when_transposes_cancel() {
    // (Aᵀ B)ᵀ == Bᵀ A: one transpose instead of two.
    let original = transposed_matmul(true, false, false);
    let g = after(simplify::run, &original);
    assert_eq!(mnemonics(&g), ["input", "input", "transpose", "matmul"]);
    let mm = g.node(out(&g, "t"));
    assert_eq!(mm.operands[1], input(&g, "a"));
    assert_same_outputs(&original, &g, 9);

    // (Aᵀ Bᵀ)ᵀ == B A: none.
    let original = transposed_matmul(true, true, false);
    let g = after(simplify::run, &original);
    assert_eq!(mnemonics(&g), ["input", "input", "reshape", "matmul"]);
    assert_same_outputs(&original, &g, 10);

    // (A B)ᵀ: nothing cancels, so it stays; nor when the matmul is used elsewhere.
    for (a_t, shared) in [(false, false), (true, true)] {
        let original = transposed_matmul(a_t, false, shared);
        let before = after(dce::run, &original);
        assert_eq!(
            after(simplify::run, &original),
            before,
            "a_t={a_t} shared={shared}"
        );
    }
}

#[test]
fn simplify_keeps_names_of_rewritten_nodes() {
    let mut b = Builder::new("names");
    let x = b.data("x", f32s(&[4])).unwrap();
    let e = b.exp(x).unwrap();
    let y = b.mul_scalar(e, 1.0).unwrap();
    b.name(y, "scaled").unwrap();
    b.output("y", y).unwrap();
    let g = after(simplify::run, &b.finish());
    assert_eq!(mnemonics(&g), ["input", "exp"]);
    assert_eq!(g.label(out(&g, "y")), "scaled");
}

// ---- pass manager ----

#[test]
fn pass_manager_reports_every_pass_and_reaches_a_fixed_point() {
    let mut b = Builder::new("pipeline");
    let x = b.data("x", f32s(&[4])).unwrap();
    let two = b.full(f32s(&[4]), 2.0).unwrap();
    let half = b.full(f32s(&[4]), 0.5).unwrap();
    let one = b.mul(two, half).unwrap(); // folds to 1, and then x * 1 simplifies
    let y = b.mul(x, one).unwrap();
    let e1 = b.exp(y).unwrap();
    let e2 = b.exp(x).unwrap();
    let s = b.add(e1, e2).unwrap(); // exp(x) + exp(x) once CSE sees both
    b.output("s", s).unwrap();
    let original = b.finish();

    let mut seen: Vec<(PassStats, usize)> = Vec::new();
    let mut hook = |stats: &PassStats, g: &Graph| seen.push((stats.clone(), g.len()));
    let (g, report) = PassManager::default()
        .run_traced(&original, Some(&mut hook))
        .unwrap();
    assert_eq!(mnemonics(&g), ["input", "exp", "add"]);
    assert!(report.converged);
    assert_eq!(seen.len(), report.runs.len());
    assert_eq!(report.runs.len(), 4 * report.rounds);
    assert_eq!(report.nodes_before(), Some(original.len()));
    assert_eq!(report.nodes_after(), Some(g.len()));
    assert_eq!(g, kiln::optimize(&original).unwrap());
    println!("{report}");
    assert_same_outputs(&original, &g, 11);
}

#[test]
fn pass_manager_stops_at_the_round_cap() {
    let original = transposed_matmul(true, false, false);
    let pm = PassManager::new(1).with_pass("simplify", simplify::run);
    let (g, report) = pm.run_traced(&original, None).unwrap();
    assert_eq!((report.rounds, report.converged), (1, false));
    assert_eq!(g, simplify::run(&original).unwrap());
    assert_eq!(pm.pass_names().collect::<Vec<_>>(), ["simplify"]);
    assert!(kiln::passes::pass("cse").is_some() && kiln::passes::pass("inline").is_none());
}

// ---- the zoo: semantics preserved, node counts down ----

/// Every zoo model, its gradient graph, and its training step under each optimizer (`kiln::zoo::corpus`).
fn zoo_graphs() -> Vec<Graph> {
    zoo::corpus(&zoo::corpus_optimizers()).unwrap()
}

#[test]
fn optimize_preserves_every_zoo_graph_and_shrinks_training_steps() {
    for (seed, graph) in zoo_graphs().into_iter().enumerate() {
        let (optimized, report) = PassManager::default().run_traced(&graph, None).unwrap();
        println!(
            "{:<28} {:>5} -> {:>5} nodes in {} round(s)",
            graph.name,
            graph.len(),
            optimized.len(),
            report.rounds
        );
        assert!(
            report.converged,
            "{}: no fixed point in {} rounds",
            graph.name, report.rounds
        );
        assert!(optimized.len() <= graph.len());
        assert_eq!(
            kiln::optimize(&optimized).unwrap(),
            optimized,
            "{}: optimize is idempotent",
            graph.name
        );
        if graph.name.contains("_step_") {
            // Autodiff and the optimizer emit seeds of 1, scalings by 1, zero cotangents, repeated constants and
            // transposes of transposes: at least a tenth of a training step goes (13-25% for the zoo).
            assert!(
                optimized.len() * 10 <= graph.len() * 9,
                "{}: only {} -> {} nodes",
                graph.name,
                graph.len(),
                optimized.len()
            );
        }
        assert_same_outputs(&graph, &optimized, 100 + seed as u64);
    }
}

// ---- snapshots: before and after, as .kir text ----

/// The graph before, and after `pass` then `dce` (passes leave the nodes they bypass for `dce`).
fn before_after(original: &Graph, pass: PassFn) -> String {
    let after = dce::run(&pass(original).unwrap()).unwrap();
    format!(
        "# before\n{}\n# after the pass and dce\n{}",
        text::print(original),
        text::print(&after)
    )
}

#[test]
fn snapshot_simplify_neg_and_identity_rules() {
    let mut b = Builder::new("simplify");
    let x = b.data("x", f32s(&[2, 3])).unwrap();
    let y = b.data("y", f32s(&[2, 3])).unwrap();
    let ny = b.neg(y).unwrap();
    let d = b.add(x, ny).unwrap();
    let s = b.mul_scalar(d, 1.0).unwrap();
    let nn = b.neg(s).unwrap();
    let nn = b.neg(nn).unwrap();
    let t = b.transpose(nn, &[1, 0]).unwrap();
    let t = b.transpose(t, &[1, 0]).unwrap();
    b.name(t, "result").unwrap();
    b.output("out", t).unwrap();
    insta::assert_snapshot!(
        "pass__simplify_neg_and_identity_rules",
        before_after(&b.finish(), simplify::run)
    );
}

#[test]
fn snapshot_const_fold_splats_and_small_dense() {
    let mut b = Builder::new("const_fold");
    let x = b.data("x", f32s(&[4, 3])).unwrap();
    let two = b.scalar(2.0, DType::F32).unwrap();
    let ten = b.scalar(10.0, DType::F32).unwrap();
    let lr = b.mul(two, ten).unwrap();
    let scaled = b.mul(x, lr).unwrap();
    let i = b.iota(f32s(&[4, 3]), 1).unwrap();
    let offset = b.add_scalar(i, 0.5).unwrap();
    let y = b.add(scaled, offset).unwrap();
    b.output("y", y).unwrap();
    insta::assert_snapshot!(
        "pass__const_fold_splats_and_small_dense",
        before_after(&b.finish(), const_fold::run)
    );
}

#[test]
fn snapshot_cse_merges_exps() {
    let mut b = Builder::new("cse");
    let x = b.data("x", f32s(&[3])).unwrap();
    let e1 = b.exp(x).unwrap();
    let e2 = b.exp(x).unwrap();
    let s = b.add(e1, e2).unwrap();
    b.log(s).unwrap();
    b.output("s", s).unwrap();
    insta::assert_snapshot!("pass__cse_merges_exps", before_after(&b.finish(), cse::run));
}

#[test]
fn snapshot_optimize_twolayer_sgd_step() {
    let model = zoo::twolayer().unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let step = training_step(&model, "loss", &names, &Optimizer::Sgd(Sgd::default())).unwrap();
    insta::assert_snapshot!(
        "pass__optimize_twolayer_sgd_step",
        before_after(&step, kiln::optimize)
    );
}

// ---- random graphs ----

proptest! {
    #![proptest_config(graph_gen::proptest_config(2000))]

    /// The default pipeline on random graphs of every op and dtype (special floats included): same outputs, never more
    /// nodes, a fixed point within the round cap.
    #[test]
    fn optimize_preserves_random_graphs(g in arb_graph(), seed in any::<u64>()) {
        let (optimized, report) = PassManager::default().run_traced(&g, None).unwrap();
        prop_assert!(report.converged, "no fixed point in {} rounds", report.rounds);
        prop_assert!(optimized.len() <= g.len(), "{} -> {} nodes", g.len(), optimized.len());
        assert_same_outputs(&g, &optimized, seed);
    }
}

/// `g` with every simplifier pattern planted on its values: one pattern per seed, on a value the seed picks, each
/// result an extra output. Random graphs rarely contain `x * 1` by chance; these do, on every dtype and on special
/// floats, next to the rewrites that must *not* fire (`x * 0`).
fn with_patterns(g: Graph, seeds: &[u64]) -> Graph {
    let mut b = Builder::from_graph(g);
    for (i, &seed) in seeds.iter().enumerate() {
        let candidates: Vec<NodeId> = b.graph().ids().collect();
        let v = candidates[(seed % candidates.len() as u64) as usize];
        let ty = b.ty(v).clone();
        let numeric = ty.dtype.is_numeric();
        let arith = |b: &mut Builder, op: BinaryOp, c: f64, first: bool| {
            let c = b.full_like(v, c).unwrap();
            let operands = if first { [c, v] } else { [v, c] };
            b.op(Op::Binary(op), &operands).unwrap()
        };
        let kind = (seed >> 8) % 14;
        let first = (seed >> 16) % 2 == 0;
        let made = match kind {
            0 if numeric => arith(&mut b, BinaryOp::Mul, 1.0, first),
            1 if numeric => arith(
                &mut b,
                BinaryOp::Add,
                if first { 0.0 } else { -0.0 },
                (seed >> 17) % 2 == 0,
            ),
            2 if numeric => arith(&mut b, BinaryOp::Sub, 0.0, false),
            3 if numeric => arith(&mut b, BinaryOp::Div, 1.0, false),
            4 if numeric => arith(&mut b, BinaryOp::Mul, 0.0, first),
            5 if numeric => {
                let n = b.neg(v).unwrap();
                b.neg(n).unwrap()
            }
            6 if numeric => {
                let n = b.neg(v).unwrap();
                let w = b.exp_or_self(v);
                let op = if first { BinaryOp::Add } else { BinaryOp::Sub };
                b.op(Op::Binary(op), &[w, n]).unwrap()
            }
            7 => {
                let flat = b.reshape(v, &[ty.numel()]).unwrap();
                b.op(
                    Op::Reshape {
                        shape: ty.shape.clone(),
                    },
                    &[flat],
                )
                .unwrap()
            }
            8 if ty.rank() >= 2 => {
                let r = ty.rank();
                let rot: Vec<usize> = (0..r).map(|k| (k + 1) % r).collect();
                let t = b.op(Op::Transpose { perm: rot.clone() }, &[v]).unwrap();
                let perm: Vec<usize> = if first { rot } else { (0..r).rev().collect() };
                b.op(Op::Transpose { perm }, &[t]).unwrap()
            }
            9 if ty.rank() + 2 <= 8 => {
                let mid: Vec<usize> = std::iter::once(2)
                    .chain(ty.dims().iter().copied())
                    .collect();
                let m = b.broadcast(v, &mid).unwrap();
                let outer: Vec<usize> = std::iter::once(3).chain(mid).collect();
                b.broadcast(m, &outer).unwrap()
            }
            10 => {
                let c = b.op(Op::Compare(CmpDir::Eq), &[v, v]).unwrap();
                b.select(c, v, v).unwrap()
            }
            11 => b.op(Op::Cast { to: ty.dtype }, &[v]).unwrap(),
            12 | 13 if ty.rank() >= 2 && numeric => {
                // transpose(matmul(vᵀ, v)) == matmul(vᵀ, v)ᵀ with one transpose less
                let vt = b.transpose_last2(v).unwrap();
                let (l, r) = if kind == 12 { (vt, v) } else { (v, vt) };
                let m = b.matmul(l, r).unwrap();
                b.transpose_last2(m).unwrap()
            }
            _ => continue,
        };
        b.output(&format!("pattern{i}"), made).unwrap();
    }
    b.finish()
}

trait ExpOrSelf {
    /// `exp(v)` for floats (a value other than `v`), `v` itself otherwise.
    fn exp_or_self(&mut self, v: NodeId) -> NodeId;
}

impl ExpOrSelf for Builder {
    fn exp_or_self(&mut self, v: NodeId) -> NodeId {
        if self.dtype(v).is_float() {
            self.exp(v).unwrap()
        } else {
            v
        }
    }
}

proptest! {
    #![proptest_config(graph_gen::proptest_config(1000))]

    /// Random graphs with simplifier patterns planted on their values: same outputs after optimizing.
    #[test]
    fn optimize_preserves_planted_patterns(
        g in arb_graph(),
        seeds in prop::collection::vec(any::<u64>(), 1..12),
        seed in any::<u64>(),
    ) {
        let planted = with_patterns(g, &seeds);
        let (optimized, report) = PassManager::default().run_traced(&planted, None).unwrap();
        prop_assert!(report.converged, "no fixed point in {} rounds", report.rounds);
        prop_assert!(optimized.len() <= planted.len());
        assert_same_outputs(&planted, &optimized, seed);
    }
}
