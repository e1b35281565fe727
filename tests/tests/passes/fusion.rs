//! Fusion, the kernel IR and memory planning.
//!
//! The backbone is differential: every `kiln::zoo` model, its gradient graph and its SGD / Adam training steps, and
//! random graphs (and their gradient graphs), are lowered to kernel IR and run on the kernel interpreter; every output
//! must equal the graph interpreter's on the same seeded random inputs. "Equal" for floats is
//! `|a - b| <= 1e-5 + 1e-5·|b|` (NaN equals NaN, infinities must match exactly); integers and bools exactly. (Both
//! interpreters sum in the same order, so in practice the results are bit-identical.)
//!
//! Then the fusion decisions of the cost model on the smallest graphs that show them, memory-plan invariants on every
//! zoo program, and reviewed snapshots of the MLP's SGD step at each stage.

use kiln::fusion::{self, KernelKind, Placement};
use kiln::ir::{interp, Builder, DType, Graph, TensorType};
use kiln::kernel::{self, Inst, Kernel, KernelProgram, ReduceKind, ScalarOp};
use kiln::memory::{self, BufferPlacement};
use kiln::zoo;
use kiln::{grad, training_step, Adam, Optimizer, Sgd};
use kiln_tests::differential::{assert_outputs_match, random_inputs, Tolerance};
use kiln_tests::graph_gen::{self, arb_float_graph, arb_graph};
use proptest::prelude::*;

// ---- helpers ----

/// Kernel interpreter vs graph interpreter: `|a - b| <= 1e-5 + 1e-5·|b|` (only reassociated reductions differ).
const TOL: Tolerance = Tolerance {
    atol: 1e-5,
    rtol: 1e-5,
};

/// Lowers `graph`, runs both interpreters on seeded random inputs and compares every output. Returns the program.
fn assert_kernels_match_graph(graph: &Graph, seed: u64) -> KernelProgram {
    let program =
        fusion::lower(graph).unwrap_or_else(|e| panic!("{}: lowering failed: {e}", graph.name));
    let inputs = random_inputs(graph, seed);
    let expected = interp::run(graph, &inputs).expect("the graph runs");
    let actual = kernel::interp::run(&program, &inputs).unwrap_or_else(|e| {
        panic!(
            "{}: the kernel program fails: {e}\n{}",
            graph.name,
            kernel::print(&program)
        )
    });
    assert_outputs_match(graph, &expected, &actual, TOL, "kernel interpreter", || {
        format!(
            "{}\n{}",
            fusion::partition(graph).print(graph),
            kernel::print(&program)
        )
    });
    program
}

/// Every zoo model, its gradient graph, and its training step under each optimizer (`kiln::zoo::corpus`).
fn zoo_graphs() -> Vec<Graph> {
    zoo::corpus(&zoo::corpus_optimizers()).unwrap()
}

fn mlp_step(optimizer: &Optimizer) -> Graph {
    let model = zoo::mlp_784().unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    training_step(&model, "loss", &names, optimizer).unwrap()
}

fn mlp_sgd_step() -> Graph {
    mlp_step(&Optimizer::Sgd(Sgd::default()))
}

fn loop_kernel(k: &Kernel) -> &kernel::LoopKernel {
    match k {
        Kernel::Loop(l) => l,
        Kernel::Matmul(m) => panic!("kernel {} is a matmul", m.name),
        Kernel::Collective(c) => panic!("kernel {} is an all_reduce", c.copy.name),
    }
}

fn extents(k: &Kernel) -> Vec<usize> {
    k.parallel().iter().map(|l| l.extent).collect()
}

/// Every reduce in a kernel, with its kind and loop extents.
fn reduces(k: &Kernel) -> Vec<(ReduceKind, Vec<usize>)> {
    let mut out = Vec::new();
    k.body().visit(&mut |i| {
        if let Inst::Reduce { kind, loops, .. } = i {
            out.push((*kind, loops.iter().map(|l| l.extent).collect()));
        }
    });
    out
}

// ---- differential: kernel interpreter == graph interpreter ----

#[test]
fn every_zoo_graph_runs_the_same_on_kernels() {
    for (seed, graph) in zoo_graphs().into_iter().enumerate() {
        let program = assert_kernels_match_graph(&graph, 1000 + seed as u64);
        println!(
            "{:<28} {:>5} nodes -> {:>3} kernels",
            graph.name,
            graph.len(),
            program.kernels.len()
        );
    }
}

