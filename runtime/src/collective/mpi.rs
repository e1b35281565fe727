//! [`MpiGroup`]: the processes of an MPI job (`mpirun -np P …`) as a [`Collective`] (feature `mpi`, on rsmpi).
//!
//! Reductions never call `MPI_Allreduce`, whose order MPI leaves to the implementation. They either gather every
//! rank's buffer (`MPI_Iallgather`) and fold them in rank order on every rank, or run a pipelined chain: rank 0
//! sends its buffer to rank 1 in segments of [`SEGMENT`] elements, each rank adds its own contribution to every
//! segment as it arrives and passes it on, so the last rank holds `((c_0 + c_1) + c_2) + …`, exactly
//! [`reduce_in_rank_order`]'s fold (and its one division for a mean); it then broadcasts the result (`MPI_Ibcast`, a
//! copy). Every rank gets bit-identical results, the same as [`super::ThreadGroup`]'s. Each rank receives and sends
//! about `S` bytes in the chain and `S` in the broadcast, like a ring all-reduce's `2(P−1)/P·S` and unlike an
//! all-gather's `(P−1)·S`; the segments overlap the ranks' work down the chain. The price is latency: the first
//! segment passes `P − 1` ranks before the last one starts adding (a ring's latency term, `2(P−1)·α`, is the
//! same order). [`Algorithm::Auto`] picks the chain from 4 ranks and one segment on, the gather below. The
//! communicator's error handler is `MPI_ERRORS_RETURN`, so a failed call is a
//! [`CollectiveError`], not an abort inside MPI; and each collective is non-blocking, polled until a deadline, so a
//! rank whose peer hangs reports a timeout instead of hanging. (A peer that *dies* makes `mpirun` end the job and
//! name the rank, as OpenMPI does by default.)
//!
//! rsmpi's safe collectives ignore MPI's return codes, so the calls here go through its raw bindings (`mpi::ffi`),
//! each checked.

use super::DEFAULT_TIMEOUT;
#[cfg(doc)]
use kiln_ir::collective::reduce_in_rank_order;
use kiln_ir::{Collective, CollectiveBuffer, CollectiveError, ReduceOp};
use mpi::environment::Universe;
use mpi::ffi;
use mpi::Threading;
use std::os::raw::{c_int, c_void};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The MPI state, used by one thread at a time (MPI is initialized `MPI_THREAD_SERIALIZED`).
struct Mpi {
    /// Finalizes MPI when dropped.
    _universe: Universe,
    comm: ffi::MPI_Comm,
}

// SAFETY: `Mpi` holds MPI handles (raw pointers in OpenMPI) that any thread may use as long as calls are
// serialized (`MPI_THREAD_SERIALIZED`, checked at init): `MpiGroup` keeps it behind a mutex, so one thread at a
// time makes MPI calls.
unsafe impl Send for Mpi {}

/// This process as one rank of the MPI job's world.
pub struct MpiGroup {
    mpi: Mutex<Mpi>,
    rank: usize,
    size: usize,
    timeout: Duration,
    algorithm: Algorithm,
}

/// How [`MpiGroup`] all-reduces (module doc); both fold in rank order and give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Gather every buffer on every rank: one collective, `(P−1)·S` bytes received per rank.
    Gather,
    /// The pipelined chain and a broadcast: about `2·S` bytes per rank, `P − 1` hops of latency.
    Chain,
    /// The chain from 4 ranks and [`SEGMENT`] elements on, where it moves fewer bytes per rank than the gather;
    /// else the gather (at 2 ranks the chain's two phases take twice the gather's one exchange). The default;
    /// `KILN_MPI_ALLREDUCE=gather|chain` forces one.
    Auto,
}

