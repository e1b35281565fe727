//! `kiln import MODEL.onnx [-o MODEL.kir] [--shape NAME=DIMS]...`: translate an ONNX model to a `.kir` file and
//! print a summary (opset, inputs and outputs with their types, parameter count, ops used).

use super::{emit, CliError};
use clap::Args;
use kiln::onnx::{ImportOptions, Imported};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The ONNX model to read.
    #[arg(value_name = "MODEL.onnx")]
    pub file: PathBuf,

    /// Where to write the graph (default: MODEL.kir beside the model).
    #[arg(short, long, value_name = "FILE.kir")]
    pub out: Option<PathBuf>,

    /// Fix a symbolic dim (`--shape batch=8`) or a whole input's shape (`--shape input=1,3,32,32`); repeatable.
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shapes: Vec<String>,
}

/// Parses `--shape` values: one size is a symbolic dim; a comma-separated list is an input's shape (a list of one,
/// `x=4,`, is written with a trailing comma). Both kinds go into the options; the importer uses what applies.
pub fn import_options(shapes: &[String]) -> Result<ImportOptions, CliError> {
    let mut options = ImportOptions::default();
    for spec in shapes {
        let bad = || {
            CliError::new(format!(
                "--shape `{spec}`: expected NAME=SIZE or NAME=D1,D2,..."
            ))
        };
        let (name, dims) = spec.split_once('=').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        let sizes: Vec<usize> = dims
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        if dims.contains(',') {
            options.input_shapes.insert(name.to_string(), sizes);
        } else {
            let &[size] = sizes.as_slice() else {
                return Err(bad());
            };
            options.dims.insert(name.to_string(), size);
        }
    }
    Ok(options)
}

/// Reads and imports an ONNX file; errors name the file.
pub fn load_onnx(path: &Path, options: &ImportOptions) -> Result<Imported, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::new(format!("cannot read `{}`: {e}", path.display())))?;
    kiln::onnx::import_model(&bytes, options)
        .map_err(|e| CliError::new(format!("`{}`: {e}", path.display())))
}

pub fn import(args: &ImportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let options = import_options(&args.shapes)?;
    let imported = load_onnx(&args.file, &options)?;
    let target = args
        .out
        .clone()
        .unwrap_or_else(|| args.file.with_extension("kir"));
    let text = kiln_ir::text::print(&imported.graph);
    kiln::nn::report::write_atomic(&target, text.as_bytes())
        .map_err(|e| CliError::new(format!("cannot write `{}`: {e}", target.display())))?;
    emit(
        out,
        &format!(
            "{}\nwrote {} ({} nodes)",
            imported.summary,
            target.display(),
            imported.graph.len()
        ),
    )
}