/// The compiler's pipeline: graph passes, then fusion.
#[test]
fn every_optimized_zoo_graph_runs_the_same_on_kernels() {
    for (seed, graph) in zoo_graphs().into_iter().enumerate() {
        let optimized = kiln::optimize(&graph).unwrap();
        let program = assert_kernels_match_graph(&optimized, 2000 + seed as u64);
        println!(
            "{:<28} {:>5} nodes -> {:>3} kernels",
            graph.name,
            optimized.len(),
            program.kernels.len()
        );
    }
}

/// A loss over every output of `g`: the sum of all elements of each, as f64.
fn with_scalar_loss(g: &Graph) -> Option<(Graph, Vec<String>)> {
    let mut b = Builder::from_graph(g.clone());
    let mut total = None;
    for o in g.outputs() {
        let as_f64 = b.cast(o.value, DType::F64).ok()?;
        let s = b.sum_all(as_f64).ok()?;
        total = Some(match total {
            None => s,
            Some(t) => b.add(t, s).ok()?,
        });
    }
    b.output("loss.total", total?).ok()?;
    let loss_graph = b.finish();
    let wrt: Vec<String> = loss_graph
        .inputs()
        .filter(|i| i.ty.dtype.is_float())
        .map(|i| i.name.to_string())
        .collect();
    Some((loss_graph, wrt))
}

proptest! {
    #![proptest_config(graph_gen::proptest_config(1500))]

    /// Random graphs of every op and dtype, special floats included.
    #[test]
    fn random_graphs_run_the_same_on_kernels(g in arb_graph(), seed in any::<u64>()) {
        assert_kernels_match_graph(&g, seed);
    }

    /// Gradient graphs of random differentiable graphs: lots of broadcasts, reductions and matmuls in both
    /// directions.
    #[test]
    fn random_gradient_graphs_run_the_same_on_kernels(g in arb_float_graph(), seed in any::<u64>()) {
        let Some((loss_graph, wrt)) = with_scalar_loss(&g) else { return Ok(()) };
        let names: Vec<&str> = wrt.iter().map(String::as_str).collect();
        if names.is_empty() {
            return Ok(());
        }
        let grads = grad(&loss_graph, "loss.total", &names).unwrap().graph;
        assert_kernels_match_graph(&grads, seed);
    }
}

// ---- the cost model on tiny graphs ----

fn one_output(build: impl FnOnce(&mut Builder) -> kiln::ir::Value) -> Graph {
    let mut b = Builder::new("t");
    let v = build(&mut b);
    b.output("y", v).unwrap();
    b.finish()
}

#[test]
fn elementwise_chain_with_broadcasts_is_one_parallel_kernel() {
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[4, 8])).unwrap();
        let bias = b.param("bias", TensorType::f32(&[8])).unwrap();
        let s = b.add(x, bias).unwrap();
        let t = b.tanh(s).unwrap();
        let e = b.exp(t).unwrap();
        b.mul_scalar(e, 0.5).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 1);
    assert_eq!(p.kernels.len(), 1);
    assert_eq!(extents(&p.kernels[0]), [4, 8]);
    assert!(reduces(&p.kernels[0]).is_empty());
}

#[test]
fn softmax_is_one_row_parallel_loop_kernel() {
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[4, 10])).unwrap();
        b.softmax(x, 1).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 2);
    assert_eq!(p.kernels.len(), 1, "{}", kernel::print(&p));
    let k = loop_kernel(&p.kernels[0]);
    assert_eq!(extents(&p.kernels[0]), [4]);
    // max over the row, sum of exp over the row, then one `for` writing the row.
    assert_eq!(
        reduces(&p.kernels[0]),
        [(ReduceKind::Max, vec![10]), (ReduceKind::Sum, vec![10])]
    );
    assert!(matches!(k.body.insts.last(), Some(Inst::For { .. })));
}

#[test]
fn log_softmax_is_one_row_parallel_loop_kernel() {
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[4, 10])).unwrap();
        b.log_softmax(x, 1).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 3);
    assert_eq!(p.kernels.len(), 1, "{}", kernel::print(&p));
    assert_eq!(extents(&p.kernels[0]), [4]);
    assert_eq!(
        reduces(&p.kernels[0]),
        [(ReduceKind::Max, vec![10]), (ReduceKind::Sum, vec![10])]
    );
}

