//! `kiln predict --checkpoint DIR`: rebuild a model from a checkpoint's metadata and evaluate it on a test split.

use super::train::{checkpoint_path, nn_error, BackendArg, DatasetArg};
use super::CliError;
use clap::Args;
use kiln::data;
use kiln::nn;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A directory written by `kiln train` (or its model.safetensors file).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,

    /// The data set whose test split to evaluate [default: the one the model was trained on].
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetArg>,

    /// An .npz test split (`x`, `y`, as `kiln train --test` takes) instead of a built-in data set.
    #[arg(long, value_name = "FILE.npz", conflicts_with = "dataset")]
    pub test: Option<PathBuf>,

    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    pub backend: BackendArg,
}

pub fn predict(args: &PredictArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = args.backend.kind().create().map_err(nn_error)?;
    let path = checkpoint_path(&args.checkpoint);
    let (checkpoint, integrity) = nn::load_checkpoint_checked(&path).map_err(nn_error)?;
    if integrity == nn::Integrity::Unverified {
        super::note(format_args!(
            "warning: checkpoint `{}` has no checksum (written by an older kiln?), so its tensor data cannot be \
             verified",
            path.display()
        ));
    }
    let data = match (args.dataset, &args.test) {
        // The test file serves as both splits: only the test split is evaluated.
        (None, Some(test)) => data::npz::load(test, test).map_err(|e| CliError::new(e.to_string()))?,
        (Some(d), _) => data::load(d.name()).map_err(|e| CliError::new(e.to_string()))?,
        // The name came from the file, not from the user: say which file.
        (None, None) => data::load(&checkpoint.dataset).map_err(|e| {
            CliError::new(format!(
                "checkpoint `{}`: its metadata names {e}; choose one with --dataset or --test FILE.npz",
                path.display()
            ))
        })?,
    };
    let spec = &checkpoint.spec;
    if spec.inputs() != data.features() {
        return Err(CliError::new(format!(
            "the checkpoint's model ({}) takes {} features, but {} has {}",
            spec.describe(),
            spec.inputs(),
            data.name,
            data.features()
        )));
    }
    spec.loss
        .check_outputs(spec.outputs(), data.classes)
        .map_err(nn_error)?;
    let model = spec.build();
    let eval = nn::evaluate(
        &*model,
        spec.loss,
        &checkpoint.params,
        &data.test,
        &*backend,
    )
    .map_err(nn_error)?;
    writeln!(out, "model      {} ({})", spec.describe(), path.display())?;
    writeln!(
        out,
        "data       {} test split, {} rows",
        data.name,
        data.test.len()
    )?;
    writeln!(out, "test_loss  {:.4}", eval.loss)?;
    writeln!(
        out,
        "test_acc   {:.2}% ({}/{})",
        100.0 * eval.accuracy,
        eval.correct,
        eval.total
    )?;
    Ok(())
}
