//! Code paths of the CPU code generator (`kiln::backend::cpu::codegen`) that the corpus and random graphs reach only
//! by chance: the unrolled elementwise loop and its 4-wide and scalar tails at every remainder, FMA contraction
//! computing the same bits in the scalar and the vector loop, and a `for` nest that multiplies by the reciprocal of
//! an invariant divisor (and divides where that would not be within an ulp).

use kiln::ir::{interp, Builder, Graph, Tensor, TensorType, Value};
use kiln::Options;
use kiln_tests::differential::{self, Tolerance};

/// As `cpu_backend.rs`: `|a - b| <= 1e-5 + 1e-4·|b|`.
const TOL: Tolerance = Tolerance {
    atol: 1e-5,
    rtol: 1e-4,
};

fn options(threads: usize) -> Options {
    Options {
        threads,
        ..Options::default()
    }
}

/// Compiles `graph` for `threads` threads with chunks of single points (chunks start and end mid-row, so every
/// vector loop and tail runs), runs it on `inputs` and checks the outputs against the interpreter's `expected`.
fn run_in_point_chunks(
    graph: &Graph,
    inputs: &[Tensor],
    expected: &[Tensor],
    threads: usize,
    context: impl FnOnce() -> String,
) -> Vec<Tensor> {
    let mut exe = kiln::compile(graph, &options(threads)).unwrap();
    exe.set_min_chunk(1);
    let got = exe.run(inputs).unwrap();
    differential::assert_outputs_match(graph, expected, &got, TOL, "cpu", context);
    got
}

/// Elementwise outputs of `x` that exercise contraction (`a·b + c`, `c - a·b`, `a·b - c`), ReLU's `maxps` form, the
/// shared exp of `tanh` and `logistic`, and a division: W1's chain and three more.
fn chain(len: usize) -> Graph {
    let mut b = Builder::new("chain");
    let x = b.data("x", TensorType::f32(&[len])).unwrap();
    let affine = b.mul_scalar(x, 1.5).unwrap();
    let affine = b.add_scalar(affine, 0.25).unwrap();
    let gate = b.relu(affine).unwrap();
    let s = b.sigmoid(x).unwrap();
    let left = b.mul(gate, s).unwrap();
    let t = b.tanh(x).unwrap();
    let right = b.mul_scalar(t, 0.5).unwrap();
    let w1 = b.add(left, right).unwrap();
    b.output("w1", w1).unwrap();
    let xx = b.mul(x, x).unwrap();
    let c = b.full_like(x, 0.75).unwrap();
    let c_minus = b.sub(c, xx).unwrap();
    b.output("c_minus_xx", c_minus).unwrap();
    let xs = b.mul(x, s).unwrap();
    let minus_c = b.sub(xs, t).unwrap();
    // Not divided by `affine`: contraction changes where `1.5·x + 0.25` cancels (x = -1/6: 0 in the interpreter, the
    // product's rounding error with fma), which a division would blow up.
    let denominator = b.add_scalar(xx, 1.0).unwrap();
    let ratio = b.div(minus_c, denominator).unwrap();
    b.output("xs_minus_t_over_xx_plus_1", ratio).unwrap();
    b.finish()
}

/// `len` values spread over `[-6, 6]` with a few specials (zeros, the ReLU edge, infinities, NaN).
fn values(len: usize) -> Vec<f32> {
    let specials = [
        0.0,
        -0.0,
        -1.0 / 6.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    (0..len)
        .map(|i| {
            if i % 7 == 3 {
                specials[(i / 7) % specials.len()]
            } else {
                ((i as f32 * 0.618_034).fract() - 0.5) * 12.0
            }
        })
        .collect()
}

/// Bits of every element, every NaN as one NaN (a NaN's sign and payload are not part of a result).
fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32()
        .expect("f32")
        .iter()
        .map(|y| if y.is_nan() { f32::NAN } else { *y }.to_bits())
        .collect()
}

