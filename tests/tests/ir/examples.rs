//! The shipped examples (`ir-spec/examples/*.kir`) are the `kiln::zoo` graphs printed, parse back to the same graph,
//! and run on the interpreter; their DOT and the backward / training-step graphs of `twolayer` are pinned by snapshots.
//!
//! Set `KILN_BLESS=1` to rewrite the `.kir` files from the zoo after an intended change.

use kiln::ir::dot::{to_dot, DotOptions};
use kiln::ir::{interp, text, Graph};
use kiln::{grad, training_step, Optimizer, Sgd};
use kiln_tests::fd::{random_tensor, rng};
use std::path::PathBuf;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples")
}

fn header(name: &str) -> String {
    let what = match name {
        "logreg" => "logistic regression on 64 points in 2-D, binary cross-entropy",
        "twolayer" => "the lecture's TwoLayerNet(2, 20, 1): Linear, clamp(min=0), Linear; MSE on the XOR points",
        "mlp" => "MLP 784-256-256-10, batch 128, ReLU, softmax cross-entropy with integer labels",
        "activations" => "the six activations of the lecture on one input",
        _ => "example",
    };
    format!("# {name}.kir: {what}.\n# Printed from kiln::zoo; tests/tests/ir/examples.rs keeps it current (KILN_BLESS=1).\n")
}

#[test]
fn example_files_are_the_zoo_graphs_printed() {
    let bless = std::env::var_os("KILN_BLESS").is_some();
    for (name, graph) in kiln::zoo::examples().unwrap() {
        let path = examples_dir().join(format!("{name}.kir"));
        let expected = header(name) + &text::print(&graph);
        if bless {
            std::fs::write(&path, &expected).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with KILN_BLESS=1 to create it)",
                path.display()
            )
        });
        assert_eq!(
            on_disk,
            expected,
            "{} is stale: rerun with KILN_BLESS=1 and review the diff",
            path.display()
        );
        let parsed = text::parse(&on_disk).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            parsed, graph,
            "{name}: parsing the printed graph gives a different graph"
        );
    }
}

#[test]
fn examples_run_on_the_interpreter() {
    for (name, graph) in kiln::zoo::examples().unwrap() {
        let mut r = rng(1);
        let inputs: Vec<_> = graph
            .inputs()
            .map(|i| random_tensor(i.ty, &mut r))
            .collect();
        let outputs = interp::run(&graph, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outputs.len(), graph.outputs().len());
        for (o, t) in graph.outputs().iter().zip(&outputs) {
            assert_eq!(t.ty(), graph.ty(o.value), "{name}: output {}", o.name);
            assert!(
                t.to_f64_vec().iter().all(|v| v.is_finite()),
                "{name}: output {} is not finite",
                o.name
            );
        }
    }
}

fn twolayer_params(graph: &Graph) -> Vec<String> {
    kiln::autodiff::param_names(graph)
}

#[test]
fn snapshot_example_text_and_dot() {
    for (name, graph) in kiln::zoo::examples().unwrap() {
        insta::assert_snapshot!(format!("example__{name}_text"), text::print(&graph));
        insta::assert_snapshot!(
            format!("example__{name}_dot"),
            to_dot(&graph, &DotOptions::default())
        );
    }
}

#[test]
fn snapshot_twolayer_backward_graph() {
    let model = kiln::zoo::twolayer().unwrap();
    let params = twolayer_params(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let g = grad(&model, "loss", &names).unwrap();
    insta::assert_snapshot!("grad__twolayer_backward", text::print(&g.graph));
    let options = DotOptions {
        groups: Some(g.dot_groups()),
        group_names: vec!["forward".into(), "backward".into()],
    };
    insta::assert_snapshot!("grad__twolayer_backward_dot", to_dot(&g.graph, &options));
}

#[test]
fn snapshot_twolayer_sgd_training_step() {
    let model = kiln::zoo::twolayer().unwrap();
    let params = twolayer_params(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let sgd = Optimizer::Sgd(Sgd {
        lr: 0.1,
        momentum: 0.9,
        ..Sgd::default()
    });
    let step = training_step(&model, "loss", &names, &sgd).unwrap();
    insta::assert_snapshot!("train__twolayer_sgd_momentum_step", text::print(&step));
}
