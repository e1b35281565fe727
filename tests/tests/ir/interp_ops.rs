//! The reference interpreter, op by op and dtype by dtype, with hand-checked values, and its input errors (the
//! composites, golden forward losses and speed are in `interp_composites.rs`, which shares the helpers here).

use kiln_ir::interp;
use kiln_ir::{
    BinaryOp, Builder, CmpDir, DType, Graph, IrError, Op, Tensor, TensorType, UnaryOp, Value,
};
use std::collections::HashMap;

// ---- helpers ----

/// The graph `out = f(x0, x1, ...)` with one data input per tensor in `inputs`.
pub(super) fn graph_of(
    inputs: &[&Tensor],
    f: impl FnOnce(&mut Builder, &[Value]) -> Result<Value, IrError>,
) -> Graph {
    let mut b = Builder::new("t");
    let args: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| b.data(&format!("x{i}"), t.ty().clone()).unwrap())
        .collect();
    let out = f(&mut b, &args).unwrap();
    b.output("out", out).unwrap();
    b.finish()
}

/// Runs `out = f(inputs...)` in the interpreter.
pub(super) fn eval(
    inputs: &[&Tensor],
    f: impl FnOnce(&mut Builder, &[Value]) -> Result<Value, IrError>,
) -> Tensor {
    let g = graph_of(inputs, f);
    let owned: Vec<Tensor> = inputs.iter().map(|&t| t.clone()).collect();
    let mut outs = interp::run(&g, &owned).unwrap();
    assert_eq!(outs.len(), 1);
    outs.remove(0)
}

/// Runs a graph of no inputs built by `f`.
pub(super) fn eval0(f: impl FnOnce(&mut Builder) -> Result<Value, IrError>) -> Tensor {
    eval(&[], move |b, _| f(b))
}

pub(super) fn unary_of(op: UnaryOp, x: &Tensor) -> Tensor {
    eval(&[x], move |b, v| b.unary(op, v[0]))
}

pub(super) fn binary_of(op: BinaryOp, x: &Tensor, y: &Tensor) -> Tensor {
    eval(&[x, y], move |b, v| b.binary(op, v[0], v[1]))
}

pub(super) fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_f32(shape, v.to_vec()).unwrap()
}
pub(super) fn f64s(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_f64(shape, v.to_vec()).unwrap()
}
pub(super) fn i32s(shape: &[usize], v: &[i32]) -> Tensor {
    Tensor::from_i32(shape, v.to_vec()).unwrap()
}
pub(super) fn bools(shape: &[usize], v: &[bool]) -> Tensor {
    Tensor::from_bool(shape, v.to_vec()).unwrap()
}

/// `|a - e| <= atol + rtol |e|` elementwise; non-finite expected values must match exactly (NaN matches NaN).
#[track_caller]
pub(super) fn assert_close(actual: &Tensor, expected: &[f64], rtol: f64, atol: f64) {
    let a = actual.to_f64_vec();
    assert_eq!(a.len(), expected.len(), "element count of {}", actual.ty());
    for (i, (&x, &e)) in a.iter().zip(expected).enumerate() {
        let ok = if e.is_nan() {
            x.is_nan()
        } else if e.is_infinite() {
            x == e
        } else {
            (x - e).abs() <= atol + rtol * e.abs()
        };
        assert!(ok, "element {i}: got {x}, expected {e} (all: {a:?})");
    }
}

/// Exact equality of values (bitwise for floats, so -0 != +0 and NaN == NaN) and type.
#[track_caller]
pub(super) fn assert_bits(actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.ty(), expected.ty());
    let bits = |t: &Tensor| -> Vec<u64> {
        match t.dtype() {
            DType::F32 => t
                .as_f32()
                .unwrap()
                .iter()
                .map(|v| v.to_bits() as u64)
                .collect(),
            _ => t.to_f64_vec().iter().map(|v| v.to_bits()).collect(),
        }
    };
    assert_eq!(
        bits(actual),
        bits(expected),
        "got {:?}, expected {:?}",
        actual.data(),
        expected.data()
    );
}

const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

// ---- sources ----

#[test]
fn iota_is_the_index_along_its_axis_in_every_numeric_dtype() {
    let t = eval0(|b| b.iota(TensorType::f32(&[2, 3]), 1));
    assert_bits(&t, &f32s(&[2, 3], &[0., 1., 2., 0., 1., 2.]));
    let t = eval0(|b| b.iota(TensorType::i32(&[2, 3]), 0));
    assert_bits(&t, &i32s(&[2, 3], &[0, 0, 0, 1, 1, 1]));
    let t = eval0(|b| b.iota(TensorType::f64(&[2, 2, 2]), 1));
    assert_bits(&t, &f64s(&[2, 2, 2], &[0., 0., 1., 1., 0., 0., 1., 1.]));
    let t = eval0(|b| b.iota(TensorType::i32(&[0, 3]), 1));
    assert_bits(&t, &i32s(&[0, 3], &[]));
}

#[test]
fn constants_splat_or_list_every_element_in_the_dtype() {
    let t = eval0(|b| b.full(TensorType::f32(&[2, 2]), 1.5));
    assert_bits(&t, &f32s(&[2, 2], &[1.5; 4]));
    let t = eval0(|b| b.literal(TensorType::f64(&[3]), vec![0.1, -2.0, NAN]));
    assert_bits(&t, &f64s(&[3], &[0.1, -2.0, NAN]));
    let t = eval0(|b| b.literal(TensorType::i32(&[2]), vec![-7.0, i32::MAX as f64]));
    assert_bits(&t, &i32s(&[2], &[-7, i32::MAX]));
    let t = eval0(|b| b.literal(TensorType::new(DType::Bool, [3]), vec![1.0, 0.0, 1.0]));
    assert_bits(&t, &bools(&[3], &[true, false, true]));
    let t = eval0(|b| b.scalar(-0.0, DType::F32));
    assert_bits(&t, &f32s(&[], &[-0.0]));
}

