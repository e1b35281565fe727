//! Graphs as deep as they are long (issue #12): a chain of a million ops through every stage, on a thread with a
//! 2 MiB stack.
//!
//! Every walk over a graph or over a kernel's expressions must be iterative, or recurse only as deep as something
//! that no graph can make large (tensor rank, loop nesting). Each test runs its stage on a 2 MiB thread
//! ([`on_small_stack`]): a walk that recursed once per node would overflow it, which aborts the test binary.
//! Results are checked too, against a plain loop that computes the chain (the interpreter is checked against it).
//!
//! The 20,000-op chain of the issue also compiles and runs on the CPU (and on Vulkan when there is a device; CI sets
//! `KILN_REQUIRE_VULKAN=1`), bit for bit equal to the interpreter: fusion splits it into kernels of at most
//! `fusion::MAX_KERNEL_NODES` ops (rule 7 of `kiln::fusion`), which store and reload the chain's value exactly.
//! Walks that could instead take exponential or quadratic time run under a time limit
//! ([`on_small_stack_within`]).

use kiln::backend::spirv;
use kiln::fusion;
use kiln::ir::dot::{to_dot, DotOptions};
use kiln::ir::text::{parse, print};
use kiln::ir::{interp, verify, BinaryOp, Graph, NodeId, Op, Role, Shape, Tensor, UnaryOp};
use kiln::kernel::{self, Inst, Kernel, ScalarOp};
use kiln::{Optimizer, Options, Sgd, TensorType};
use kiln_tests::vulkan::device;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The chain length every stage must take.
const DEEP: usize = 1_000_000;

/// The issue's chain, which the backends compile and run.
const ISSUE: usize = 20_000;

/// A small thread stack: 2 MiB, as many runtimes give their worker threads.
const STACK: usize = 2 << 20;

/// The chain's input.
const X: [f32; 4] = [0.75, -1.5, 3.0e-3, 1.0e6];

/// Runs `f` on a thread with a [`STACK`]-byte stack; its panics propagate.
fn on_small_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn_scoped(s, f)
            .expect("a thread starts");
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// [`on_small_stack`] for a walk that could also take exponential or quadratic time: fails if `f` has not returned
/// within `limit` (its thread is left running; the test binary exits when the tests are done).
fn on_small_stack_within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let _ = done.send(f());
        })
        .expect("a thread starts");
    finished
        .recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{what}: not done within {limit:?} ({e})"))
}

/// `%1 = add %x, %x`, `%k = add %(k-1), %x` up to `%n`, on an `f32[4]` input, `%n` the output `y`.
fn add_chain_text(n: usize) -> String {
    let mut text = String::with_capacity(n * 40);
    text.push_str("graph deep {\n  %x = input{role=data} : f32[4]\n");
    text.push_str("  %1 = add %x, %x : f32[4]\n");
    for k in 2..=n {
        text.push_str(&format!("  %{k} = add %{}, %x : f32[4]\n", k - 1));
    }
    text.push_str(&format!("  output y = %{n}\n}}\n"));
    text
}

/// [`add_chain_text`]'s graph, built directly; `loss` adds `loss = reduce_sum(%n)` as the output.
fn add_chain(n: usize, loss: bool) -> Graph {
    add_chain_of(n, loss, Role::Data)
}

/// [`add_chain`] with `x` of the given role.
fn add_chain_of(n: usize, loss: bool, role: Role) -> Graph {
    let mut g = Graph::new("deep");
    let x = g.add_input("x", role, TensorType::f32(&[4])).unwrap();
    let mut v = x;
    for _ in 0..n {
        v = g.add(Op::Binary(BinaryOp::Add), &[v, x]).unwrap();
    }
    if loss {
        let sum = Op::ReduceSum {
            axes: [0].into_iter().collect(),
            keep_dims: false,
        };
        let l = g.add(sum, &[v]).unwrap();
        g.add_output("loss", l).unwrap();
    } else {
        g.add_output("y", v).unwrap();
    }
    g
}

/// What the chain computes, in f32, one add at a time.
fn add_chain_values(n: usize) -> Vec<f32> {
    X.iter()
        .map(|&x| {
            let mut v = x;
            for _ in 0..n {
                v += x;
            }
            v
        })
        .collect()
}