impl MpiGroup {
    /// Initializes MPI (once per process) with `timeout` per collective; the world communicator's errors return.
    pub fn init(timeout: Duration) -> Result<MpiGroup, CollectiveError> {
        let fail = |message: String| CollectiveError::Transport {
            during: "MPI_Init".into(),
            message,
        };
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| fail("MPI is already initialized in this process".into()))?;
        if threading < Threading::Serialized {
            return Err(fail(format!(
                "the MPI library offers {threading:?} threading, kiln needs Serialized"
            )));
        }
        // SAFETY: reading the world communicator handle rsmpi exports; MPI is initialized.
        let comm = unsafe { ffi::RSMPI_COMM_WORLD };
        let (mut rank, mut size): (c_int, c_int) = (0, 0);
        // SAFETY: MPI is initialized; `comm` is the world communicator and the error handler a predefined one.
        check("MPI_Comm_set_errhandler", unsafe {
            ffi::MPI_Comm_set_errhandler(comm, ffi::RSMPI_ERRORS_RETURN)
        })?;
        // SAFETY: as above; `rank` and `size` are valid for writes.
        check("MPI_Comm_rank", unsafe {
            ffi::MPI_Comm_rank(comm, &mut rank)
        })?;
        // SAFETY: as above.
        check("MPI_Comm_size", unsafe {
            ffi::MPI_Comm_size(comm, &mut size)
        })?;
        Ok(MpiGroup {
            mpi: Mutex::new(Mpi {
                _universe: universe,
                comm,
            }),
            rank: rank as usize,
            size: size as usize,
            timeout,
            algorithm: Algorithm::Auto,
        })
    }

    /// Chooses how all-reduces run (every rank must choose the same; the results are the same bits either way).
    pub fn set_algorithm(&mut self, algorithm: Algorithm) {
        self.algorithm = algorithm;
    }

    /// [`MpiGroup::init`] with [`DEFAULT_TIMEOUT`], or `KILN_COLLECTIVE_TIMEOUT` seconds when set, and the
    /// all-reduce algorithm `KILN_MPI_ALLREDUCE` names (`gather`, `chain` or `auto`, the default).
    pub fn init_default() -> Result<MpiGroup, CollectiveError> {
        let timeout = std::env::var("KILN_COLLECTIVE_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
        let mut group = MpiGroup::init(timeout)?;
        match std::env::var("KILN_MPI_ALLREDUCE").as_deref() {
            Ok("gather") => group.set_algorithm(Algorithm::Gather),
            Ok("chain") => group.set_algorithm(Algorithm::Chain),
            Ok("auto") | Ok("") | Err(_) => {}
            Ok(other) => {
                return Err(CollectiveError::Transport {
                    during: "MPI_Init".into(),
                    message: format!("KILN_MPI_ALLREDUCE={other}: expected gather, chain or auto"),
                })
            }
        }
        Ok(group)
    }

    /// Starts a non-blocking call with `start`: its request.
    fn start(
        &self,
        mpi: &Mpi,
        during: &str,
        start: impl FnOnce(ffi::MPI_Comm, *mut ffi::MPI_Request) -> c_int,
    ) -> Result<ffi::MPI_Request, CollectiveError> {
        let mut request = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        check(during, start(mpi.comm, request.as_mut_ptr()))?;
        // SAFETY: the start call succeeded, so it wrote the request handle.
        Ok(unsafe { request.assume_init() })
    }

    /// Polls `request` until it completes or `deadline` passes; `peer` says whom it waits for, for the error.
    fn wait(
        &self,
        request: &mut ffi::MPI_Request,
        deadline: Instant,
        during: &str,
        peer: &str,
    ) -> Result<(), CollectiveError> {
        let mut pause = Duration::from_micros(1);
        loop {
            let mut done: c_int = 0;
            // SAFETY: `request` is a live request started by `start`; MPI ignores the status we don't ask for.
            check(during, unsafe {
                ffi::MPI_Test(request, &mut done, ffi::RSMPI_STATUS_IGNORE)
            })?;
            if done != 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                // The request stays pending: the process is expected to exit with this error (its buffers are
                // leaked rather than freed under MPI).
                return Err(CollectiveError::Transport {
                    during: during.to_string(),
                    message: format!(
                        "rank {} of {}: waited {} s for {peer}, which never arrived (a rank died or hung)",
                        self.rank,
                        self.size,
                        self.timeout.as_secs()
                    ),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// The sum (or mean) of every rank's `buf`, folded in rank order, in `buf` on every rank: by the chain or the
    /// gather (module doc), which give the same bits.
    fn reduce<T: Element>(
        &self,
        buf: &mut [T],
        datatype: ffi::MPI_Datatype,
        op: ReduceOp,
        during: &str,
    ) -> Result<(), CollectiveError> {
        // One rank's sum is its buffer, and its mean too (`reduce_in_rank_order` divides only for P > 1).
        if self.size == 1 || buf.is_empty() {
            return Ok(());
        }
        let chain = match self.algorithm {
            Algorithm::Chain => true,
            Algorithm::Gather => false,
            Algorithm::Auto => self.size >= 4 && buf.len() >= SEGMENT,
        };
        if chain {
            self.reduce_by_chain(buf, datatype, op, during)
        } else {
            self.reduce_by_gather(buf, datatype, op, during)
        }
    }

    /// [`MpiGroup::reduce`] by gathering every rank's buffer (`MPI_Iallgather`) and folding them on every rank.
    fn reduce_by_gather<T: Element>(
        &self,
        buf: &mut [T],
        datatype: ffi::MPI_Datatype,
        op: ReduceOp,
        during: &str,
    ) -> Result<(), CollectiveError> {
        let count = mpi_count(buf.len(), during)?;
        let mut all = vec![T::default(); buf.len() * self.size];
        {
            let mpi = self.mpi.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = Instant::now() + self.timeout;
            let (send, recv) = (buf.as_ptr(), all.as_mut_ptr());
            let mut request = self.start(&mpi, during, |comm, request| {
                // SAFETY: `send` holds `count` elements of `datatype` and `recv` room for `count` from each of the
                // `size` ranks; both outlive the request, which is waited for below (or the process exits on its
                // error).
                unsafe {
                    ffi::MPI_Iallgather(
                        send.cast::<c_void>(),
                        count,
                        datatype,
                        recv.cast::<c_void>(),
                        count,
                        datatype,
                        comm,
                        request,
                    )
                }
            })?;
            self.wait(&mut request, deadline, during, "every rank's contribution")?;
        }
        let parts: Vec<&[T]> = all.chunks(buf.len()).collect();
        kiln_ir::collective::reduce_in_rank_order(&parts, op, buf);
        Ok(())
    }

    /// [`MpiGroup::reduce`] by the chain of the module doc.
    fn reduce_by_chain<T: Element>(
        &self,
        buf: &mut [T],
        datatype: ffi::MPI_Datatype,
        op: ReduceOp,
        during: &str,
    ) -> Result<(), CollectiveError> {
        let count = mpi_count(buf.len(), during)?;
        let mpi = self.mpi.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + self.timeout;
        let (rank, last) = (self.rank, self.size - 1);
        let previous = format!("rank {}'s partial sums", rank.wrapping_sub(1));
        let mut incoming = match rank {
            0 => Vec::new(),
            _ => vec![T::default(); SEGMENT.min(buf.len())],
        };
        let mut sends = Vec::new();
        for segment in buf.chunks_mut(SEGMENT) {
            // `SEGMENT` fits an MPI count.
            let n = segment.len() as c_int;
            if rank > 0 {
                let got = incoming.as_mut_ptr();
                let mut request = self.start(&mpi, during, |comm, request| {
                    // SAFETY: `got` has room for `n` elements of `datatype` and is not touched until the request
                    // completes (`wait` below, or the process exits on its error).
                    unsafe {
                        ffi::MPI_Irecv(
                            got.cast(),
                            n,
                            datatype,
                            rank as c_int - 1,
                            CHAIN_TAG,
                            comm,
                            request,
                        )
                    }
                })?;
                self.wait(&mut request, deadline, during, &previous)?;
                for (mine, &sum) in segment.iter_mut().zip(&incoming) {
                    *mine = sum + *mine;
                }
            }
            if rank < last {
                let out = segment.as_ptr();
                sends.push(self.start(&mpi, during, |comm, request| {
                    // SAFETY: `out` holds `n` elements of `datatype`; this segment of `buf` is not written again
                    // until every send has completed (the waits below come before the division and the
                    // broadcast), and `buf` outlives them.
                    unsafe {
                        ffi::MPI_Isend(
                            out.cast(),
                            n,
                            datatype,
                            rank as c_int + 1,
                            CHAIN_TAG,
                            comm,
                            request,
                        )
                    }
                })?);
            }
        }
        let next = format!("rank {} to take the partial sums", rank + 1);
        for mut send in sends {
            self.wait(&mut send, deadline, during, &next)?;
        }
        if rank == last && op == ReduceOp::Mean {
            // As `reduce_in_rank_order`: one correctly rounded division by P.
            let p = T::from(self.size.min(u16::MAX as usize) as u16);
            buf.iter_mut().for_each(|x| *x = *x / p);
        }
        let ptr = buf.as_mut_ptr();
        let mut request = self.start(&mpi, during, |comm, request| {
            // SAFETY: `ptr` holds `count` elements of `datatype` and outlives the request, which is waited for
            // below (or the process exits on its error).
            unsafe { ffi::MPI_Ibcast(ptr.cast(), count, datatype, last as c_int, comm, request) }
        })?;
        self.wait(
            &mut request,
            deadline,
            during,
            &format!("the sums broadcast from rank {last}"),
        )
    }

    fn broadcast_from_zero<T>(
        &self,
        buf: &mut [T],
        datatype: ffi::MPI_Datatype,
        during: &str,
    ) -> Result<(), CollectiveError> {
        let count = mpi_count(buf.len(), during)?;
        let mpi = self.mpi.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + self.timeout;
        let ptr = buf.as_mut_ptr();
        let mut request = self.start(&mpi, during, |comm, request| {
            // SAFETY: `ptr` holds `count` elements of `datatype` and outlives the request, which is waited for
            // below (or the process exits on its error).
            unsafe { ffi::MPI_Ibcast(ptr.cast::<c_void>(), count, datatype, 0, comm, request) }
        })?;
        self.wait(&mut request, deadline, during, "the broadcast from rank 0")
    }
}

/// Elements per message of a reduction's chain: large enough to amortize a message's latency, small enough that
/// the ranks down the chain add one segment while the next is on its way.
pub const SEGMENT: usize = 1 << 16;

/// The tag of the chain's messages (MPI keeps messages between two ranks in order, so one tag serves all).
const CHAIN_TAG: c_int = 17;

/// What a reduction adds: f32 and f64 (`reduce_in_rank_order`'s bounds, and a default for scratch).
trait Element:
    Copy + Default + std::ops::Add<Output = Self> + std::ops::Div<Output = Self> + From<u16>
{
}

impl<T> Element for T where
    T: Copy + Default + std::ops::Add<Output = T> + std::ops::Div<Output = T> + From<u16>
{
}

/// `len` as an MPI element count, or an error naming it.
fn mpi_count(len: usize, during: &str) -> Result<c_int, CollectiveError> {
    c_int::try_from(len).map_err(|_| CollectiveError::Transport {
        during: during.to_string(),
        message: format!("{len} elements exceed MPI's int count"),
    })
}

/// An MPI return code as a result, with MPI's own message.
fn check(during: &str, code: c_int) -> Result<(), CollectiveError> {
    if code == ffi::MPI_SUCCESS as c_int {
        return Ok(());
    }
    let mut text = vec![0u8; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: `text` has room for MPI_MAX_ERROR_STRING characters, as MPI_Error_string requires.
    unsafe { ffi::MPI_Error_string(code, text.as_mut_ptr().cast(), &mut len) };
    text.truncate(len.clamp(0, ffi::MPI_MAX_ERROR_STRING as c_int) as usize);
    Err(CollectiveError::Transport {
        during: during.to_string(),
        message: format!("MPI error {code}: {}", String::from_utf8_lossy(&text)),
    })
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce(
        &self,
        buf: CollectiveBuffer<'_>,
        op: ReduceOp,
        during: &str,
    ) -> Result<(), CollectiveError> {
        match buf {
            // SAFETY: reading a predefined datatype handle that rsmpi exports.
            CollectiveBuffer::F32(b) => self.reduce(b, unsafe { ffi::RSMPI_FLOAT }, op, during),
            // SAFETY: as for f32.
            CollectiveBuffer::F64(b) => self.reduce(b, unsafe { ffi::RSMPI_DOUBLE }, op, during),
        }
    }

    fn broadcast(&self, buf: CollectiveBuffer<'_>, during: &str) -> Result<(), CollectiveError> {
        match buf {
            CollectiveBuffer::F32(b) => {
                // SAFETY: reading a predefined datatype handle that rsmpi exports.
                self.broadcast_from_zero(b, unsafe { ffi::RSMPI_FLOAT }, during)
            }
            CollectiveBuffer::F64(b) => {
                // SAFETY: as for f32.
                self.broadcast_from_zero(b, unsafe { ffi::RSMPI_DOUBLE }, during)
            }
        }
    }
}
