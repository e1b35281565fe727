//! Data-parallel training steps: the gradients averaged across processes between the backward pass and the update
//! (SPEC §5, "Data-parallel steps"), one `all_reduce{mean}` per gradient or per bucket of gradients packed into one
//! buffer, as PyTorch's DDP does.
//!
//! The graph does not depend on the process count: `mean` divides by the group's size at run time, so one compiled
//! step runs on any number of ranks (and on one process, where every `all_reduce` is the identity, it *is* the
//! single-process step up to the identity copies).

use kiln_ir::{Builder, IrError, ReduceOp, Value};

/// How a data-parallel step reduces its gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DataParallel {
    /// Gradients are packed, in param order, into buckets of at most this many bytes, one `all_reduce` each (a
    /// gradient larger than that is a bucket alone). 0: one `all_reduce` per gradient.
    pub bucket_bytes: usize,
}

impl DataParallel {
    /// One `all_reduce` per gradient.
    pub fn per_gradient() -> DataParallel {
        DataParallel { bucket_bytes: 0 }
    }

    /// Buckets of at most `bytes` (PyTorch DDP's default is 25 MiB).
    pub fn bucketed(bytes: usize) -> DataParallel {
        DataParallel {
            bucket_bytes: bytes,
        }
    }
}

/// The group's mean of `v`.
pub(super) fn mean(b: &mut Builder, v: Value) -> Result<Value, IrError> {
    b.all_reduce(v, ReduceOp::Mean, 0)
}

/// The group's mean of each gradient, bucketed as `dp` says; the results in the order of `grads`.
pub(super) fn mean_of_gradients(
    b: &mut Builder,
    grads: &[Value],
    dp: &DataParallel,
) -> Result<Vec<Value>, IrError> {
    let mut out = Vec::with_capacity(grads.len());
    for bucket in buckets(b, grads, dp.bucket_bytes) {
        if let [g] = bucket {
            out.push(mean(b, *g)?);
            continue;
        }
        // Flatten, pack, reduce once, unpack: the values are those of one all_reduce per gradient, as each element
        // is reduced on its own.
        let flat: Vec<Value> = bucket
            .iter()
            .map(|&g| {
                let n = b.ty(g).numel();
                b.reshape(g, &[n])
            })
            .collect::<Result<_, _>>()?;
        let packed = b.concat(&flat, 0)?;
        let reduced = mean(b, packed)?;
        let mut start = 0;
        for &g in bucket {
            let dims = b.shape(g).to_vec();
            let n = b.ty(g).numel();
            let part = b.slice(reduced, &[start], &[start + n])?;
            out.push(b.reshape(part, &dims)?);
            start += n;
        }
    }
    Ok(out)
}

/// Consecutive runs of `grads` of at most `bucket_bytes` bytes each (at least one gradient each).
fn buckets<'g>(b: &Builder, grads: &'g [Value], bucket_bytes: usize) -> Vec<&'g [Value]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &g) in grads.iter().enumerate() {
        let size = b.ty(g).size_bytes();
        if i > start && (bucket_bytes == 0 || bytes + size > bucket_bytes) {
            out.push(&grads[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < grads.len() {
        out.push(&grads[start..]);
    }
    out
}
