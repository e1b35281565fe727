//! Running the steps of an executable on `threads` threads: a persistent pool of workers per executable.
//!
//! **Work split.** A loop kernel's flattened parallel range `[0, points)` is cut into fixed chunks of
//! `chunk_size(points, threads, min_chunk)` points; a matmul kernel's `[β.., m, n]` into the fixed tiles of
//! [`crate::Gemm::tiling`], which depend on `(m, n, k)` only. The threads claim chunks and tiles in turn from a counter.
//! Which thread runs which piece varies from run to run, but the pieces themselves and every point's result do not
//! (points are independent, and a tile is always the same single-threaded GEMM call), so outputs are bit-identical
//! for any thread count. A matmul's epilogue runs either on each tile right after its GEMM, while the tile is in
//! cache (the default), or in one following pass over all points after a barrier (`epilogue_in_tiles` off); both give
//! the same bits.
//!
//! **Threads.** A [`Pool`] holds `threads - 1` workers, started on the first run that splits a kernel and joined when
//! the pool (its executable) is dropped. Between runs they spin briefly, then park on a condition variable; the
//! thread calling `run` takes part as the leader. A step with a single piece (few points, one tile) runs on the
//! leader alone; a run whose steps are all like that never wakes the workers. Steps are separated by a barrier (spin,
//! then park) wherever one of the two is split, so a kernel sees every store of the kernels before it.
//!
//! **Concurrent runs.** One run at a time uses an executable's pool; a run that finds it busy runs on its own thread
//! alone (same pieces, same bits), so runs from many threads stay safe and never wait for each other.
//!
//! **Panics.** A panic in a piece (none is expected: kernels are native code that cannot unwind) marks the job
//! poisoned; every thread stops at its next step or barrier, the leader waits until the workers have left the job
//! (they borrow the run's buffers) and then panics in the caller.

use crate::executable::{KernelFn, Step, Table};
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Chunks per thread: enough to balance uneven points (a softmax row next to an empty one), few enough that claiming
/// one costs nothing next to running it.
const CHUNKS_PER_THREAD: u64 = 4;

/// The fewest points worth handing to another thread by default: below this, waking one costs more than the points.
pub const MIN_CHUNK: u64 = 1024;

/// How long a waiting thread spins before it parks: long enough to bridge a barrier between kernels and the gap
/// between back-to-back runs, short enough not to hold a core that other work wants.
const SPIN: Duration = Duration::from_micros(100);

/// Points per chunk of a kernel with `points` points on `threads` threads, at least `min_chunk`.
pub fn chunk_size(points: u64, threads: usize, min_chunk: u64) -> u64 {
    points
        .div_ceil(threads as u64 * CHUNKS_PER_THREAD)
        .max(min_chunk.max(1))
}

/// How a run splits its steps; the same for every thread of the run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Split {
    pub(crate) threads: usize,
    pub(crate) min_chunk: u64,
    /// Run a matmul's epilogue on each tile right after its GEMM (else in one pass after all tiles).
    pub(crate) epilogue_in_tiles: bool,
}

impl Split {
    /// Pieces of the first and second phase of `step` (the second: a matmul's epilogue pass, 0 when none).
    fn pieces(&self, step: &Step) -> (u64, u64) {
        match step {
            Step::Loop { points, .. } => {
                (points.div_ceil(chunk_size(*points, self.threads, self.min_chunk)), 0)
            }
            Step::Matmul {
                gemm,
                points,
                epilogue,
                ..
            } => {
                let tiles = gemm.tiling().count() as u64;
                match epilogue {
                    Some(_) if !self.epilogue_in_tiles => (
                        tiles,
                        points.div_ceil(chunk_size(*points, self.threads, self.min_chunk)),
                    ),
                    _ => (tiles, 0),
                }
            }
        }
    }

    /// Whether `step` is shared among the threads (else the leader runs it alone).
    pub(crate) fn shared(&self, step: &Step) -> bool {
        let (first, second) = self.pieces(step);
        self.threads > 1 && first.max(second) > 1
    }
}

/// Runs `steps[range]` on the calling thread alone.
pub(crate) fn run_alone(steps: &[Step], range: Range<usize>, table: &Table, split: Split) {
    let alone = Split {
        threads: 1,
        ..split
    };
    for step in &steps[range] {
        run_step(step, table, &alone, None);
    }
}