// ---- unary ----

/// SPEC §3.2's rounding rows: exact, ties to even for `round`, the sign of zero kept, ±inf and NaN unchanged.
#[test]
fn rounding_ops_on_halves_signed_zeros_and_specials() {
    let x = [
        -2.5,
        -1.5,
        -0.5,
        -0.0,
        0.5,
        1.5,
        2.5,
        0.7,
        -0.7,
        f64::INFINITY,
        f64::NAN,
    ];
    let cases: [(UnaryOp, [f64; 9]); 4] = [
        (
            UnaryOp::Floor,
            [-3.0, -2.0, -1.0, -0.0, 0.0, 1.0, 2.0, 0.0, -1.0],
        ),
        (
            UnaryOp::Ceil,
            [-2.0, -1.0, -0.0, -0.0, 1.0, 2.0, 3.0, 1.0, -0.0],
        ),
        (
            UnaryOp::Round,
            [-2.0, -2.0, -0.0, -0.0, 0.0, 2.0, 2.0, 1.0, -1.0],
        ),
        (
            UnaryOp::Trunc,
            [-2.0, -1.0, -0.0, -0.0, 0.0, 1.0, 2.0, 0.0, -0.0],
        ),
    ];
    for (op, finite) in cases {
        let mut want: Vec<f64> = finite.to_vec();
        want.extend([f64::INFINITY, f64::NAN]);
        assert_bits(&unary_of(op, &f64s(&[11], &x)), &f64s(&[11], &want));
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        assert_bits(&unary_of(op, &f32s(&[11], &x32)), &f32s(&[11], &want32));
    }
}

#[test]
fn unary_ops_on_floats() {
    let x = [0.25f64, 1.0, 4.0];
    type Reference = fn(f64) -> f64;
    let cases: [(UnaryOp, Reference); 10] = [
        (UnaryOp::Neg, |v| -v),
        (UnaryOp::Exp, f64::exp),
        (UnaryOp::Log, f64::ln),
        (UnaryOp::Sqrt, f64::sqrt),
        (UnaryOp::Recip, |v| 1.0 / v),
        (UnaryOp::Tanh, f64::tanh),
        (UnaryOp::Logistic, |v| 1.0 / (1.0 + (-v).exp())),
        (UnaryOp::Abs, f64::abs),
        (UnaryOp::Sin, f64::sin),
        (UnaryOp::Cos, f64::cos),
    ];
    for (op, f) in cases {
        let expected: Vec<f64> = x.iter().map(|&v| f(v)).collect();
        let got = unary_of(op, &f64s(&[3], &x));
        assert_close(&got, &expected, 1e-15, 0.0);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let got = unary_of(op, &f32s(&[3], &x32));
        assert_eq!(got.dtype(), DType::F32);
        assert_close(&got, &expected, 1e-6, 0.0);
    }
    // Hand-checked spot values.
    let got = unary_of(UnaryOp::Sqrt, &f32s(&[2], &[9.0, 0.25]));
    assert_bits(&got, &f32s(&[2], &[3.0, 0.5]));
    let got = unary_of(UnaryOp::Abs, &f64s(&[2], &[-2.5, -0.0]));
    assert_bits(&got, &f64s(&[2], &[2.5, 0.0]));
    let got = unary_of(UnaryOp::Logistic, &f32s(&[1], &[0.0]));
    assert_bits(&got, &f32s(&[1], &[0.5]));
}

#[test]
fn float_edge_cases_follow_ieee() {
    let got = unary_of(UnaryOp::Log, &f32s(&[3], &[0.0, -1.0, f32::INFINITY]));
    assert_close(&got, &[-INF, NAN, INF], 0.0, 0.0);
    let got = unary_of(UnaryOp::Exp, &f32s(&[3], &[100.0, 1000.0, -1000.0]));
    assert_close(&got, &[INF, INF, 0.0], 0.0, 0.0);
    let got = unary_of(UnaryOp::Exp, &f64s(&[2], &[1000.0, f64::NEG_INFINITY]));
    assert_close(&got, &[INF, 0.0], 0.0, 0.0);
    let got = unary_of(UnaryOp::Recip, &f32s(&[2], &[0.0, -0.0]));
    assert_close(&got, &[INF, -INF], 0.0, 0.0);
    let got = unary_of(UnaryOp::Sqrt, &f64s(&[1], &[-1.0]));
    assert_close(&got, &[NAN], 0.0, 0.0);
    let got = unary_of(UnaryOp::Tanh, &f32s(&[2], &[100.0, -100.0]));
    assert_close(&got, &[1.0, -1.0], 0.0, 0.0);
    // sin is odd and keeps the zero's sign; cos of either zero is 1; infinities have no sine or cosine.
    let got = unary_of(UnaryOp::Sin, &f32s(&[2], &[0.0, -0.0]));
    assert_bits(&got, &f32s(&[2], &[0.0, -0.0]));
    let edges = [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY];
    let got = unary_of(UnaryOp::Sin, &f64s(&[2], &[f64::INFINITY, f64::NAN]));
    assert_close(&got, &[NAN, NAN], 0.0, 0.0);
    let got = unary_of(UnaryOp::Cos, &f32s(&[4], &edges));
    assert_close(&got, &[1.0, 1.0, NAN, NAN], 0.0, 0.0);
    // f32 is the f64 result rounded once: sin(1e5) far from a multiple of π/2 is its correctly rounded value.
    let got = unary_of(UnaryOp::Sin, &f32s(&[1], &[1e5]));
    assert_bits(&got, &f32s(&[1], &[(1e5f64).sin() as f32]));
}

