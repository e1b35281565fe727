//! Process groups for `all_reduce` (SPEC §3.12) in `kiln-runtime`: [`ThreadGroup`], `P` ranks as threads of one
//! process (what tests and CI use on every build, no MPI needed), and, behind the `mpi` feature, `mpi::MpiGroup`
//! over MPI.
//!
//! Both gather every rank's contribution and fold them with [`kiln_ir::collective::reduce_in_rank_order`] on every
//! rank, so results are bit-identical across ranks and transports.

#[cfg(feature = "mpi")]
pub mod mpi;

use kiln_ir::collective::reduce_in_rank_order;
use kiln_ir::{Collective, CollectiveBuffer, CollectiveError, ReduceOp};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a rank waits for the others in one collective before it reports them missing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One contribution, owned (the rank's buffer is copied in, so ranks never read each other's memory).
#[derive(Clone)]
enum Contribution {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Contribution {
    fn describe(&self) -> String {
        match self {
            Contribution::F32(v) => format!("{} f32", v.len()),
            Contribution::F64(v) => format!("{} f64", v.len()),
        }
    }
}

/// The shared state of one collective round.
struct Round {
    /// Which collective this is (counts up); a rank that arrives for round `n` waits until round `n - 1` is drained.
    number: u64,
    slots: Vec<Option<Contribution>>,
    /// Ranks that have read the result of the current round.
    done: usize,
    /// A rank that left the group (dropped its handle or failed): every later collective fails naming it.
    failed: Option<(usize, String)>,
}

struct Shared {
    size: usize,
    timeout: Duration,
    round: Mutex<Round>,
    changed: Condvar,
}

/// One rank of a group of `size` threads in this process. Create the group with [`ThreadGroup::new`] and hand one
/// member to each thread; a member dropped (its thread finished or panicked) makes the others' collectives fail
/// instead of waiting for it.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
    /// The rounds this rank has entered.
    entered: Mutex<u64>,
}

