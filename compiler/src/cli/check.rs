//! `kiln check FILE.kir`: parse and verify, then print a one-line summary.

use super::{emit, load_graph, CliError, GraphFile};
use clap::Args;
use std::io::Write;

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub graph: GraphFile,
}

pub fn check(args: &CheckArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let graph = load_graph(&args.graph)?;
    // The parser verifies; verifying again costs little and keeps `check` honest if that ever changes.
    kiln_ir::verify(&graph)?;
    let summary = format!(
        "ok: graph {}, {}, {}, {}",
        graph.name,
        count(graph.len(), "node"),
        count(graph.inputs().count(), "input"),
        count(graph.outputs().len(), "output"),
    );
    emit(out, &summary)
}

/// `1 node`, `27 nodes`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