#[test]
fn cross_entropy_forward_is_one_loop_kernel() {
    let g = one_output(|b| {
        let logits = b.data("logits", TensorType::f32(&[16, 10])).unwrap();
        let labels = b.data("labels", TensorType::i32(&[16])).unwrap();
        b.cross_entropy(logits, labels).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 4);
    assert_eq!(p.kernels.len(), 1, "{}", kernel::print(&p));
    let k = &p.kernels[0];
    assert!(k.parallel().is_empty());
    // The batch mean's sum over rows, with each row's max, sum of exp and picked log-probability inside it.
    let r = reduces(k);
    assert_eq!(r[0], (ReduceKind::Sum, vec![16]), "{}", kernel::print(&p));
    assert_eq!(r.len(), 4, "{}", kernel::print(&p));
}

/// The kernels of a training step's softmax cross-entropy, loss and backward: those computing a value downstream
/// of the logits (the operand of the first `reduce_max`), except matmul kernels (the layers' backward) and
/// parameter or optimizer-state updates (kernels storing an aliased output).
fn cross_entropy_kernels(g: &Graph) -> Vec<usize> {
    let logits = g
        .ids()
        .find(|&id| matches!(g.node(id).op, kiln::ir::Op::ReduceMax { .. }))
        .map(|id| g.node(id).operands[0])
        .expect("a softmax cross-entropy has a row max");
    let mut downstream = vec![false; g.len()];
    for id in g.ids() {
        downstream[id.index()] =
            id == logits || g.node(id).operands.iter().any(|o| downstream[o.index()]);
    }
    let updates = |n: kiln::ir::NodeId| {
        g.outputs()
            .iter()
            .any(|o| o.value == n && o.aliases.is_some())
    };
    let part = fusion::partition(g);
    (0..part.kernels.len())
        .filter(|&k| {
            let group = &part.kernels[k];
            group.kind == KernelKind::Loop
                && group.nodes.iter().any(|n| downstream[n.index()])
                && !group.stored.iter().any(|&n| updates(n))
        })
        .collect()
}

#[test]
fn cross_entropy_loss_and_backward_in_training_steps_is_three_kernels() {
    // Row max and sum of exp (one row kernel, two passes, storing both per-row values); the scalar loss (a sum over
    // rows: its own iteration space); the backward, recomputing exp(x - max) and the one-hot mask per element.
    for (name, optimizer) in [
        ("sgd", Optimizer::Sgd(Sgd::default())),
        ("adam", Optimizer::Adam(Adam::default())),
    ] {
        let built = mlp_step(&optimizer);
        let optimized = kiln::optimize(&built).unwrap();
        for (stage, g) in [("as built", &built), ("optimized", &optimized)] {
            let part = fusion::partition(g);
            let ce = cross_entropy_kernels(g);
            assert!(ce.len() <= 3, "{name} {stage}: {ce:?}\n{}", part.print(g));
            let rows = &part.kernels[ce[0]];
            let row_values: Vec<String> =
                rows.stored.iter().map(|&n| g.ty(n).to_string()).collect();
            assert_eq!(
                row_values,
                ["f32[128,1]", "f32[128,1]"],
                "{name} {stage}: the row max and the sum of exp\n{}",
                part.print(g)
            );
            // Neither exp(x - max) nor the one-hot mask is stored.
            let program = fusion::lower(g).unwrap();
            let logits_sized = program
                .buffers
                .iter()
                .filter(|b| b.kind == kernel::BufferKind::Temp && b.ty.dims() == [128, 10])
                .count();
            assert_eq!(
                logits_sized,
                2,
                "{name} {stage}: only the logits and their gradient\n{}",
                kernel::print(&program)
            );
        }
    }
}

#[test]
fn a_cheap_elementwise_value_read_by_two_kernels_is_recomputed_by_each() {
    // e = exp(x - rowmax(x)) is read by a row kernel (the softmax) and a column kernel (its column sums): each
    // recomputes it from x and the stored row max instead of loading a stored e.
    let mut b = Builder::new("t");
    let x = b.data("x", TensorType::f32(&[6, 5])).unwrap();
    let m = b.reduce_max(x, &[1], true).unwrap();
    let d = b.sub(x, m).unwrap();
    let e = b.exp(d).unwrap();
    let s = b.reduce_sum(e, &[1], true).unwrap();
    let y = b.div(e, s).unwrap();
    let cols = b.reduce_sum(e, &[0], false).unwrap();
    b.output("y", y).unwrap();
    b.output("cols", cols).unwrap();
    let g = b.finish();
    let p = assert_kernels_match_graph(&g, 11);
    assert_eq!(
        fusion::partition(&g).placement[e.index()],
        Placement::Inline
    );
    let temps: Vec<String> = p
        .buffers
        .iter()
        .filter(|b| b.kind == kernel::BufferKind::Temp)
        .map(|b| b.ty.to_string())
        .collect();
    assert_eq!(temps, ["f32[6,1]"], "{}", kernel::print(&p));
}

#[test]
fn weight_update_is_the_epilogue_of_the_transposed_gradient_matmul() {
    // new.w = w - 0.1 * transpose(xᵀ g): the kernel computes (xᵀ g)ᵀ = gᵀ x in w's orientation and updates w in
    // place, without storing the gradient.
    let mut b = Builder::new("t");
    let x = b.data("x", TensorType::f32(&[8, 16])).unwrap();
    let gz = b.data("g", TensorType::f32(&[8, 4])).unwrap();
    let w = b.param("w", TensorType::f32(&[4, 16])).unwrap();
    let xt = b.transpose(x, &[1, 0]).unwrap();
    let dw_t = b.matmul(xt, gz).unwrap();
    let dw = b.transpose(dw_t, &[1, 0]).unwrap();
    let step = b.mul_scalar(dw, 0.1).unwrap();
    let new_w = b.sub(w, step).unwrap();
    b.output_aliasing("new.w", new_w, "w").unwrap();
    let g = b.finish();
    let p = assert_kernels_match_graph(&g, 12);
    assert_eq!(p.kernels.len(), 1, "{}", kernel::print(&p));
    let Kernel::Matmul(m) = &p.kernels[0] else {
        panic!("not a matmul:\n{}", kernel::print(&p))
    };
    assert_eq!((m.m(), m.n(), m.k), (4, 16, 8));
    // a[i, l] = g[l, i]; b[l, j] = x[l, j].
    assert_eq!((m.a.row_stride, m.a.col_stride), (1, 4));
    assert_eq!((m.b.row_stride, m.b.col_stride), (16, 1));
    let plan = memory::plan(&p);
    assert!(matches!(
        plan.placements[p.outputs[0].buffer.index()],
        BufferPlacement::InPlace { .. }
    ));
}

#[test]
fn linear_relu_is_one_matmul_kernel_with_an_epilogue() {
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[8, 16])).unwrap();
        let w = b.param("w", TensorType::f32(&[32, 16])).unwrap();
        let bias = b.param("b", TensorType::f32(&[32])).unwrap();
        let z = b.linear(x, w, Some(bias)).unwrap();
        b.relu(z).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 5);
    assert_eq!(p.kernels.len(), 1, "{}", kernel::print(&p));
    let Kernel::Matmul(m) = &p.kernels[0] else {
        panic!("not a matmul:\n{}", kernel::print(&p))
    };
    assert_eq!((m.m(), m.n(), m.k), (8, 32, 16));
    // Wᵀ is read in place: element (l, j) of Wᵀ is w[16 j + l].
    assert_eq!((m.b.row_stride, m.b.col_stride), (1, 16));
    let mut ops = Vec::new();
    m.epilogue.visit(&mut |i| {
        if let Inst::Let { op, .. } = i {
            ops.push(op.clone());
        }
    });
    assert!(ops.iter().any(|o| matches!(o, ScalarOp::MatmulAcc)));
    assert!(ops.iter().any(|o| matches!(o, ScalarOp::Select(..))));
    assert!(
        ops.iter().any(|o| matches!(o, ScalarOp::Load { .. })),
        "the bias is loaded in the epilogue"
    );
}