/// Every length up to 40 covers the 16-point loop with each remainder 0..15 behind it, the 4-point loop alone and
/// the scalar tail alone. Each element must have the bits that the scalar code (a one-element graph, which has no
/// vector loop) computes for it, on one thread and on three, and match the interpreter.
#[test]
fn unrolled_elementwise_loop_and_tails_compute_what_the_scalar_code_does() {
    let all = values(40);
    let single = kiln::compile(&chain(1), &options(1)).unwrap();
    let alone: Vec<Vec<u32>> = all
        .iter()
        .map(|&x| {
            let out = single
                .run(&[Tensor::from_f32(&[1], vec![x]).unwrap()])
                .unwrap();
            out.iter().map(|t| bits(t)[0]).collect()
        })
        .collect();
    for len in 1..=all.len() {
        let graph = chain(len);
        let inputs = [Tensor::from_f32(&[len], all[..len].to_vec()).unwrap()];
        let expected = interp::run(&graph, &inputs).unwrap();
        for threads in [1, 3] {
            let got = run_in_point_chunks(&graph, &inputs, &expected, threads, || {
                format!("length {len}, {threads} threads")
            });
            for (output, t) in got.iter().enumerate() {
                let want: Vec<u32> = alone[..len].iter().map(|o| o[output]).collect();
                assert_eq!(
                    bits(t),
                    want,
                    "output {output}, length {len}, {threads} threads: vector and scalar loops differ"
                );
            }
        }
    }
}

/// `y = x / s` with `s` the row sums of `w`: one kernel whose `for` divides by the row's reduction.
fn divide_by_row_sum(rows: usize, cols: usize) -> Graph {
    let mut b = Builder::new("divide_by_row_sum");
    let x = b.data("x", TensorType::f32(&[rows, cols])).unwrap();
    let w = b.data("w", TensorType::f32(&[rows, cols])).unwrap();
    let s: Value = b.reduce_sum(w, &[1], true).unwrap();
    let s = b.broadcast(s, &[rows, cols]).unwrap();
    let y = b.div(x, s).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

/// The distance of two f32 in representable numbers.
fn ulps(a: f32, b: f32) -> u64 {
    let ordered = |x: f32| {
        let bits = x.to_bits() as i32;
        if bits < 0 {
            i64::from(i32::MIN) - i64::from(bits)
        } else {
            i64::from(bits)
        }
    };
    (ordered(a) - ordered(b)).unsigned_abs()
}

/// Rows whose divisor is ordinary, 0, ±inf, NaN (all exact either way), subnormal or above 2^126 (where `1/s` would
/// overflow or lose bits: the nest divides). Results are within an ulp of the interpreter's division, and exactly
/// its bits on the rows that divide and wherever the quotient is 0, infinite or NaN.
#[test]
fn for_nest_divides_by_an_invariant_through_its_reciprocal_only_where_safe() {
    let row_sums: [f32; 9] = [
        3.0,
        -0.37,
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-39,
        -3e-42,
        1.6e38,
    ];
    let divides = |s: f32| {
        let a = s.abs();
        (a > 0.0 && a < f32::MIN_POSITIVE) || (a > 2f32.powi(126) && a.is_finite())
    };
    for cols in [2, 3, 4, 7, 16, 21] {
        let rows = row_sums.len();
        let graph = divide_by_row_sum(rows, cols);
        let program = kiln::kernel_program(&graph, &options(1)).unwrap();
        let printed = kiln::kernel::print(&program);
        assert!(
            program.kernels.len() == 1 && printed.contains("for (") && printed.contains("div"),
            "one kernel with the division in a for nest:\n{printed}"
        );
        // w: the row sum in the first column, zeros after it (exact sums).
        let w: Vec<f32> = row_sums
            .iter()
            .flat_map(|&s| (0..cols).map(move |j| if j == 0 { s } else { 0.0 }))
            .collect();
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| match i % 5 {
                0 => 0.0,
                1 => 1e-38,
                2 => -2.5e30,
                _ => (i as f32 * 0.7548777).fract() * 10.0 - 5.0,
            })
            .collect();
        let inputs = [
            Tensor::from_f32(&[rows, cols], x.clone()).unwrap(),
            Tensor::from_f32(&[rows, cols], w).unwrap(),
        ];
        let expected = interp::run(&graph, &inputs).unwrap();
        let want = expected[0].as_f32().unwrap();
        for threads in [1, 2] {
            let got = kiln::compile(&graph, &options(threads))
                .unwrap()
                .run(&inputs)
                .unwrap();
            let got = got[0].as_f32().unwrap();
            for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                let s = row_sums[i / cols];
                let what = format!("{} / {s:e} (cols {cols}, {threads} threads)", x[i]);
                if divides(s) || !w.is_finite() || w == 0.0 {
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "{what}: got {g:e}, want exactly {w:e}"
                    );
                } else {
                    assert!(ulps(g, w) <= 1, "{what}: got {g:e}, want {w:e}");
                }
            }
        }
    }
}