#[test]
fn logistic_is_finite_and_accurate_for_large_inputs() {
    // logistic(-100) = exp(-100) / (1 + exp(-100)) = 3.720075976020836e-44 (subnormal in f32).
    let tiny = 3.720075976020836e-44;
    let got = unary_of(
        UnaryOp::Logistic,
        &f64s(&[4], &[100.0, -100.0, 1000.0, -1000.0]),
    );
    assert_close(&got, &[1.0, tiny, 1.0, 0.0], 1e-14, 0.0);
    // In f32 exp(-100) is subnormal (spacing 1.4e-45), so only a few percent accurate, but not 0 and not NaN.
    let got = unary_of(
        UnaryOp::Logistic,
        &f32s(&[4], &[100.0, -100.0, 1000.0, -1000.0]),
    );
    assert_close(&got, &[1.0, tiny, 1.0, 0.0], 0.05, 0.0);
    let got = unary_of(UnaryOp::Logistic, &f32s(&[1], &[f32::NAN]));
    assert_close(&got, &[NAN], 0.0, 0.0);
}

#[test]
fn i32_neg_and_abs_wrap() {
    let x = i32s(&[4], &[3, -5, 0, i32::MIN]);
    assert_bits(
        &unary_of(UnaryOp::Neg, &x),
        &i32s(&[4], &[-3, 5, 0, i32::MIN]),
    );
    assert_bits(
        &unary_of(UnaryOp::Abs, &x),
        &i32s(&[4], &[3, 5, 0, i32::MIN]),
    );
}

// ---- cast ----

#[test]
fn cast_truncates_saturates_and_maps_nan_to_zero() {
    let x = f32s(&[6], &[-1.7, 1.7, f32::NAN, 1e10, -1e10, -0.0]);
    let got = eval(&[&x], |b, v| b.cast(v[0], DType::I32));
    assert_bits(&got, &i32s(&[6], &[-1, 1, 0, i32::MAX, i32::MIN, 0]));
    let got = eval(&[&x], |b, v| b.cast(v[0], DType::Bool));
    assert_bits(&got, &bools(&[6], &[true, true, true, true, true, false]));
    let got = eval(&[&x], |b, v| b.cast(v[0], DType::F64));
    assert_close(
        &got,
        &[-1.7f32 as f64, 1.7f32 as f64, NAN, 1e10, -1e10, 0.0],
        0.0,
        0.0,
    );

    let flags = bools(&[2], &[true, false]);
    let got = eval(&[&flags], |b, v| b.cast(v[0], DType::F32));
    assert_bits(&got, &f32s(&[2], &[1.0, 0.0]));
    let got = eval(&[&flags], |b, v| b.cast(v[0], DType::I32));
    assert_bits(&got, &i32s(&[2], &[1, 0]));

    let ints = i32s(&[3], &[-3, 0, 16_777_217]);
    let got = eval(&[&ints], |b, v| b.cast(v[0], DType::F64));
    assert_bits(&got, &f64s(&[3], &[-3.0, 0.0, 16_777_217.0]));
    // 2^24 + 1 is not an f32: rounds to nearest even.
    let got = eval(&[&ints], |b, v| b.cast(v[0], DType::F32));
    assert_bits(&got, &f32s(&[3], &[-3.0, 0.0, 16_777_216.0]));

    let wide = f64s(&[2], &[0.1, 1e300]);
    let got = eval(&[&wide], |b, v| b.cast(v[0], DType::F32));
    assert_bits(&got, &f32s(&[2], &[0.1, f32::INFINITY]));
}

// ---- binary ----

#[test]
fn binary_ops_on_floats() {
    let (a, b) = ([6.0, -1.5, 2.0], [4.0, 0.5, 3.0]);
    let expected: [(BinaryOp, [f64; 3]); 7] = [
        (BinaryOp::Add, [10.0, -1.0, 5.0]),
        (BinaryOp::Sub, [2.0, -2.0, -1.0]),
        (BinaryOp::Mul, [24.0, -0.75, 6.0]),
        (BinaryOp::Div, [1.5, -3.0, 2.0 / 3.0]),
        (BinaryOp::Max, [6.0, 0.5, 3.0]),
        (BinaryOp::Min, [4.0, -1.5, 2.0]),
        (BinaryOp::Pow, [1296.0, NAN, 8.0]),
    ];
    for (op, want) in expected {
        let got = binary_of(op, &f64s(&[3], &a), &f64s(&[3], &b));
        assert_close(&got, &want, 1e-16, 0.0);
        let got = binary_of(
            op,
            &f32s(&[3], &a.map(|v| v as f32)),
            &f32s(&[3], &b.map(|v| v as f32)),
        );
        assert_eq!(got.dtype(), DType::F32);
        assert_close(&got, &want, 1e-7, 0.0);
    }
}

