//! SPEC §1's limits on types (rank ≤ 8, product of the nonzero dims ≤ 2^40), enforced by every typing rule.
//!
//! Before they were, a zero-sized dim let the other dims be anything: `f32[0,2^63]` was a valid input, two of them
//! concatenated panicked in debug builds and typed as `f32[0,0]` in release, and reductions, movement ops and matmul
//! returned types beyond the limits unchecked. Each test here failed (a panic or an `Ok` type) without the checks.

use kiln_ir::text::parse;
use kiln_ir::{
    Axes, BinaryOp, DType, Graph, IrError, Literal, Op, Role, Shape, Tensor, TensorData,
    TensorType, UnaryOp,
};

const BIG: usize = 1 << 63;
const LIMIT: usize = 1 << 40;

fn f32t(dims: &[usize]) -> TensorType {
    TensorType::f32(dims)
}

/// The typing rule's error, which must name the op and say why; panics on `Ok`.
fn rejects(op: Op, operands: &[&TensorType]) -> String {
    match op.infer(operands) {
        Ok(ty) => panic!("{} of {operands:?} typed as {ty}", op.mnemonic()),
        Err(e) => {
            assert!(e.0.contains(op.mnemonic()), "{e}");
            assert!(
                e.0.contains("2^40") || e.0.contains("rank"),
                "no limit in `{e}`"
            );
            e.0
        }
    }
}

#[test]
fn the_issue_case_concat_of_two_zero_by_2_pow_63() {
    let t = f32t(&[0, BIG]);
    // Directly: no panic (debug) and no wrapped `f32[0,0]` (release).
    let message = rejects(Op::Concat { axis: 1 }, &[&t, &t]);
    assert!(message.contains("f32[0,9223372036854775808]"), "{message}");
    // Through a graph: such an operand cannot even be an input, and the error names the node and the type.
    let mut g = Graph::new("g");
    let e = g.add_input("a", Role::Data, t.clone()).unwrap_err();
    let shown = e.to_string();
    assert!(matches!(e, IrError::Type { .. }), "{e:?}");
    assert!(
        shown.contains("%a") && shown.contains("f32[0,9223372036854775808]"),
        "{shown}"
    );
    // Through text, the same at the input's line.
    let src = "graph g {\n  %a = input{role=data} : f32[0,9223372036854775808]\n  \
               %b = concat{axis=1} %a, %a : f32[0,0]\n}\n";
    let e = parse(src).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.contains("more than 2^40 elements"), "{e}");
}

#[test]
fn concat_extents_sum_without_overflow_within_limits() {
    // In the limits each, the sum beyond them (2 · 2^40): an error, not a wrapped or huge type.
    let half = f32t(&[0, LIMIT]);
    rejects(Op::Concat { axis: 1 }, &[&half, &half]);
    // The sum of many maximal extents would overflow u64 after 2^24 operands; a few thousand show the check holds.
    let many = vec![&half; 4096];
    rejects(Op::Concat { axis: 1 }, &many);
    // Exactly at the limit is fine.
    let quarter = f32t(&[0, LIMIT / 2]);
    assert_eq!(
        Op::Concat { axis: 1 }.infer(&[&quarter, &quarter]).unwrap(),
        f32t(&[0, LIMIT])
    );
}

#[test]
fn sources_reject_types_beyond_the_limits() {
    for ty in [
        f32t(&[0, BIG]),
        f32t(&[0, LIMIT + 1]),
        f32t(&[1 << 20, 1 << 21]),
    ] {
        rejects(
            Op::Input {
                name: "x".into(),
                role: Role::Data,
                ty: ty.clone(),
            },
            &[],
        );
        rejects(
            Op::Constant {
                ty: ty.clone(),
                value: Literal::Dense(vec![]),
            },
            &[],
        );
        rejects(Op::Iota { ty, axis: 0 }, &[]);
    }
    // At the limit, with zero-sized dims around it, is fine.
    let ok = f32t(&[0, LIMIT, 0]);
    assert!(Op::Iota {
        ty: ok.clone(),
        axis: 1
    }
    .infer(&[])
    .is_ok());
}

