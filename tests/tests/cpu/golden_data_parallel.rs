//! The golden cases trained data-parallel on 2 ranks (threads of this process, `kiln::ThreadGroup`), each on half
//! of the case's batch, follow the reference trajectories of one process on the whole batch, at the tolerances of
//! `cpu_backend.rs`'s `golden_trajectories_through_a_session`, and the two ranks end bit-identical (SPEC §5,
//! "Data-parallel steps").

use kiln::ir::{Collective, DType, Tensor};
use kiln::{training_step_data_parallel, DataParallel, Options, Session, ThreadGroup};
use kiln_tests::golden::{self, GoldenCase};
use std::sync::Arc;
use std::time::Duration;

const RANKS: usize = 2;

/// Rows `[rank·n/P, (rank+1)·n/P)` of `t` (leading dim `n`).
fn shard(t: &Tensor, rank: usize) -> Tensor {
    let dims = t.dims().to_vec();
    let rows = dims[0] / RANKS;
    let row_len: usize = dims[1..].iter().product();
    let values = t.to_f64_vec()[rank * rows * row_len..(rank + 1) * rows * row_len].to_vec();
    let mut shape = dims;
    shape[0] = rows;
    Tensor::from_f64_values(t.ty().with_shape(shape), &values).unwrap()
}

/// One rank's losses and final params.
fn train(case: &GoldenCase, dtype: DType, group: Arc<dyn Collective>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let rank = group.rank();
    let model = case
        .model
        .graph(&case.name, case.batch() / RANKS, dtype)
        .unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let step = training_step_data_parallel(
        &model,
        "loss",
        &names,
        &case.trajectory.optimizer,
        None,
        DataParallel::bucketed(1 << 20),
    )
    .unwrap();
    let mut named = case.named_inputs(dtype);
    for input in ["x", "y"] {
        let full = named.remove(input).unwrap();
        named.insert(input.to_string(), shard(&full, rank));
    }
    let mut exe = kiln::compile(&step, &Options::default()).unwrap();
    exe.set_group(group);
    let mut session = Session::new(exe, &named).unwrap();
    let data: Vec<Tensor> = session
        .data_input_names()
        .iter()
        .map(|n| named[*n].clone())
        .collect();
    let losses = (0..case.trajectory.steps)
        .map(|_| session.step(&data).unwrap())
        .collect();
    let after = case
        .trajectory
        .params_after
        .keys()
        .map(|p| session.get(p).unwrap().to_f64_vec())
        .collect();
    (losses, after)
}

#[test]
fn golden_trajectories_on_two_ranks_match_one_process() {
    let cases = golden::load_all().unwrap();
    let even: Vec<&GoldenCase> = cases.iter().filter(|c| c.batch() % RANKS == 0).collect();
    assert!(even.len() >= 5, "most golden cases have an even batch");
    for case in even {
        for (dtype, loss_rtol, atol, rtol) in [
            (DType::F32, 1e-5, 1e-6, 1e-4),
            (DType::F64, 1e-9, 1e-12, 1e-9),
        ] {
            let what = format!("{} ({dtype}, {RANKS} ranks)", case.name);
            let ranks: Vec<(Vec<f64>, Vec<Vec<f64>>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = ThreadGroup::new(RANKS, Duration::from_secs(60))
                    .into_iter()
                    .map(|m| scope.spawn(move || train(case, dtype, Arc::new(m))))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let bits =
                |v: &[Vec<f64>]| -> Vec<u64> { v.iter().flatten().map(|x| x.to_bits()).collect() };
            assert_eq!(
                bits(&ranks[0].1),
                bits(&ranks[1].1),
                "{what}: the ranks differ"
            );
            let (losses, after) = &ranks[0];
            for (k, (&loss, &expected)) in losses
                .iter()
                .zip(&case.trajectory.losses_before_each_step)
                .enumerate()
            {
                let rel = (loss - expected).abs() / expected.abs().max(f64::MIN_POSITIVE);
                assert!(
                    rel <= loss_rtol,
                    "{what} step {k}: loss {loss} vs {expected}"
                );
            }
            for ((param, expected), got) in case.trajectory.params_after.iter().zip(after) {
                for (i, (a, b)) in got.iter().zip(expected.to_f64_vec()).enumerate() {
                    assert!(
                        (a - b).abs() <= atol + rtol * b.abs(),
                        "{what} {param}[{i}] after: {a:e} vs {b:e}"
                    );
                }
            }
        }
    }
}