#[test]
fn bias_gradient_reduces_a_leading_axis_with_a_stride() {
    let g = one_output(|b| {
        let gz = b.data("gz", TensorType::f32(&[128, 256])).unwrap();
        b.reduce_sum(gz, &[0], false).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 6);
    assert_eq!(p.kernels.len(), 1);
    assert_eq!(extents(&p.kernels[0]), [256]);
    assert_eq!(reduces(&p.kernels[0]), [(ReduceKind::Sum, vec![128])]);
    let text = kernel::print(&p);
    assert!(text.contains("load b0[i0 + 256*i1]"), "{text}");
}

#[test]
fn a_value_used_by_two_kernels_is_materialized_once() {
    // exp(x) feeds a matmul and a reduction: computed once, stored, read twice.
    let mut b = Builder::new("t");
    let x = b.data("x", TensorType::f32(&[4, 4])).unwrap();
    let e = b.exp(x).unwrap();
    let m = b.matmul(e, x).unwrap();
    let s = b.sum_all(e).unwrap();
    b.output("m", m).unwrap();
    b.output("s", s).unwrap();
    let g = b.finish();
    let p = assert_kernels_match_graph(&g, 7);
    let part = fusion::partition(&g);
    assert_eq!(part.placement[e.index()], Placement::Kernel(0));
    assert_eq!(part.kernels[0].root, e);
    // DOT: one cluster per kernel, plus one for inputs and inline nodes.
    let (groups, names) = part.dot_groups(&g);
    assert_eq!(groups.len(), g.len());
    assert_eq!(names.len(), part.kernels.len() + 1);
    assert_eq!(groups[x.index()], part.kernels.len());
    let exps = p
        .kernels
        .iter()
        .map(|k| {
            let mut n = 0;
            k.body().visit(&mut |i| {
                n += matches!(
                    i,
                    Inst::Let {
                        op: ScalarOp::Unary(kiln::ir::UnaryOp::Exp, _),
                        ..
                    }
                ) as usize
            });
            n
        })
        .sum::<usize>();
    assert_eq!(exps, 1);
}

#[test]
fn a_column_sum_in_a_row_kernel_is_materialized_not_recomputed() {
    // y = x - colmean(x) + rowmax(x): the column sums don't depend on the row, so they get their own kernel.
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[6, 5])).unwrap();
        let cols = b.reduce_sum(x, &[0], true).unwrap();
        let rows = b.reduce_max(x, &[1], true).unwrap();
        let d = b.sub(x, cols).unwrap();
        b.add(d, rows).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 8);
    assert_eq!(p.kernels.len(), 2, "{}", kernel::print(&p));
}