fn x_tensor() -> Tensor {
    Tensor::from_f32(&[4], X.to_vec()).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32()
        .expect("f32")
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn f32_bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// A deep stage must also be quick: each test stays well under 20 s in the test profile.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = f();
    eprintln!("{what}: {:.2?}", started.elapsed());
    result
}

#[test]
fn a_million_op_chain_parses_verifies_prints_and_exports_to_dot() {
    on_small_stack(|| {
        let text = timed("text", || add_chain_text(DEEP));
        let g = timed("parse", || parse(&text).unwrap());
        assert_eq!(g.len(), DEEP + 1);
        timed("verify", || verify(&g).unwrap());
        assert!(timed("print", || print(&g)) == text, "the text round-trips");
        let dot = timed("dot", || to_dot(&g, &DotOptions::default()));
        // Two operand edges per add and one to the output.
        assert_eq!(dot.matches(" -> ").count(), 2 * DEEP + 1);
        assert!(dot.contains(&format!("  n{DEEP} -> out0;\n")));
        timed("drop", || drop(g));
    });
}

#[test]
fn a_million_op_chain_exports_to_dot_with_a_cluster_per_node() {
    // Clusters as fine as they come (one per node): drawing them must not take clusters × nodes steps.
    let dot = on_small_stack_within(Duration::from_secs(60), "DOT", || {
        let g = add_chain(DEEP, false);
        let options = DotOptions {
            groups: Some((0..g.len()).collect()),
            group_names: Vec::new(),
        };
        timed("dot", || to_dot(&g, &options))
    });
    assert_eq!(dot.matches("subgraph cluster_").count(), DEEP + 1);
    let last = format!("  subgraph cluster_{DEEP} {{");
    assert!(
        dot[dot.find(&last).unwrap()..].contains(&format!("    n{DEEP} [label=\"%{DEEP}\\nadd"))
    );
}

#[test]
fn a_million_op_chain_runs_on_the_interpreter() {
    on_small_stack(|| {
        let g = add_chain(DEEP, false);
        let y = timed("interpret", || interp::run(&g, &[x_tensor()]).unwrap());
        assert_eq!(bits(&y[0]), f32_bits(&add_chain_values(DEEP)));
    });
}

#[test]
fn grad_and_training_step_of_a_million_op_chain() {
    on_small_stack(|| {
        // loss = Σ (n+1)·x, so d loss / dx = n + 1: the sum of n + 1 ones, exact in f32.
        let g = add_chain_of(DEEP, true, Role::Param);
        let grad = timed("grad", || kiln::grad(&g, "loss", &["x"]).unwrap());
        assert!(grad.graph.len() > 2 * DEEP);
        let outputs = timed("interpret", || {
            interp::run(&grad.graph, &[x_tensor()]).unwrap()
        });
        let dx = grad.graph.outputs().iter().position(|o| o.name == "grad.x");
        assert_eq!(
            outputs[dx.unwrap()].as_f32().unwrap(),
            &[(DEEP + 1) as f32; 4]
        );
        drop((grad, outputs));

        // One SGD step: x - 0.5·(n+1), where 0.5·(n+1) = 500000.5 is exact in f32.
        let sgd = Optimizer::Sgd(Sgd {
            lr: 0.5,
            ..Sgd::default()
        });
        let step = timed("training step", || {
            kiln::training_step(&g, "loss", &["x"], &sgd).unwrap()
        });
        let mut values = HashMap::from([("x".to_string(), x_tensor())]);
        timed("step", || {
            kiln::step_on_interpreter(&step, &mut values).unwrap()
        });
        let stepped: Vec<f32> = X.iter().map(|x| x - 500000.5).collect();
        assert_eq!(bits(&values["x"]), f32_bits(&stepped));
    });
}

#[test]
fn the_pass_manager_takes_million_op_chains() {
    on_small_stack(|| {
        // Nothing to simplify: the graph comes back as it was.
        let g = add_chain(DEEP, false);
        let optimized = timed("optimize adds", || kiln::optimize(&g).unwrap());
        assert!(optimized == g);
        drop((g, optimized));

        // neg(neg(y)) == y, a million times over: nothing but the input is left.
        let mut g = Graph::new("negs");
        let x = g.add_input("x", Role::Data, TensorType::f32(&[4])).unwrap();
        let mut v = x;
        for _ in 0..DEEP {
            v = g.add(Op::Unary(UnaryOp::Neg), &[v]).unwrap();
        }
        g.add_output("y", v).unwrap();
        let optimized = timed("optimize negs", || kiln::optimize(&g).unwrap());
        assert_eq!(optimized.len(), 1, "{}", print(&optimized));
        assert_eq!(optimized.outputs()[0].value, NodeId(0));
    });
}

