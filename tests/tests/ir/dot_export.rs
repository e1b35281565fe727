//! Graphviz export: snapshots of what the pictures say, structure checks, and `dot -Tsvg` accepting every export.

use kiln_ir::dot::{to_dot, DotOptions};
use kiln_ir::text::parse;
use kiln_ir::{Graph, Op};
use kiln_tests::fixtures::{every_op, logreg_bce};
use kiln_tests::graph_gen::arb_graph;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::io::Write;
use std::process::{Command, Stdio};

/// logreg with its inputs and the forward pass in cluster 0, the loss in cluster 1: how autodiff will mark
/// forward/backward.
fn logreg_grouped() -> (Graph, DotOptions) {
    let g = logreg_bce();
    let logits = g
        .ids()
        .find(|&id| g.label(id) == "p")
        .expect("node %p")
        .index();
    let groups = (0..g.len()).map(|i| usize::from(i > logits)).collect();
    let options = DotOptions {
        groups: Some(groups),
        group_names: vec!["forward".into(), "loss \"bce\"".into()],
    };
    (g, options)
}

#[test]
fn dot_snapshots() {
    let (grouped, options) = logreg_grouped();
    insta::assert_snapshot!(
        "dot__logreg_bce",
        to_dot(&logreg_bce(), &DotOptions::default())
    );
    insta::assert_snapshot!(
        "dot__logreg_bce_forward_loss_clusters",
        to_dot(&grouped, &options)
    );
    insta::assert_snapshot!("dot__every_op", to_dot(&every_op(), &DotOptions::default()));
}

#[test]
fn one_box_per_node_one_edge_per_operand_and_output() {
    let g = every_op();
    let dot = to_dot(&g, &DotOptions::default());
    let boxes = dot
        .lines()
        .filter(|l| l.trim_start().starts_with('n') && l.contains("[label="))
        .count();
    assert_eq!(boxes, g.len());
    let operand_edges: usize = g.nodes().iter().map(|n| n.operands.len()).sum();
    let edges = dot
        .lines()
        .filter(|l| l.contains(" -> n") && !l.contains("dashed"))
        .count();
    assert_eq!(edges, operand_edges);
    let output_edges = dot.lines().filter(|l| l.contains(" -> out")).count();
    assert_eq!(output_edges, g.outputs().len());
    let alias_edges = dot.lines().filter(|l| l.contains("style=dashed")).count();
    assert_eq!(alias_edges, 1);
}

#[test]
fn roles_and_kinds_have_their_colours() {
    let dot = to_dot(&logreg_bce(), &DotOptions::default());
    let line = |label: &str| {
        dot.lines()
            .find(|l| l.contains(&format!("[label=\"%{label}\\n")))
            .unwrap_or_else(|| panic!("no box for %{label} in\n{dot}"))
            .to_string()
    };
    assert!(line("x").contains("fillcolor=white"));
    assert!(
        line("w").contains("fillcolor=\"#f4a261\""),
        "params are orange"
    );
    assert!(
        line("step").contains("fillcolor=\"#fff3b0\""),
        "state is light yellow"
    );
    assert!(
        line("loss").contains("fillcolor=\"#cfe8fc\""),
        "ops are light blue"
    );
    assert!(line("logits").contains("fillcolor=\"#cfe8fc\""));
    assert!(dot.contains("constant 0.75"), "constants show their value");
    assert!(dot.contains("reduce_sum axes=[0,1] keep_dims=false"));
    assert!(dot.contains("out2 -> n2 [style=dashed"), "w.new replaces w");
}

