//! The index arithmetic of movement ops, reductions and matmul, written once and generic over the element type.
//!
//! Transpose, broadcast and slice are all a [`StridedView`] of the operand: result element `i` (a multi-index)
//! reads operand element `offset + Σ_k i_k * strides[k]`. A reduction is a view that puts the kept axes first and
//! the reduced axes last, followed by a fold over each row.

use super::number::Number;
use crate::op::BinaryOp;

/// A row-major walk over `dims` that reads the source at `offset + Σ_k i_k * strides[k]`.
#[derive(Clone, Debug)]
pub(super) struct StridedView {
    pub dims: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

impl StridedView {
    /// `out[i] = src[j]` with `j[perm[k]] = i_k`: result dim k is source dim `perm[k]`.
    pub fn transpose(src_dims: &[usize], perm: &[usize]) -> StridedView {
        let src_strides = row_major_strides(src_dims);
        StridedView {
            dims: perm.iter().map(|&p| src_dims[p]).collect(),
            strides: perm.iter().map(|&p| src_strides[p]).collect(),
            offset: 0,
        }
    }

    /// NumPy broadcast: dims aligned from the right; a source dim of 1 (or a missing leading dim) is read with
    /// stride 0.
    pub fn broadcast(src_dims: &[usize], to: &[usize]) -> StridedView {
        let src_strides = row_major_strides(src_dims);
        let lead = to.len() - src_dims.len();
        let strides = (0..to.len())
            .map(|k| match k.checked_sub(lead) {
                Some(j) if src_dims[j] != 1 => src_strides[j],
                _ => 0,
            })
            .collect();
        StridedView {
            dims: to.to_vec(),
            strides,
            offset: 0,
        }
    }

