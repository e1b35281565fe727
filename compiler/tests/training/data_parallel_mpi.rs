//! Data-parallel training across MPI processes (feature `mpi`): this test binary run again under
//! `mpirun --oversubscribe -np P`, one process per rank, each training the MLP of `data_parallel.rs` on its shard.
//! Skipped with a message when `mpirun` is missing, unless `KILN_REQUIRE_MPI=1` (CI sets it).

use super::data_parallel::{
    adam, bits, initial_params, mlp, on_ranks, shard, train_on_cpu, GLOBAL_BATCH, PARAMS, STEPS,
};
use kiln::ir::collective::{Collective, CollectiveBuffer};
use kiln::ir::ReduceOp;
use kiln::{compile, training_step_data_parallel, DataParallel, MpiGroup, Options, Session};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

/// Which job the worker runs (unset: the worker test is a no-op in the ordinary test run).
const WORKER_VAR: &str = "KILN_MPI_WORKER";
const WORKER: &str = "training::data_parallel_mpi::mpi_worker";

/// The data-parallel step of the MLP on `ranks` ranks (one bucket).
fn step(ranks: usize) -> kiln::Graph {
    let model = mlp(GLOBAL_BATCH / ranks);
    let dp = DataParallel::bucketed(1 << 20);
    training_step_data_parallel(&model, "loss", &PARAMS, &adam(), None, dp).unwrap()
}

/// One rank: rank 0's initial params broadcast (the others start perturbed), `STEPS` steps, the params printed as
/// bits. With `die`, rank 1 exits after the first step.
#[test]
fn mpi_worker() {
    let Ok(job) = std::env::var(WORKER_VAR) else {
        return;
    };
    let group = Arc::new(MpiGroup::init_default().expect("MPI initializes"));
    let (rank, size) = (group.rank(), group.size());
    if job == "large" {
        let mut sum = large_contribution(rank);
        group
            .all_reduce(CollectiveBuffer::F32(&mut sum), ReduceOp::Sum, "large sum")
            .unwrap();
        let mut mean: Vec<f64> = large_contribution(rank)
            .iter()
            .map(|&x| f64::from(x) * 0.1)
            .collect();
        group
            .all_reduce(
                CollectiveBuffer::F64(&mut mean),
                ReduceOp::Mean,
                "large mean",
            )
            .unwrap();
        println!("\nKILN_MPI rank={rank} params={}", digest(&sum, &mean));
        return;
    }
    let step = step(size);
    let mut params = initial_params();
    // In one order on every rank (a HashMap's differs between processes): collectives are matched by order.
    for name in PARAMS {
        let t = params.get_mut(name).unwrap();
        let mut v = t.as_f32().unwrap().to_vec();
        if rank != 0 {
            v.iter_mut().for_each(|x| *x += 1.0);
        }
        group
            .broadcast(CollectiveBuffer::F32(&mut v), name)
            .unwrap();
        *t = kiln::Tensor::from_f32(t.dims(), v).unwrap();
    }
    let mut exe = compile(&step, &Options::default()).unwrap();
    exe.set_group(group.clone());
    let mut session = Session::new(exe, &params).unwrap();
    for s in 0..STEPS {
        if job == "die" && rank == 1 && s == 1 {
            eprintln!("rank 1 exits on purpose");
            std::process::exit(3);
        }
        let (x, y) = shard(s, rank, size);
        if let Err(e) = session.step(&[x, y]) {
            eprintln!("rank {rank}: {e}");
            std::process::exit(2);
        }
    }
    let words: Vec<String> = PARAMS
        .iter()
        .flat_map(|p| bits(&session.get(p).unwrap()))
        .map(|b| format!("{b:08x}"))
        .collect();
    println!("\nKILN_MPI rank={rank} params={}", words.join(","));
}

/// Elements of the large all-reduce: several chain segments and a partial one.
const LARGE: usize = 3 * kiln::MPI_SEGMENT + 12_345;