/// Softmax rows of every width up to 40: the `for` nest's 16-point loop with each remainder behind it, against the
/// interpreter.
#[test]
fn softmax_rows_of_every_width_match_the_interpreter() {
    for cols in 1..=40 {
        let mut b = Builder::new("softmax");
        let x = b.data("x", TensorType::f32(&[3, cols])).unwrap();
        let y = b.softmax(x, -1).unwrap();
        b.output("y", y).unwrap();
        let graph = b.finish();
        let x: Vec<f32> = (0..3 * cols)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 20.0)
            .collect();
        let inputs = [Tensor::from_f32(&[3, cols], x).unwrap()];
        let expected = interp::run(&graph, &inputs).unwrap();
        let got = kiln::compile(&graph, &options(2))
            .unwrap()
            .run(&inputs)
            .unwrap();
        differential::assert_outputs_match(&graph, &expected, &got, TOL, "cpu", || {
            format!("width {cols}")
        });
    }
}

/// Column reductions of `x: [rows, cols]`: `Σ_i exp(x[i, j])·w[i]` (`w` the same for every column: a splat per row),
/// `max_i x[i, j]`, and their sum (an epilogue after the reductions, in the same kernel).
fn column_reductions(rows: usize, cols: usize) -> Graph {
    let mut b = Builder::new("column_reductions");
    let x = b.data("x", TensorType::f32(&[rows, cols])).unwrap();
    let w = b.data("w", TensorType::f32(&[rows, 1])).unwrap();
    let e = b.exp(x).unwrap();
    let w = b.broadcast(w, &[rows, cols]).unwrap();
    let weighted = b.mul(e, w).unwrap();
    let sum = b.reduce_sum(weighted, &[0], false).unwrap();
    let max = b.reduce_max(x, &[0], false).unwrap();
    let both = b.add(sum, max).unwrap();
    b.output("sum", sum).unwrap();
    b.output("max", max).unwrap();
    b.output("sum_plus_max", both).unwrap();
    b.finish()
}

/// A reduction over rows inside the parallel loop over columns runs a lane per column (odd widths leave scalar
/// tails): each column's results must have the bits of the scalar code (the one-column graph, which has no vector
/// loop), on one and three threads, and match the interpreter.
#[test]
fn column_reductions_run_a_lane_per_column_with_the_scalar_bits() {
    for rows in [1, 2, 5] {
        let x_all: Vec<f32> = (0..rows * 21)
            .map(|i| match i % 11 {
                4 => f32::NAN,
                7 => -0.0,
                _ => ((i as f32 * 0.618_034).fract() - 0.5) * 8.0,
            })
            .collect();
        let w: Vec<f32> = (0..rows).map(|i| 0.5 + i as f32 * 0.25).collect();
        let column = |j: usize, cols: usize| -> Vec<f32> {
            (0..rows).map(|i| x_all[i * 21 + j % cols]).collect()
        };
        let single = kiln::compile(&column_reductions(rows, 1), &options(1)).unwrap();
        for cols in 1..=21 {
            let graph = column_reductions(rows, cols);
            let x: Vec<f32> = (0..rows)
                .flat_map(|i| (0..cols).map(move |j| (i, j)))
                .map(|(i, j)| column(j, cols)[i])
                .collect();
            let inputs = [
                Tensor::from_f32(&[rows, cols], x).unwrap(),
                Tensor::from_f32(&[rows, 1], w.clone()).unwrap(),
            ];
            if cols >= 4 && rows > 1 {
                let program = kiln::kernel_program(&graph, &options(1)).unwrap();
                let vectorized = (0..program.kernels.len()).any(|k| {
                    kiln::backend::cpu::codegen::clif_text(&program, k)
                        .unwrap()
                        .contains("fadd.f32x4")
                });
                assert!(vectorized, "{rows}×{cols}: a column sum in f32x4");
            }
            let expected = interp::run(&graph, &inputs).unwrap();
            for threads in [1, 3] {
                let got = run_in_point_chunks(&graph, &inputs, &expected, threads, || {
                    format!("{rows}×{cols}, {threads} threads")
                });
                for j in 0..cols {
                    let alone = single
                        .run(&[
                            Tensor::from_f32(&[rows, 1], column(j, cols)).unwrap(),
                            Tensor::from_f32(&[rows, 1], w.clone()).unwrap(),
                        ])
                        .unwrap();
                    for (output, (t, a)) in got.iter().zip(&alone).enumerate() {
                        assert_eq!(
                            bits(t)[j],
                            bits(a)[0],
                            "output {output}, column {j} of {rows}×{cols}, {threads} threads"
                        );
                    }
                }
            }
        }
    }
}

