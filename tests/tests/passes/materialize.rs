//! `kiln::kernel::materialize`: a row softmax's `exp` computed once, stored in the output row and rescaled there.
//!
//! For each graph the pass rewrites, the program before the pass (`fusion::lower_without_kernel_passes`) and after
//! it (`fusion::lower`) must give **bit-identical** outputs on the kernel interpreter, on the CPU with 1 and 2
//! threads (all four runs equal), and on Vulkan (lavapipe) with the per-point plan and with every reduction forced
//! onto the workgroup plan — which the rewritten kernel must keep (each element is read by the invocation that
//! stored it). The kernel interpreter must also match the graph interpreter. Then the cases the pass must leave
//! alone: a row over 32 KiB, a buffer the kernel reads, a different expression, an aliased output, f64.
//!
//! Vulkan checks print why and return without a device, unless `KILN_REQUIRE_VULKAN=1`.

use kiln::backend::cpu::assemble::assemble;
use kiln::backend::spirv;
use kiln::fusion;
use kiln::ir::{interp, Builder, DType, Graph, Role, Tensor, TensorType, UnaryOp};
use kiln::kernel::{self, materialize, Inst, Kernel, KernelProgram, ScalarOp};
use kiln::memory;
use kiln_tests::differential::{assert_outputs_match, random_inputs, Tolerance};
use kiln_tests::vulkan::device;
use std::time::Instant;

// ---- graphs ----

fn graph(name: &str, build: impl FnOnce(&mut Builder) -> kiln::ir::Value) -> Graph {
    let mut b = Builder::new(name);
    let v = build(&mut b);
    b.output("y", v).unwrap();
    b.finish()
}

/// `softmax(x)` along the last axis of `dims`.
fn softmax(dims: &[usize]) -> Graph {
    graph("softmax", |b| {
        let x = b.data("x", TensorType::f32(dims)).unwrap();
        b.softmax(x, -1).unwrap()
    })
}

/// `exp(x - m) · logsumexp(x)` with `m = max x` along the last axis: the row's `exp` is summed for the
/// log-sum-exp, then written scaled by it.
fn exp_times_logsumexp(dims: &[usize]) -> Graph {
    graph("exp_times_logsumexp", |b| {
        let x = b.data("x", TensorType::f32(dims)).unwrap();
        let m = b.reduce_max(x, &[-1], true).unwrap();
        let shifted = b.sub(x, m).unwrap();
        let e = b.exp(shifted).unwrap();
        let s = b.reduce_sum(e, &[-1], true).unwrap();
        let log = b.log(s).unwrap();
        let lse = b.add(m, log).unwrap();
        b.mul(e, lse).unwrap()
    })
}

/// A softmax over the last two axes, scaled by a temperature: the reduction and the write are two-loop nests.
fn softmax_over_two_axes(dims: &[usize]) -> Graph {
    graph("softmax_over_two_axes", |b| {
        let x = b.data("x", TensorType::f32(dims)).unwrap();
        let t = b.mul_scalar(x, 0.5).unwrap();
        let m = b.reduce_max(t, &[-2, -1], true).unwrap();
        let shifted = b.sub(t, m).unwrap();
        let e = b.exp(shifted).unwrap();
        let s = b.reduce_sum(e, &[-2, -1], true).unwrap();
        b.div(e, s).unwrap()
    })
}

/// The graphs the pass rewrites, with their row length.
fn rewritten_graphs() -> Vec<Graph> {
    vec![
        softmax(&[37, 100]),
        softmax(&[4, 1024]),
        softmax(&[3, 5, 19]),
        exp_times_logsumexp(&[19, 256]),
        softmax_over_two_axes(&[6, 4, 33]),
        // 32 KiB of f32: the longest row the pass takes.
        softmax(&[2, 8192]),
    ]
}

// ---- helpers ----

/// How many `exp`s the kernels compute (per element of their loops).
fn exps(program: &KernelProgram) -> usize {
    let mut n = 0;
    for k in &program.kernels {
        k.body().visit(&mut |i| {
            if let Inst::Let {
                op: ScalarOp::Unary(UnaryOp::Exp, _),
                ..
            } = i
            {
                n += 1;
            }
        });
    }
    n
}

fn before_and_after(g: &Graph) -> (KernelProgram, KernelProgram) {
    let before = fusion::lower_without_kernel_passes(g).unwrap();
    let after = fusion::lower(g).unwrap();
    (before, after)
}

/// Every output element's bits (as f64, exact for f32), NaNs made equal.
fn bits(outputs: &[Tensor]) -> Vec<Vec<u64>> {
    outputs
        .iter()
        .map(|t| {
            t.to_f64_vec()
                .iter()
                .map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() })
                .collect()
        })
        .collect()
}