#[test]
fn concat_and_non_affine_reshapes_lower() {
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[2, 3])).unwrap();
        let y = b.data("y", TensorType::f32(&[2, 2])).unwrap();
        let ex = b.exp(x).unwrap();
        let c = b.concat(&[ex, y], 1).unwrap();
        let t = b.transpose(c, &[1, 0]).unwrap();
        let r = b.reshape(t, &[5, 2]).unwrap();
        let tr = b.transpose(r, &[1, 0]).unwrap();
        b.neg(tr).unwrap()
    });
    assert_kernels_match_graph(&g, 9);
}

// ---- memory planning ----

fn assert_plan_is_sound(program: &KernelProgram) {
    let plan = memory::plan(program);
    assert!(
        plan.peak_bytes <= plan.sum_of_temps_bytes,
        "{}",
        program.name
    );
    let temps: Vec<(usize, usize, usize, memory::Lifetime)> = plan
        .placements
        .iter()
        .enumerate()
        .filter_map(|(b, p)| match *p {
            BufferPlacement::Arena { offset, size } => Some((
                b,
                offset,
                size,
                plan.lifetimes[b].expect("a temp is written"),
            )),
            _ => None,
        })
        .collect();
    for (i, a) in temps.iter().enumerate() {
        assert_eq!(a.1 % memory::ALIGNMENT, 0);
        assert!(a.1 + a.2 <= plan.peak_bytes);
        assert!(a.2 >= program.buffers[a.0].ty.size_bytes());
        for b in &temps[i + 1..] {
            let disjoint = a.1 + a.2 <= b.1 || b.1 + b.2 <= a.1;
            assert!(
                disjoint || !a.3.overlaps(&b.3),
                "{}: b{} and b{} are live together and overlap\n{}",
                program.name,
                a.0,
                b.0,
                plan.report(program)
            );
        }
    }
}

#[test]
fn memory_plans_of_every_zoo_graph_are_sound() {
    for graph in zoo_graphs() {
        let program = fusion::lower(&graph).unwrap();
        assert_plan_is_sound(&program);
    }
}

