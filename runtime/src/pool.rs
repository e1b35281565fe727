//! Running the steps of an executable on `threads` threads: a persistent pool of workers per executable.
//!
//! **Work split.** A loop kernel's flattened parallel range `[0, points)` is cut into fixed chunks of
//! `chunk_size(points, threads, min_chunk / cost)` points (`cost`: the step's estimated work per point); a matmul
//! kernel's `[β.., m, n]` into the fixed tiles of [`crate::Gemm::tiling`], which depend on `(m, n, k)` only. The
//! threads claim chunks and tiles ("pieces") in turn from a counter. Which thread runs which piece varies from run
//! to run, but the pieces themselves and every point's result do not (points are independent, and a tile is always
//! the same single-threaded GEMM call), so outputs are bit-identical for any thread count. A matmul's epilogue runs
//! either on each tile right after its GEMM, while the tile is in cache (`epilogue_in_tiles` on), or as a second
//! phase over all points once every tile is done (the default: measured a few percent faster); both give the same
//! bits.
//!
//! **Threads.** A [`Pool`] holds `threads - 1` workers, started on the first run that splits a kernel and joined when
//! the pool (its executable) is dropped. Between runs they spin briefly, then park on a condition variable; the
//! thread calling `run` takes part as the leader. A phase with a single piece (few points, one tile) runs on the
//! leader alone; a run whose phases are all like that never wakes the workers. Instead of barriers, each phase
//! counts its completed pieces and a thread starts on a phase once the one before is complete (spin, then park), so
//! a kernel sees every store of the kernels before it and the leader never waits for a worker that has nothing to do.
//!
//! **Concurrent runs.** One run at a time uses an executable's pool; a run that finds it busy runs on its own thread
//! alone (same pieces, same bits), so runs from many threads stay safe and never wait for each other.
//!
//! **Panics.** A panic in a piece (none is expected: kernels are native code that cannot unwind) marks the job
//! poisoned; every thread stops at its next piece or wait, the leader waits until no worker is inside the job (they
//! borrow the run's buffers) and then panics in the caller.
//!
//! **Dependencies.** The pool knows the steps and the buffer table ([`crate::step`]) but not the executable that owns
//! them: [`crate::executable`] hands it the steps, a table and a [`Split`], so the dependency runs one way.

use crate::step::{KernelFn, Step, Table};
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Chunks per thread: enough to balance uneven points (a softmax row next to an empty one), few enough that claiming
/// one costs nothing next to running it.
const CHUNKS_PER_THREAD: u64 = 4;

/// The least work worth handing to another thread by default, in units of a step's per-point `cost` (about one
/// scalar instruction): below this, claiming a chunk and waking a thread cost more than the chunk.
pub const MIN_CHUNK: u64 = 16 * 1024;

/// How long a waiting thread spins before it parks: long enough to bridge the wait between kernels and the gap
/// between back-to-back runs, short enough not to hold a core that other work wants.
const SPIN: Duration = Duration::from_micros(100);

/// Points per chunk of a kernel with `points` points on `threads` threads, at least `min_chunk`.
pub fn chunk_size(points: u64, threads: usize, min_chunk: u64) -> u64 {
    points
        .div_ceil(threads as u64 * CHUNKS_PER_THREAD)
        .max(min_chunk.max(1))
}

/// Points per chunk of a step whose points cost `cost` each: at least `split.min_chunk` work, at least one point.
fn step_chunk(points: u64, cost: u64, split: &Split) -> u64 {
    chunk_size(points, split.threads, split.min_chunk / cost.max(1))
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
            Step::Loop { points, cost, .. } | Step::Collective { points, cost, .. } => {
                (points.div_ceil(step_chunk(*points, *cost, self)), 0)
            }
            Step::Matmul {
                gemm,
                points,
                cost,
                epilogue,
                ..
            } => {
                let tiles = gemm.tiling().count() as u64;
                match epilogue {
                    Some(_) if !self.epilogue_in_tiles => {
                        (tiles, points.div_ceil(step_chunk(*points, *cost, self)))
                    }
                    _ => (tiles, 0),
                }
            }
        }
    }

    /// Whether any phase of `step` is shared among the threads (else the leader runs it alone).
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
        let (first, second) = alone.pieces(step);
        for (phase, count) in [(0, first), (1, second)] {
            for piece in 0..count {
                run_piece(step, phase, piece, table, &alone);
            }
        }
    }
}