#[test]
fn float_division_by_zero_is_ieee() {
    let got = binary_of(
        BinaryOp::Div,
        &f32s(&[4], &[1.0, -1.0, 0.0, 1.0]),
        &f32s(&[4], &[0.0, 0.0, 0.0, -0.0]),
    );
    assert_close(&got, &[INF, -INF, NAN, -INF], 0.0, 0.0);
}

#[test]
fn max_and_min_propagate_nan_and_order_signed_zeros() {
    for (x, y) in [(NAN, 1.0), (1.0, NAN), (NAN, NAN), (NAN, -INF)] {
        for op in [BinaryOp::Max, BinaryOp::Min] {
            let got = binary_of(op, &f64s(&[1], &[x]), &f64s(&[1], &[y]));
            assert!(got.to_f64_vec()[0].is_nan(), "{op:?}({x}, {y})");
            let got = binary_of(op, &f32s(&[1], &[x as f32]), &f32s(&[1], &[y as f32]));
            assert!(got.to_f64_vec()[0].is_nan(), "{op:?}({x}, {y}) in f32");
        }
    }
    let (pz, nz) = (f32s(&[2], &[0.0, -0.0]), f32s(&[2], &[-0.0, 0.0]));
    assert_bits(
        &binary_of(BinaryOp::Max, &pz, &nz),
        &f32s(&[2], &[0.0, 0.0]),
    );
    assert_bits(
        &binary_of(BinaryOp::Min, &pz, &nz),
        &f32s(&[2], &[-0.0, -0.0]),
    );
}

#[test]
fn i32_arithmetic_wraps_and_division_truncates() {
    let a = i32s(&[7], &[7, -7, 7, -7, 5, i32::MIN, i32::MAX]);
    let b = i32s(&[7], &[2, 2, -2, -2, 0, -1, 1]);
    assert_bits(
        &binary_of(BinaryOp::Div, &a, &b),
        &i32s(&[7], &[3, -3, -3, 3, 0, i32::MIN, i32::MAX]),
    );
    assert_bits(
        &binary_of(BinaryOp::Add, &a, &b),
        &i32s(&[7], &[9, -5, 5, -9, 5, i32::MAX, i32::MIN]),
    );
    assert_bits(
        &binary_of(BinaryOp::Sub, &a, &b),
        &i32s(&[7], &[5, -9, 9, -5, 5, i32::MIN + 1, i32::MAX - 1]),
    );
    assert_bits(
        &binary_of(BinaryOp::Mul, &a, &b),
        &i32s(&[7], &[14, -14, -14, 14, 0, i32::MIN, i32::MAX]),
    );
    assert_bits(
        &binary_of(BinaryOp::Max, &a, &b),
        &i32s(&[7], &[7, 2, 7, -2, 5, -1, i32::MAX]),
    );
    assert_bits(
        &binary_of(BinaryOp::Min, &a, &b),
        &i32s(&[7], &[2, -7, -2, -7, 0, i32::MIN, 1]),
    );
    let big = i32s(&[1], &[65_536]);
    assert_bits(&binary_of(BinaryOp::Mul, &big, &big), &i32s(&[1], &[0]));
}

#[test]
fn builder_broadcasting_stretches_size_one_and_missing_dims() {
    // [2,3] + [3]: the row is added to every row.
    let m = f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let row = f32s(&[3], &[10., 20., 30.]);
    let got = binary_of(BinaryOp::Add, &m, &row);
    assert_bits(&got, &f32s(&[2, 3], &[11., 22., 33., 14., 25., 36.]));
    // [2,1] * [1,3]: an outer product.
    let col = i32s(&[2, 1], &[1, 2]);
    let row = i32s(&[1, 3], &[3, 4, 5]);
    let got = binary_of(BinaryOp::Mul, &col, &row);
    assert_bits(&got, &i32s(&[2, 3], &[3, 4, 5, 6, 8, 10]));
    // A scalar against a rank-3 tensor.
    let s = f64s(&[], &[2.0]);
    let t = f64s(&[2, 1, 2], &[1., 2., 3., 4.]);
    let got = binary_of(BinaryOp::Sub, &t, &s);
    assert_bits(&got, &f64s(&[2, 1, 2], &[-1., 0., 1., 2.]));
}

// ---- compare and select ----

#[test]
fn comparisons_are_ieee_and_nan_is_unordered() {
    let a = f32s(&[4], &[1.0, 2.0, 3.0, f32::NAN]);
    let b = f32s(&[4], &[2.0, 2.0, 2.0, f32::NAN]);
    let cases = [
        (CmpDir::Lt, [true, false, false, false]),
        (CmpDir::Le, [true, true, false, false]),
        (CmpDir::Gt, [false, false, true, false]),
        (CmpDir::Ge, [false, true, true, false]),
        (CmpDir::Eq, [false, true, false, false]),
        (CmpDir::Ne, [true, false, true, true]),
    ];
    for (dir, want) in cases {
        let got = eval(&[&a, &b], move |bl, v| bl.compare(dir, v[0], v[1]));
        assert_bits(&got, &bools(&[4], &want));
        let (ai, bi) = (i32s(&[4], &[1, 2, 3, 0]), i32s(&[4], &[2, 2, 2, 1]));
        let mut want_i = want;
        want_i[3] = matches!(dir, CmpDir::Lt | CmpDir::Le | CmpDir::Ne);
        let got = eval(&[&ai, &bi], move |bl, v| bl.compare(dir, v[0], v[1]));
        assert_bits(&got, &bools(&[4], &want_i));
        let (ad, bd) = (a.cast(DType::F64), b.cast(DType::F64));
        let got = eval(&[&ad, &bd], move |bl, v| bl.compare(dir, v[0], v[1]));
        assert_bits(&got, &bools(&[4], &want));
    }
    // -0 == +0.
    let got = eval(&[&f32s(&[1], &[-0.0]), &f32s(&[1], &[0.0])], |b, v| {
        b.compare(CmpDir::Eq, v[0], v[1])
    });
    assert_bits(&got, &bools(&[1], &[true]));
}