/// Runs one step's pieces: all of them on this thread when `claim` is `None`, else those it claims from the
/// counters (and the barrier between a matmul's two phases).
fn run_step(step: &Step, table: &Table, split: &Split, claim: Option<(&Job, usize, &Signal)>) {
    let (first, second) = split.pieces(step);
    let each = |phase: usize, count: u64, f: &mut dyn FnMut(u64)| match claim {
        None => (0..count).for_each(f),
        Some((job, s, _)) => {
            let counter = &job.counters[2 * s + phase];
            loop {
                let piece = counter.fetch_add(1, SeqCst);
                if piece >= count || job.poisoned.load(SeqCst) {
                    break;
                }
                f(piece);
            }
        }
    };
    match step {
        Step::Loop { entry, points, .. } => {
            let chunk = chunk_size(*points, split.threads, split.min_chunk);
            each(0, first, &mut |c| {
                call(*entry, table, c * chunk, ((c + 1) * chunk).min(*points))
            });
        }
        Step::Matmul {
            gemm,
            points,
            epilogue,
            ..
        } => {
            let tiling = gemm.tiling();
            let in_tiles = epilogue.filter(|_| split.epilogue_in_tiles);
            each(0, first, &mut |t| {
                // SAFETY: `Executable::new` checked that both views and the result lie inside their buffers, the
                // run's table points every slot at a live buffer of that layout, the result (an output, temp or the
                // scratch) is written by this kernel only, and tile `t` of it is this call's alone.
                unsafe { gemm.run_tile(&table.slots, &tiling, t as usize) };
                if let Some(entry) = in_tiles {
                    for rows in tiling.rows_of(t as usize) {
                        call(entry, table, rows.start as u64, rows.end as u64);
                    }
                }
            });
            if let (Some(entry), false) = (epilogue, split.epilogue_in_tiles) {
                if let Some((job, _, signal)) = claim {
                    // The product is complete before any thread reads it.
                    job.barrier.wait(signal, &job.poisoned);
                }
                let chunk = chunk_size(*points, split.threads, split.min_chunk);
                each(1, second, &mut |c| {
                    call(*entry, table, c * chunk, ((c + 1) * chunk).min(*points))
                });
            }
        }
    }
}

fn call(entry: KernelFn, table: &Table, start: u64, end: u64) {
    // SAFETY: `entry` is a kernel of this executable, kept alive by it for the whole run; by the contract of
    // `Executable::new` it touches only elements of the table's buffers under the layout, and the table points every
    // slot at a live buffer of that layout for the whole run. Points `[start, end)` are this call's alone.
    unsafe { entry(table.slots.as_ptr(), start, end) };
}

/// Waiting for a condition: spin for [`SPIN`], then park on a condition variable until [`Signal::notify`].
#[derive(Default)]
struct Signal {
    lock: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
}

impl Signal {
    fn wait_until(&self, ready: impl Fn() -> bool) {
        let started = Instant::now();
        let mut spins = 0u32;
        while !ready() {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(64) && started.elapsed() > SPIN {
                self.park_until(&ready);
                return;
            }
        }
    }

    fn park_until(&self, ready: &impl Fn() -> bool) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Counted before `ready` is checked under the lock: a notifier that changes the condition after our check
        // sees the count and takes the lock, which we hold until `wait` releases it, so no wake-up is lost.
        self.sleepers.fetch_add(1, SeqCst);
        while !ready() {
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        self.sleepers.fetch_sub(1, SeqCst);
    }

    /// Wakes the parked waiters; call after changing the condition they wait for.
    fn notify(&self) {
        if self.sleepers.load(SeqCst) > 0 {
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.wake.notify_all();
        }
    }
}

