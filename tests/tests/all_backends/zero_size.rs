//! Zero-size tensors (SPEC §1: every dim ≥ 0) on every backend: each case below runs on the graph interpreter, the
//! kernel IR interpreter, the CPU backend (1 and 3 threads, chunks of one point) and Vulkan, optimized or not, fused
//! or not, and every output must equal the graph interpreter's: bit for bit wherever it is an integer, a bool, a zero
//! (of either sign), an infinity or NaN — every value an empty group gives: SPEC §3.7's sum over nothing is +0, a max
//! -inf / `i32::MIN`, and §3.9's product over `k = 0` is +0 — and within the backend's tolerance for the finite
//! nonzero floats the non-empty parts of a case compute (`exp` is within a few ulp, not exact, on either backend).
//!
//! Before the fix, the CPU backend rejected most of these (`b0[0] reaches past the 0 elements of a`: fusion
//! dropped the variable of extent 0 from the index, the bounds proof then saw a constant index, and a reduction over
//! an empty axis had its load hoisted out of the loop of no trips), and the kernel IR interpreter failed the same
//! programs on that hoisted load.
//!
//! The Vulkan runs print why and return without a device, unless `KILN_REQUIRE_VULKAN=1`.

use kiln::backend::cpu::assemble::assemble;
use kiln::backend::spirv;
use kiln::ir::{interp, Builder, DType, Graph, IrError, Role, Tensor, TensorType, Value};
use kiln::kernel::{
    Block, Buffer, BufferId, BufferKind, IndexExpr, Inst, Kernel, KernelProgram, Loop, LoopKernel,
    ProgramInput, ProgramOutput, ReduceKind, ScalarOp, ValueId, Var,
};
use kiln::{fusion, kernel, memory, Options};
use kiln_tests::differential::{random_inputs, Tolerance};
use std::time::Instant;

/// The CPU backend's tolerance for finite nonzero floats (its math library is within a few ulp).
const CPU: Tolerance = Tolerance {
    atol: 1e-6,
    rtol: 1e-5,
};
/// GLSL.std.450's `exp` / `log` accuracy on Vulkan.
const VULKAN: Tolerance = Tolerance {
    atol: 1e-4,
    rtol: 1e-4,
};
use kiln_tests::vulkan::device;

type Build = fn(&mut Builder) -> Result<(), IrError>;

fn ty(dtype: DType, dims: &[usize]) -> TensorType {
    TensorType::new(dtype, dims.to_vec())
}

fn f32s(dims: &[usize]) -> TensorType {
    ty(DType::F32, dims)
}

/// A reduction over an empty axis, over the non-empty one, and over all axes, with and without `keep_dims`, for
/// `x : dtype[3, 0]` and `v : dtype[0]`.
fn reductions(b: &mut Builder, dtype: DType) -> Result<(), IrError> {
    let x = b.data("x", ty(dtype, &[3, 0]))?;
    let v = b.data("v", ty(dtype, &[0]))?;
    let mut n = 0;
    let mut out = |b: &mut Builder, y: Value| {
        n += 1;
        b.output(&format!("r{n}"), y)
    };
    for keep in [false, true] {
        for axes in [&[1isize][..], &[0], &[0, 1]] {
            let s = b.reduce_sum(x, axes, keep)?;
            out(b, s)?;
            let m = b.reduce_max(x, axes, keep)?;
            out(b, m)?;
        }
        let s = b.reduce_sum(v, &[0], keep)?;
        out(b, s)?;
        let m = b.reduce_max(v, &[0], keep)?;
        out(b, m)?;
    }
    Ok(())
}

