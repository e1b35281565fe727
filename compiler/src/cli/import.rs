//! `kiln import MODEL.onnx [-o MODEL.kir] [--shape NAME=DIMS]... [--trainable] [--loss KIND [--of OUTPUT]]`:
//! translate an ONNX model to a `.kir` file and print a summary (opset, inputs and outputs with their types,
//! parameter count, ops used). With `--trainable` the initializers are parameters, written beside the graph as
//! `.npy` files; with `--loss` the graph gains a loss for `kiln run --stage train` to fine-tune.

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

    /// Float initializers become `param` inputs (for fine-tuning) instead of constants; their values go to
    /// FILE.params/NAME.npy beside the graph, for `kiln run --input-dir`.
    #[arg(long)]
    pub trainable: bool,

    /// Append a loss on an output (the only one, or --of's) with a new data input `target` for what it should be;
    /// `kiln run --stage train` then fine-tunes the model: mse, cross_entropy (i32 class targets), bce,
    /// bce_with_logits.
    #[arg(long, value_name = "KIND", value_parser = parse_loss)]
    pub loss: Option<kiln::onnx::LossKind>,

    /// The output (its ONNX name) that --loss reads, when the model has several.
    #[arg(long, value_name = "OUTPUT", requires = "loss")]
    pub of: Option<String>,
}

fn parse_loss(s: &str) -> Result<kiln::onnx::LossKind, String> {
    s.parse()
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
    let mut options = import_options(&args.shapes)?;
    options.trainable = args.trainable;
    options.loss = args.loss.map(|kind| kiln::onnx::LossSpec {
        kind,
        of: args.of.clone(),
    });
    let imported = load_onnx(&args.file, &options)?;
    let target = args
        .out
        .clone()
        .unwrap_or_else(|| args.file.with_extension("kir"));
    let text = kiln_ir::text::print(&imported.graph);
    kiln::nn::report::write_atomic(&target, text.as_bytes())
        .map_err(|e| CliError::new(format!("cannot write `{}`: {e}", target.display())))?;
    let mut report = format!(
        "{}\nwrote {} ({} nodes)",
        imported.summary,
        target.display(),
        imported.graph.len()
    );
    if args.trainable {
        let dir = params_dir(&target);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::new(format!("cannot create `{}`: {e}", dir.display())))?;
        for (name, value) in &imported.params {
            super::npy::write(&dir.join(format!("{name}.npy")), value)?;
        }
        report += &format!(
            "\nwrote {} parameters to {} (kiln run {} --input-dir {} ...)",
            imported.params.len(),
            dir.display(),
            target.display(),
            dir.display()
        );
    }
    emit(out, &report)
}

/// Where `--trainable` puts the parameters of the graph written to `graph`: `model.kir` → `model.params/`.
pub fn params_dir(graph: &Path) -> PathBuf {
    graph.with_extension("params")
}