    /// The box `[start, end)` (unit stride).
    pub fn slice(src_dims: &[usize], start: &[usize], end: &[usize]) -> StridedView {
        let strides = row_major_strides(src_dims);
        StridedView {
            dims: start.iter().zip(end).map(|(s, e)| e - s).collect(),
            offset: start.iter().zip(&strides).map(|(s, st)| s * st).sum(),
            strides,
        }
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The viewed elements in row-major order of the view's dims.
    pub fn gather<T: Copy>(&self, src: &[T]) -> Vec<T> {
        let n = self.numel();
        let mut out = Vec::with_capacity(n);
        let mut index = vec![0usize; self.dims.len()];
        let mut at = self.offset;
        for _ in 0..n {
            out.push(src[at]);
            // Advance the multi-index like an odometer, keeping `at` in step.
            for k in (0..self.dims.len()).rev() {
                index[k] += 1;
                at += self.strides[k];
                if index[k] < self.dims[k] {
                    break;
                }
                at -= self.strides[k] * self.dims[k];
                index[k] = 0;
            }
        }
        out
    }
}

pub(super) fn row_major_strides(dims: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * dims[k + 1];
    }
    strides
}

/// Folds `src` (of shape `dims`) over the sorted `axes` with `step`, result in row-major order of the kept axes.
///
/// Each result element starts from the first of its reduced elements and folds the rest in row-major order of the
/// reduced indices; when the reduced extent is 0 it is `empty`. Reducing over no axes therefore returns `src` itself.
pub(super) fn reduce<T: Number>(
    src: &[T],
    dims: &[usize],
    axes: &[usize],
    empty: T,
    step: impl Fn(T, T) -> T,
) -> Vec<T> {
    let kept = (0..dims.len()).filter(|k| !axes.contains(k));
    let perm: Vec<usize> = kept.chain(axes.iter().copied()).collect();
    let rows = StridedView::transpose(dims, &perm).gather(src);
    let inner: usize = axes.iter().map(|&a| dims[a]).product();
    let outer: usize = dims
        .iter()
        .enumerate()
        .filter(|(k, _)| !axes.contains(k))
        .map(|(_, &d)| d)
        .product();
    if inner == 0 {
        return vec![empty; outer];
    }
    rows.chunks(inner)
        .map(|row| row[1..].iter().fold(row[0], |acc, &x| step(acc, x)))
        .collect()
}

/// Batched `[..., m, k] x [..., k, n]`: `c[b, i, j] = Σ_k a[b, i, k] * b[b, k, j]`, accumulated from 0 in the dtype
/// in increasing `k` (an i-k-j loop).
pub(super) fn matmul<T: Number>(a: &[T], b: &[T], a_dims: &[usize], b_dims: &[usize]) -> Vec<T> {
    let r = a_dims.len();
    let (m, k, n) = (a_dims[r - 2], a_dims[r - 1], b_dims[r - 1]);
    let batch: usize = a_dims[..r - 2].iter().product();
    let (add, mul) = (T::step(BinaryOp::Add), T::step(BinaryOp::Mul));
    let mut c = vec![T::ZERO; batch * m * n];
    for bi in 0..batch {
        let a = &a[bi * m * k..(bi + 1) * m * k];
        let b = &b[bi * k * n..(bi + 1) * k * n];
        let c = &mut c[bi * m * n..(bi + 1) * m * n];
        for i in 0..m {
            let c_row = &mut c[i * n..(i + 1) * n];
            for p in 0..k {
                let a_ip = a[i * k + p];
                let b_row = &b[p * n..(p + 1) * n];
                for (c_ij, &b_pj) in c_row.iter_mut().zip(b_row) {
                    *c_ij = add(*c_ij, mul(a_ip, b_pj));
                }
            }
        }
    }
    c
}

/// Operands (each with its dims) joined along `axis`.
pub(super) fn concat<T: Copy>(parts: &[(&[T], &[usize])], axis: usize) -> Vec<T> {
    let Some((_, first_dims)) = parts.first() else {
        return Vec::new();
    };
    let outer: usize = first_dims[..axis].iter().product();
    let mut out = Vec::with_capacity(parts.iter().map(|(data, _)| data.len()).sum());
    for o in 0..outer {
        for (data, dims) in parts {
            let chunk: usize = dims[axis..].iter().product();
            out.extend_from_slice(&data[o * chunk..(o + 1) * chunk]);
        }
    }
    out
}

/// For each element of `src_dims` padded by `low`/`high`, in row-major order: the source element it holds, or
/// `None` for padding.
pub(super) fn pad_sources(src_dims: &[usize], low: &[usize], high: &[usize]) -> Vec<Option<usize>> {
    let dims: Vec<usize> = (0..src_dims.len())
        .map(|d| src_dims[d] + low[d] + high[d])
        .collect();
    let strides = row_major_strides(src_dims);
    let n: usize = dims.iter().product();
    let mut index = vec![0usize; dims.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut at = Some(0);
        for d in 0..dims.len() {
            let inside = index[d].checked_sub(low[d]).filter(|&i| i < src_dims[d]);
            at = at.zip(inside).map(|(a, i)| a + i * strides[d]);
        }
        out.push(at);
        for k in (0..dims.len()).rev() {
            index[k] += 1;
            if index[k] < dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

/// For each element of a `gather` along `axis` by `idx` (shaped `idx_dims`) from `src_dims`, in row-major order: the
/// source element it reads, or `None` where the index is outside `0..src_dims[axis]` (which reads 0, SPEC §3.11).
pub(super) fn gather_sources(
    src_dims: &[usize],
    idx_dims: &[usize],
    idx: &[i32],
    axis: usize,
) -> Vec<Option<usize>> {
    let strides = row_major_strides(src_dims);
    let mut index = vec![0usize; idx_dims.len()];
    let mut out = Vec::with_capacity(idx.len());
    for &i in idx {
        let at = usize::try_from(i)
            .ok()
            .filter(|&i| i < src_dims[axis])
            .map(|i| {
                (0..idx_dims.len())
                    .map(|d| if d == axis { i } else { index[d] } * strides[d])
                    .sum()
            });
        out.push(at);
        for k in (0..idx_dims.len()).rev() {
            index[k] += 1;
            if index[k] < idx_dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

impl StridedView {
    /// `windows`: `[lead.., n..] -> [lead.., o.., k..]`, reading `src[l, o·stride + a·dilation]`.
    pub fn windows(
        src_dims: &[usize],
        window: &[usize],
        stride: &[usize],
        dilation: &[usize],
    ) -> StridedView {
        let src_strides = row_major_strides(src_dims);
        let lead = src_dims.len() - window.len();
        let mut dims = src_dims[..lead].to_vec();
        let mut strides = src_strides[..lead].to_vec();
        for d in 0..window.len() {
            let n = src_dims[lead + d];
            dims.push((n - (dilation[d] * (window[d] - 1) + 1)) / stride[d] + 1);
            strides.push(stride[d] * src_strides[lead + d]);
        }
        for d in 0..window.len() {
            dims.push(window[d]);
            strides.push(dilation[d] * src_strides[lead + d]);
        }
        StridedView {
            dims,
            strides,
            offset: 0,
        }
    }
}

/// `overlap_add`: `src` of shape `[lead.., o.., k..]` summed into `[lead.., size..]`. Each result element folds the
/// window elements `a` (row-major) that land on it, where a window position that lands on no `o` contributes 0: the
/// order and the zeros of the compiled loop (`reduce.sum` over `a` of a guarded load).
pub(super) fn overlap_add<T: Number>(
    src: &[T],
    src_dims: &[usize],
    size: &[usize],
    stride: &[usize],
    dilation: &[usize],
) -> Vec<T> {
    let s = size.len();
    let lead = src_dims.len() - 2 * s;
    let src_strides = row_major_strides(src_dims);
    let (outs, window) = (&src_dims[lead..lead + s], &src_dims[lead + s..]);
    let mut dims = src_dims[..lead].to_vec();
    dims.extend_from_slice(size);
    let n: usize = dims.iter().product();
    let taps: usize = window.iter().product();
    let add = T::step(BinaryOp::Add);
    let mut out = Vec::with_capacity(n);
    let mut y = vec![0usize; dims.len()];
    let mut a = vec![0usize; s];
    for _ in 0..n {
        let base: usize = (0..lead).map(|d| y[d] * src_strides[d]).sum();
        let mut acc: Option<T> = None;
        a.iter_mut().for_each(|x| *x = 0);
        for _ in 0..taps {
            let mut at = Some(base);
            for d in 0..s {
                let o = (y[lead + d])
                    .checked_sub(a[d] * dilation[d])
                    .filter(|t| t % stride[d] == 0)
                    .map(|t| t / stride[d])
                    .filter(|&o| o < outs[d]);
                at = at.zip(o).map(|(at, o)| {
                    at + o * src_strides[lead + d] + a[d] * src_strides[lead + s + d]
                });
            }
            let v = at.map_or(T::ZERO, |i| src[i]);
            acc = Some(acc.map_or(v, |acc| add(acc, v)));
            for k in (0..s).rev() {
                a[k] += 1;
                if a[k] < window[k] {
                    break;
                }
                a[k] = 0;
            }
        }
        out.push(acc.unwrap_or(T::ZERO));
        for k in (0..dims.len()).rev() {
            y[k] += 1;
            if y[k] < dims[k] {
                break;
            }
            y[k] = 0;
        }
    }
    out
}