/// Row sums and maxima of `x: [rows, cols]` in `dtype`, of `|x|·3 - x` (a body with arithmetic) and of `x`.
fn row_reductions(rows: usize, cols: usize, dtype: kiln::DType) -> Graph {
    let mut b = Builder::new("row_reductions");
    let x = b
        .data("x", TensorType::f32(&[rows, cols]).with_dtype(dtype))
        .unwrap();
    let a = b.abs(x).unwrap();
    let three = b.full_like(x, 3.0).unwrap();
    let a3 = b.mul(a, three).unwrap();
    let body = b.sub(a3, x).unwrap();
    let sum = b.reduce_sum(body, &[1], false).unwrap();
    let max = b.reduce_max(x, &[1], false).unwrap();
    b.output("sum", sum).unwrap();
    b.output("max", max).unwrap();
    b.finish()
}

/// i32 and f64 reductions over a contiguous innermost loop run i32x4 / f64x2 vectors (widths 1..21 leave every
/// tail): i32 sums (wrapping) and maxima, and f64 maxima, equal the interpreter's exactly; f64 sums are reassociated,
/// within the tolerance. The same bits on one and three threads.
#[test]
fn i32_and_f64_row_reductions_are_vectorized_and_match_the_interpreter() {
    for dtype in [kiln::DType::I32, kiln::DType::F64] {
        let rows = 3;
        for cols in 1..=21 {
            let graph = row_reductions(rows, cols, dtype);
            let values: Vec<f64> = (0..rows * cols)
                .map(|i| match (dtype, i % 9) {
                    // i32: values near the ends of the range, so that the sums wrap.
                    (kiln::DType::I32, 2) => f64::from(i32::MAX - i as i32),
                    (kiln::DType::I32, 5) => f64::from(i32::MIN + 7),
                    (kiln::DType::I32, _) => ((i * 7919) % 2001) as f64 - 1000.0,
                    (_, 4) if cols > 6 => f64::NAN,
                    (_, 7) => -0.0,
                    _ => ((i as f64 * 0.618_033_988_7).fract() - 0.5) * 1e3,
                })
                .collect();
            let ty = TensorType::f32(&[rows, cols]).with_dtype(dtype);
            let x = Tensor::from_f64_values(ty, &values).unwrap();
            let inputs = [x];
            if cols >= 4 {
                let program = kiln::kernel_program(&graph, &options(1)).unwrap();
                let want = if dtype == kiln::DType::I32 {
                    "load.i32x4"
                } else {
                    "load.f64x2"
                };
                let clif: String = (0..program.kernels.len())
                    .map(|k| kiln::backend::cpu::codegen::clif_text(&program, k).unwrap())
                    .collect();
                assert!(clif.contains(want), "{dtype} × {cols}: no {want}");
            }
            let expected = interp::run(&graph, &inputs).unwrap();
            let mut first: Option<Vec<Vec<u64>>> = None;
            for threads in [1, 3] {
                let got = run_in_point_chunks(&graph, &inputs, &expected, threads, || {
                    format!("{dtype} × {cols}, {threads} threads")
                });
                let exact = if dtype == kiln::DType::I32 {
                    0..2
                } else {
                    1..2
                };
                for output in exact {
                    let (g, w) = (got[output].to_f64_vec(), expected[output].to_f64_vec());
                    for (a, b) in g.iter().zip(&w) {
                        assert!(
                            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                            "{dtype} × {cols}, output {output}: got {a}, want exactly {b}"
                        );
                    }
                }
                let all: Vec<Vec<u64>> = got
                    .iter()
                    .map(|t| t.to_f64_vec().iter().map(|x| x.to_bits()).collect())
                    .collect();
                match &first {
                    None => first = Some(all),
                    Some(f) => assert_eq!(f, &all, "{dtype} × {cols}: thread counts differ"),
                }
            }
        }
    }
}