fn on_cpu(g: &Graph, program: &KernelProgram, threads: usize, inputs: &[Tensor]) -> Vec<Tensor> {
    let roles: Vec<Role> = g.inputs().map(|i| i.role).collect();
    let exe = assemble(
        program,
        &memory::plan(program),
        &roles,
        threads,
        Instant::now(),
    )
    .unwrap();
    exe.run(inputs).unwrap()
}

/// Every reduction on the workgroup plan (threshold 1), through shared memory.
fn workgroup_options() -> spirv::Options {
    spirv::Options {
        workgroup_reductions: Some(1),
        subgroup_size: None,
        ..spirv::Options::default()
    }
}

/// The kernel interpreter's tolerance against the graph interpreter (they sum in the same order).
const TOL: Tolerance = Tolerance {
    atol: 1e-6,
    rtol: 1e-6,
};

// ---- what the pass rewrites ----

#[test]
fn the_rewritten_graphs_compute_exp_once() {
    for g in rewritten_graphs() {
        let (before, after) = before_and_after(&g);
        assert_eq!(exps(&before), 2, "{}", kernel::print(&before));
        assert_eq!(exps(&after), 1, "{}: {}", g.name, kernel::print(&after));
        assert_eq!(before.kernels.len(), after.kernels.len());
        // The pass is idempotent: nothing is left to rewrite.
        let mut again = after.clone();
        assert!(!materialize::run(&mut again));
        assert_eq!(again, after);
    }
}

#[test]
fn snapshot_softmax_materialized() {
    let (_, after) = before_and_after(&softmax(&[4096, 1024]));
    insta::assert_snapshot!("softmax_materialized_kernels", kernel::print(&after));
}

#[test]
fn the_kernel_interpreter_gives_the_same_bits_before_and_after() {
    for (seed, g) in rewritten_graphs().into_iter().enumerate() {
        let (before, after) = before_and_after(&g);
        let inputs = random_inputs(&g, 100 + seed as u64);
        let expected = interp::run(&g, &inputs).unwrap();
        let b = kernel::interp::run(&before, &inputs).unwrap();
        let a = kernel::interp::run(&after, &inputs).unwrap();
        assert_eq!(bits(&a), bits(&b), "{}", g.name);
        assert_outputs_match(&g, &expected, &a, TOL, "kernel interpreter", || {
            kernel::print(&after)
        });
    }
}

#[test]
fn the_cpu_gives_the_same_bits_before_and_after_for_any_thread_count() {
    for (seed, g) in rewritten_graphs().into_iter().enumerate() {
        let (before, after) = before_and_after(&g);
        let inputs = random_inputs(&g, 200 + seed as u64);
        let reference = bits(&on_cpu(&g, &before, 1, &inputs));
        for (program, threads) in [(&before, 2), (&after, 1), (&after, 2)] {
            assert_eq!(
                bits(&on_cpu(&g, program, threads, &inputs)),
                reference,
                "{} with {threads} thread(s)\n{}",
                g.name,
                kernel::print(program)
            );
        }
        let expected = interp::run(&g, &inputs).unwrap();
        let cpu = on_cpu(&g, &after, 2, &inputs);
        let tol = Tolerance {
            atol: 1e-5,
            rtol: 1e-5,
        };
        assert_outputs_match(&g, &expected, &cpu, tol, "CPU", || kernel::print(&after));
    }
}

#[test]
fn vulkan_gives_the_same_bits_before_and_after_per_point_and_by_workgroups() {
    let Some(device) = device() else {
        return;
    };
    for (seed, g) in rewritten_graphs().into_iter().enumerate() {
        let (before, after) = before_and_after(&g);
        let inputs = random_inputs(&g, 300 + seed as u64);
        let expected = interp::run(&g, &inputs).unwrap();
        for options in [spirv::Options::default(), workgroup_options()] {
            let run = |p: &KernelProgram| {
                spirv::compile_with(device, p, &options)
                    .unwrap()
                    .run(&inputs)
                    .unwrap()
            };
            let (b, a) = (run(&before), run(&after));
            assert_eq!(bits(&a), bits(&b), "{} with {options:?}", g.name);
            let tol = Tolerance {
                atol: 1e-4,
                rtol: 1e-4,
            };
            assert_outputs_match(&g, &expected, &a, tol, "Vulkan", || kernel::print(&after));
        }
    }
}

