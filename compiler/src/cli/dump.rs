//! `kiln dump FILE.kir`: print the graph of a stage as `.kir` text or Graphviz DOT.

use super::stage::{self, StageArgs};
use super::{emit, load_graph, CliError, GraphFile};
use clap::{Args, ValueEnum};
use kiln_ir::dot::{to_dot, DotOptions};
use std::io::Write;

#[derive(Args, Debug)]
pub struct DumpArgs {
    #[command(flatten)]
    pub graph: GraphFile,

    /// How to print the graph.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    #[command(flatten)]
    pub stage: StageArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Format {
    /// The .kir text format (what `kiln check` and `kiln run` read).
    Text,
    /// Graphviz DOT; stages with a backward pass cluster forward and backward nodes.
    Dot,
}

pub fn dump(args: &DumpArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let parsed = load_graph(&args.graph)?;
    let staged = stage::build(parsed, &args.stage)?;
    if args.stage.print_after_all {
        for (header, graph) in &staged.trace {
            emit(
                out,
                &format!("# {header}\n{}\n", kiln_ir::text::print(graph)),
            )?;
        }
        if let Some(report) = &staged.report {
            let commented: Vec<String> = report.lines().map(|l| format!("# {l}")).collect();
            emit(out, &format!("{}\n# final graph\n", commented.join("\n")))?;
        }
    }
    let text = match (args.format, &staged.listing) {
        (Format::Text, Some(listing)) => listing.clone(),
        (Format::Dot, Some(_)) if staged.groups.is_none() => {
            return Err(CliError::new(
                format!(
                    "--stage {:?} prints text only; --format dot works up to --stage fused",
                    args.stage.stage
                )
                .to_lowercase(),
            ));
        }
        (Format::Text, None) => kiln_ir::text::print(&staged.graph),
        (Format::Dot, _) => to_dot(
            &staged.graph,
            &DotOptions {
                groups: staged.groups,
                group_names: staged.group_names,
            },
        ),
    };
    emit(out, &text)
}