/// `sum_k x[i]` over a broadcast (loads that don't move with `k`), inside a parallel loop over `[i, j]`: the scalar
/// loop vectorizes that sum along `k` (reassociated), so the parallel loop must not run it a lane per point in `k`
/// order instead — otherwise a point's bits would depend on whether a thread's chunk reached it in the vector loop or
/// the scalar tail. (Found by `random_wide_graphs_match_the_interpreter`.)
#[test]
fn a_point_has_the_same_bits_whichever_loop_of_a_chunk_runs_it() {
    for k in [5, 7, 19] {
        let mut b = Builder::new("broadcast_sum");
        let x = b.data("x", TensorType::f32(&[4, 1])).unwrap();
        let wide = b.broadcast(x, &[k, 4, 6]).unwrap();
        let sum = b.reduce_sum(wide, &[0], false).unwrap();
        b.output("sum", sum).unwrap();
        let graph = b.finish();
        let inputs = [Tensor::from_f32(&[4, 1], vec![0.1, -1.7, 3.3, 1e-3]).unwrap()];
        let serial = kiln::compile(&graph, &options(1))
            .unwrap()
            .run(&inputs)
            .unwrap();
        let expected = interp::run(&graph, &inputs).unwrap();
        differential::assert_outputs_match(&graph, &expected, &serial, TOL, "cpu", || {
            format!("k = {k}")
        });
        for threads in [2, 3] {
            let mut exe = kiln::compile(&graph, &options(threads)).unwrap();
            // Chunks of single points start and end mid-row: every point may land in either loop.
            exe.set_min_chunk(1);
            let chunked = exe.run(&inputs).unwrap();
            assert_eq!(
                bits(&chunked[0]),
                bits(&serial[0]),
                "k = {k}, {threads} threads"
            );
        }
    }
}

/// Rows of width `cols` whose maximum is where the fast `maxps` fold of a max reduction differs from `fmax`: a NaN
/// at each position (the vector loops' lanes and the scalar tail), zeros of both signs (a `-0` met before a `+0`,
/// at each position), all `-0`, all `+0`, all `-inf`, infinities, and an ordinary row.
fn max_edge_rows(cols: usize) -> Vec<Vec<f64>> {
    let ordinary = |j: usize| ((j as f64 * 0.618_033_988_7).fract() - 0.5) * 100.0;
    let mut rows = Vec::new();
    for p in 0..cols {
        rows.push(
            (0..cols)
                .map(|j| if j == p { f64::NAN } else { ordinary(j) })
                .collect(),
        );
        rows.push((0..cols).map(|j| if j == p { 0.0 } else { -0.0 }).collect());
        rows.push(
            (0..cols)
                .map(|j| {
                    if j == p {
                        -0.0
                    } else {
                        -1.0 - ordinary(j).abs()
                    }
                })
                .collect(),
        );
        rows.push(
            (0..cols)
                .map(|j| match (j + cols - p) % cols {
                    0 => 0.0,
                    1 => -0.0,
                    _ => f64::NEG_INFINITY,
                })
                .collect(),
        );
    }
    rows.push(vec![-0.0; cols]);
    rows.push(vec![0.0; cols]);
    rows.push(vec![f64::NEG_INFINITY; cols]);
    rows.push(
        (0..cols)
            .map(|j| match j % 3 {
                0 => f64::INFINITY,
                1 => f64::NEG_INFINITY,
                _ => ordinary(j),
            })
            .collect(),
    );
    rows.push((0..cols).map(ordinary).collect());
    rows
}

/// Float max reductions over a row (the f32x4 loops of `vector_reduce`, the f64x2 loop of `typed_reduce`) and over
/// a column (f32: a lane per column), on the rows of [`max_edge_rows`] at every width up to 40: bit for bit the
/// interpreter's (NaN as any NaN), on one and three threads in chunks of single points.
#[test]
fn float_max_reductions_are_exact_on_nan_signed_zero_and_infinite_rows() {
    for dtype in [kiln::DType::F32, kiln::DType::F64] {
        for cols in 1..=40 {
            let rows = max_edge_rows(cols);
            let n = rows.len();
            let mut b = Builder::new("max_edges");
            let x = b
                .data("x", TensorType::f32(&[n, cols]).with_dtype(dtype))
                .unwrap();
            let xt = b
                .data("xt", TensorType::f32(&[cols, n]).with_dtype(dtype))
                .unwrap();
            let row_max = b.reduce_max(x, &[1], false).unwrap();
            let column_max = b.reduce_max(xt, &[0], false).unwrap();
            b.output("row_max", row_max).unwrap();
            b.output("column_max", column_max).unwrap();
            let graph = b.finish();
            let flat: Vec<f64> = rows.iter().flatten().copied().collect();
            let transposed: Vec<f64> = (0..cols)
                .flat_map(|j| rows.iter().map(move |row| row[j]))
                .collect();
            let inputs = [
                Tensor::from_f64_values(TensorType::f32(&[n, cols]).with_dtype(dtype), &flat)
                    .unwrap(),
                Tensor::from_f64_values(TensorType::f32(&[cols, n]).with_dtype(dtype), &transposed)
                    .unwrap(),
            ];
            let expected = interp::run(&graph, &inputs).unwrap();
            for threads in [1, 3] {
                let mut exe = kiln::compile(&graph, &options(threads)).unwrap();
                exe.set_min_chunk(1);
                let got = exe.run(&inputs).unwrap();
                for (output, (g, w)) in got.iter().zip(&expected).enumerate() {
                    for (i, (a, b)) in g.to_f64_vec().iter().zip(w.to_f64_vec()).enumerate() {
                        assert!(
                            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                            "{dtype}, width {cols}, output {output}, row {i} {:?}: got {a:e}, want {b:e} \
                             ({threads} threads)",
                            rows[i]
                        );
                    }
                }
            }
        }
    }
}