/// Lowers `g` with fusion, checks the kernel interpreter computes `expected`, and returns the program.
fn lower_and_interpret(g: &Graph, expected: &[f32]) -> kernel::KernelProgram {
    let program = timed("lower", || fusion::lower(g).unwrap());
    let out = timed("kernel interpreter", || {
        kernel::interp::run(&program, &[x_tensor()]).unwrap()
    });
    assert_eq!(bits(&out[0]), f32_bits(expected));
    program
}

#[test]
fn fusion_splits_and_lowers_a_million_op_chain() {
    on_small_stack(|| {
        let g = add_chain(DEEP, false);
        // Rule 7: kernels of MAX_KERNEL_NODES adds, the first one holding what is left, each storing its last add.
        let program = lower_and_interpret(&g, &add_chain_values(DEEP));
        assert_eq!(
            program.kernels.len(),
            DEEP.div_ceil(fusion::MAX_KERNEL_NODES)
        );
        let adds = |k: &Kernel| {
            let mut n = 0;
            k.body().visit(&mut |i| {
                n += matches!(
                    i,
                    Inst::Let {
                        op: ScalarOp::Binary(BinaryOp::Add, ..),
                        ..
                    }
                ) as usize
            });
            n
        };
        assert_eq!(program.kernels.iter().map(adds).sum::<usize>(), DEEP);
        assert!(program.kernels[1..]
            .iter()
            .all(|k| adds(k) == fusion::MAX_KERNEL_NODES));
    });
}

#[test]
fn lowering_follows_a_million_views_into_one_kernel() {
    on_small_stack(|| {
        // x, reshaped to [4,1] and back a million times over (all inline views), plus x: one kernel computing 2x.
        let mut g = Graph::new("views");
        let x = g.add_input("x", Role::Data, TensorType::f32(&[4])).unwrap();
        let mut v = x;
        for k in 0..DEEP {
            let shape = if k % 2 == 0 { [4, 1].as_slice() } else { &[4] };
            v = g
                .add(
                    Op::Reshape {
                        shape: Shape::new(shape),
                    },
                    &[v],
                )
                .unwrap();
        }
        let y = g.add(Op::Binary(BinaryOp::Add), &[v, x]).unwrap();
        g.add_output("y", y).unwrap();
        let program = lower_and_interpret(&g, &add_chain_values(1));
        assert_eq!(program.kernels.len(), 1);
    });
}

#[test]
fn a_matmul_reads_its_operand_through_a_million_transposes() {
    on_small_stack(|| {
        // t = x transposed an even number of times = x, read by the matmul as a strided view: y = x·x.
        let mut g = Graph::new("transposes");
        let x = g
            .add_input("x", Role::Data, TensorType::f32(&[2, 2]))
            .unwrap();
        let mut t = x;
        for _ in 0..DEEP {
            t = g.add(Op::Transpose { perm: vec![1, 0] }, &[t]).unwrap();
        }
        let y = g.add(Op::Matmul, &[t, x]).unwrap();
        g.add_output("y", y).unwrap();
        let program = timed("lower", || fusion::lower(&g).unwrap());
        assert!(matches!(program.kernels[..], [Kernel::Matmul(_)]));
        let x = Tensor::from_f32(&[2, 2], vec![X[0], X[1], X[2], X[3]]).unwrap();
        let out = kernel::interp::run(&program, std::slice::from_ref(&x)).unwrap();
        assert_eq!(bits(&out[0]), bits(&interp::run(&g, &[x]).unwrap()[0]));
    });
}

#[test]
fn a_reduction_of_a_million_op_chain_is_one_kernel() {
    on_small_stack(|| {
        // Rule 7 leaves kernels with a reduction whole: one `reduce` whose body is the whole chain, which the
        // kernel-IR pass `materialize` also reads through.
        let g = add_chain(DEEP, true);
        let expected = add_chain_values(DEEP).iter().sum::<f32>();
        let program = timed("lower", || fusion::lower(&g).unwrap());
        assert!(matches!(&program.kernels[..], [Kernel::Loop(k)] if k.body.insts.len() == 2));
        let out = kernel::interp::run(&program, &[x_tensor()]).unwrap();
        assert_eq!(bits(&out[0]), vec![expected.to_bits()]);
    });
}