/// `(name, graph)`: the explicit table of zero-size cases.
const CASES: &[(&str, Build)] = &[
    ("exp_3x0", |b| {
        let a = b.data("a", f32s(&[3, 0]))?;
        let e = b.exp(a)?;
        b.output("e", e)
    }),
    ("elementwise_0_and_0x5", |b| {
        let a = b.data("a", f32s(&[0]))?;
        let c = b.data("c", f32s(&[0, 5]))?;
        let d = b.data("d", f32s(&[0, 5]))?;
        let t = b.tanh(a)?;
        b.output("t", t)?;
        let s = b.mul(c, d)?;
        let s = b.add_scalar(s, 1.0)?;
        b.output("s", s)?;
        let lt = b.compare(kiln::ir::CmpDir::Lt, c, d)?;
        let sel = b.select(lt, c, d)?;
        b.output("sel", sel)
    }),
    ("reductions_f32", |b| reductions(b, DType::F32)),
    ("reductions_f64", |b| reductions(b, DType::F64)),
    ("reductions_i32", |b| reductions(b, DType::I32)),
    ("empty_reduction_feeds_a_nonempty_kernel", |b| {
        // The identities meet real loads in one kernel: `y = z + reduce_max(x, 1)` broadcast over the row.
        let x = b.data("x", f32s(&[3, 0]))?;
        let z = b.data("z", f32s(&[3, 4]))?;
        let m = b.reduce_max(x, &[1], true)?;
        let s = b.reduce_sum(x, &[1], true)?;
        let y = b.add(z, m)?;
        let y = b.add(y, s)?;
        b.output("y", y)?;
        let s = b.reduce_sum(x, &[1], false)?;
        let w = b.data("w", f32s(&[3]))?;
        let t = b.mul(w, s)?;
        b.output("t", t)
    }),
    ("wide_rows_with_an_empty_reduction", |b| {
        // 37 columns, so that the f32x4 loops run, with a reduction over an empty axis in each lane.
        let x = b.data("x", f32s(&[37, 0]))?;
        let z = b.data("z", f32s(&[37]))?;
        let s = b.reduce_sum(x, &[1], false)?;
        let y = b.sub(z, s)?;
        b.output("y", y)
    }),
    ("slices_to_empty", |b| {
        let x = b.data("x", f32s(&[4, 5]))?;
        let a = b.slice(x, &[1, 2], &[1, 5])?;
        let a = b.exp(a)?;
        b.output("rows", a)?;
        let c = b.slice(x, &[0, 3], &[4, 3])?;
        b.output("cols", c)?;
        let s = b.reduce_sum(c, &[1], false)?;
        b.output("cols_sum", s)?;
        let m = b.reduce_max(c, &[0, 1], false)?;
        b.output("cols_max", m)
    }),
    ("empty_constants", |b| {
        let x = b.data("x", f32s(&[0, 4]))?;
        let c = b.full(f32s(&[0, 4]), 2.5)?;
        let d = b.literal(f32s(&[0, 4]), Vec::new())?;
        let y = b.add(x, c)?;
        let y = b.mul(y, d)?;
        b.output("y", y)?;
        b.output("c", c)?;
        let s = b.reduce_sum(d, &[0], false)?;
        b.output("s", s)?;
        let i = b.literal(ty(DType::I32, &[2, 0]), Vec::new())?;
        let m = b.reduce_max(i, &[1], false)?;
        b.output("m", m)
    }),
    ("views_of_empty_tensors", |b| {
        let x = b.data("x", f32s(&[3, 0]))?;
        let r = b.reshape(x, &[0])?;
        b.output("flat", r)?;
        let r = b.reshape(x, &[2, 0, 5])?;
        let r = b.neg(r)?;
        b.output("reshaped", r)?;
        let t = b.transpose(x, &[1, 0])?;
        let t = b.abs(t)?;
        b.output("transposed", t)?;
        let s = b.reduce_sum(t, &[0], false)?;
        b.output("transposed_sum", s)?;
        let bc = b.broadcast(x, &[2, 3, 0])?;
        b.output("broadcast", bc)?;
        // Broadcasting 1 → 0 (SPEC §3.8), and a reshape of an empty operand inside a reduction.
        let one = b.data("one", f32s(&[1, 3]))?;
        let z = b.broadcast(one, &[0, 3])?;
        b.output("stretched_to_zero", z)?;
        let rs = b.reshape(x, &[0, 7])?;
        let rs = b.reduce_max(rs, &[0], false)?;
        b.output("reshaped_max", rs)
    }),
    ("concat_with_empty_operands", |b| {
        let x = b.data("x", f32s(&[2, 3]))?;
        let e = b.data("e", f32s(&[0, 3]))?;
        let f = b.data("f", f32s(&[2, 0]))?;
        let c0 = b.concat(&[e, x, e], 0)?;
        let c0 = b.exp(c0)?;
        b.output("rows", c0)?;
        let c1 = b.concat(&[x, f], 1)?;
        let c1 = b.mul_scalar(c1, 2.0)?;
        b.output("cols", c1)?;
        let c2 = b.concat(&[e, e], 0)?;
        b.output("both_empty", c2)
    }),
    ("matmuls_with_a_zero_dim", |b| {
        let a = b.data("a", f32s(&[2, 0]))?;
        let bb = b.data("b", f32s(&[0, 3]))?;
        let k0 = b.matmul(a, bb)?;
        b.output("k0", k0)?;
        // k = 0 under an epilogue: relu(a @ b + bias) is relu(bias).
        let bias = b.data("bias", f32s(&[3]))?;
        let y = b.add(k0, bias)?;
        let y = b.relu(y)?;
        b.output("k0_epilogue", y)?;
        let c = b.data("c", f32s(&[0, 4]))?;
        let d = b.data("d", f32s(&[4, 3]))?;
        let m0 = b.matmul(c, d)?;
        b.output("m0", m0)?;
        let e = b.data("e", f32s(&[2, 4]))?;
        let f = b.data("f", f32s(&[4, 0]))?;
        let n0 = b.matmul(e, f)?;
        b.output("n0", n0)
    }),
    ("batched_and_typed_matmuls_with_a_zero_dim", |b| {
        let a = b.data("a", f32s(&[2, 3, 0]))?;
        let bb = b.data("b", f32s(&[2, 0, 4]))?;
        let y = b.matmul(a, bb)?;
        b.output("k0", y)?;
        let c = b.data("c", f32s(&[0, 2, 3]))?;
        let d = b.data("d", f32s(&[0, 3, 4]))?;
        let z = b.matmul(c, d)?;
        b.output("batch0", z)?;
        let a64 = b.data("a64", ty(DType::F64, &[3, 0]))?;
        let b64 = b.data("b64", ty(DType::F64, &[0, 2]))?;
        let y64 = b.matmul(a64, b64)?;
        b.output("f64", y64)?;
        let ai = b.data("ai", ty(DType::I32, &[3, 0]))?;
        let bi = b.data("bi", ty(DType::I32, &[0, 2]))?;
        let yi = b.matmul(ai, bi)?;
        b.output("i32", yi)
    }),
    ("a_kernel_of_empty_rows_alone", |b| {
        // A reduction over no axes of `[2, 0]` keeps dim 0 parallel and makes dim 1 a row loop of no trips, so the
        // program's one kernel touches no buffer: Vulkan bound a null descriptor set for it and crashed.
        let i = b.iota(ty(DType::I32, &[2, 0]), 1)?;
        let m = b.op(
            kiln::ir::Op::ReduceMax {
                axes: Default::default(),
                keep_dims: true,
            },
            &[i],
        )?;
        b.output("m", m)
    }),
    ("softmax_over_empty_axes", |b| {
        let x = b.data("x", f32s(&[3, 0]))?;
        let s = b.softmax(x, 1)?;
        b.output("softmax", s)?;
        let l = b.log_softmax(x, 1)?;
        b.output("log_softmax", l)?;
        let y = b.data("y", f32s(&[0, 4]))?;
        let s0 = b.softmax(y, 0)?;
        b.output("softmax0", s0)?;
        let lse = b.logsumexp(x, 1, false)?;
        b.output("logsumexp", lse)
    }),
];