/// `p - p` of one product `p = x·y` stays exactly 0 on a host with FMA: contracting it would give `fma(x, y, -p)`,
/// the product's rounding error, and `pow(p - p, -1.5)` would be NaN (a negative base) or a huge finite number
/// instead of `+inf` (a random graph found it). SPEC §1 exempts this case from contraction; scalar and vector code.
#[test]
fn a_product_minus_itself_is_exactly_zero() {
    for len in [3usize, 37] {
        let mut b = Builder::new("p_minus_p");
        let x = b.data("x", TensorType::f64(&[len])).unwrap();
        let y = b.data("y", TensorType::f64(&[len])).unwrap();
        let p = b.mul(x, y).unwrap();
        let zero = b.sub(p, p).unwrap();
        b.output("zero", zero).unwrap();
        let exponent = b.full_like(x, -1.5).unwrap();
        let blown = b.pow(zero, exponent).unwrap();
        b.output("pow", blown).unwrap();
        let graph = b.finish();
        // Products with a rounding error in every element.
        let xs: Vec<f64> = (0..len).map(|i| 0.1 + i as f64 / 7.0).collect();
        let ys: Vec<f64> = (0..len).map(|i| -0.3 - i as f64 / 3.0).collect();
        let inputs = [
            Tensor::from_f64(&[len], xs).unwrap(),
            Tensor::from_f64(&[len], ys).unwrap(),
        ];
        let expected = interp::run(&graph, &inputs).unwrap();
        let got = run_in_point_chunks(&graph, &inputs, &expected, 2, || format!("len {len}"));
        assert!(
            got[0].to_f64_vec().iter().all(|&v| v == 0.0),
            "{:?}",
            got[0]
        );
        assert!(
            got[1].to_f64_vec().iter().all(|&v| v == f64::INFINITY),
            "{:?}",
            got[1]
        );
    }
}