#[test]
fn clusters_hold_their_nodes() {
    let (g, options) = logreg_grouped();
    let dot = to_dot(&g, &options);
    assert!(dot.contains("subgraph cluster_0 {\n    label=\"forward\";"));
    assert!(dot.contains("subgraph cluster_1 {\n    label=\"loss \\\"bce\\\"\";"));
    // Every node is declared inside its cluster, none at top level.
    let top_level_boxes = dot
        .lines()
        .filter(|l| l.starts_with("  n") && l.contains("[label="))
        .count();
    assert_eq!(top_level_boxes, 0);
    let fills: Vec<&str> = dot
        .lines()
        .filter(|l| l.contains("label=") && l.contains("style=\"rounded,filled\"; fillcolor"))
        .collect();
    assert_eq!(fills.len(), 2);
    assert_ne!(
        fills[0].split("fillcolor").nth(1),
        fills[1].split("fillcolor").nth(1),
        "distinct cluster fills"
    );
}

#[test]
fn big_dense_constants_are_summarised() {
    let g = parse(
        "graph g {\n  %c = constant{value=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]} : f32[6]\n  %d = constant{value=[1.0, 2.0]} : f32[2]\n}",
    )
    .expect("parses");
    let dot = to_dot(&g, &DotOptions::default());
    assert!(dot.contains("constant [6 values]"), "{dot}");
    assert!(dot.contains("constant [1.0, 2.0]"), "{dot}");
    assert!(matches!(g.nodes()[0].op, Op::Constant { .. }));
}

// ---- Graphviz accepts every export ----

/// Whether Graphviz's `dot` can run; when it can't, says so and skips, unless `KILN_REQUIRE_TOOLS=1` makes it a
/// failure.
fn graphviz_available() -> bool {
    match Command::new("dot").arg("-V").output() {
        Ok(out) if out.status.success() => true,
        result => {
            let why = match result {
                Ok(out) => format!("`dot -V` exited with {}", out.status),
                Err(e) => format!("`dot` cannot run ({e})"),
            };
            if std::env::var("KILN_REQUIRE_TOOLS").as_deref() == Ok("1") {
                panic!("KILN_REQUIRE_TOOLS=1 but Graphviz is missing: {why}");
            }
            println!("skipping the Graphviz check: {why}; install graphviz to enable it");
            false
        }
    }
}

/// Runs `dot -Tsvg` on `src`: an error unless it succeeds silently and writes an SVG.
fn render_svg(src: &str) -> Result<(), String> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start dot: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(src.as_bytes())
            .map_err(|e| format!("cannot write to dot: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("dot did not finish: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        return Err(format!("dot failed ({}): {stderr}\n{src}", out.status));
    }
    if !String::from_utf8_lossy(&out.stdout).contains("<svg") {
        return Err(format!("dot gave no SVG for\n{src}"));
    }
    Ok(())
}

#[test]
fn graphviz_renders_fixtures() {
    let (grouped, options) = logreg_grouped();
    let mut odd = Graph::new("name with \"quotes\", \\ and\na newline");
    odd.add_input("x", kiln_ir::Role::State, kiln_ir::TensorType::f32(&[]))
        .expect("input");
    let odd_options = DotOptions {
        groups: Some(vec![3]),
        group_names: vec!["{braces} <angles> \\l".into()],
    };
    let cases = [
        to_dot(&logreg_bce(), &DotOptions::default()),
        to_dot(&grouped, &options),
        to_dot(&every_op(), &DotOptions::default()),
        to_dot(&odd, &odd_options),
        to_dot(&Graph::new(""), &DotOptions::default()),
    ];
    if !graphviz_available() {
        return;
    }
    for src in cases {
        render_svg(&src).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn graphviz_renders_random_graphs_in_random_clusters() {
    if !graphviz_available() {
        return;
    }
    let mut runner = TestRunner::new(ProptestConfig::with_cases(24));
    let strategy = (arb_graph(), prop::collection::vec(0usize..4, 0..40));
    let result = runner.run(&strategy, |(g, groups)| {
        let options = DotOptions {
            groups: Some(groups),
            group_names: vec!["forward".into(), "backward".into()],
        };
        render_svg(&to_dot(&g, &options)).map_err(TestCaseError::fail)
    });
    result.unwrap_or_else(|e| panic!("{e}"));
}