/// Scalar losses over zero-size tensors, differentiated with respect to every input (`kiln::grad`).
const GRAD_CASES: &[(&str, &[&str], Build)] = &[
    ("grad_elementwise_and_sum", &["a", "w"], |b| {
        let a = b.param("a", f32s(&[3, 0]))?;
        let w = b.param("w", f32s(&[2]))?;
        let e = b.exp(a)?;
        let s = b.sum_all(e)?;
        let t = b.mul(w, w)?;
        let t = b.sum_all(t)?;
        let loss = b.add(s, t)?;
        b.output("loss", loss)
    }),
    ("grad_matmul_k0", &["a", "b", "c"], |b| {
        let a = b.param("a", f32s(&[2, 0]))?;
        let bb = b.param("b", f32s(&[0, 3]))?;
        let c = b.param("c", f32s(&[2, 3]))?;
        let y = b.matmul(a, bb)?;
        let y = b.add(y, c)?;
        let y = b.mul(y, c)?;
        let loss = b.sum_all(y)?;
        b.output("loss", loss)
    }),
    ("grad_concat_slice_reduce_max", &["x", "e"], |b| {
        let x = b.param("x", f32s(&[2, 3]))?;
        let e = b.param("e", f32s(&[0, 3]))?;
        let c = b.concat(&[x, e], 0)?;
        let c = b.slice(c, &[0, 1], &[2, 3])?;
        let m = b.reduce_max(c, &[1], false)?;
        let empty = b.slice(x, &[1, 0], &[1, 3])?;
        let em = b.reduce_sum(empty, &[0], false)?;
        let em = b.sum_all(em)?;
        let loss = b.sum_all(m)?;
        let loss = b.add(loss, em)?;
        b.output("loss", loss)
    }),
    ("grad_softmax_over_empty_axis", &["x", "z"], |b| {
        let x = b.param("x", f32s(&[3, 0]))?;
        let z = b.param("z", f32s(&[3]))?;
        let s = b.log_softmax(x, 1)?;
        let s = b.sum_all(s)?;
        let zz = b.tanh(z)?;
        let zz = b.sum_all(zz)?;
        let loss = b.add(s, zz)?;
        b.output("loss", loss)
    }),
];