/// The CPU backend has one lowering per `(op, dtype)` and no code for ops SPEC defines on floats only: an i32 `pow`
/// or `exp`, or a unary op on bool, is rejected by name before any CLIF is built (there is no call-out to Rust for
/// i32 `pow`, and no op silently returns its operand). `neg`/`abs` of i32 and every op on f32 still compile.
#[test]
fn ops_spec_defines_on_floats_only_are_rejected_by_name_on_integers() {
    use kiln::ir::{BinaryOp, DType, UnaryOp};
    use kiln::kernel::{
        Block, Buffer, BufferId, BufferKind, IndexExpr, Inst, Kernel, KernelProgram, Loop,
        LoopKernel, ProgramInput, ProgramOutput, ScalarOp, ValueId, Var,
    };
    let point = || IndexExpr {
        offset: 0,
        terms: vec![(Var(0), 1)],
    };
    // `y[i] = op(x[i])` (unary) or `op(x[i], x[i])` (binary) over 8 points of `dtype`.
    let program = |dtype: DType, op: ScalarOp| {
        let buffer = |name: &str, kind| Buffer {
            name: name.into(),
            ty: TensorType::new(dtype, vec![8]),
            kind,
        };
        let load = Inst::Let {
            id: ValueId(0),
            dtype,
            op: ScalarOp::Load {
                buffer: BufferId(0),
                index: point(),
            },
        };
        let apply = Inst::Let {
            id: ValueId(1),
            dtype,
            op,
        };
        let store = Inst::Store {
            buffer: BufferId(1),
            index: point(),
            value: ValueId(1),
        };
        KernelProgram {
            name: "ops".into(),
            buffers: vec![
                buffer("x", BufferKind::Input),
                buffer("y", BufferKind::Output),
            ],
            kernels: vec![Kernel::Loop(LoopKernel {
                name: "k".into(),
                parallel: vec![Loop {
                    var: Var(0),
                    extent: 8,
                }],
                body: Block {
                    insts: vec![load, apply, store],
                },
            })],
            inputs: vec![ProgramInput {
                name: "x".into(),
                buffer: BufferId(0),
            }],
            outputs: vec![ProgramOutput {
                name: "y".into(),
                buffer: BufferId(1),
                aliases: None,
            }],
        }
    };
    let x = ValueId(0);
    let rejected = [
        (
            DType::I32,
            ScalarOp::Binary(BinaryOp::Pow, x, x),
            "pow of i32",
        ),
        (DType::I32, ScalarOp::Unary(UnaryOp::Exp, x), "exp of i32"),
        (DType::I32, ScalarOp::Unary(UnaryOp::Sqrt, x), "sqrt of i32"),
        (DType::Bool, ScalarOp::Unary(UnaryOp::Neg, x), "neg of bool"),
    ];
    for (dtype, op, message) in rejected {
        let err = kiln::backend::cpu::codegen::clif_text(&program(dtype, op.clone()), 0)
            .expect_err(message)
            .to_string();
        assert!(err.contains(message), "{op:?} on {dtype}: {err}");
    }
    let accepted = [
        (DType::I32, ScalarOp::Unary(UnaryOp::Neg, x)),
        (DType::I32, ScalarOp::Unary(UnaryOp::Abs, x)),
        (DType::I32, ScalarOp::Binary(BinaryOp::Div, x, x)),
        (DType::F32, ScalarOp::Binary(BinaryOp::Pow, x, x)),
        (DType::F32, ScalarOp::Unary(UnaryOp::Exp, x)),
    ];
    for (dtype, op) in accepted {
        let clif = kiln::backend::cpu::codegen::clif_text(&program(dtype, op.clone()), 0);
        assert!(clif.is_ok(), "{op:?} on {dtype}: {clif:?}");
    }
}

/// `x, m: [rows, 2·cols]` read in pairs (`[rows, cols, 2]`): the pair maximum (a 1×2 pooling window), the sum of
/// `m ? x : -x` over the pair (a bool mask read with stride 2), and the pair's first element (a strided load outside
/// a reduction). Each loads with stride 2 along the output row.
fn pairs(rows: usize, cols: usize) -> Graph {
    let mut b = Builder::new("pairs");
    let x = b.data("x", TensorType::f32(&[rows, 2 * cols])).unwrap();
    let m = b
        .data(
            "m",
            TensorType::f32(&[rows, 2 * cols]).with_dtype(kiln::DType::Bool),
        )
        .unwrap();
    let x2 = b.reshape(x, &[rows, cols, 2]).unwrap();
    let m2 = b.reshape(m, &[rows, cols, 2]).unwrap();
    let max = b.reduce_max(x2, &[2], false).unwrap();
    let neg = b.neg(x2).unwrap();
    let signed = b.select(m2, x2, neg).unwrap();
    let sum = b.reduce_sum(signed, &[2], false).unwrap();
    let first = b.slice(x2, &[0, 0, 0], &[rows, cols, 1]).unwrap();
    let first = b.reshape(first, &[rows, cols]).unwrap();
    let scaled = b.mul(first, first).unwrap();
    b.output("max", max).unwrap();
    b.output("sum", sum).unwrap();
    b.output("first_squared", scaled).unwrap();
    b.finish()
}