#[test]
fn training_steps_update_params_and_state_in_place() {
    for graph in zoo_graphs()
        .into_iter()
        .filter(|g| g.name.contains("_step_"))
    {
        let program = fusion::lower(&graph).unwrap();
        let plan = memory::plan(&program);
        for o in program.outputs.iter().filter(|o| o.aliases.is_some()) {
            let placement = plan.placements[o.buffer.index()];
            assert!(
                matches!(placement, BufferPlacement::InPlace { .. }),
                "{}: {} is {placement:?}\n{}",
                graph.name,
                o.name,
                plan.report(&program)
            );
        }
    }
}

#[test]
fn an_aliased_output_whose_input_is_read_later_is_copied_back() {
    // new.p = p * 2 aliases p, but a later kernel (a full reduction) still reads the old p.
    let mut b = Builder::new("t");
    let p = b.param("p", TensorType::f32(&[8])).unwrap();
    let doubled = b.mul_scalar(p, 2.0).unwrap();
    let e = b.exp(doubled).unwrap();
    let s = b.sum_all(e).unwrap();
    let total = b.sum_all(p).unwrap();
    let loss = b.add(s, total).unwrap();
    b.output("loss", loss).unwrap();
    b.output_aliasing("new.p", e, "p").unwrap();
    let g = b.finish();
    let program = assert_kernels_match_graph(&g, 10);
    let plan = memory::plan(&program);
    let new_p = program.outputs.iter().find(|o| o.name == "new.p").unwrap();
    assert!(
        matches!(
            plan.placements[new_p.buffer.index()],
            BufferPlacement::CopyBack { .. }
        ),
        "{}",
        plan.report(&program)
    );
}

// ---- the MLP 784-256-256-10 SGD step, end to end ----

struct Numbers {
    primitives: usize,
    kernels: usize,
    matmul_kernels: usize,
    traffic_before: usize,
    traffic_after: usize,
    peak: usize,
    sum_of_temps: usize,
}

fn numbers(g: &Graph) -> Numbers {
    let part = fusion::partition(g);
    let program = fusion::lower(g).unwrap();
    let plan = memory::plan(&program);
    let live = g.live();
    let primitives = g
        .ids()
        .filter(|id| live[id.index()] && !matches!(g.node(*id).op, kiln::ir::Op::Input { .. }))
        .count();
    let n = Numbers {
        primitives,
        kernels: program.kernels.len(),
        matmul_kernels: part
            .kernels
            .iter()
            .filter(|k| k.kind == KernelKind::Matmul)
            .count(),
        traffic_before: memory::unfused_traffic_bytes(g),
        traffic_after: plan.traffic_bytes,
        peak: plan.peak_bytes,
        sum_of_temps: plan.sum_of_temps_bytes,
    };
    println!(
        "  primitives before fusion: {} (live, inputs excluded)",
        n.primitives
    );
    println!(
        "  kernels after fusion:     {} ({} matmul)",
        n.kernels, n.matmul_kernels
    );
    println!(
        "  memory traffic before:    {} bytes (one kernel per primitive)",
        n.traffic_before
    );
    println!("  memory traffic after:     {} bytes", n.traffic_after);
    println!("  arena peak:               {} bytes", n.peak);
    println!("  sum of all temporaries:   {} bytes", n.sum_of_temps);
    n
}

/// The numbers of the MLP 784-256-256-10, batch 128, SGD step, as built and after the graph passes
/// (`cargo test -p kiln-tests --test main mlp_sgd_step_fusion_numbers -- --nocapture`).
#[test]
fn mlp_sgd_step_fusion_numbers() {
    let g = mlp_sgd_step();
    println!("MLP 784-256-256-10, batch 128, SGD training step, as built:");
    let raw = numbers(&g);
    println!("the same after kiln::optimize:");
    let opt = numbers(&kiln::optimize(&g).unwrap());
    for n in [&raw, &opt] {
        assert!(n.kernels * 4 < n.primitives);
        assert!(n.traffic_after * 2 < n.traffic_before);
        assert!(n.peak < n.sum_of_temps);
        // Three matmuls forward, five backward (no gradient for the data `x`), each with its own kernel.
        assert_eq!(n.matmul_kernels, 8);
    }
}

#[test]
fn snapshot_mlp_sgd_step() {
    let g = mlp_sgd_step();
    let program = fusion::lower(&g).unwrap();
    insta::assert_snapshot!("mlp_sgd_step_fused", fusion::partition(&g).print(&g));
    insta::assert_snapshot!("mlp_sgd_step_kernels", kernel::print(&program));
    insta::assert_snapshot!(
        "mlp_sgd_step_memory",
        memory::plan(&program).report(&program)
    );
}

