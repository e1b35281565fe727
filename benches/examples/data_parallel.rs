//! The numbers of `docs/distributed.md`: for W4 (MLP step), W7 (CNN step) and W10 (transformer-block step), the
//! gradient bytes, the one-process step time, the data-parallel step on 1 and 2 ranks (threads of this process, one
//! kernel thread each, the same batch per rank), per-gradient and bucketed, and one all-reduce of every gradient's
//! bytes alone on 2 ranks.
//!
//! `cargo run --release -p kiln-benches --example data_parallel`
//!
//! With `--mpi` (built with `--features mpi`, run under `mpirun -np P`), the same steps with one MPI process per rank
//! (one kernel thread each, the same batch per rank): each rank's median step time, and a trace of the step's
//! all-reduces (every call timed through a wrapper of the group: bytes moved and seconds per step), printed by rank 0:
//!
//! `cargo build --release -p kiln-benches --features mpi --example data_parallel`
//! `mpirun -np 2 target/release/examples/data_parallel --mpi`

use kiln::ir::collective::{Collective, CollectiveBuffer};
use kiln::ir::ReduceOp;
use kiln::{DataParallel, Graph, Options, Session, Tensor, ThreadGroup};
use kiln_benches::{
    labels, mlp_params, normal_tensor, w10_block, w10_params, w10_step, w4_step_with, w7_params,
    w7_step_with, MLP_DIMS, W10_X, W4_BATCH,
};
use std::collections::HashMap;
use std::sync::Arc;
#[cfg(feature = "mpi")]
use std::sync::Mutex;
use std::time::{Duration, Instant};

const REPS: usize = 20;

struct Workload {
    name: &'static str,
    step: fn(Option<DataParallel>) -> Graph,
    params: HashMap<String, Tensor>,
    data: Vec<Tensor>,
}

/// Median seconds per call of `f` after two warm-up calls.
fn median(mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..REPS)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[REPS / 2]
}

fn session(graph: &Graph, params: &HashMap<String, Tensor>, group: Arc<dyn Collective>) -> Session {
    let options = Options {
        threads: 1,
        ..Options::default()
    };
    let mut exe = kiln::compile(graph, &options).expect("the step compiles");
    exe.set_group(group);
    Session::new(exe, params).expect("the parameters fit")
}

