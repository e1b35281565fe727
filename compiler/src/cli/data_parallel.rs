//! `kiln train --data-parallel`: this process as one rank of an MPI job (`mpirun -np P kiln train --data-parallel
//! …`), the trainer of `train.rs` (or `train_seq.rs` for the transformer) on this rank's shard of every batch (SPEC
//! §5, "Data-parallel steps").
//!
//! Rank 0 alone prints the table and writes the checkpoint, metrics and plot; the other ranks print nothing but
//! errors. A rank whose collective fails (a peer died or hung past `KILN_COLLECTIVE_TIMEOUT` seconds, 60 by
//! default) prints the error naming its rank and exits at once, without `MPI_Finalize`, which would wait for the
//! missing peer; `mpirun` then ends the job.

use super::train::{train_on, ModelArg, TrainArgs};
use super::CliError;
use kiln::nn::Ranks;
use kiln::DataParallel;
use std::io::Write;

pub fn train(args: &TrainArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let group = join()?;
    let (rank, size) = (group.rank(), group.size());
    let ranks = Ranks {
        group,
        reduce: DataParallel::bucketed(args.bucket_kib.saturating_mul(1024)),
    };
    let train = match args.model {
        ModelArg::Transformer => super::train_seq::train_on,
        _ => train_on,
    };
    let result = if rank == 0 {
        train(args, out, Some(ranks))
    } else {
        train(args, &mut std::io::sink(), Some(ranks))
    };
    if let Err(e) = result {
        super::note(format_args!("rank {rank} of {size}: {}", e.render()));
        // Not through `main`: dropping the group would call MPI_Finalize, which waits for every rank.
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(feature = "mpi")]
fn join() -> Result<std::sync::Arc<dyn kiln::ir::Collective>, CliError> {
    let group = kiln::MpiGroup::init_default().map_err(|e| CliError::new(e.to_string()))?;
    Ok(std::sync::Arc::new(group))
}

#[cfg(not(feature = "mpi"))]
fn join() -> Result<std::sync::Arc<dyn kiln::ir::Collective>, CliError> {
    Err(CliError::new(
        "--data-parallel needs kiln built with `--features mpi` (OpenMPI's libopenmpi-dev and libclang), run under \
         `mpirun -np P`",
    ))
}