#[test]
fn bool_supports_eq_and_ne() {
    let a = bools(&[4], &[true, true, false, false]);
    let b = bools(&[4], &[true, false, true, false]);
    let got = eval(&[&a, &b], |bl, v| bl.compare(CmpDir::Eq, v[0], v[1]));
    assert_bits(&got, &bools(&[4], &[true, false, false, true]));
    let got = eval(&[&a, &b], |bl, v| bl.compare(CmpDir::Ne, v[0], v[1]));
    assert_bits(&got, &bools(&[4], &[false, true, true, false]));
}

#[test]
fn select_picks_per_element_in_every_dtype() {
    let c = bools(&[3], &[true, false, true]);
    let got = eval(
        &[
            &c,
            &f32s(&[3], &[1., 2., 3.]),
            &f32s(&[3], &[-1., -2., -3.]),
        ],
        |b, v| b.select(v[0], v[1], v[2]),
    );
    assert_bits(&got, &f32s(&[3], &[1., -2., 3.]));
    let got = eval(
        &[&c, &i32s(&[3], &[1, 2, 3]), &i32s(&[3], &[7, 8, 9])],
        |b, v| b.select(v[0], v[1], v[2]),
    );
    assert_bits(&got, &i32s(&[3], &[1, 8, 3]));
    let got = eval(
        &[&c, &bools(&[3], &[false; 3]), &bools(&[3], &[true; 3])],
        |b, v| b.select(v[0], v[1], v[2]),
    );
    assert_bits(&got, &bools(&[3], &[false, true, false]));
    let got = eval(&[&c, &f64s(&[], &[NAN]), &f64s(&[], &[0.0])], |b, v| {
        b.select(v[0], v[1], v[2])
    });
    assert_close(&got, &[NAN, 0.0, NAN], 0.0, 0.0);
}

// ---- reductions ----

/// `[2,3,2]` holding 0..12.
fn cube() -> Tensor {
    f32s(&[2, 3, 2], &(0..12).map(|v| v as f32).collect::<Vec<_>>())
}

#[test]
fn reduce_sum_over_each_axis_set_with_and_without_keep_dims() {
    let x = cube();
    let sum = |axes: &'static [isize], keep: bool| {
        eval(&[&cube()], move |b, v| b.reduce_sum(v[0], axes, keep))
    };
    assert_bits(
        &sum(&[0], false),
        &f32s(&[3, 2], &[6., 8., 10., 12., 14., 16.]),
    );
    assert_bits(&sum(&[1], false), &f32s(&[2, 2], &[6., 9., 24., 27.]));
    assert_bits(&sum(&[1], true), &f32s(&[2, 1, 2], &[6., 9., 24., 27.]));
    assert_bits(
        &sum(&[2], false),
        &f32s(&[2, 3], &[1., 5., 9., 13., 17., 21.]),
    );
    assert_bits(&sum(&[0, 2], false), &f32s(&[3], &[14., 22., 30.]));
    assert_bits(&sum(&[0, 2], true), &f32s(&[1, 3, 1], &[14., 22., 30.]));
    assert_bits(&sum(&[0, 1, 2], false), &f32s(&[], &[66.]));
    assert_bits(&sum(&[0, 1, 2], true), &f32s(&[1, 1, 1], &[66.]));
    // No axes: the identity, bit for bit.
    assert_bits(&sum(&[], false), &x);
    let z = f32s(&[2], &[-0.0, 1.0]);
    let got = eval(&[&z], |b, v| b.reduce_sum(v[0], &[], false));
    assert_bits(&got, &z);

    let ints = i32s(&[2, 2], &[i32::MAX, 1, -4, 2]);
    let got = eval(&[&ints], |b, v| b.reduce_sum(v[0], &[1], false));
    assert_bits(&got, &i32s(&[2], &[i32::MIN, -2]));
    let got = eval(&[&f64s(&[2, 2], &[0.5, 0.25, 1.0, 2.0])], |b, v| {
        b.reduce_sum(v[0], &[0], true)
    });
    assert_bits(&got, &f64s(&[1, 2], &[1.5, 2.25]));
}

#[test]
fn reduce_sum_accumulates_in_row_major_order_in_the_dtype() {
    // ((1e8 + 1) + -1e8) + 1 in f32: 1e8 + 1 rounds back to 1e8, so the sum is 1, not 2.
    let x = f32s(&[4], &[1e8, 1.0, -1e8, 1.0]);
    let got = eval(&[&x], |b, v| b.reduce_sum(v[0], &[0], false));
    assert_bits(&got, &f32s(&[], &[1.0]));
    // Over two reduced axes the order is row-major in (axis0, axis2): 1e8, 1, -1e8, 1 again.
    let x = f32s(&[2, 1, 2], &[1e8, 1.0, -1e8, 1.0]);
    let got = eval(&[&x], |b, v| b.reduce_sum(v[0], &[0, 2], false));
    assert_bits(&got, &f32s(&[1], &[1.0]));
}

