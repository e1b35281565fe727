//! The builder: implicit NumPy broadcasting becomes explicit `broadcast` nodes, and bad calls fail at the call with an
//! error naming the op and the offending types.

use kiln::ir::{Builder, DType, Op, TensorType};

fn err_text<T: std::fmt::Debug>(r: Result<T, kiln::IrError>) -> String {
    r.expect_err("the call should fail").to_string()
}

#[test]
fn implicit_broadcasting_inserts_explicit_broadcast_nodes() {
    let mut b = Builder::new("bcast");
    let x = b.data("x", TensorType::f32(&[4, 3])).unwrap();
    let bias = b.param("b", TensorType::f32(&[3])).unwrap();
    let col = b.data("c", TensorType::f32(&[4, 1])).unwrap();
    let y = b.add(x, bias).unwrap();
    let z = b.mul(y, col).unwrap();
    let g = b.finish();
    assert_eq!(g.ty(z), &TensorType::f32(&[4, 3]));
    let broadcasts: Vec<String> = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Broadcast { .. }))
        .map(|n| format!("{} -> {}", g.ty(n.operands[0]), n.ty))
        .collect();
    assert_eq!(broadcasts, ["f32[3] -> f32[4,3]", "f32[4,1] -> f32[4,3]"]);
    // Elementwise ops in the IR itself always see equal types.
    for n in g.nodes().iter().filter(|n| matches!(n.op, Op::Binary(_))) {
        assert!(n.operands.iter().all(|&o| g.ty(o) == &n.ty));
    }
}

#[test]
fn equal_shapes_add_no_broadcast() {
    let mut b = Builder::new("same");
    let x = b.data("x", TensorType::f32(&[2, 2])).unwrap();
    b.add(x, x).unwrap();
    assert!(!b
        .graph()
        .nodes()
        .iter()
        .any(|n| matches!(n.op, Op::Broadcast { .. })));
}

#[test]
fn shape_errors_name_the_op_and_both_types() {
    let mut b = Builder::new("bad");
    let x = b.data("x", TensorType::f32(&[4, 3])).unwrap();
    let y = b.data("y", TensorType::f32(&[4, 2])).unwrap();
    let e = err_text(b.add(x, y));
    assert!(
        e.contains("add") && e.contains("f32[4,3]") && e.contains("f32[4,2]"),
        "{e}"
    );
    let e = err_text(b.matmul(x, y));
    assert!(
        e.contains("matmul") && e.contains("f32[4,3]") && e.contains("f32[4,2]"),
        "{e}"
    );
    let i = b.data("i", TensorType::i32(&[4, 3])).unwrap();
    let e = err_text(b.mul(x, i));
    assert!(
        e.contains("mul") && e.contains("dtypes differ") && e.contains("i32[4,3]"),
        "{e}"
    );
    let e = err_text(b.reduce_sum(x, &[2], false));
    assert!(
        e.contains("reduce_sum") && e.contains("axis 2") && e.contains("f32[4,3]"),
        "{e}"
    );
    let e = err_text(b.exp(i));
    assert!(
        e.contains("exp") && e.contains("float") && e.contains("i32[4,3]"),
        "{e}"
    );
    let e = err_text(b.reshape(x, &[5]));
    assert!(
        e.contains("reshape") && e.contains("f32[4,3]") && e.contains("[5]"),
        "{e}"
    );
}

#[test]
fn layer_and_loss_errors_explain_the_expected_shapes() {
    let mut b = Builder::new("bad_layers");
    let x = b.data("x", TensorType::f32(&[8, 3])).unwrap();
    let w = b.param("w", TensorType::f32(&[2, 4])).unwrap();
    let e = err_text(b.linear(x, w, None));
    assert!(
        e.contains("linear") && e.contains("f32[8,3]") && e.contains("f32[2,4]"),
        "{e}"
    );
    let logits = b.data("z", TensorType::f32(&[8, 5])).unwrap();
    let float_labels = b.data("l", TensorType::f32(&[8])).unwrap();
    let e = err_text(b.cross_entropy(logits, float_labels));
    assert!(
        e.contains("cross_entropy") && e.contains("i32") && e.contains("f32[8]"),
        "{e}"
    );
    let e = err_text(b.mse_loss(x, logits));
    assert!(
        e.contains("mse_loss") && e.contains("f32[8,3]") && e.contains("f32[8,5]"),
        "{e}"
    );
}

#[test]
fn negative_axes_count_from_the_end() {
    let mut b = Builder::new("axes");
    let x = b.data("x", TensorType::f32(&[2, 3, 4])).unwrap();
    let s = b.reduce_sum(x, &[-1], true).unwrap();
    assert_eq!(b.ty(s), &TensorType::f32(&[2, 3, 1]));
    let m = b.softmax(x, -2).unwrap();
    assert_eq!(b.ty(m), &TensorType::f32(&[2, 3, 4]));
}

#[test]
fn constants_are_rounded_to_the_dtype() {
    let mut b = Builder::new("consts");
    let x = b.data("x", TensorType::f32(&[2])).unwrap();
    let y = b.mul_scalar(x, 0.1).unwrap();
    let c = b.graph().node(b.graph().node(y).operands[1]).op.clone();
    let Op::Constant { value, .. } = c else {
        panic!("expected a constant, got {c:?}")
    };
    assert_eq!(value.as_splat(), Some(0.1f32 as f64));
    let i = b.data("i", TensorType::new(DType::I32, [2])).unwrap();
    let e = err_text(b.mul_scalar(i, 0.5));
    assert!(e.contains("0.5") && e.contains("i32"), "{e}");
}