/// Runs piece `piece` of phase `phase` of `step`: a chunk of a loop, a matmul tile (with its epilogue when the
/// epilogue runs on tiles), or a chunk of a matmul's epilogue pass.
fn run_piece(step: &Step, phase: u8, piece: u64, table: &Table, split: &Split) {
    match (step, phase) {
        (
            Step::Loop {
                entry,
                points,
                cost,
                ..
            },
            _,
        )
        | (
            Step::Collective {
                copy: entry,
                points,
                cost,
                ..
            },
            _,
        )
        | (
            Step::Matmul {
                epilogue: Some(entry),
                points,
                cost,
                ..
            },
            1,
        ) => {
            let chunk = step_chunk(*points, *cost, split);
            call(
                *entry,
                table,
                piece * chunk,
                ((piece + 1) * chunk).min(*points),
            );
        }
        (Step::Matmul { gemm, epilogue, .. }, _) => {
            let tiling = gemm.tiling();
            // SAFETY: `Executable::new` checked that both views and the result lie inside their buffers, the
            // run's table points every slot at a live buffer of that layout, the result (an output, temp or the
            // scratch) is written by this kernel only, and tile `piece` of it is this call's alone.
            unsafe { gemm.run_tile(&table.slots, &tiling, piece as usize) };
            if let (Some(entry), true) = (epilogue, split.epilogue_in_tiles) {
                for rows in tiling.rows_of(piece as usize) {
                    call(*entry, table, rows.start as u64, rows.end as u64);
                }
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

/// One phase of a job: the pieces of a step (or of a matmul's epilogue pass), in any order on any thread.
struct Phase {
    step: usize,
    phase: u8,
    pieces: u64,
    /// Claimed by any thread (else run by the leader alone).
    shared: bool,
    claimed: AtomicU64,
    completed: AtomicU64,
}

impl Phase {
    fn complete(&self) -> bool {
        self.completed.load(SeqCst) >= self.pieces
    }
}

/// One run on the pool: the steps, the buffers, and per phase the counters the threads claim and complete pieces on.
///
/// There is no barrier: a thread starts claiming pieces of a phase once the phase before it is complete (every
/// piece's writes happen before the completing increment, which the waiter reads: sequentially consistent atomics),
/// and the leader returns once the last phase is complete. A worker that arrives late finds every piece claimed and
/// runs nothing, so the leader never waits for an idle or descheduled worker, and once the last phase is complete no
/// thread dereferences the table again (a piece is only run after claiming an index below its phase's count).
struct Job {
    steps: Arc<[Step]>,
    table: Table,
    split: Split,
    phases: Vec<Phase>,
    poisoned: AtomicBool,
    /// Workers inside [`Job::take_part`] (the leader waits for none to be inside before unwinding a panic).
    inside: AtomicUsize,
}

// SAFETY: the job's only non-thread-safe part is the table's raw pointers. Kernels and GEMM tiles dereference them
// only for claimed pieces (each point and tile is one thread's), after the phase before is complete, and the leader
// keeps the buffers alive until every piece is complete (or, after a panic, until no worker is inside the job).
unsafe impl Send for Job {}
// SAFETY: as for `Send`.
unsafe impl Sync for Job {}

impl Job {
    fn new(steps: &Arc<[Step]>, range: Range<usize>, table: Table, split: Split) -> Job {
        let mut phases = Vec::with_capacity(2 * range.len());
        for s in range {
            let (first, second) = split.pieces(&steps[s]);
            let two = matches!(
                &steps[s],
                Step::Matmul {
                    epilogue: Some(_),
                    ..
                }
            ) && !split.epilogue_in_tiles;
            for (phase, pieces) in [(0, first), (1, second)]
                .into_iter()
                .take(1 + usize::from(two))
            {
                phases.push(Phase {
                    step: s,
                    phase,
                    pieces,
                    shared: split.threads > 1 && pieces > 1,
                    claimed: AtomicU64::new(0),
                    completed: AtomicU64::new(0),
                });
            }
        }
        Job {
            steps: Arc::clone(steps),
            table,
            split,
            phases,
            poisoned: AtomicBool::new(false),
            inside: AtomicUsize::new(0),
        }
    }

    fn shares_work(&self) -> bool {
        self.phases.iter().any(|p| p.shared)
    }

    /// Waits until phase `p` (if any) is complete or the job is poisoned; true when complete.
    fn wait_for(&self, p: Option<usize>, signal: &Signal) -> bool {
        let Some(p) = p else { return true };
        let phase = &self.phases[p];
        signal.wait_until(|| phase.complete() || self.poisoned.load(SeqCst));
        !self.poisoned.load(SeqCst)
    }

    /// Claims and runs pieces of phase `p` until none is left.
    fn claim(&self, p: usize, signal: &Signal) {
        let phase = &self.phases[p];
        let step = &self.steps[phase.step];
        while !self.poisoned.load(SeqCst) {
            let piece = phase.claimed.fetch_add(1, SeqCst);
            if piece >= phase.pieces {
                return;
            }
            run_piece(step, phase.phase, piece, &self.table, &self.split);
            if phase.completed.fetch_add(1, SeqCst) + 1 == phase.pieces {
                signal.notify();
            }
        }
    }

    /// The leader's part: every phase in order, the unshared ones alone; returns once the last is complete.
    fn lead(&self, signal: &Signal) {
        for (p, phase) in self.phases.iter().enumerate() {
            if !self.wait_for(p.checked_sub(1), signal) {
                return;
            }
            if phase.shared {
                self.claim(p, signal);
            } else {
                let step = &self.steps[phase.step];
                for piece in 0..phase.pieces {
                    run_piece(step, phase.phase, piece, &self.table, &self.split);
                }
                phase.completed.store(phase.pieces, SeqCst);
                signal.notify();
            }
        }
        self.wait_for(self.phases.len().checked_sub(1), signal);
    }

    /// A worker's part: the shared phases that still have unclaimed pieces, each once the phase before is complete.
    fn help(&self, signal: &Signal) {
        for (p, phase) in self.phases.iter().enumerate() {
            if !phase.shared || phase.claimed.load(SeqCst) >= phase.pieces {
                continue;
            }
            if !self.wait_for(p.checked_sub(1), signal) {
                return;
            }
            self.claim(p, signal);
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
    /// worker will touch the table any more.
    pub(crate) fn run(&self, steps: &Arc<[Step]>, range: Range<usize>, table: Table, split: Split) {
        let split = Split {
            threads: self.threads(),
            ..split
        };
        let job = Arc::new(Job::new(steps, range.clone(), table, split));
        if !job.shares_work() {
            return run_alone(steps, range, &job.table, split);
        }
        let signal = &self.inner.signal;
        *self.inner.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&job));
        self.inner.epoch.fetch_add(1, SeqCst);
        signal.notify();
        let led = catch_unwind(AssertUnwindSafe(|| job.lead(signal)));
        *self.inner.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if led.is_err() || job.poisoned.load(SeqCst) {
            // Some piece never completed: stop everyone and wait until no worker is inside the job (a worker that
            // enters later sees the poison before it claims anything).
            job.poisoned.store(true, SeqCst);
            signal.notify();
            signal.wait_until(|| job.inside.load(SeqCst) == 0);
        }
        if let Err(panic) = led {
            resume_unwind(panic);
        }
        assert!(
            !job.poisoned.load(SeqCst),
            "a kiln worker thread panicked while running a kernel"
        );
    }
}

/// A worker: wait for a job, help with it; until the pool stops.
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
        let job = inner.job.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(job) = job else { continue };
        job.inside.fetch_add(1, SeqCst);
        if !job.poisoned.load(SeqCst)
            && catch_unwind(AssertUnwindSafe(|| job.help(&inner.signal))).is_err()
        {
            job.poisoned.store(true, SeqCst);
        }
        job.inside.fetch_sub(1, SeqCst);
        inner.signal.notify();
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
    use super::{chunk_size, MIN_CHUNK};

    #[test]
    fn chunks_cover_the_range() {
        assert_eq!(chunk_size(0, 4, MIN_CHUNK), MIN_CHUNK);
        assert_eq!(chunk_size(1000, 2, MIN_CHUNK), MIN_CHUNK);
        assert_eq!(chunk_size(1_000_000, 2, MIN_CHUNK), 125_000);
        assert_eq!(chunk_size(7, 3, 0), 1);
    }
}