#[test]
fn reduce_max_propagates_nan_and_handles_every_dtype() {
    let got = eval(&[&cube()], |b, v| b.reduce_max(v[0], &[1], true));
    assert_bits(&got, &f32s(&[2, 1, 2], &[4., 5., 10., 11.]));
    let x = f64s(&[2, 3], &[1.0, NAN, 3.0, -INF, -5.0, -INF]);
    let got = eval(&[&x], |b, v| b.reduce_max(v[0], &[1], false));
    assert_close(&got, &[NAN, -5.0], 0.0, 0.0);
    let x = f32s(&[3], &[f32::NAN, 1.0, 2.0]);
    let got = eval(&[&x], |b, v| b.reduce_max(v[0], &[0], false));
    assert_close(&got, &[NAN], 0.0, 0.0);
    let x = i32s(&[2, 2], &[-3, -9, 4, i32::MIN]);
    let got = eval(&[&x], |b, v| b.reduce_max(v[0], &[0], false));
    assert_bits(&got, &i32s(&[2], &[4, -9]));
    let got = eval(&[&x], |b, v| b.reduce_max(v[0], &[], false));
    assert_bits(&got, &x);
}

#[test]
fn reductions_over_a_zero_size_dim_give_their_identity() {
    let x = f32s(&[2, 0], &[]);
    let got = eval(&[&x], |b, v| b.reduce_sum(v[0], &[1], false));
    assert_bits(&got, &f32s(&[2], &[0.0, 0.0]));
    let got = eval(&[&x], |b, v| b.reduce_max(v[0], &[1], true));
    assert_bits(&got, &f32s(&[2, 1], &[f32::NEG_INFINITY; 2]));
    let got = eval(&[&x], |b, v| b.reduce_max(v[0], &[0], false));
    assert_bits(&got, &f32s(&[0], &[]));
    let x = i32s(&[0, 3], &[]);
    let got = eval(&[&x], |b, v| b.reduce_max(v[0], &[0], false));
    assert_bits(&got, &i32s(&[3], &[i32::MIN; 3]));
    let got = eval(&[&x], |b, v| b.reduce_sum(v[0], &[0, 1], false));
    assert_bits(&got, &i32s(&[], &[0]));
    let x = f64s(&[0], &[]);
    let got = eval(&[&x], |b, v| b.reduce_max(v[0], &[0], false));
    assert_bits(&got, &f64s(&[], &[f64::NEG_INFINITY]));
}

// ---- movement ----

#[test]
fn reshape_keeps_row_major_order() {
    let got = eval(&[&cube()], |b, v| b.reshape(v[0], &[3, 4]));
    assert_bits(&got, &cube().reshape(&[3, 4]).unwrap());
    let flags = bools(&[2, 2], &[true, false, false, true]);
    let got = eval(&[&flags], |b, v| b.reshape(v[0], &[4, 1]));
    assert_bits(&got, &bools(&[4, 1], &[true, false, false, true]));
}

