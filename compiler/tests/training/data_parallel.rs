//! Data-parallel training steps (SPEC §3.12 and §5): `P` ranks as threads of one process ([`ThreadGroup`]), each on
//! its shard of the global batch, against one process on the whole batch; on the interpreter and compiled for the
//! CPU, per-gradient and bucketed. No MPI needed: the MPI path runs the same graph (`tests/mpi/`).

use kiln::ir::collective::{Collective, CollectiveBuffer, CollectiveError};
use kiln::ir::{interp, Builder, Graph, ReduceOp, Tensor, TensorType};
use kiln::{
    compile, training_step, training_step_data_parallel, Adam, DataParallel, Optimizer, Options,
    Session, ThreadGroup,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub(super) const GLOBAL_BATCH: usize = 6;
pub(super) const STEPS: usize = 5;
pub(super) const PARAMS: [&str; 4] = ["w1", "b1", "w2", "b2"];

/// A two-layer MLP with an MSE loss over a batch of `batch`.
pub(super) fn mlp(batch: usize) -> Graph {
    let mut b = Builder::new("mlp");
    let x = b.data("x", TensorType::f32(&[batch, 3])).unwrap();
    let y = b.data("y", TensorType::f32(&[batch, 2])).unwrap();
    let w1 = b.param("w1", TensorType::f32(&[3, 4])).unwrap();
    let b1 = b.param("b1", TensorType::f32(&[4])).unwrap();
    let w2 = b.param("w2", TensorType::f32(&[4, 2])).unwrap();
    let b2 = b.param("b2", TensorType::f32(&[2])).unwrap();
    let h = b.matmul(x, w1).unwrap();
    let h = b.add(h, b1).unwrap();
    let h = b.tanh(h).unwrap();
    let o = b.matmul(h, w2).unwrap();
    let o = b.add(o, b2).unwrap();
    let loss = b.mse_loss(o, y).unwrap();
    b.output("loss", loss).unwrap();
    b.finish()
}

pub(super) fn adam() -> Optimizer {
    Optimizer::Adam(Adam {
        lr: 0.05,
        ..Default::default()
    })
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32 ^ seed.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
            ((h >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub(super) fn initial_params() -> HashMap<String, Tensor> {
    [
        ("w1", vec![3, 4]),
        ("b1", vec![4]),
        ("w2", vec![4, 2]),
        ("b2", vec![2]),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, dims))| {
        let n = dims.iter().product();
        (
            name.to_string(),
            Tensor::from_f32(&dims, values(n, i as u32 + 1)).unwrap(),
        )
    })
    .collect()
}

/// Step `s`'s global batch: rows `[x (3) | y (2)]`.
fn batch(s: usize) -> (Vec<f32>, Vec<f32>) {
    (
        values(GLOBAL_BATCH * 3, 100 + s as u32),
        values(GLOBAL_BATCH * 2, 200 + s as u32),
    )
}

/// Rank `rank`'s shard of step `s` (rows `rank·B/P ..`).
pub(super) fn shard(s: usize, rank: usize, ranks: usize) -> (Tensor, Tensor) {
    let (x, y) = batch(s);
    let rows = GLOBAL_BATCH / ranks;
    let r = rank * rows..(rank + 1) * rows;
    (
        Tensor::from_f32(&[rows, 3], x[r.start * 3..r.end * 3].to_vec()).unwrap(),
        Tensor::from_f32(&[rows, 2], y[r.start * 2..r.end * 2].to_vec()).unwrap(),
    )
}

/// Runs `STEPS` steps of `step` on the interpreter as one rank of `group`; returns the params and losses.
pub(super) fn train_on_interpreter(
    step: &Graph,
    group: &dyn Collective,
) -> (HashMap<String, Tensor>, Vec<f32>) {
    let mut state: HashMap<String, Tensor> = initial_params();
    let mut losses = Vec::new();
    for s in 0..STEPS {
        let (x, y) = shard(s, group.rank(), group.size());
        state.insert("x".into(), x);
        state.insert("y".into(), y);
        let inputs: Vec<Tensor> = step
            .inputs()
            .map(|i| {
                state
                    .get(i.name)
                    .cloned()
                    .unwrap_or_else(|| Tensor::zeros(i.ty.clone()))
            })
            .collect();
        let outputs = interp::run_in_group(step, &inputs, group).unwrap();
        for (o, value) in step.outputs().iter().zip(outputs) {
            if o.name == "loss" {
                losses.push(value.as_f32().unwrap()[0]);
            }
            if let Some(input) = &o.aliases {
                state.insert(input.clone(), value);
            }
        }
    }
    state.retain(|name, _| PARAMS.contains(&name.as_str()));
    (state, losses)
}

/// Runs `STEPS` steps of `step` compiled for the CPU in a session, as one rank of `group`.
pub(super) fn train_on_cpu(
    step: &Graph,
    group: Arc<dyn Collective>,
) -> (HashMap<String, Tensor>, Vec<f32>) {
    let (rank, size) = (group.rank(), group.size());
    let mut exe = compile(step, &Options::default()).unwrap();
    exe.set_group(group);
    let mut session = Session::new(exe, &initial_params()).unwrap();
    let mut losses = Vec::new();
    for s in 0..STEPS {
        let (x, y) = shard(s, rank, size);
        losses.push(session.step(&[x, y]).unwrap() as f32);
    }
    let params = PARAMS
        .iter()
        .map(|p| (p.to_string(), session.get(p).unwrap()))
        .collect();
    (params, losses)
}

pub(super) type Trained = (HashMap<String, Tensor>, Vec<f32>);

/// Every rank's result, `ranks` threads each running `train` as one member of a fresh group.
pub(super) fn on_ranks<T: Send>(
    ranks: usize,
    train: impl Fn(Arc<dyn Collective>) -> T + Sync,
) -> Vec<T> {
    let members = ThreadGroup::new(ranks, Duration::from_secs(60));
    std::thread::scope(|scope| {
        let handles: Vec<_> = members
            .into_iter()
            .map(|m| {
                let train = &train;
                scope.spawn(move || train(Arc::new(m)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

pub(super) fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// Every rank holds bit-identical params, and they agree with `reference` within f32 rounding.
fn check(ranks: &[Trained], reference: &Trained, what: &str) {
    for (r, (params, losses)) in ranks.iter().enumerate() {
        for p in PARAMS {
            assert_eq!(
                bits(&params[p]),
                bits(&ranks[0].0[p]),
                "{what}: rank {r}'s {p} differs from rank 0's"
            );
            let (got, want) = (
                params[p].as_f32().unwrap(),
                reference.0[p].as_f32().unwrap(),
            );
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
                    "{what}: {p}: {g} vs one process's {w}"
                );
            }
        }
        for (s, (l, w)) in losses.iter().zip(&reference.1).enumerate() {
            assert!(
                (l - w).abs() <= 1e-5 + 1e-4 * w.abs(),
                "{what}: step {s}'s loss {l} vs {w}"
            );
        }
    }
}

#[test]
fn interpreter_ranks_match_one_process_on_the_global_batch() {
    let one = training_step(&mlp(GLOBAL_BATCH), "loss", &PARAMS, &adam()).unwrap();
    let reference = train_on_interpreter(&one, &kiln::ir::SingleProcess);
    for ranks in [2, 3] {
        let model = mlp(GLOBAL_BATCH / ranks);
        for dp in [
            DataParallel::per_gradient(),
            DataParallel::bucketed(1 << 20),
        ] {
            let step =
                training_step_data_parallel(&model, "loss", &PARAMS, &adam(), None, dp).unwrap();
            let first = on_ranks(ranks, |g| train_on_interpreter(&step, &*g));
            check(
                &first,
                &reference,
                &format!("interpreter, {ranks} ranks, {dp:?}"),
            );
            let again = on_ranks(ranks, |g| train_on_interpreter(&step, &*g));
            for p in PARAMS {
                assert_eq!(
                    bits(&first[0].0[p]),
                    bits(&again[0].0[p]),
                    "a repeated run differs in {p}"
                );
            }
        }
    }
}

#[test]
fn cpu_ranks_match_one_process_and_are_reproducible() {
    let one = training_step(&mlp(GLOBAL_BATCH), "loss", &PARAMS, &adam()).unwrap();
    let reference = train_on_cpu(&one, Arc::new(kiln::ir::SingleProcess));
    for ranks in [2, 3] {
        let model = mlp(GLOBAL_BATCH / ranks);
        let mut per_dp = Vec::new();
        for dp in [
            DataParallel::per_gradient(),
            DataParallel::bucketed(1 << 20),
        ] {
            let step =
                training_step_data_parallel(&model, "loss", &PARAMS, &adam(), None, dp).unwrap();
            let first = on_ranks(ranks, |g| train_on_cpu(&step, g));
            check(&first, &reference, &format!("CPU, {ranks} ranks, {dp:?}"));
            let again = on_ranks(ranks, |g| train_on_cpu(&step, g));
            for p in PARAMS {
                assert_eq!(
                    bits(&first[0].0[p]),
                    bits(&again[0].0[p]),
                    "a repeated run differs in {p}"
                );
            }
            // The interpreter, the oracle, on the same ranks.
            let oracle = on_ranks(ranks, |g| train_on_interpreter(&step, &*g));
            check(
                &first,
                &oracle[0],
                &format!("CPU vs interpreter, {ranks} ranks, {dp:?}"),
            );
            per_dp.push(first);
        }
        // Packing gradients into one buffer reduces each element exactly as alone.
        for p in PARAMS {
            assert_eq!(
                bits(&per_dp[0][0].0[p]),
                bits(&per_dp[1][0].0[p]),
                "bucketed vs per-gradient: {p}"
            );
        }
    }
}

#[test]
fn a_data_parallel_step_on_one_process_is_the_plain_step() {
    let model = mlp(GLOBAL_BATCH);
    let one = training_step(&model, "loss", &PARAMS, &adam()).unwrap();
    let dp = training_step_data_parallel(
        &model,
        "loss",
        &PARAMS,
        &adam(),
        None,
        DataParallel::bucketed(64),
    )
    .unwrap();
    let (a, b) = (
        train_on_cpu(&one, Arc::new(kiln::ir::SingleProcess)),
        train_on_cpu(&dp, Arc::new(kiln::ir::SingleProcess)),
    );
    for p in PARAMS {
        assert_eq!(bits(&a.0[p]), bits(&b.0[p]), "{p}");
    }
}

#[test]
fn the_step_has_one_all_reduce_per_gradient_or_per_bucket() {
    let model = mlp(2);
    let count = |dp| {
        let step = training_step_data_parallel(&model, "loss", &PARAMS, &adam(), None, dp).unwrap();
        step.ids()
            .filter(|&id| step.node(id).op.mnemonic() == "all_reduce")
            .count()
    };
    // + 1 for the loss.
    assert_eq!(count(DataParallel::per_gradient()), PARAMS.len() + 1);
    assert_eq!(count(DataParallel::bucketed(1 << 20)), 1 + 1);
    // w1 (48 bytes) and b1 (16) fit 64 bytes; w2 (32) and b2 (8) the next bucket.
    assert_eq!(count(DataParallel::bucketed(64)), 2 + 1);
}

#[test]
fn a_rank_that_leaves_fails_the_others_naming_it() {
    let mut members = ThreadGroup::new(2, Duration::from_secs(60)).into_iter();
    let (zero, one) = (members.next().unwrap(), members.next().unwrap());
    drop(one);
    let mut buf = [1.0f32; 3];
    let err = zero
        .all_reduce(
            CollectiveBuffer::F32(&mut buf),
            ReduceOp::Sum,
            "%grad.w1 (all_reduce)",
        )
        .unwrap_err();
    assert!(
        matches!(err, CollectiveError::PeerFailed { failed: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("rank 1"), "{err}");
}

#[test]
fn a_rank_that_never_arrives_times_out_naming_it() {
    let members = ThreadGroup::new(3, Duration::from_millis(200));
    let mut buf = [1.0f64; 2];
    let err = members[0]
        .all_reduce(
            CollectiveBuffer::F64(&mut buf),
            ReduceOp::Mean,
            "%loss (all_reduce)",
        )
        .unwrap_err();
    match &err {
        CollectiveError::Timeout {
            missing, rank: 0, ..
        } => assert_eq!(missing, &vec![1, 2]),
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(err.to_string().contains("%loss"), "{err}");
}

#[test]
fn ranks_agree_bit_for_bit_on_sums_that_depend_on_the_order() {
    // (1e8 + 1) + (-1e8) = 0 in f32, while a tree order could give 1: every rank folds in rank order.
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = ThreadGroup::new(3, Duration::from_secs(10))
            .into_iter()
            .map(|m| {
                scope.spawn(move || {
                    let mut buf = [[1.0e8f32, 1.0, -1.0e8][m.rank()]];
                    m.all_reduce(CollectiveBuffer::F32(&mut buf), ReduceOp::Sum, "sum")
                        .unwrap();
                    buf[0]
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<f32>>()
    });
    assert_eq!(results, vec![0.0; 3]);
}

#[test]
fn the_vulkan_path_refuses_all_reduce_naming_the_node() {
    let mut b = Builder::new("g");
    let x = b.data("x", TensorType::f32(&[4])).unwrap();
    let y = b.all_reduce(x, ReduceOp::Sum, 0).unwrap();
    b.name(y, "summed").unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    let program = kiln::kernel_program(&graph, &Options::default()).unwrap();
    let err = kiln::backend::spirv::lower_with(&program, &kiln::backend::spirv::Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("summed") && err.contains("all_reduce needs the CPU backend"),
        "{err}"
    );
}

#[test]
fn all_reduce_prints_parses_and_is_typed() {
    let text = "graph g {\n  %x = input{role=data} : f32[2]\n  %y = all_reduce{op=mean, group=0} %x : f32[2]\n  output y = %y\n}\n";
    let graph = kiln::ir::text::parse(text).unwrap();
    assert_eq!(kiln::ir::text::print(&graph), text);
    // One process: the identity.
    let x = Tensor::from_f32(&[2], vec![1.5, -0.0]).unwrap();
    let y = interp::run(&graph, std::slice::from_ref(&x)).unwrap();
    assert_eq!(bits(&y[0]), bits(&x));
    let int = "graph g {\n  %x = input{role=data} : i32[2]\n  %y = all_reduce{op=sum, group=0} %x : i32[2]\n  output y = %y\n}\n";
    let err = kiln::ir::text::parse(int).unwrap_err().to_string();
    assert!(err.contains("must be f32 or f64"), "{err}");
    let group = text.replace("group=0", "group=1");
    let err = kiln::ir::text::parse(&group).unwrap_err().to_string();
    assert!(err.contains("group 1 is not defined"), "{err}");
}

#[test]
fn the_vjp_of_an_all_reduce_sum_is_the_all_reduce_of_the_cotangents() {
    // loss_r = Σ_i (Σ_s x_s[i])·w_r[i] on each rank r; the gradient of the total Σ_r loss_r with respect to x_r is
    // Σ_s w_s, the same on every rank: what each rank's backward pass computes (SPEC §3.12).
    let mut b = Builder::new("g");
    let x = b.param("x", TensorType::f32(&[3])).unwrap();
    let w = b.data("w", TensorType::f32(&[3])).unwrap();
    let y = b.all_reduce(x, ReduceOp::Sum, 0).unwrap();
    let yw = b.mul(y, w).unwrap();
    let loss = b.sum_all(yw).unwrap();
    b.output("loss", loss).unwrap();
    let with_grads = kiln::grad(&b.finish(), "loss", &["x"]).unwrap().graph;
    let ws = [[1.0f32, 2.0, -3.0], [0.5, -0.25, 4.0]];
    let grads = std::thread::scope(|scope| {
        let handles: Vec<_> = ThreadGroup::new(2, Duration::from_secs(10))
            .into_iter()
            .map(|m| {
                let graph = &with_grads;
                scope.spawn(move || {
                    let x = Tensor::from_f32(&[3], vec![0.1, 0.2, 0.3]).unwrap();
                    let w = Tensor::from_f32(&[3], ws[m.rank()].to_vec()).unwrap();
                    let inputs: Vec<Tensor> = graph
                        .inputs()
                        .map(|i| if i.name == "x" { x.clone() } else { w.clone() })
                        .collect();
                    let out = interp::run_in_group(graph, &inputs, &m).unwrap();
                    let at = graph
                        .outputs()
                        .iter()
                        .position(|o| o.name == "grad.x")
                        .unwrap();
                    out[at].as_f32().unwrap().to_vec()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let expected: Vec<f32> = (0..3).map(|i| ws[0][i] + ws[1][i]).collect();
    assert_eq!(grads, vec![expected.clone(), expected]);
}