/// Loads that move by 2 with the innermost parallel variable (pooling windows of stride 2) run in the f32x4 loop, a
/// lane gathered at a time, at every width's tail, with the interpreter's bits: a max is exact, a sum of two from the
/// fold's identity is exact, and a square rounds once.
#[test]
fn stride_two_loads_are_gathered_into_vectors_with_the_interpreters_bits() {
    for rows in [1, 3] {
        for cols in 1..=13 {
            let n = rows * 2 * cols;
            let x: Vec<f32> = (0..n)
                .map(|i| match i % 9 {
                    4 => f32::NAN,
                    7 => -0.0,
                    _ => ((i as f32 * 0.618_034).fract() - 0.5) * 8.0,
                })
                .collect();
            let m: Vec<bool> = (0..n).map(|i| i % 3 != 1).collect();
            let graph = pairs(rows, cols);
            let inputs = [
                Tensor::from_f32(&[rows, 2 * cols], x).unwrap(),
                Tensor::from_bool(&[rows, 2 * cols], m).unwrap(),
            ];
            if cols >= 4 {
                let program = kiln::kernel_program(&graph, &options(1)).unwrap();
                let clif: String = (0..program.kernels.len())
                    .map(|k| kiln::backend::cpu::codegen::clif_text(&program, k).unwrap())
                    .collect();
                assert!(
                    clif.contains("insertlane") && clif.contains("f32x4"),
                    "{rows}×{cols}: no gathered f32x4 loads:\n{clif}"
                );
            }
            let expected = interp::run(&graph, &inputs).unwrap();
            for threads in [1, 3] {
                let got = run_in_point_chunks(&graph, &inputs, &expected, threads, || {
                    format!("{rows}×{cols}, {threads} threads")
                });
                for (output, (g, e)) in got.iter().zip(&expected).enumerate() {
                    assert_eq!(
                        bits(g),
                        bits(e),
                        "output {output} of {rows}×{cols}, {threads} threads"
                    );
                }
            }
        }
    }
}

/// `max_pool` and its gradient: the forward kernels compute each window's first-maximum position in i32, which
/// runs in i32x4 lanes of the f32x4 loop (every tail width of the output rows, ties and NaNs in the windows), with
/// the interpreter's bits on 1 and 3 threads.
#[test]
fn max_pool_index_lanes_run_in_i32x4_with_the_interpreters_bits() {
    use kiln::ir::ConvSpec;
    // (window, stride, padding) over rows of `width`.
    for (window, stride, padding) in [(2, 2, 0), (3, 2, 1)] {
        for width in [8, 10, 18, 19] {
            let dims = [2, 3, 5, width];
            let mut b = Builder::new("pool");
            let x = b.param("x", TensorType::f32(&dims)).unwrap();
            let spec = ConvSpec::new(2)
                .stride(&[stride, stride])
                .padding(&[padding, padding]);
            let y = b.max_pool(x, &[window, window], &spec).unwrap();
            let ty = b.ty(y).clone();
            let r = b.data("r", ty).unwrap();
            let yr = b.mul(y, r).unwrap();
            let loss = b.reduce_sum(yr, &[0, 1, 2, 3], false).unwrap();
            b.output("y", y).unwrap();
            b.output("loss", loss).unwrap();
            let graph = kiln::grad(&b.finish(), "loss", &["x"]).unwrap().graph;
            let n: usize = dims.iter().product();
            // Few distinct values, so windows tie; a NaN now and then.
            let x: Vec<f32> = (0..n)
                .map(|i| match i % 23 {
                    5 => f32::NAN,
                    11 => -0.0,
                    _ => ((i * 7) % 5) as f32 - 2.0,
                })
                .collect();
            let out_dims = graph.ty(graph.outputs()[0].value).dims().to_vec();
            let m: usize = out_dims.iter().product();
            let r: Vec<f32> = (0..m).map(|i| 1.0 + (i % 3) as f32 * 0.5).collect();
            let inputs = [
                Tensor::from_f32(&dims, x).unwrap(),
                Tensor::from_f32(&out_dims, r).unwrap(),
            ];
            let context =
                format!("window {window}, stride {stride}, padding {padding}, width {width}");
            if out_dims[3] >= 4 {
                let program = kiln::kernel_program(&graph, &options(1)).unwrap();
                let clif: String = (0..program.kernels.len())
                    .map(|k| kiln::backend::cpu::codegen::clif_text(&program, k).unwrap())
                    .collect();
                assert!(clif.contains("i32x4"), "{context}: no i32x4 lanes");
            }
            let expected = interp::run(&graph, &inputs).unwrap();
            for threads in [1, 3] {
                let got = run_in_point_chunks(&graph, &inputs, &expected, threads, || {
                    format!("{context}, {threads} threads")
                });
                for (output, (g, e)) in got.iter().zip(&expected).enumerate() {
                    assert_eq!(
                        bits(g),
                        bits(e),
                        "output {output}: {context}, {threads} threads"
                    );
                }
            }
        }
    }
}