fn build(name: &str, f: Build) -> Graph {
    let mut b = Builder::new(name);
    f(&mut b).unwrap_or_else(|e| panic!("{name}: {e}"));
    b.finish()
}

/// Each output's dtype, shape and the bits of every element (as f64: exact for every dtype).
fn bits(outputs: &[Tensor]) -> Vec<(TensorType, Vec<u64>)> {
    outputs
        .iter()
        .map(|t| {
            let v = t.to_f64_vec().iter().map(|x| x.to_bits()).collect();
            (t.ty().clone(), v)
        })
        .collect()
}

/// `actual` equals the interpreter's `expected`: the same types, and every element with the same bits, except a
/// finite nonzero float, which may differ within `tol` (the backends' math libraries are within a few ulp of the
/// interpreter's, GLSL's `exp` within 1e-4). So every value an empty group or `k = 0` gives (+0, -inf,
/// `i32::MIN`), and the sign of every zero, must match exactly.
fn assert_same(graph: &Graph, expected: &[Tensor], actual: &[Tensor], tol: Tolerance, what: &str) {
    let context = || {
        format!(
            "{} on {what}: outputs differ from the interpreter's\n{}\nexpected {expected:?}\nactual {actual:?}",
            graph.name,
            kiln::ir::text::print(graph)
        )
    };
    let types = |ts: &[Tensor]| ts.iter().map(|t| t.ty().clone()).collect::<Vec<_>>();
    assert_eq!(types(actual), types(expected), "{}", context());
    for (e, a) in expected.iter().zip(actual) {
        for (&x, &y) in e.to_f64_vec().iter().zip(&a.to_f64_vec()) {
            let exact = !e.dtype().is_float() || x == 0.0 || !x.is_finite();
            let same = if exact {
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
            } else {
                tol.close(y, x)
            };
            assert!(same, "{}: {y:?} where the interpreter has {x:?}", context());
        }
    }
}