// ---- transformer pieces (the transformer issue's fusion rules) ----

/// A layer norm (row mean, centred variance, normalize, affine) is one row-parallel kernel: no intermediate buffer.
#[test]
fn layer_norm_is_one_row_kernel() {
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[6, 16])).unwrap();
        let w = b.param("w", TensorType::f32(&[16])).unwrap();
        let bias = b.param("b", TensorType::f32(&[16])).unwrap();
        b.layer_norm(x, Some(w), Some(bias), 1e-5).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 3);
    assert_eq!(p.kernels.len(), 1, "{}", kernel::print(&p));
    assert_eq!(extents(&p.kernels[0]), [6]);
}

/// `gelu(x Wᵀ + b)`: the bias and the exact GELU run in the matmul's epilogue.
#[test]
fn linear_bias_gelu_is_one_matmul_kernel() {
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[8, 16])).unwrap();
        let w = b.param("w", TensorType::f32(&[32, 16])).unwrap();
        let bias = b.param("b", TensorType::f32(&[32])).unwrap();
        let h = b.linear(x, w, Some(bias)).unwrap();
        b.gelu(h, kiln::ir::GeluApprox::None).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 4);
    assert_eq!(p.kernels.len(), 1, "{}", kernel::print(&p));
    assert!(
        matches!(p.kernels[0], Kernel::Matmul(_)),
        "{}",
        kernel::print(&p)
    );
}

/// Causal attention: the two batched matmuls and, between them, one row kernel for the scale, the mask and the
/// softmax (the scores are written once and read once).
#[test]
fn causal_attention_is_two_matmuls_around_one_softmax_row_kernel() {
    let g = one_output(|b| {
        let ty = TensorType::f32(&[2, 3, 8, 4]);
        let q = b.data("q", ty.clone()).unwrap();
        let k = b.data("k", ty.clone()).unwrap();
        let v = b.data("v", ty).unwrap();
        b.scaled_dot_product_attention(q, k, v, true).unwrap()
    });
    let p = assert_kernels_match_graph(&g, 5);
    let kinds: Vec<bool> = p
        .kernels
        .iter()
        .map(|k| matches!(k, Kernel::Matmul(_)))
        .collect();
    assert_eq!(kinds, [true, false, true], "{}", kernel::print(&p));
}

/// A reduction read through overlapping windows (a max pool under the next convolution's window matrix) is stored
/// by a kernel of its own: joining the window matrix's kernel would recompute it once per window holding each of its
/// elements (25× for 5×5 windows), which made a LeNet's first pool 90 % of its CPU time.
#[test]
fn a_reduction_read_through_overlapping_windows_is_stored() {
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[2, 3, 12, 12])).unwrap();
        let w = b.windows(x, &[2, 2], &[2, 2], &[1, 1]).unwrap();
        let pooled = b.reduce_max(w, &[4, 5], false).unwrap(); // [2, 3, 6, 6]
        let patches = b.windows(pooled, &[3, 3], &[1, 1], &[1, 1]).unwrap(); // [2, 3, 4, 4, 3, 3]
        b.reduce_sum(patches, &[4, 5], false).unwrap()
    });
    let pooled = g
        .ids()
        .find(|&id| matches!(g.node(id).op, kiln::ir::Op::ReduceMax { .. }))
        .unwrap();
    let partition = fusion::partition(&g);
    assert!(
        partition.stored().any(|id| id == pooled),
        "{}",
        partition.print(&g)
    );
    let p = assert_kernels_match_graph(&g, 3);
    assert_eq!(p.kernels.len(), 2, "{}", kernel::print(&p));
    // Non-overlapping windows (the pool itself) still fuse the reduction into its reader.
    let g = one_output(|b| {
        let x = b.data("x", TensorType::f32(&[2, 3, 12, 12])).unwrap();
        let w = b.windows(x, &[2, 2], &[2, 2], &[1, 1]).unwrap();
        let pooled = b.reduce_max(w, &[4, 5], false).unwrap();
        let w = b.windows(pooled, &[2, 2], &[2, 2], &[1, 1]).unwrap();
        b.reduce_sum(w, &[4, 5], false).unwrap()
    });
    assert_eq!(assert_kernels_match_graph(&g, 4).kernels.len(), 1);
}
