//! The CPU backend: native code from the kernel IR, run through `kiln::compile` and `Executable::run` / `Session`.
//!
//! The backbone is differential: every `kiln::zoo` model, its gradient graph and its SGD / Adam training steps, and
//! random graphs from `kiln_tests::graph_gen`, compiled and run on the CPU must match the graph interpreter on the
//! same seeded inputs. "Match" for floats is `|a - b| <= 1e-5 + 1e-4·|b|` (NaN matches NaN, infinities must be
//! equal); integers and bools exactly. The transcendental functions are the interpreter's own, and the GEMM sums in
//! another order than the interpreter's dot products, hence the relative term.

use kiln::ir::{interp, Builder, DType, Graph, Role, Tensor, TensorType};
use kiln::zoo;
use kiln::{grad, training_step, Adam, Executable, Optimizer, Options, Session, Sgd};
use kiln_tests::fd::{random_tensor, rng};
use kiln_tests::graph_gen::arb_graph;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

// ---- helpers ----

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= ATOL + RTOL * b.abs()
}

/// Seeded standard-normal inputs, with 2-D parameters scaled by `1/sqrt(fan_in)` as an initializer would: with
/// unscaled weights the MLP's activations grow to thousands and its outputs are differences of huge sums, where any
/// summation order (the GEMM's included) moves the result by more than a relative tolerance can allow.
fn random_inputs(graph: &Graph, seed: u64) -> Vec<Tensor> {
    let mut r = rng(seed);
    graph
        .inputs()
        .map(|i| {
            let t = random_tensor(i.ty, &mut r);
            match (i.role, i.ty.dims()) {
                (Role::Param, &[_, fan_in]) if i.ty.dtype.is_float() => {
                    let scale = 1.0 / (fan_in as f64).sqrt();
                    let v: Vec<f64> = t.to_f64_vec().iter().map(|x| x * scale).collect();
                    Tensor::from_f64_values(i.ty.clone(), &v).unwrap()
                }
                _ => t,
            }
        })
        .collect()
}

fn options(threads: usize) -> Options {
    Options {
        threads,
        ..Options::default()
    }
}

fn assert_outputs_match(graph: &Graph, expected: &[Tensor], actual: &[Tensor], what: &str) {
    assert_eq!(expected.len(), actual.len(), "{what}: output count");
    for ((o, e), a) in graph.outputs().iter().zip(expected).zip(actual) {
        assert_eq!(e.ty(), a.ty(), "{what}: output {} type", o.name);
        let (ev, av) = (e.to_f64_vec(), a.to_f64_vec());
        let exact = !e.dtype().is_float();
        if let Some(i) = (0..ev.len()).find(|&i| {
            if exact {
                ev[i] != av[i]
            } else {
                !close(av[i], ev[i])
            }
        }) {
            panic!(
                "{what}: output {} element {i}: interpreter {}, cpu {}",
                o.name, ev[i], av[i]
            );
        }
    }
}

/// Compiles `graph` for the CPU, runs it and the graph interpreter on seeded inputs, and compares every output.
fn assert_cpu_matches_interpreter(graph: &Graph, seed: u64, optimize: bool) -> Executable {
    let opts = Options {
        optimize,
        threads: 2,
        ..Options::default()
    };
    let exe = kiln::compile(graph, &opts)
        .unwrap_or_else(|e| panic!("{}: compiling failed: {e}", graph.name));
    let inputs = random_inputs(graph, seed);
    let expected = interp::run(graph, &inputs).expect("the graph runs");
    let actual = exe
        .run(&inputs)
        .unwrap_or_else(|e| panic!("{}: running failed: {e}", graph.name));
    assert_outputs_match(graph, &expected, &actual, &graph.name);
    exe
}

/// Every zoo model, its gradient graph, and its SGD, SGD with Nesterov momentum and weight decay, Adam and AdamW
/// training steps.
fn zoo_graphs() -> Vec<Graph> {
    let mut graphs = Vec::new();
    for (_, model) in zoo::examples().unwrap() {
        graphs.push(model.clone());
        let params = kiln::autodiff::param_names(&model);
        if params.is_empty() || model.output("loss").is_none() {
            continue;
        }
        let names: Vec<&str> = params.iter().map(String::as_str).collect();
        let mut g = grad(&model, "loss", &names).unwrap().graph;
        g.name = format!("{}_grad", model.name);
        graphs.push(g);
        let momentum = Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
            ..Sgd::default()
        };
        let optimizers = [
            ("sgd", Optimizer::Sgd(Sgd::default())),
            ("sgd_nesterov", Optimizer::Sgd(momentum)),
            ("adam", Optimizer::Adam(Adam::default())),
            (
                "adamw",
                Optimizer::AdamW(Adam {
                    weight_decay: 1e-2,
                    ..Adam::default()
                }),
            ),
        ];
        for (name, opt) in optimizers {
            let mut step = training_step(&model, "loss", &names, &opt).unwrap();
            step.name = format!("{}_step_{name}", model.name);
            graphs.push(step);
        }
    }
    graphs
}

// ---- differential: zoo ----

#[test]
fn every_zoo_graph_matches_the_interpreter() {
    for graph in zoo_graphs() {
        for optimize in [true, false] {
            assert_cpu_matches_interpreter(&graph, 3, optimize);
        }
    }
}