/// Rank `rank`'s contribution to the large all-reduce: ranks 1 and 2 (mod 3) nearly cancel at magnitude 10^6, so
/// rank 0's small values survive only in rank order, `(c_0 + c_1) + c_2` (almost every element differs in another
/// grouping or order).
fn large_contribution(rank: usize) -> Vec<f32> {
    let unit = |i: usize, seed: u32| {
        let h = (i as u32).wrapping_mul(0x9e37_79b9) ^ seed.wrapping_mul(0x85eb_ca6b);
        (h >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    (0..LARGE)
        .map(|i| {
            let (u, v) = (unit(i, rank as u32 + 1), unit(i, 100));
            match rank % 3 {
                0 => u,
                1 => v * 1.0e6,
                _ => -v * 1.0e6 + u,
            }
        })
        .collect()
}

/// The bits of both results, as one hex string.
fn digest(sum: &[f32], mean: &[f64]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let words = sum
        .iter()
        .map(|x| u64::from(x.to_bits()))
        .chain(mean.iter().map(|x| x.to_bits()));
    for w in words {
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[test]
fn a_large_mpi_all_reduce_folds_in_rank_order_like_thread_ranks() {
    let Some(mpirun) = mpirun() else { return };
    for (ranks, algorithm) in [(2, "chain"), (3, "chain"), (3, "gather"), (4, "auto")] {
        let (ok, stdout, stderr) = run_job_with(mpirun, ranks, "large", algorithm);
        assert!(
            ok,
            "mpirun -np {ranks} ({algorithm}) failed:\n{stdout}\n{stderr}"
        );
        let by_rank = params_by_rank(&stdout);
        assert_eq!(by_rank.len(), ranks, "{stdout}\n{stderr}");
        let threads = on_ranks(ranks, |g| {
            let mut sum = large_contribution(g.rank());
            g.all_reduce(CollectiveBuffer::F32(&mut sum), ReduceOp::Sum, "sum")
                .unwrap();
            let mut mean: Vec<f64> = large_contribution(g.rank())
                .iter()
                .map(|&x| f64::from(x) * 0.1)
                .collect();
            g.all_reduce(CollectiveBuffer::F64(&mut mean), ReduceOp::Mean, "mean")
                .unwrap();
            digest(&sum, &mean)
        });
        for (rank, got) in &by_rank {
            assert_eq!(
                got, &threads[0],
                "MPI rank {rank} of {ranks} vs thread ranks"
            );
        }
    }
}

/// `mpirun`, or why not.
fn mpirun() -> Option<&'static str> {
    let found = Command::new("mpirun").arg("--version").output().is_ok();
    if !found {
        let required = std::env::var("KILN_REQUIRE_MPI").is_ok_and(|v| v == "1");
        assert!(!required, "KILN_REQUIRE_MPI=1 but `mpirun` is not on PATH");
        eprintln!("skipped: `mpirun` is not on PATH (install OpenMPI, or set KILN_REQUIRE_MPI=1 to fail instead)");
        return None;
    }
    Some("mpirun")
}

/// Runs the worker on `ranks` processes; returns the exit status, stdout and stderr.
fn run_job(mpirun: &str, ranks: usize, job: &str) -> (bool, String, String) {
    run_job_with(mpirun, ranks, job, "auto")
}

/// [`run_job`] with `KILN_MPI_ALLREDUCE=algorithm`.
fn run_job_with(mpirun: &str, ranks: usize, job: &str, algorithm: &str) -> (bool, String, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(mpirun)
        .args([
            "--oversubscribe",
            "--allow-run-as-root",
            "-np",
            &ranks.to_string(),
        ])
        .arg(exe)
        .args([WORKER, "--exact", "--test-threads=1", "--nocapture"])
        .env(WORKER_VAR, job)
        .env("KILN_MPI_ALLREDUCE", algorithm)
        .env("KILN_COLLECTIVE_TIMEOUT", "20")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each rank's params line, by rank.
fn params_by_rank(stdout: &str) -> HashMap<usize, String> {
    stdout
        .lines()
        // Anywhere in a line: the ranks' outputs interleave with the harness's `test … ` lines.
        .filter_map(|l| l.split("KILN_MPI rank=").nth(1))
        .filter_map(|l| {
            let (rank, params) = l.split_once(" params=")?;
            Some((rank.parse().ok()?, params.to_string()))
        })
        .collect()
}

#[test]
fn mpi_ranks_agree_with_thread_ranks_bit_for_bit_and_reproduce() {
    let Some(mpirun) = mpirun() else { return };
    for ranks in [2, 3] {
        let (ok, stdout, stderr) = run_job(mpirun, ranks, "train");
        assert!(ok, "mpirun -np {ranks} failed:\n{stdout}\n{stderr}");
        let by_rank = params_by_rank(&stdout);
        assert_eq!(
            by_rank.len(),
            ranks,
            "one line per rank:\n{stdout}\n{stderr}"
        );
        // The same program with the same shards on thread ranks: the same reduction order, so the same bits.
        let step = step(ranks);
        let threads = on_ranks(ranks, |g| train_on_cpu(&step, g));
        let expected: Vec<String> = PARAMS
            .iter()
            .flat_map(|p| bits(&threads[0].0[*p]))
            .map(|b| format!("{b:08x}"))
            .collect();
        for (rank, params) in &by_rank {
            assert_eq!(
                params,
                &expected.join(","),
                "MPI rank {rank} of {ranks} vs thread ranks"
            );
        }
        let (ok, again, stderr) = run_job(mpirun, ranks, "train");
        assert!(ok, "second run:\n{again}\n{stderr}");
        assert_eq!(params_by_rank(&again), by_rank, "a repeated run differs");
    }
}

#[test]
fn a_dead_mpi_rank_ends_the_job_naming_it() {
    let Some(mpirun) = mpirun() else { return };
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = run_job(mpirun, 3, "die");
    assert!(!ok, "the job must fail:\n{stdout}\n{stderr}");
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
    let all = format!("{stdout}\n{stderr}");
    assert!(all.contains("rank 1"), "the failed rank is named:\n{all}");
    assert!(
        params_by_rank(&stdout).is_empty(),
        "no rank finished:\n{all}"
    );
}

/// The `train_loss` column of `kiln train`'s table (the transformer's, after the `step` header).
fn train_losses(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("step"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect()
}

/// The main job, distributed: `mpirun -np 2 kiln train --model transformer --data-parallel` prints rank 0's table
/// (once), which follows the one-process run on the same global batches, and only rank 0 writes the files.
#[test]
fn mpirun_kiln_train_transformer_follows_one_process() {
    let Some(mpirun) = mpirun() else { return };
    let dir = super::train::workdir("mpi_transformer");
    let args = |out: &str| {
        [
            "train",
            "--model",
            "transformer",
            "--dataset",
            "sort",
            "--digits",
            "3",
            "--width",
            "16",
            "--heads",
            "2",
            "--blocks",
            "1",
            "--steps",
            "30",
            "--batch-size",
            "8",
            "--out",
        ]
        .into_iter()
        .map(String::from)
        .chain([dir.join(out).display().to_string()])
        .collect::<Vec<_>>()
    };
    let one = crate::support::kiln_cli::kiln(&args("one")).ok();
    let two = Command::new(mpirun)
        .args(["--oversubscribe", "--allow-run-as-root", "-np", "2"])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(args("two"))
        .arg("--data-parallel")
        .env("KILN_COLLECTIVE_TIMEOUT", "60")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&two.stdout);
    assert!(
        two.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&two.stderr)
    );
    assert_eq!(
        stdout.matches("training transformer").count(),
        1,
        "rank 0 alone prints:\n{stdout}"
    );
    assert!(
        stdout.contains("data-parallel on 2 ranks: 4 sequences per rank per step"),
        "{stdout}"
    );
    let (want, got) = (train_losses(&one), train_losses(&stdout));
    assert_eq!(want.len(), 10, "{one}");
    assert_eq!(got.len(), want.len(), "{stdout}");
    for (g, w) in got.iter().zip(&want) {
        // Printed to 4 decimals; the two sum the gradients in different orders.
        assert!(
            (g - w).abs() <= 2e-4,
            "2 ranks {got:?} vs one process {want:?}"
        );
    }
    for file in ["model.safetensors", "metrics.csv", "metrics.svg"] {
        assert!(dir.join("two").join(file).is_file(), "rank 0 wrote {file}");
    }
}