#[test]
fn transpose_of_rank_3() {
    // x[i, j, k] = 6i + 2j + k, shape [2,3,2]. perm [2,0,1]: out[k, i, j] = x[i, j, k], shape [2,2,3].
    let got = eval(&[&cube()], |b, v| b.transpose(v[0], &[2, 0, 1]));
    let want = [0., 2., 4., 6., 8., 10., 1., 3., 5., 7., 9., 11.];
    assert_bits(&got, &f32s(&[2, 2, 3], &want));
    // perm [1,2,0]: out[j, k, i] = x[i, j, k], shape [3,2,2].
    let got = eval(&[&cube()], |b, v| b.transpose(v[0], &[1, 2, 0]));
    let want = [0., 6., 1., 7., 2., 8., 3., 9., 4., 10., 5., 11.];
    assert_bits(&got, &f32s(&[3, 2, 2], &want));
    let ints = i32s(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let got = eval(&[&ints], |b, v| b.transpose(v[0], &[1, 0]));
    assert_bits(&got, &i32s(&[3, 2], &[1, 4, 2, 5, 3, 6]));
}

#[test]
fn explicit_broadcast_adds_leading_dims_and_stretches_ones() {
    let x = i32s(&[2, 1], &[1, 2]);
    let got = eval(&[&x], |b, v| b.broadcast(v[0], &[2, 2, 3]));
    assert_bits(
        &got,
        &i32s(&[2, 2, 3], &[1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]),
    );
    let s = bools(&[], &[true]);
    let got = eval(&[&s], |b, v| b.broadcast(v[0], &[2, 2]));
    assert_bits(&got, &bools(&[2, 2], &[true; 4]));
    let got = eval(&[&f64s(&[1], &[2.5])], |b, v| b.broadcast(v[0], &[0, 3]));
    assert_bits(&got, &f64s(&[0, 3], &[]));
}

#[test]
fn slice_takes_a_half_open_box() {
    let got = eval(&[&cube()], |b, v| b.slice(v[0], &[1, 1, 0], &[2, 3, 1]));
    assert_bits(&got, &f32s(&[1, 2, 1], &[8., 10.]));
    let got = eval(&[&cube()], |b, v| b.slice(v[0], &[0, 2, 1], &[2, 3, 2]));
    assert_bits(&got, &f32s(&[2, 1, 1], &[5., 11.]));
    let got = eval(&[&cube()], |b, v| b.slice(v[0], &[0, 1, 0], &[2, 1, 2]));
    assert_bits(&got, &f32s(&[2, 0, 2], &[]));
    let got = eval(&[&cube()], |b, v| b.slice(v[0], &[0, 0, 0], &[2, 3, 2]));
    assert_bits(&got, &cube());
}

#[test]
fn concat_joins_along_any_axis() {
    let a = i32s(&[2, 2], &[1, 2, 3, 4]);
    let b = i32s(&[2, 1], &[5, 6]);
    let c = i32s(&[2, 0], &[]);
    let got = eval(&[&a, &b, &c], |bl, v| bl.concat(v, 1));
    assert_bits(&got, &i32s(&[2, 3], &[1, 2, 5, 3, 4, 6]));
    let got = eval(&[&a, &a], |bl, v| bl.concat(v, 0));
    assert_bits(&got, &i32s(&[4, 2], &[1, 2, 3, 4, 1, 2, 3, 4]));
    let x = bools(&[1, 2], &[true, false]);
    let y = bools(&[1, 1], &[true]);
    let got = eval(&[&x, &y], |bl, v| bl.concat(v, -1));
    assert_bits(&got, &bools(&[1, 3], &[true, false, true]));
    let got = eval(&[&cube(), &cube()], |bl, v| bl.concat(v, 2));
    let want: Vec<f32> = (0..6)
        .flat_map(|r| {
            let r = 2.0 * r as f32;
            [r, r + 1.0, r, r + 1.0]
        })
        .collect();
    assert_bits(&got, &f32s(&[2, 3, 4], &want));
    let got = eval(&[&f64s(&[1], &[1.5])], |bl, v| bl.concat(v, 0));
    assert_bits(&got, &f64s(&[1], &[1.5]));
}

// ---- matmul ----

#[test]
fn matmul_of_matrices_in_every_numeric_dtype() {
    // [[1,2,3],[4,5,6]] x [[7,8],[9,10],[11,12]] = [[58,64],[139,154]].
    let a = [1., 2., 3., 4., 5., 6.];
    let b = [7., 8., 9., 10., 11., 12.];
    let got = eval(&[&f32s(&[2, 3], &a), &f32s(&[3, 2], &b)], |bl, v| {
        bl.matmul(v[0], v[1])
    });
    assert_bits(&got, &f32s(&[2, 2], &[58., 64., 139., 154.]));
    let got = eval(
        &[
            &f64s(&[2, 3], &a.map(f64::from)),
            &f64s(&[3, 2], &b.map(f64::from)),
        ],
        |bl, v| bl.matmul(v[0], v[1]),
    );
    assert_bits(&got, &f64s(&[2, 2], &[58., 64., 139., 154.]));
    let ai = i32s(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let bi = i32s(&[3, 2], &[7, 8, 9, 10, 11, 12]);
    let got = eval(&[&ai, &bi], |bl, v| bl.matmul(v[0], v[1]));
    assert_bits(&got, &i32s(&[2, 2], &[58, 64, 139, 154]));
    // i32 accumulation wraps: 65536 * 65536 + 1 * 1 = 2^32 + 1 ≡ 1.
    let x = i32s(&[1, 2], &[65_536, 1]);
    let y = i32s(&[2, 1], &[65_536, 1]);
    let got = eval(&[&x, &y], |bl, v| bl.matmul(v[0], v[1]));
    assert_bits(&got, &i32s(&[1, 1], &[1]));
}

#[test]
fn batched_matmul_multiplies_each_batch_separately() {
    // Batch 0: identity x B0 = B0; batch 1: [[0,1],[1,0]] x B1 swaps B1's rows.
    let a = f32s(&[2, 2, 2], &[1., 0., 0., 1., 0., 1., 1., 0.]);
    let b = f32s(
        &[2, 2, 3],
        &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
    );
    let got = eval(&[&a, &b], |bl, v| bl.matmul(v[0], v[1]));
    let want = [1., 2., 3., 4., 5., 6., 10., 11., 12., 7., 8., 9.];
    assert_bits(&got, &f32s(&[2, 2, 3], &want));
    // Rank 4 with batch dims [2,1].
    let a = f64s(&[2, 1, 1, 2], &[1., 2., 3., 4.]);
    let b = f64s(&[2, 1, 2, 1], &[5., 6., 7., 8.]);
    let got = eval(&[&a, &b], |bl, v| bl.matmul(v[0], v[1]));
    assert_bits(&got, &f64s(&[2, 1, 1, 1], &[17., 53.]));
}

#[test]
fn matmul_with_empty_dims() {
    // k = 0: every entry is an empty sum, 0.
    let got = eval(&[&f32s(&[2, 0], &[]), &f32s(&[0, 3], &[])], |bl, v| {
        bl.matmul(v[0], v[1])
    });
    assert_bits(&got, &f32s(&[2, 3], &[0.0; 6]));
    let got = eval(
        &[&f32s(&[0, 2], &[]), &f32s(&[2, 3], &[0.0; 6])],
        |bl, v| bl.matmul(v[0], v[1]),
    );
    assert_bits(&got, &f32s(&[0, 3], &[]));
}

#[test]
fn elementwise_ops_on_empty_tensors() {
    let e = f32s(&[0, 3], &[]);
    let got = eval(&[&e, &e], |b, v| {
        let s = b.add(v[0], v[1])?;
        b.exp(s)
    });
    assert_bits(&got, &e);
    let got = eval(&[&e], |b, v| b.transpose(v[0], &[1, 0]));
    assert_bits(&got, &f32s(&[3, 0], &[]));
}

// ---- graph-level behaviour ----

#[test]
fn run_all_gives_every_node_and_run_named_every_output_by_name() {
    let mut b = Builder::new("g");
    let x = b.data("x", TensorType::f32(&[2])).unwrap();
    let y = b.data("y", TensorType::f32(&[2])).unwrap();
    let s = b.add(x, y).unwrap();
    let unused = b.exp(x).unwrap();
    let p = b.mul(s, x).unwrap();
    b.output("prod", p).unwrap();
    b.output("sum", s).unwrap();
    let g = b.finish();
    let (xv, yv) = (f32s(&[2], &[1., 2.]), f32s(&[2], &[3., 4.]));

    let all = interp::run_all(&g, &[xv.clone(), yv.clone()]).unwrap();
    assert_eq!(all.len(), g.len());
    assert_bits(&all[s.index()], &f32s(&[2], &[4., 6.]));
    assert_close(&all[unused.index()], &[1f64.exp(), 2f64.exp()], 1e-6, 0.0);
    assert_bits(&all[p.index()], &f32s(&[2], &[4., 12.]));

    let outs = interp::run(&g, &[xv.clone(), yv.clone()]).unwrap();
    assert_eq!(outs, vec![all[p.index()].clone(), all[s.index()].clone()]);

    let named = HashMap::from([("y".to_string(), yv), ("x".to_string(), xv)]);
    let outs = interp::run_named(&g, &named).unwrap();
    assert_eq!(outs.keys().collect::<Vec<_>>(), ["prod", "sum"]);
    assert_bits(&outs["sum"], &f32s(&[2], &[4., 6.]));
}

fn two_input_graph() -> Graph {
    let mut b = Builder::new("g");
    let x = b.data("x", TensorType::f32(&[2, 3])).unwrap();
    let w = b.param("w", TensorType::f32(&[3])).unwrap();
    let y = b.mul(x, w).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

#[track_caller]
fn assert_bad_input(result: Result<impl std::fmt::Debug, IrError>, name: &str, mentions: &[&str]) {
    match result {
        Err(IrError::BadInput { input, message }) => {
            assert_eq!(input, name, "{message}");
            for m in mentions {
                assert!(message.contains(m), "`{message}` does not mention `{m}`");
            }
        }
        other => panic!("expected BadInput for `{name}`, got {other:?}"),
    }
}

#[test]
fn input_errors_name_the_input_and_both_types() {
    let g = two_input_graph();
    let x = f32s(&[2, 3], &[0.0; 6]);
    let w = f32s(&[3], &[1.0; 3]);
    assert_bad_input(
        interp::run(&g, std::slice::from_ref(&x)),
        "w",
        &["2", "got 1"],
    );
    assert_bad_input(interp::run(&g, &[]), "x", &["2", "got 0"]);
    assert_bad_input(
        interp::run(&g, &[x.clone(), w.clone(), w.clone()]),
        "#2",
        &["got 3"],
    );
    assert_bad_input(
        interp::run(&g, &[x.clone(), w.cast(DType::F64)]),
        "w",
        &["dtype", "f32[3]", "f64[3]"],
    );
    assert_bad_input(
        interp::run(&g, &[f32s(&[3, 2], &[0.0; 6]), w.clone()]),
        "x",
        &["shape", "f32[2,3]", "f32[3,2]"],
    );
    let named = |pairs: &[(&str, &Tensor)]| -> HashMap<String, Tensor> {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), (*t).clone()))
            .collect()
    };
    assert_bad_input(
        interp::run_named(&g, &named(&[("x", &x)])),
        "w",
        &["f32[3]"],
    );
    assert_bad_input(
        interp::run_named(&g, &named(&[("x", &x), ("w", &w), ("z", &w)])),
        "z",
        &["no input"],
    );
    assert_bad_input(
        interp::run_named(&g, &named(&[("x", &x), ("w", &i32s(&[3], &[0; 3]))])),
        "w",
        &["i32[3]", "f32[3]"],
    );
    let err = interp::run(&g, &[x.clone(), w.cast(DType::F64)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input `w`: dtype mismatch: expected f32[3], got f64[3]"
    );
}

#[test]
fn nodes_over_2_pow_31_elements_are_refused_not_allocated() {
    let mut b = Builder::new("huge");
    let one = b.scalar(1.0, DType::F32).unwrap();
    let big = b.broadcast(one, &[1 << 16, 1 << 16]).unwrap();
    let s = b.sum_all(big).unwrap();
    b.output("s", s).unwrap();
    let g = b.finish();
    let err = interp::run(&g, &[]).unwrap_err();
    assert!(err.to_string().contains("2^31"), "{err}");
    // A dead node that large is not evaluated by `run`, but is by `run_all`.
    let mut b = Builder::from_graph(g);
    let small = b.scalar(2.0, DType::F32).unwrap();
    let mut g = b.finish();
    g.clear_outputs();
    g.add_output("small", small).unwrap();
    assert_bits(&interp::run(&g, &[]).unwrap()[0], &f32s(&[], &[2.0]));
    assert!(interp::run_all(&g, &[]).is_err());
}

#[test]
fn primitive_ops_added_directly_evaluate_like_builder_ones() {
    let mut g = Graph::new("raw");
    let x = g
        .add_input("x", kiln_ir::Role::Data, TensorType::f32(&[2]))
        .unwrap();
    let e = g.add(Op::Unary(UnaryOp::Exp), &[x]).unwrap();
    let m = g.add(Op::Binary(BinaryOp::Mul), &[e, x]).unwrap();
    g.add_output("m", m).unwrap();
    let got = interp::run(&g, &[f32s(&[2], &[0.0, 1.0])]).unwrap();
    assert_close(&got[0], &[0.0, 1f64.exp()], 1e-6, 0.0);
}