impl ThreadGroup {
    /// `size` members, ranks `0..size`, each waiting at most `timeout` for the others in a collective.
    pub fn new(size: usize, timeout: Duration) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            size: size.max(1),
            timeout,
            round: Mutex::new(Round {
                number: 0,
                slots: vec![None; size.max(1)],
                done: 0,
                failed: None,
            }),
            changed: Condvar::new(),
        });
        (0..size.max(1))
            .map(|rank| ThreadGroup {
                rank,
                shared: Arc::clone(&shared),
                entered: Mutex::new(0),
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        // A panic while holding the lock can only come from a bug here; the state stays consistent enough to
        // report errors, so the poison is ignored.
        self.shared.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deposits `mine`, waits for every rank's, and returns all contributions in rank order.
    fn exchange(
        &self,
        mine: Contribution,
        during: &str,
    ) -> Result<Vec<Contribution>, CollectiveError> {
        let size = self.shared.size;
        let number = {
            let mut entered = self.entered.lock().unwrap_or_else(|e| e.into_inner());
            *entered += 1;
            *entered
        };
        let deadline = Instant::now() + self.shared.timeout;
        let mut round = self.lock();
        // Wait until the previous round is drained by every rank.
        round = self.wait(round, deadline, during, |r| r.number + 1 >= number)?;
        round.slots[self.rank] = Some(mine);
        self.shared.changed.notify_all();
        round = self.wait(round, deadline, during, |r| {
            r.number + 1 > number || r.slots.iter().all(Option::is_some)
        })?;
        let all: Vec<Contribution> = round.slots.iter().flatten().cloned().collect();
        round.done += 1;
        if round.done == size {
            // The last reader closes the round.
            round.done = 0;
            round.number += 1;
            round.slots.iter_mut().for_each(|s| *s = None);
            self.shared.changed.notify_all();
        }
        Ok(all)
    }

    /// Waits until `ready` holds, failing on a departed rank or at `deadline`.
    fn wait<'a>(
        &self,
        mut round: MutexGuard<'a, Round>,
        deadline: Instant,
        during: &str,
        ready: impl Fn(&Round) -> bool,
    ) -> Result<MutexGuard<'a, Round>, CollectiveError> {
        loop {
            // Ready first: a rank that read the last round and left must not fail the ranks still reading it.
            if ready(&round) {
                return Ok(round);
            }
            if let Some((failed, reason)) = &round.failed {
                return Err(CollectiveError::PeerFailed {
                    during: during.to_string(),
                    failed: *failed,
                    reason: reason.clone(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                let missing = (0..self.shared.size)
                    .filter(|&r| round.slots[r].is_none())
                    .collect();
                return Err(CollectiveError::Timeout {
                    during: during.to_string(),
                    rank: self.rank,
                    size: self.shared.size,
                    missing,
                    seconds: self.shared.timeout.as_secs(),
                });
            }
            round = self
                .shared
                .changed
                .wait_timeout(round, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for ThreadGroup {
    /// A member that leaves fails every collective still to come, so no rank waits out the timeout for it.
    fn drop(&mut self) {
        let mut round = self.lock();
        if round.failed.is_none() {
            let reason = if std::thread::panicking() {
                "its thread panicked"
            } else {
                "it left the group"
            };
            round.failed = Some((self.rank, reason.to_string()));
        }
        self.shared.changed.notify_all();
    }
}

/// The float types a contribution holds.
trait Element: Copy + std::ops::Add<Output = Self> + std::ops::Div<Output = Self> + From<u16> {
    fn wrap(values: Vec<Self>) -> Contribution;
    fn pick(c: &Contribution) -> Option<&[Self]>;
}

impl Element for f32 {
    fn wrap(values: Vec<f32>) -> Contribution {
        Contribution::F32(values)
    }

    fn pick(c: &Contribution) -> Option<&[f32]> {
        match c {
            Contribution::F32(v) => Some(v),
            Contribution::F64(_) => None,
        }
    }
}

impl Element for f64 {
    fn wrap(values: Vec<f64>) -> Contribution {
        Contribution::F64(values)
    }

    fn pick(c: &Contribution) -> Option<&[f64]> {
        match c {
            Contribution::F64(v) => Some(v),
            Contribution::F32(_) => None,
        }
    }
}

impl ThreadGroup {
    /// Exchanges `buf` with every rank; then `buf` := `combine(every rank's buffer, in rank order)`. A rank whose
    /// buffer has another length or dtype than rank 0's is an error on every rank.
    fn combine<T: Element>(
        &self,
        buf: &mut [T],
        during: &str,
        combine: impl FnOnce(&[&[T]], &mut [T]),
    ) -> Result<(), CollectiveError> {
        let all = self.exchange(T::wrap(buf.to_vec()), during)?;
        let mut parts: Vec<&[T]> = Vec::with_capacity(all.len());
        for (rank, c) in all.iter().enumerate() {
            match T::pick(c) {
                Some(p) if p.len() == buf.len() => parts.push(p),
                _ => {
                    return Err(CollectiveError::Mismatch {
                        during: during.to_string(),
                        rank,
                        expected: all[0].describe(),
                        got: c.describe(),
                    })
                }
            }
        }
        combine(&parts, buf);
        Ok(())
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce(
        &self,
        buf: CollectiveBuffer<'_>,
        op: ReduceOp,
        during: &str,
    ) -> Result<(), CollectiveError> {
        match buf {
            CollectiveBuffer::F32(b) => {
                self.combine(b, during, |p, out| reduce_in_rank_order(p, op, out))
            }
            CollectiveBuffer::F64(b) => {
                self.combine(b, during, |p, out| reduce_in_rank_order(p, op, out))
            }
        }
    }

    fn broadcast(&self, buf: CollectiveBuffer<'_>, during: &str) -> Result<(), CollectiveError> {
        match buf {
            CollectiveBuffer::F32(b) => self.combine(b, during, |p, out| out.copy_from_slice(p[0])),
            CollectiveBuffer::F64(b) => self.combine(b, during, |p, out| out.copy_from_slice(p[0])),
        }
    }
}