#[test]
fn reductions_check_their_result() {
    // Dropping the zero-sized axis leaves 2^63 elements: this typed as `f32[9223372036854775808]`.
    let t = f32t(&[0, BIG]);
    for keep_dims in [false, true] {
        let axes: Axes = [0].into_iter().collect();
        rejects(
            Op::ReduceSum {
                axes: axes.clone(),
                keep_dims,
            },
            &[&t],
        );
        rejects(Op::ReduceMax { axes, keep_dims }, &[&t]);
    }
}

#[test]
fn movement_ops_check_their_result() {
    let t = f32t(&[0, BIG]);
    // reshape: both counts are 0, so this passed.
    rejects(
        Op::Reshape {
            shape: Shape::new(&[BIG, 0]),
        },
        &[&t],
    );
    // ... and an operand beyond the limits is refused even towards a small shape (its count saturates).
    let huge = f32t(&[1 << 32, 1 << 32]);
    rejects(
        Op::Reshape {
            shape: Shape::new(&[usize::MAX]),
        },
        &[&huge],
    );
    // transpose, broadcast (1 → a huge extent beside a 0), slice of the full box.
    rejects(Op::Transpose { perm: vec![1, 0] }, &[&t]);
    rejects(
        Op::Broadcast {
            shape: Shape::new(&[0, BIG]),
        },
        &[&f32t(&[1])],
    );
    rejects(
        Op::Slice {
            start: vec![0, 0],
            end: vec![0, BIG],
        },
        &[&t],
    );
}

#[test]
fn matmul_and_elementwise_ops_check_their_result() {
    // m = 0 and n = 2^50: no elements, but an extent and strides far beyond the limits.
    let a = f32t(&[0, 1]);
    let b = f32t(&[1, 1 << 50]);
    rejects(Op::Matmul, &[&a, &b]);
    let t = f32t(&[0, BIG]);
    rejects(Op::Unary(UnaryOp::Neg), &[&t]);
    rejects(Op::Binary(BinaryOp::Add), &[&t, &t]);
    rejects(Op::Cast { to: DType::F64 }, &[&t]);
}

#[test]
fn limits_and_arithmetic_on_types() {
    assert!(Shape::new(&[0, LIMIT]).within_limits());
    assert!(Shape::new(&[1 << 20, 1 << 20]).within_limits());
    assert!(!Shape::new(&[1 << 20, (1 << 20) + 1]).within_limits());
    assert!(!Shape::new(&[0, BIG]).within_limits());
    assert!(!Shape::new(&[1; 9]).within_limits());
    assert!(Shape::scalar().within_limits());
    // Within the limits, byte sizes and strides are exact.
    let t = TensorType::f64(&[1 << 20, 1 << 20]);
    assert_eq!(t.size_bytes(), 1 << 43);
    assert_eq!(t.shape.strides().as_slice(), &[1 << 20, 1]);
}

#[test]
fn host_tensors_of_types_beyond_the_limits_are_refused() {
    // Empty data "fit" `f32[0,2^63]` before; its strides do not fit anything.
    let e = Tensor::new(f32t(&[0, BIG]), TensorData::F32(vec![])).unwrap_err();
    assert!(e.to_string().contains("2^40"), "{e}");
    assert!(Tensor::new(f32t(&[0, 3]), TensorData::F32(vec![])).is_ok());
}

#[test]
fn errors_about_huge_types_are_short() {
    // A rank-200000 type: the error used to echo every dim.
    let dims = vec![1usize; 200_000];
    let mut g = Graph::new("g");
    let e = g
        .add_input("x", Role::Data, f32t(&dims))
        .unwrap_err()
        .to_string();
    assert!(e.len() < 300, "{} characters: {e}", e.len());
    assert!(e.contains("f32[1,1,1,1,1,1,1,1,… (200000 dims)]"), "{e}");
    // A concat of a million operands, one of them wrong, lists a few.
    let t = f32t(&[2, 0]);
    let many = vec![&t; 1_000_000];
    let other = f32t(&[3, 1]);
    let mut mixed = many.clone();
    mixed.push(&other);
    let message = Op::Concat { axis: 0 }.infer(&mixed).unwrap_err().0;
    assert!(message.contains("… (1000001 operands)"), "{message}");
    assert!(message.len() < 400, "{message}");
    // A huge permutation attribute.
    let perm: Vec<usize> = (0..100_000).collect();
    let message = Op::Transpose { perm }.infer(&[&t]).unwrap_err().0;
    assert!(message.len() < 300, "{message}");
}
