//! Running the steps of an executable on `threads` threads.
//!
//! Each kernel's flattened parallel range `[0, points)` is cut into fixed chunks of `chunk_size(points, threads)`
//! points, which the threads claim in turn; a barrier separates kernels (a kernel sees every store of the kernels
//! before it). Which thread runs which chunk varies from run to run, but the chunks themselves and every point's
//! result do not (points are independent), so outputs are bit-identical for any thread count.
//!
//! The threads are scoped to one run: spawned when it starts, joined when it ends, so an executable holds no threads
//! while idle and a run borrows its buffers for exactly its duration.

use crate::executable::{KernelFn, Step, Table};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;

/// Chunks per thread: enough to balance uneven points (a softmax row next to an empty one), few enough that claiming
/// one costs nothing next to running it.
const CHUNKS_PER_THREAD: u64 = 4;

/// The fewest points worth handing to another thread by default: below this, waking one costs more than the points.
pub const MIN_CHUNK: u64 = 1024;

/// Points per chunk of a kernel with `points` points on `threads` threads, at least `min_chunk`.
pub fn chunk_size(points: u64, threads: usize, min_chunk: u64) -> u64 {
    points
        .div_ceil(threads as u64 * CHUNKS_PER_THREAD)
        .max(min_chunk.max(1))
}

/// The buffer table, shared by the threads of one run.
struct Shared<'a>(&'a Table);

// SAFETY: the table's pointers are only dereferenced by kernels, which write disjoint elements (each parallel point
// writes its own), and only between barriers that order every write of a kernel before any read of a later one.
unsafe impl Sync for Shared<'_> {}

impl Shared<'_> {
    fn table(&self) -> &Table {
        self.0
    }
}

pub(crate) fn run_steps(steps: &[Step], table: &Table, threads: usize, min_chunk: u64) {
    if threads <= 1 {
        for step in steps {
            if let Some((entry, points)) = prepare(step, table, true) {
                call(entry, table, 0, points);
            }
        }
        return;
    }
    let counters: Vec<AtomicU64> = steps.iter().map(|_| AtomicU64::new(0)).collect();
    let barrier = Barrier::new(threads);
    let shared = Shared(table);
    let work = |leader: bool| {
        let table = shared.table();
        for (step, next) in steps.iter().zip(&counters) {
            let kernel = prepare(step, table, leader);
            if matches!(step, Step::Matmul { .. }) {
                // The product is complete before any thread runs the epilogue.
                barrier.wait();
            }
            if let Some((entry, points)) = kernel {
                let chunk = chunk_size(points, threads, min_chunk);
                loop {
                    let start = next.fetch_add(chunk, Ordering::Relaxed);
                    if start >= points {
                        break;
                    }
                    call(entry, table, start, (start + chunk).min(points));
                }
            }
            barrier.wait();
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(|| work(false));
        }
        work(true);
    });
}

/// Runs what a step does before its parallel part (a matmul's product, on the leader only) and returns its entry.
fn prepare(step: &Step, table: &Table, leader: bool) -> Option<(KernelFn, u64)> {
    match step {
        Step::Loop { entry, points, .. } => Some((*entry, *points)),
        Step::Matmul {
            gemm,
            points,
            epilogue,
            ..
        } => {
            if leader {
                // SAFETY: `Executable::new` checked that both views and the result lie inside their buffers, the
                // run's table points every slot at a live buffer of that layout, the result (an output, temp or
                // the scratch) is written by this kernel only, and the other threads wait at the barrier.
                unsafe { gemm.run(&table.slots) };
            }
            epilogue.map(|e| (e, *points))
        }
    }
}

fn call(entry: KernelFn, table: &Table, start: u64, end: u64) {
    // SAFETY: `entry` is a kernel of this executable, kept alive by it for the whole run; by the contract of
    // `Executable::new` it touches only elements of the table's buffers under the layout, and the table points every
    // slot at a live buffer of that layout for the whole run. Points `[start, end)` are this call's alone.
    unsafe { entry(table.slots.as_ptr(), start, end) };
}

#[cfg(test)]
mod tests {
    use super::{chunk_size, MIN_CHUNK};

    #[test]
    fn chunks_cover_the_range() {
        assert_eq!(chunk_size(0, 4, MIN_CHUNK), MIN_CHUNK);
        assert_eq!(chunk_size(1000, 2, MIN_CHUNK), MIN_CHUNK);
        assert_eq!(chunk_size(100_000, 2, MIN_CHUNK), 12_500);
        assert_eq!(chunk_size(7, 3, 0), 1);
    }
}