/// The option sets every backend runs: the whole pipeline, fusion without the graph passes (so no constant folding
/// hides an empty reduction), and one kernel per op.
fn option_sets() -> [(&'static str, Options); 3] {
    let base = Options {
        threads: 1,
        ..Options::default()
    };
    [
        ("optimized", base.clone()),
        (
            "unoptimized",
            Options {
                optimize: false,
                ..base.clone()
            },
        ),
        (
            "unfused",
            Options {
                optimize: false,
                fuse: false,
                ..base
            },
        ),
    ]
}

fn check_everywhere(graph: &Graph) {
    let inputs = random_inputs(graph, 7);
    let expected =
        interp::run(graph, &inputs).unwrap_or_else(|e| panic!("{}: interpreter: {e}", graph.name));
    let program = fusion::lower(graph).unwrap_or_else(|e| panic!("{}: lower: {e}", graph.name));
    let on_kernels = kernel::interp::run(&program, &inputs)
        .unwrap_or_else(|e| panic!("{}: kernel interpreter: {e}", graph.name));
    // The kernel interpreter computes with the graph interpreter's scalar functions: exact.
    let exact = Tolerance {
        atol: 0.0,
        rtol: 0.0,
    };
    assert_same(
        graph,
        &expected,
        &on_kernels,
        exact,
        "the kernel interpreter",
    );
    for (set, options) in option_sets() {
        let mut exe = kiln::compile(graph, &options)
            .unwrap_or_else(|e| panic!("{} ({set}): compile: {e}", graph.name));
        let one = exe
            .run(&inputs)
            .unwrap_or_else(|e| panic!("{} ({set}): run: {e}", graph.name));
        assert_same(
            graph,
            &expected,
            &one,
            CPU,
            &format!("cpu, 1 thread, {set}"),
        );
        exe.set_threads(3);
        exe.set_min_chunk(1);
        let three = exe.run(&inputs).unwrap();
        assert_same(
            graph,
            &expected,
            &three,
            CPU,
            &format!("cpu, 3 threads, {set}"),
        );
        if let Some(device) = device() {
            let exe = kiln::compile_vulkan(device, graph, &options)
                .unwrap_or_else(|e| panic!("{} ({set}): compile for Vulkan: {e}", graph.name));
            let actual = exe
                .run(&inputs)
                .unwrap_or_else(|e| panic!("{} ({set}): run on Vulkan: {e}", graph.name));
            assert_same(graph, &expected, &actual, VULKAN, &format!("vulkan, {set}"));
        }
    }
}

#[test]
fn zero_size_cases_match_the_interpreter_everywhere() {
    for &(name, f) in CASES {
        check_everywhere(&build(name, f));
    }
}

#[test]
fn gradients_of_zero_size_graphs_match_the_interpreter_everywhere() {
    for &(name, wrt, f) in GRAD_CASES {
        let forward = build(name, f);
        let grad = kiln::grad(&forward, "loss", wrt)
            .unwrap_or_else(|e| panic!("{name}: grad: {e}"))
            .graph;
        check_everywhere(&grad);
    }
}

/// The conventions themselves, on the interpreter every backend is compared with: an empty sum is +0 (not -0), an
/// empty max -inf / `i32::MIN`, and a product over `k = 0` is +0.
#[test]
fn empty_groups_give_spec_identities() {
    let g = build("reductions_f32", |b| reductions(b, DType::F32));
    let out = interp::run(&g, &random_inputs(&g, 7)).unwrap();
    // r1: reduce_sum over axis 1 of [3, 0] → [3]; r2: its max.
    assert_eq!(bits(&out[..1])[0].1, vec![0u64; 3]);
    assert_eq!(out[1].to_f64_vec(), vec![f64::NEG_INFINITY; 3]);
    let g = build("reductions_i32", |b| reductions(b, DType::I32));
    let out = interp::run(&g, &random_inputs(&g, 7)).unwrap();
    assert_eq!(out[1].to_f64_vec(), vec![f64::from(i32::MIN); 3]);
    let g = build(
        "matmuls",
        CASES
            .iter()
            .find(|c| c.0 == "matmuls_with_a_zero_dim")
            .unwrap()
            .1,
    );
    let out = interp::run(&g, &random_inputs(&g, 7)).unwrap();
    assert_eq!(bits(&out[..1])[0].1, vec![0u64; 6]);
}

// ---- the kernel IR contract, on programs fusion no longer makes ----

fn index(offset: usize, terms: &[(u32, usize)]) -> IndexExpr {
    IndexExpr {
        offset,
        terms: terms.iter().map(|&(v, s)| (Var(v), s)).collect(),
    }
}

fn lp(var: u32, extent: usize) -> Loop {
    Loop {
        var: Var(var),
        extent,
    }
}

fn load(id: u32, dtype: DType, buffer: u32, at: IndexExpr) -> Inst {
    Inst::Let {
        id: ValueId(id),
        dtype,
        op: ScalarOp::Load {
            buffer: BufferId(buffer),
            index: at,
        },
    }
}

fn store(buffer: u32, at: IndexExpr, value: u32) -> Inst {
    Inst::Store {
        buffer: BufferId(buffer),
        index: at,
        value: ValueId(value),
    }
}

fn buffer(name: &str, dtype: DType, dims: &[usize], kind: BufferKind) -> Buffer {
    Buffer {
        name: name.into(),
        ty: ty(dtype, dims),
        kind,
    }
}

/// One loop kernel per `(kind, dtype)`: at each of 8 points, a reduction whose nest has no trips (over `i1 < 0`, or
/// `i1 < 4, i3 < 0`: a zero inside a nonzero loop) of loads from a non-empty input, stored; and a `for` of no trips
/// that stores far past the output's end, which never runs. The 8 points make the f32 kernels run the f32x4 loop.
fn empty_nests() -> KernelProgram {
    let mut buffers = Vec::new();
    let mut kernels = Vec::new();
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for dtype in [DType::F32, DType::F64, DType::I32] {
        let x = buffers.len() as u32;
        let name = format!("x_{dtype}");
        buffers.push(buffer(&name, dtype, &[8, 4], BufferKind::Input));
        inputs.push(ProgramInput {
            name,
            buffer: BufferId(x),
        });
        for kind in [ReduceKind::Sum, ReduceKind::Max] {
            let out = buffers.len() as u32;
            let name = format!("{}_{dtype}", kind.name());
            buffers.push(buffer(&name, dtype, &[8], BufferKind::Output));
            outputs.push(ProgramOutput {
                name: name.clone(),
                buffer: BufferId(out),
                aliases: None,
            });
            let loops = match kind {
                ReduceKind::Sum => vec![lp(1, 0)],
                ReduceKind::Max => vec![lp(1, 4), lp(3, 0)],
            };
            let body = vec![
                Inst::Reduce {
                    id: ValueId(0),
                    dtype,
                    kind,
                    loops,
                    body: Block {
                        insts: vec![load(1, dtype, x, index(0, &[(0, 4), (1, 1)]))],
                    },
                    value: ValueId(1),
                },
                Inst::For {
                    loops: vec![lp(2, 0)],
                    body: Block {
                        insts: vec![store(out, index(1000, &[(0, 1), (2, 1)]), 0)],
                    },
                },
                store(out, index(0, &[(0, 1)]), 0),
            ];
            kernels.push(Kernel::Loop(LoopKernel {
                name,
                parallel: vec![lp(0, 8)],
                body: Block { insts: body },
            }));
        }
    }
    KernelProgram {
        name: "empty_nests".into(),
        buffers,
        kernels,
        inputs,
        outputs,
    }
}

fn on_cpu(program: &KernelProgram, threads: usize) -> Result<kiln::Executable, String> {
    let roles = vec![Role::Data; program.inputs.len()];
    assemble(
        program,
        &memory::plan(program),
        &roles,
        threads,
        Instant::now(),
    )
    .map_err(|e| e.to_string())
}

/// A sum over no points is +0 (not the -0.0 a float sum's loop starts from), a max -inf / `i32::MIN`, on the
/// kernel interpreter, the CPU (scalar, f32x4 lanes, f64x2 / i32x4 reductions; 1 and 3 threads) and Vulkan; and a
/// store in a nest of no trips never happens, however far past the end it points.
#[test]
fn reductions_over_no_points_give_the_empty_fold_on_every_backend() {
    let program = empty_nests();
    let inputs: Vec<Tensor> = program
        .inputs
        .iter()
        .map(|i| {
            let t = &program.buffers[i.buffer.index()].ty;
            let v: Vec<f64> = (0..t.numel()).map(|k| k as f64 - 40.5).collect();
            Tensor::from_f64_values(t.clone(), &v).unwrap()
        })
        .collect();
    let expected: Vec<Vec<u64>> = program
        .outputs
        .iter()
        .map(|o| {
            let t = &program.buffers[o.buffer.index()].ty;
            let empty = match (o.name.starts_with("sum"), t.dtype) {
                (true, _) => 0.0,
                (false, DType::I32) => f64::from(i32::MIN),
                (false, _) => f64::NEG_INFINITY,
            };
            vec![empty.to_bits(); 8]
        })
        .collect();
    let as_bits =
        |ts: &[Tensor]| -> Vec<Vec<u64>> { bits(ts).into_iter().map(|(_, v)| v).collect() };
    let got = kernel::interp::run(&program, &inputs).unwrap();
    assert_eq!(as_bits(&got), expected, "kernel interpreter");
    for threads in [1, 3] {
        let mut exe = on_cpu(&program, threads).unwrap();
        exe.set_min_chunk(1);
        assert_eq!(
            as_bits(&exe.run(&inputs).unwrap()),
            expected,
            "cpu, {threads} threads"
        );
    }
    if let Some(device) = device() {
        // A reduction per invocation, and (threshold 1) a workgroup per point.
        let workgroup = spirv::Options {
            workgroup_reductions: Some(1),
            ..spirv::Options::gpu_plans(device.info())
        };
        for options in [spirv::Options::for_device(device.info()), workgroup] {
            let exe = spirv::compile_with(device, &program, &options).unwrap();
            let got = as_bits(&exe.run(&inputs).unwrap());
            assert_eq!(got, expected, "vulkan, {options:?}");
        }
    }
}

/// The bounds proof exempts an access only where a loop around it has no trips: a constant index into an empty
/// buffer is rejected at a point that runs, inside a reduction that runs, and a loop variable used after its loop
/// (where the generated code leaves it one past the end) is rejected as unbound.
#[test]
fn the_bounds_proof_rejects_accesses_that_run() {
    let program = |body: Vec<Inst>, parallel: Vec<Loop>, x_dims: &[usize]| KernelProgram {
        name: "bad".into(),
        buffers: vec![
            buffer("x", DType::F32, x_dims, BufferKind::Input),
            buffer("y", DType::F32, &[2], BufferKind::Output),
        ],
        kernels: vec![Kernel::Loop(LoopKernel {
            name: "k".into(),
            parallel,
            body: Block { insts: body },
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
    };
    let reduce = |loops: Vec<Loop>, at: IndexExpr| Inst::Reduce {
        id: ValueId(0),
        dtype: DType::F32,
        kind: ReduceKind::Sum,
        loops,
        body: Block {
            insts: vec![load(1, DType::F32, 0, at)],
        },
        value: ValueId(1),
    };
    let point = index(0, &[(0, 1)]);
    let cases = [
        (
            "a load of an empty buffer at a point that runs",
            program(
                vec![
                    load(0, DType::F32, 0, index(0, &[])),
                    store(1, point.clone(), 0),
                ],
                vec![lp(0, 2)],
                &[0],
            ),
            "reaches past the 0 elements of `x`",
        ),
        (
            "a load of an empty buffer in a reduction that runs",
            program(
                vec![
                    reduce(vec![lp(1, 3)], index(0, &[])),
                    store(1, point.clone(), 0),
                ],
                vec![lp(0, 2)],
                &[0],
            ),
            "reaches past the 0 elements of `x`",
        ),
        (
            "a loop variable after its loop",
            program(
                vec![
                    reduce(vec![lp(1, 4)], index(0, &[(1, 1)])),
                    load(2, DType::F32, 0, index(0, &[(1, 1)])),
                    Inst::Let {
                        id: ValueId(3),
                        dtype: DType::F32,
                        op: ScalarOp::Binary(kiln::ir::BinaryOp::Add, ValueId(0), ValueId(2)),
                    },
                    store(1, point.clone(), 3),
                ],
                vec![lp(0, 2)],
                &[4],
            ),
            "i1 is not bound by an enclosing loop",
        ),
    ];
    for (what, program, message) in cases {
        match on_cpu(&program, 1) {
            Ok(_) => panic!("{what}: compiled"),
            Err(e) => assert!(e.contains(message), "{what}: {e}"),
        }
    }
}