#[test]
fn a_million_nested_reductions_lower() {
    on_small_stack(|| {
        // x: f32[1,4] summed over its unit axis and reshaped back, half a million times: each reduction's body is
        // the next one, so the lowering opens a block per reduction.
        let mut g = Graph::new("reductions");
        let x = g
            .add_input("x", Role::Data, TensorType::f32(&[1, 4]))
            .unwrap();
        let mut v = x;
        for _ in 0..DEEP / 2 {
            let sum = Op::ReduceSum {
                axes: [0].into_iter().collect(),
                keep_dims: false,
            };
            v = g.add(sum, &[v]).unwrap();
            v = g
                .add(
                    Op::Reshape {
                        shape: Shape::new(&[1, 4]),
                    },
                    &[v],
                )
                .unwrap();
        }
        let y = g.add(Op::Binary(BinaryOp::Add), &[v, x]).unwrap();
        g.add_output("y", y).unwrap();
        let program = timed("lower", || fusion::lower(&g).unwrap());
        assert_eq!(program.kernels.len(), 1);
        let x = Tensor::from_f32(&[1, 4], X.to_vec()).unwrap();
        let out = kernel::interp::run(&program, &[x]).unwrap();
        assert_eq!(bits(&out[0]), f32_bits(&add_chain_values(1)));
    });
}

#[test]
fn the_issue_chain_compiles_and_runs_on_the_cpu_and_vulkan() {
    on_small_stack(|| {
        let g = parse(&add_chain_text(ISSUE)).unwrap();
        let expected = interp::run(&g, &[x_tensor()]).unwrap();
        assert_eq!(bits(&expected[0]), f32_bits(&add_chain_values(ISSUE)));
        let part = fusion::partition(&g);
        assert!(part
            .kernels
            .iter()
            .all(|k| k.nodes.len() <= fusion::MAX_KERNEL_NODES));
        let options = Options {
            threads: 1,
            ..Options::default()
        };
        let exe = timed("CPU compile", || kiln::compile(&g, &options).unwrap());
        let cpu = exe.run(&[x_tensor()]).unwrap();
        assert_eq!(bits(&cpu[0]), bits(&expected[0]), "CPU");
        let Some(device) = device() else {
            return;
        };
        let program = kiln::kernel_program(&g, &options).unwrap();
        let exe = timed("Vulkan compile", || {
            spirv::compile(device, &program).unwrap()
        });
        let gpu = exe.run(&[x_tensor()]).unwrap();
        assert_eq!(bits(&gpu[0]), bits(&expected[0]), "Vulkan");
    });
}

#[test]
fn a_200000_op_chain_compiles_and_runs_on_the_cpu() {
    // The million-op chain compiles too, in about 24 s and 1.4 GB on the 2-core CI machine (977 kernels): over the
    // 20 s a test may take, so this one takes a fifth of it, 196 kernels, through the same code.
    on_small_stack(|| {
        let n = DEEP / 5;
        let g = add_chain(n, false);
        let options = Options {
            threads: 2,
            ..Options::default()
        };
        let exe = timed("CPU compile", || kiln::compile(&g, &options).unwrap());
        assert_eq!(exe.steps().len(), n.div_ceil(fusion::MAX_KERNEL_NODES));
        let y = exe.run(&[x_tensor()]).unwrap();
        assert_eq!(bits(&y[0]), f32_bits(&add_chain_values(n)));
    });
}