/// The rewritten kernel loads what it stores; the workgroup plan keeps it (one workgroup per row), since each
/// element is loaded by the invocation that stored it.
#[test]
fn the_rewritten_softmax_keeps_the_workgroup_plan() {
    for g in rewritten_graphs() {
        let (before, after) = before_and_after(&g);
        let rows: u32 = after.kernels[0]
            .parallel()
            .iter()
            .map(|l| l.extent as u32)
            .product();
        for program in [&before, &after] {
            let kernels = spirv::lower_with(program, &workgroup_options()).unwrap();
            assert_eq!(
                kernels[0].groups,
                spirv::workgroup_groups(rows as u64),
                "{}: one workgroup per row\n{}",
                g.name,
                kernel::print(program)
            );
        }
    }
}

/// A kernel that loads an element another nest of the kernel stores at a different position stays per point.
#[test]
fn a_kernel_reading_another_invocations_element_stays_per_point() {
    let g = softmax(&[8, 128]);
    let mut program = fusion::lower(&g).unwrap();
    let Kernel::Loop(k) = &mut program.kernels[0] else {
        panic!("a loop kernel");
    };
    // The reduction reads the row's last element at every point: stored by one invocation, loaded by all.
    let Some(Inst::Reduce { body, .. }) = k.body.insts.get_mut(2) else {
        panic!("{}", kernel::print(&program));
    };
    let Some(Inst::Let {
        op: ScalarOp::Load { index, .. },
        ..
    }) = body.insts.get_mut(0)
    else {
        panic!("a load");
    };
    index.offset += 127;
    index.terms.retain(|(v, _)| v.0 == 0);
    let kernels = spirv::lower_with(&program, &workgroup_options()).unwrap();
    assert_eq!(
        kernels[0].groups,
        spirv::dispatch_groups(8),
        "per point\n{}",
        kernel::print(&program)
    );
}

// ---- what the pass leaves alone ----

fn assert_untouched(g: &Graph) {
    let (before, after) = before_and_after(g);
    assert_eq!(
        before,
        after,
        "{}: rewritten\n{}",
        g.name,
        kernel::print(&after)
    );
}

#[test]
fn a_row_over_32_kib_is_not_materialized() {
    // 8,193 f32 = 32,772 bytes.
    let g = softmax(&[2, 8193]);
    assert_untouched(&g);
    assert_eq!(exps(&fusion::lower(&g).unwrap()), 2);
}

#[test]
fn a_different_expression_is_not_materialized() {
    // log_softmax writes x - m - log(s): the row's exp(x - m) is not recomputed.
    assert_untouched(&graph("log_softmax", |b| {
        let x = b.data("x", TensorType::f32(&[8, 64])).unwrap();
        b.log_softmax(x, -1).unwrap()
    }));
    // exp(x - m) summed, exp(2x - m) written.
    assert_untouched(&graph("other_exp", |b| {
        let x = b.data("x", TensorType::f32(&[8, 64])).unwrap();
        let m = b.reduce_max(x, &[-1], true).unwrap();
        let shifted = b.sub(x, m).unwrap();
        let e = b.exp(shifted).unwrap();
        let s = b.reduce_sum(e, &[-1], true).unwrap();
        let x2 = b.mul_scalar(x, 2.0).unwrap();
        let shifted2 = b.sub(x2, m).unwrap();
        let e2 = b.exp(shifted2).unwrap();
        b.div(e2, s).unwrap()
    }));
}

#[test]
fn an_output_aliasing_an_input_is_not_materialized() {
    let mut b = Builder::new("aliased");
    let p = b.param("p", TensorType::f32(&[8, 64])).unwrap();
    let y = b.softmax(p, -1).unwrap();
    b.output_aliasing("new.p", y, "p").unwrap();
    assert_untouched(&b.finish());
}

#[test]
fn an_f64_row_is_not_materialized() {
    assert_untouched(&graph("softmax_f64", |b| {
        let x = b.data("x", TensorType::f64(&[8, 64])).unwrap();
        b.softmax(x, -1).unwrap()
    }));
}

#[test]
fn a_buffer_the_kernel_reads_is_not_materialized() {
    let g = softmax(&[8, 64]);
    let mut program = fusion::lower_without_kernel_passes(&g).unwrap();
    let Kernel::Loop(k) = &mut program.kernels[0] else {
        panic!("a loop kernel");
    };
    // The writing `for` also loads its own output element (a dead load: the program's values are unchanged).
    let Some(Inst::For { body, .. }) = k.body.insts.last_mut() else {
        panic!("{}", kernel::print(&program));
    };
    let Some(Inst::Store { buffer, index, .. }) = body.insts.last().cloned() else {
        panic!("a store");
    };
    body.insts.insert(
        0,
        Inst::Let {
            id: kernel::ValueId(1000),
            dtype: DType::F32,
            op: ScalarOp::Load { buffer, index },
        },
    );
    let before = program.clone();
    assert!(
        !materialize::run(&mut program),
        "{}",
        kernel::print(&program)
    );
    assert_eq!(program, before);
}
