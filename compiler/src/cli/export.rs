//! `kiln export FILE.kir -o FILE.onnx [--input NAME=FILE.npy]...`: write a graph as an ONNX model (opset
//! [`kiln::onnx::export::OPSET`]); each `--input` value becomes an initializer (a parameter's trained value), every
//! other input a graph input. Also `write_onnx`, which `kiln train --onnx` uses.

use super::inputs::{self, InputFile};
use super::{emit, load_graph, npy, CliError, GraphFile};
use clap::Args;
use kiln::onnx::{ExportOptions, ExportSummary};
use kiln_ir::{Graph, Tensor};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub graph: GraphFile,

    /// Where to write the model (default: FILE.onnx beside the graph).
    #[arg(short, long, value_name = "FILE.onnx")]
    pub out: Option<PathBuf>,

    /// A value for input NAME (repeatable): it becomes an initializer of the model instead of a graph input.
    #[arg(long = "input", value_name = "NAME=FILE.npy", value_parser = inputs::parse_input_file)]
    pub inputs: Vec<InputFile>,
}

pub fn export(args: &ExportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let graph = load_graph(&args.graph)?;
    let mut values: Vec<(String, Tensor)> = Vec::with_capacity(args.inputs.len());
    for file in &args.inputs {
        let value = npy::read(&file.path).map_err(|e| match e {
            CliError::Message(m) => CliError::new(format!("--input {}: {m}", file.name)),
            other => other,
        })?;
        values.push((file.name.clone(), value));
    }
    let target = args.out.clone().unwrap_or_else(|| {
        let mut path = args.graph.file.clone();
        path.set_extension("onnx");
        path
    });
    if target == args.graph.file {
        return Err(CliError::new(format!(
            "-o `{}` is the graph being exported; give another file",
            target.display()
        )));
    }
    let summary = write_onnx(&graph, &values, &target, "")?;
    emit(out, &format!("wrote {}: {summary}", target.display()))
}

/// Exports `graph` with `values` as initializers and writes it to `path` atomically.
pub fn write_onnx(
    graph: &Graph,
    values: &[(String, Tensor)],
    path: &Path,
    doc: &str,
) -> Result<ExportSummary, CliError> {
    let options = ExportOptions {
        doc: doc.to_string(),
        ..ExportOptions::default()
    };
    let (model, summary) = kiln::onnx::export_model(graph, values, &options)
        .map_err(|e| CliError::new(format!("cannot export graph {} to ONNX: {e}", graph.name)))?;
    let bytes = prost::Message::encode_to_vec(&model);
    kiln::nn::report::write_atomic(path, &bytes)
        .map_err(|e| CliError::new(format!("cannot write `{}`: {e}", path.display())))?;
    Ok(summary)
}