/// Median step time with `ranks` thread ranks each running `graph` (the slowest rank's time per step).
fn ranks_step_time(w: &Workload, graph: &Graph, ranks: usize) -> f64 {
    let members = ThreadGroup::new(ranks, Duration::from_secs(120));
    std::thread::scope(|scope| {
        let handles: Vec<_> = members
            .into_iter()
            .map(|m| {
                scope.spawn(move || {
                    let mut s = session(graph, &w.params, Arc::new(m));
                    median(|| {
                        s.step(&w.data).expect("the step runs");
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a rank finished"))
            .fold(0.0, f64::max)
    })
}

/// Median time of one all-reduce of `len` f32 on 2 thread ranks.
fn all_reduce_time(len: usize) -> f64 {
    let members = ThreadGroup::new(2, Duration::from_secs(120));
    std::thread::scope(|scope| {
        let handles: Vec<_> = members
            .into_iter()
            .map(|m| {
                scope.spawn(move || {
                    let mut buf = vec![1.0f32; len];
                    median(|| {
                        m.all_reduce(CollectiveBuffer::F32(&mut buf), ReduceOp::Mean, "bench")
                            .expect("the all-reduce runs");
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold(0.0, f64::max)
    })
}

/// A group that times its calls: the trace of a step's all-reduces (seconds, calls and bytes in all).
#[cfg(feature = "mpi")]
struct Traced {
    inner: Arc<dyn Collective>,
    spent: Mutex<(Duration, usize, usize)>,
}

#[cfg(feature = "mpi")]
impl Traced {
    fn take(&self) -> (Duration, usize, usize) {
        std::mem::take(&mut *self.spent.lock().unwrap())
    }
}

#[cfg(feature = "mpi")]
impl Collective for Traced {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn all_reduce(
        &self,
        buf: CollectiveBuffer<'_>,
        op: ReduceOp,
        during: &str,
    ) -> Result<(), kiln::ir::CollectiveError> {
        let bytes = buf.len() * if buf.dtype_name() == "f64" { 8 } else { 4 };
        let start = Instant::now();
        let result = self.inner.all_reduce(buf, op, during);
        let mut spent = self.spent.lock().unwrap();
        spent.0 += start.elapsed();
        spent.1 += 1;
        spent.2 += bytes;
        result
    }

    fn broadcast(
        &self,
        buf: CollectiveBuffer<'_>,
        during: &str,
    ) -> Result<(), kiln::ir::CollectiveError> {
        self.inner.broadcast(buf, during)
    }
}

#[cfg(feature = "mpi")]
fn mpi_main(workloads: &[Workload]) {
    let group: Arc<dyn Collective> = Arc::new(kiln::MpiGroup::init_default().expect("MPI starts"));
    let (rank, size) = (group.rank(), group.size());
    let traced = Arc::new(Traced {
        inner: group,
        spent: Mutex::default(),
    });
    for w in workloads {
        let graph = (w.step)(Some(DataParallel::bucketed(25 << 20)));
        let mut s = session(&graph, &w.params, traced.clone());
        let step = median(|| {
            s.step(&w.data).expect("the step runs");
        });
        // The trace covers the warm-up calls and the timed ones: per step, divide by their count.
        let (spent, calls, bytes) = traced.take();
        let steps = (REPS + 2) as f64;
        // Every rank's step time, gathered by an all-reduce of a vector with one slot per rank.
        let mut times = vec![0.0f64; 2 * size];
        times[2 * rank] = step;
        times[2 * rank + 1] = spent.as_secs_f64() / steps;
        traced
            .inner
            .all_reduce(CollectiveBuffer::F64(&mut times), ReduceOp::Sum, "times")
            .expect("the times gather");
        if rank == 0 {
            println!("{} on {size} MPI ranks, one 25 MiB bucket:", w.name);
            for r in 0..size {
                println!(
                    "  rank {r}: step {:.3} ms, of which all-reduce {:.3} ms ({:.0}%; {} calls, {:.0} bytes per step)",
                    times[2 * r] * 1e3,
                    times[2 * r + 1] * 1e3,
                    100.0 * times[2 * r + 1] / times[2 * r],
                    calls as f64 / steps,
                    bytes as f64 / steps
                );
            }
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn mpi_main(_: &[Workload]) {
    eprintln!("--mpi needs `--features mpi` (and `mpirun -np P`)");
    std::process::exit(2);
}

fn main() {
    let block = w10_block();
    let workloads = [
        Workload {
            name: "W4 (MLP 784-256-256-10, SGD, batch 128)",
            step: |dp| w4_step_with(dp).expect("W4 builds"),
            params: mlp_params(7),
            data: vec![
                normal_tensor(&[W4_BATCH, MLP_DIMS[0]], 5, 1.0),
                labels(W4_BATCH, 10, 6),
            ],
        },
        Workload {
            name: "W7 (CNN, SGD, batch 128)",
            step: |dp| w7_step_with(dp).expect("W7 builds"),
            params: w7_params(3),
            data: vec![normal_tensor(&[128, 1, 28, 28], 1, 1.0), labels(128, 10, 2)],
        },
        Workload {
            name: "W10 (transformer block, AdamW, 8x128x256)",
            step: |dp| w10_step(&w10_block(), dp).expect("W10 builds"),
            params: w10_params(&block),
            data: vec![normal_tensor(&W10_X, 4, 1.0)],
        },
    ];
    if std::env::args().any(|a| a == "--mpi") {
        return mpi_main(&workloads);
    }
    for w in &workloads {
        let plain = (w.step)(None);
        let grad_bytes: usize = plain
            .inputs()
            .filter(|i| i.role == kiln::Role::Param)
            .map(|i| i.ty.size_bytes())
            .sum();
        let grads = plain
            .inputs()
            .filter(|i| i.role == kiln::Role::Param)
            .count();
        let one = {
            let mut s = session(&plain, &w.params, Arc::new(kiln::ir::SingleProcess));
            median(|| {
                s.step(&w.data).expect("the step runs");
            })
        };
        println!("{}: {grads} gradients, {grad_bytes} bytes", w.name);
        println!("  one process, plain step: {:.3} ms", one * 1e3);
        for (what, dp) in [
            ("per-gradient", DataParallel::per_gradient()),
            ("one 25 MiB bucket", DataParallel::bucketed(25 << 20)),
        ] {
            let graph = (w.step)(Some(dp));
            let p1 = ranks_step_time(w, &graph, 1);
            let p2 = ranks_step_time(w, &graph, 2);
            println!(
                "  data-parallel, {what}: 1 rank {:.3} ms, 2 ranks {:.3} ms",
                p1 * 1e3,
                p2 * 1e3
            );
        }
        let ar = all_reduce_time(grad_bytes / 4);
        println!(
            "  one all-reduce of {grad_bytes} bytes on 2 thread ranks: {:.3} ms",
            ar * 1e3
        );
    }
}
