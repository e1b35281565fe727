//! [`MpiGroup`]: the processes of an MPI job (`mpirun -np P …`) as a [`Collective`] (feature `mpi`, on rsmpi).
//!
//! Reductions gather every rank's buffer (`MPI_Iallgather`) and fold them in rank order on every rank
//! ([`reduce_in_rank_order`]), never `MPI_Allreduce`, whose order MPI leaves to the implementation: every rank then
//! gets bit-identical results. The communicator's error handler is `MPI_ERRORS_RETURN`, so a failed call is a
//! [`CollectiveError`], not an abort inside MPI; and each collective is non-blocking, polled until a deadline, so a
//! rank whose peer hangs reports a timeout instead of hanging. (A peer that *dies* makes `mpirun` end the job and
//! name the rank, as OpenMPI does by default.)
//!
//! rsmpi's safe collectives ignore MPI's return codes, so the calls here go through its raw bindings (`mpi::ffi`),
//! each checked.

use super::DEFAULT_TIMEOUT;
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
        })
    }

    /// [`MpiGroup::init`] with [`DEFAULT_TIMEOUT`], or `KILN_COLLECTIVE_TIMEOUT` seconds when set.
    pub fn init_default() -> Result<MpiGroup, CollectiveError> {
        let timeout = std::env::var("KILN_COLLECTIVE_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
        MpiGroup::init(timeout)
    }

    /// Starts a non-blocking collective with `start` and polls it until it completes or the timeout passes.
    fn complete(
        &self,
        during: &str,
        start: impl FnOnce(ffi::MPI_Comm, *mut ffi::MPI_Request) -> c_int,
    ) -> Result<(), CollectiveError> {
        let mpi = self.mpi.lock().unwrap_or_else(|e| e.into_inner());
        let mut request = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        check(during, start(mpi.comm, request.as_mut_ptr()))?;
        // SAFETY: the start call succeeded, so it wrote the request handle.
        let mut request = unsafe { request.assume_init() };
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_micros(1);
        loop {
            let mut done: c_int = 0;
            // SAFETY: `request` is the live request started above; MPI ignores the status we don't ask for.
            check(during, unsafe {
                ffi::MPI_Test(&mut request, &mut done, ffi::RSMPI_STATUS_IGNORE)
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
                        "rank {} of {}: not every rank arrived within {} s (a rank died or hung)",
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

    /// Every rank's `mine`, concatenated in rank order.
    fn gather<T: Copy + Default>(
        &self,
        mine: &[T],
        datatype: ffi::MPI_Datatype,
        during: &str,
    ) -> Result<Vec<T>, CollectiveError> {
        let count = c_int::try_from(mine.len()).map_err(|_| CollectiveError::Transport {
            during: during.to_string(),
            message: format!("{} elements exceed MPI's int count", mine.len()),
        })?;
        let mut all = vec![T::default(); mine.len() * self.size];
        // The gather is started and completed within `complete`, which keeps `mine` and `all` borrowed throughout.
        let (send, recv) = (mine.as_ptr(), all.as_mut_ptr());
        self.complete(during, |comm, request| {
            // SAFETY: `send` holds `count` elements of `datatype` and `recv` room for `count` from each of the
            // `size` ranks; both outlive the request, which `complete` waits for (or the process exits on its
            // error, see `complete`).
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
        Ok(all)
    }

    fn reduce<T>(
        &self,
        buf: &mut [T],
        datatype: ffi::MPI_Datatype,
        op: ReduceOp,
        during: &str,
    ) -> Result<(), CollectiveError>
    where
        T: Copy + Default + std::ops::Add<Output = T> + std::ops::Div<Output = T> + From<u16>,
    {
        let all = self.gather(buf, datatype, during)?;
        if buf.is_empty() {
            return Ok(());
        }
        let parts: Vec<&[T]> = all.chunks(buf.len()).collect();
        reduce_in_rank_order(&parts, op, buf);
        Ok(())
    }

    fn broadcast_from_zero<T>(
        &self,
        buf: &mut [T],
        datatype: ffi::MPI_Datatype,
        during: &str,
    ) -> Result<(), CollectiveError> {
        let count = c_int::try_from(buf.len()).map_err(|_| CollectiveError::Transport {
            during: during.to_string(),
            message: format!("{} elements exceed MPI's int count", buf.len()),
        })?;
        let ptr = buf.as_mut_ptr();
        self.complete(during, |comm, request| {
            // SAFETY: `ptr` holds `count` elements of `datatype` and outlives the request (as in `gather`).
            unsafe { ffi::MPI_Ibcast(ptr.cast::<c_void>(), count, datatype, 0, comm, request) }
        })
    }
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