#[test]
fn rule_7_keeps_products_with_their_sums_and_loop_nests_whole() {
    on_small_stack(|| {
        // A chain of `v·x + x`: every cut falls on an `add`, so each `mul` stays in the kernel of the `add` that
        // the CPU contracts it into (an `fma`), as in one kernel.
        let mut g = Graph::new("fma");
        let x = g.add_input("x", Role::Data, TensorType::f32(&[4])).unwrap();
        let mut v = x;
        for _ in 0..ISSUE / 2 {
            let p = g.add(Op::Binary(BinaryOp::Mul), &[v, x]).unwrap();
            v = g.add(Op::Binary(BinaryOp::Add), &[p, x]).unwrap();
        }
        g.add_output("y", v).unwrap();
        let part = fusion::partition(&g);
        assert!(part.kernels.len() >= ISSUE / (fusion::MAX_KERNEL_NODES + 1));
        for k in &part.kernels {
            assert!(matches!(g.node(k.root).op, Op::Binary(BinaryOp::Add)));
            assert!(k.nodes.len() <= fusion::MAX_KERNEL_NODES + 1);
        }
        let users = g.users();
        for id in g.ids() {
            if matches!(g.node(id).op, Op::Binary(BinaryOp::Mul)) {
                let sum = users[id.index()][0];
                assert_eq!(part.placement[id.index()], part.placement[sum.index()]);
            }
        }

        // The same number of adds summed, or concatenated: kernels with a `reduce` or a `for`, left whole.
        for root in ["reduce_sum", "concat"] {
            let mut g = Graph::new(root);
            let x = g.add_input("x", Role::Data, TensorType::f32(&[4])).unwrap();
            let mut v = x;
            for _ in 0..ISSUE {
                v = g.add(Op::Binary(BinaryOp::Add), &[v, x]).unwrap();
            }
            let (op, operands) = match root {
                "reduce_sum" => (
                    Op::ReduceSum {
                        axes: [0].into_iter().collect(),
                        keep_dims: false,
                    },
                    vec![v],
                ),
                _ => (Op::Concat { axis: 0 }, vec![v, x]),
            };
            let r = g.add(op, &operands).unwrap();
            g.add_output("r", r).unwrap();
            let part = fusion::partition(&g);
            let sizes: Vec<usize> = part.kernels.iter().map(|k| k.nodes.len()).collect();
            assert_eq!(sizes, [ISSUE + 1], "{root}");
        }
    });
}

#[test]
fn materialize_decides_a_doubling_chain_in_linear_time() {
    // `%k = add %(k-1), %(k-1)` sixty-four times, summed: the reduction's body is 64 lets, each using the previous
    // value twice. The kernel-IR pass `materialize` asks whether the body computes an `exp`; a recursive walk that
    // followed both operands would take 2^64 steps.
    let kernels = on_small_stack_within(Duration::from_secs(60), "lowering", || {
        let mut g = Graph::new("doubling");
        let x = g
            .add_input("x", Role::Data, TensorType::f32(&[3, 8]))
            .unwrap();
        let mut v = x;
        for _ in 0..64 {
            v = g.add(Op::Binary(BinaryOp::Add), &[v, v]).unwrap();
        }
        let sum = Op::ReduceSum {
            axes: [1].into_iter().collect(),
            keep_dims: false,
        };
        let s = g.add(sum, &[v]).unwrap();
        g.add_output("s", s).unwrap();
        fusion::lower(&g).unwrap().kernels.len()
    });
    assert_eq!(kernels, 1);
}

#[test]
fn rule_7_cuts_a_chain_of_products_alone_at_twice_the_length() {
    on_small_stack(|| {
        // `mul`s are kept beside the `add` they contract into, but a chain of nothing but products must not stay
        // one kernel however long: it is cut at 2·MAX_KERNEL_NODES members, and the values reload exactly.
        let n = 5 * fusion::MAX_KERNEL_NODES;
        let mut g = Graph::new("products");
        let x = g.add_input("x", Role::Data, TensorType::f32(&[4])).unwrap();
        let mut v = x;
        for _ in 0..n {
            v = g.add(Op::Binary(BinaryOp::Mul), &[v, x]).unwrap();
        }
        g.add_output("y", v).unwrap();
        let part = fusion::partition(&g);
        assert!(part.kernels.len() >= n / (2 * fusion::MAX_KERNEL_NODES));
        assert!(part
            .kernels
            .iter()
            .all(|k| k.nodes.len() <= 2 * fusion::MAX_KERNEL_NODES));
        let input = x_tensor();
        let expected = kiln::ir::interp::run(&g, std::slice::from_ref(&input)).unwrap();
        let program = fusion::lower(&g).unwrap();
        let actual = kernel::interp::run(&program, std::slice::from_ref(&input)).unwrap();
        assert_eq!(bits(&actual[0]), bits(&expected[0]));
    });
}
