//! Collectives: what `all_reduce` (SPEC §3.12) means across processes, and the interface a runtime implements.
//!
//! [`Collective`] is a group of `size` processes (ranks `0..size`) running the same program; every rank calls the
//! same collectives in the same order. The meaning of a reduction is written once, in [`reduce_in_rank_order`]:
//! every implementation gathers all contributions and folds them in ascending rank order on every rank, so each rank
//! computes the same IEEE operations in the same order and gets bit-identical results, whatever the transport
//! (threads in one process, MPI). That costs bandwidth against a ring all-reduce (each rank receives `size - 1`
//! buffers instead of `2·(size-1)/size` of one); SPEC §3.12 says why reproducibility was chosen.
//!
//! The trait lives here, below the runtime, because the reference interpreter is the oracle and evaluates
//! `all_reduce` through it; the thread and MPI implementations are in `kiln-runtime`.

use std::fmt;

/// How `all_reduce` combines the ranks' values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReduceOp {
    /// `Σ_r x_r`, summed in ascending rank order.
    Sum,
    /// `(Σ_r x_r) / size`: the sum, then one division by the process count.
    Mean,
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 2] = [ReduceOp::Sum, ReduceOp::Mean];

    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
        }
    }

    pub fn from_name(name: &str) -> Option<ReduceOp> {
        ReduceOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A buffer a collective works on in place: the float dtypes `all_reduce` is defined on.
pub enum CollectiveBuffer<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
}

impl CollectiveBuffer<'_> {
    pub fn len(&self) -> usize {
        match self {
            CollectiveBuffer::F32(b) => b.len(),
            CollectiveBuffer::F64(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `"f32"` or `"f64"`, for errors about mismatched contributions.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            CollectiveBuffer::F32(_) => "f32",
            CollectiveBuffer::F64(_) => "f64",
        }
    }
}

/// Why a collective failed. Every rank that sees a failure returns it; none waits forever.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectiveError {
    /// A peer did not arrive within the timeout (it died, hung or took another path through the program).
    #[error("`{during}`: rank {rank} of {size} waited {seconds} s for rank(s) {missing:?}, which never arrived (a rank died or hung)")]
    Timeout {
        during: String,
        rank: usize,
        size: usize,
        missing: Vec<usize>,
        seconds: u64,
    },
    /// A peer failed (its process exited or reported an error) during the collective.
    #[error("`{during}`: rank {failed} failed: {reason}")]
    PeerFailed {
        during: String,
        failed: usize,
        reason: String,
    },
    /// The ranks called the collective with different buffers: their programs differ.
    #[error("`{during}`: rank {rank} contributed {got} but rank 0 contributed {expected}; every rank must run the same program")]
    Mismatch {
        during: String,
        rank: usize,
        expected: String,
        got: String,
    },
    /// The transport (MPI) reported an error.
    #[error("`{during}`: {message}")]
    Transport { during: String, message: String },
}

/// A group of processes that reduce and broadcast buffers together. Implementations return errors, never panic
/// or hang forever, when a peer is gone.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn size(&self) -> usize;

    /// Replaces `buf` on every rank by the reduction of every rank's `buf`, folded by [`reduce_in_rank_order`]
    /// (bit-identical on every rank). `during` names the node or step, for errors.
    fn all_reduce(
        &self,
        buf: CollectiveBuffer<'_>,
        op: ReduceOp,
        during: &str,
    ) -> Result<(), CollectiveError>;

    /// Replaces `buf` on every rank by rank 0's (initial parameters, so that every rank starts from the same ones).
    fn broadcast(&self, buf: CollectiveBuffer<'_>, during: &str) -> Result<(), CollectiveError>;
}

/// One process alone: `all_reduce` is the identity (a sum over one rank is its value, a mean divides by 1) and
/// `broadcast` keeps the buffer. What the interpreter and the executables use when given no group.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce(
        &self,
        _: CollectiveBuffer<'_>,
        _: ReduceOp,
        _: &str,
    ) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn broadcast(&self, _: CollectiveBuffer<'_>, _: &str) -> Result<(), CollectiveError> {
        Ok(())
    }
}

/// The one definition of a reduction's value: `out[i] = c_0[i] + c_1[i] + … + c_{P-1}[i]` added left to right in
/// rank order (starting from `c_0[i]`, not from 0, so `-0.0` survives a one-rank sum), then for `Mean` divided by
/// `P` (one correctly rounded division, not a multiplication by `1/P`, which would round twice). Every
/// implementation calls this with the contributions in rank order, on every rank.
pub fn reduce_in_rank_order<T>(contributions: &[&[T]], op: ReduceOp, out: &mut [T])
where
    T: Copy + std::ops::Add<Output = T> + std::ops::Div<Output = T> + From<u16>,
{
    let Some((first, rest)) = contributions.split_first() else {
        return;
    };
    out.copy_from_slice(first);
    for c in rest {
        for (o, &x) in out.iter_mut().zip(c.iter()) {
            *o = *o + x;
        }
    }
    if op == ReduceOp::Mean && contributions.len() > 1 {
        // Process counts fit u16 (65535 ranks) exactly in f32 and f64; `From<u16>` is what both floats implement.
        let p = T::from(contributions.len().min(u16::MAX as usize) as u16);
        for o in out.iter_mut() {
            *o = *o / p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_folds_in_rank_order_from_the_first_contribution() {
        // (1e8 + 1) + -1e8 = 0 in f32 (1 is lost), while 1e8 + (1 + -1e8) would be 0 too; the order below shows
        // the left fold: (a + b) + c.
        let (a, b, c) = ([1.0e8f32, -0.0], [1.0f32, -0.0], [-1.0e8f32, -0.0]);
        let mut out = [9.0f32; 2];
        reduce_in_rank_order(&[&a, &b, &c], ReduceOp::Sum, &mut out);
        assert_eq!(out[0], (1.0e8f32 + 1.0) + -1.0e8);
        assert!(
            out[1] == 0.0 && out[1].is_sign_negative(),
            "-0 + -0 + -0 = -0"
        );
    }

    #[test]
    fn mean_divides_the_sum_once() {
        let (a, b, c) = ([1.0f64], [2.0f64], [4.0f64]);
        let mut out = [0.0f64];
        reduce_in_rank_order(&[&a, &b, &c], ReduceOp::Mean, &mut out);
        assert_eq!(out[0], 7.0 / 3.0);
    }
}