/// A reusable barrier for the threads of one job.
struct Barrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl Barrier {
    fn new(threads: usize) -> Barrier {
        Barrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Returns once every thread has arrived (or the job is poisoned). Everything a thread did before arriving
    /// happens before everything any thread does after returning (sequentially consistent atomics).
    fn wait(&self, signal: &Signal, poisoned: &AtomicBool) {
        let generation = self.generation.load(SeqCst);
        if self.arrived.fetch_add(1, SeqCst) + 1 == self.threads {
            self.arrived.store(0, SeqCst);
            self.generation.fetch_add(1, SeqCst);
            signal.notify();
        } else {
            signal.wait_until(|| self.generation.load(SeqCst) != generation || poisoned.load(SeqCst));
        }
    }
}

/// One run on the pool: the steps, the buffers, and the counters the threads claim pieces from.
struct Job {
    steps: Arc<[Step]>,
    range: Range<usize>,
    table: Table,
    split: Split,
    /// Two per step (a matmul's tiles, then its epilogue pass).
    counters: Vec<AtomicU64>,
    barrier: Barrier,
    poisoned: AtomicBool,
    /// Workers that have left the job.
    done: AtomicUsize,
}

// SAFETY: the job's only non-thread-safe part is the table's raw pointers. Kernels and GEMM tiles dereference them
// only for disjoint pieces (each point and tile is one thread's), between barriers that order every write of a step
// before any read of a later one, and the leader keeps the buffers alive until every worker has left the job.
unsafe impl Send for Job {}
// SAFETY: as for `Send`.
unsafe impl Sync for Job {}

impl Job {
    /// This thread's part of the job: its claimed pieces of every shared step, the leader's unshared steps, and the
    /// barriers between steps.
    fn take_part(&self, leader: bool, signal: &Signal) {
        let steps = &self.steps[self.range.clone()];
        for (s, step) in steps.iter().enumerate() {
            if self.poisoned.load(SeqCst) {
                return;
            }
            let shared = self.split.shared(step);
            if shared {
                run_step(step, &self.table, &self.split, Some((self, s, signal)));
            } else if leader {
                run_step(step, &self.table, &self.split, None);
            }
            let next_shared = steps.get(s + 1).map(|n| self.split.shared(n));
            if next_shared.is_some_and(|n| n || shared) {
                self.barrier.wait(signal, &self.poisoned);
            }
        }
    }
}

struct Inner {
    /// Bumped to hand the workers a new job (or to stop them).
    epoch: AtomicU64,
    job: Mutex<Option<Arc<Job>>>,
    stop: AtomicBool,
    signal: Signal,
}

/// `threads - 1` parked worker threads, and the calling thread as the leader of each run.
pub struct Pool {
    inner: Arc<Inner>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool for runs on `threads` threads (spawns `threads - 1`).
    pub(crate) fn new(threads: usize) -> Pool {
        let inner = Arc::new(Inner {
            epoch: AtomicU64::new(0),
            job: Mutex::new(None),
            stop: AtomicBool::new(false),
            signal: Signal::default(),
        });
        let workers = (1..threads.max(1))
            .map(|_| {
                let inner = Arc::clone(&inner);
                std::thread::Builder::new()
                    .name("kiln-worker".into())
                    .spawn(move || work(&inner))
                    .expect("the OS starts a worker thread")
            })
            .collect();
        Pool { inner, workers }
    }

    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `steps[range]` on the buffers of `table` with the workers; returns when every step is complete and no
    /// worker touches the table any more.
    pub(crate) fn run(&self, steps: &Arc<[Step]>, range: Range<usize>, table: Table, split: Split) {
        let split = Split {
            threads: self.threads(),
            ..split
        };
        if !steps[range.clone()].iter().any(|s| split.shared(s)) {
            return run_alone(steps, range, &table, split);
        }
        let job = Arc::new(Job {
            counters: (0..2 * range.len()).map(|_| AtomicU64::new(0)).collect(),
            steps: Arc::clone(steps),
            range,
            table,
            split,
            barrier: Barrier::new(split.threads),
            poisoned: AtomicBool::new(false),
            done: AtomicUsize::new(0),
        });
        *self.inner.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&job));
        self.inner.epoch.fetch_add(1, SeqCst);
        self.inner.signal.notify();
        let led = catch_unwind(AssertUnwindSafe(|| job.take_part(true, &self.inner.signal)));
        if led.is_err() {
            job.poisoned.store(true, SeqCst);
            self.inner.signal.notify();
        }
        let workers = self.workers.len();
        self.inner
            .signal
            .wait_until(|| job.done.load(SeqCst) == workers);
        *self.inner.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(panic) = led {
            resume_unwind(panic);
        }
        assert!(
            !job.poisoned.load(SeqCst),
            "a kiln worker thread panicked while running a kernel"
        );
    }
}

/// A worker: wait for a job, take part in it, report done; until the pool stops.
fn work(inner: &Inner) {
    let mut seen = 0;
    loop {
        inner
            .signal
            .wait_until(|| inner.epoch.load(SeqCst) != seen || inner.stop.load(SeqCst));
        if inner.stop.load(SeqCst) {
            return;
        }
        seen = inner.epoch.load(SeqCst);
        let job = inner
            .job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(job) = job {
            if catch_unwind(AssertUnwindSafe(|| job.take_part(false, &inner.signal))).is_err() {
                job.poisoned.store(true, SeqCst);
            }
            job.done.fetch_add(1, SeqCst);
            inner.signal.notify();
        }
    }
}

impl Drop for Pool {
    /// Stops and joins the workers (no run is in progress: a run borrows the pool).
    fn drop(&mut self) {
        self.inner.stop.store(true, SeqCst);
        self.inner.signal.notify();
        for worker in self.workers.drain(..) {
            // A worker catches a panic of its pieces, so joining fails only if the runtime itself panicked; there
            // is nothing left to clean up then.
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_size, Barrier, Signal, MIN_CHUNK};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    #[test]
    fn chunks_cover_the_range() {
        assert_eq!(chunk_size(0, 4, MIN_CHUNK), MIN_CHUNK);
        assert_eq!(chunk_size(1000, 2, MIN_CHUNK), MIN_CHUNK);
        assert_eq!(chunk_size(100_000, 2, MIN_CHUNK), 12_500);
        assert_eq!(chunk_size(7, 3, 0), 1);
    }

    /// Every thread sees every other thread's writes of a round once the barrier of that round returns.
    #[test]
    fn the_barrier_orders_rounds() {
        let (threads, rounds) = (3, 200);
        let barrier = Barrier::new(threads);
        let signal = Signal::default();
        let poisoned = AtomicBool::new(false);
        let counter = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for round in 0..rounds {
                        counter.fetch_add(1, SeqCst);
                        barrier.wait(&signal, &poisoned);
                        assert!(counter.load(SeqCst) >= (round + 1) * threads);
                        barrier.wait(&signal, &poisoned);
                    }
                });
            }
        });
        assert_eq!(counter.load(SeqCst), threads * rounds);
    }
}
