//! Lookups by index: `take` (embeddings, `index_select`) on the `gather` primitive, and `scatter_add`, its transpose,
//! as a reduction over a comparison with `iota` (no atomics: the sum runs in index order on every backend).

use super::Result;
use crate::builder::{Builder, Value};
use crate::error::IrError;
use crate::op::CmpDir;
use crate::types::{DType, TensorType};

fn build_err(op: &str, message: String) -> IrError {
    IrError::Build {
        op: op.into(),
        message,
    }
}

impl Builder {
    /// NumPy's `take(x, idx, axis)`: `x` `[A.., n, B..]` and an i32 index of any shape `I` give `[A.., I.., B..]`,
    /// `out[a, i, b] = x[a, idx[i], b]`; an index outside `0..n` reads 0 (SPEC §4 `take`). Embedding lookup is
    /// `take(table, ids, 0)`.
    pub fn take(&mut self, x: Value, idx: Value, axis: isize) -> Result<Value> {
        let axis = self.normalize_axis("take", x, axis)?;
        let (xt, it) = (self.ty(x).clone(), self.ty(idx).clone());
        if it.dtype != DType::I32 {
            return Err(build_err("take", format!("index must be i32, got {it}")));
        }
        let (before, after) = (&xt.dims()[..axis], &xt.dims()[axis + 1..]);
        // A scalar index takes one slab: gathered as a one-element index, then that dim is dropped.
        let index_dims: Vec<usize> = if it.rank() == 0 {
            vec![1]
        } else {
            it.dims().to_vec()
        };
        let k = index_dims.len();
        let shape_with = |mid: &[usize]| -> Vec<usize> {
            before.iter().chain(mid).chain(after).copied().collect()
        };
        let out_dims = shape_with(&index_dims);
        // The index, placed at the axis and broadcast over the dims before and after it.
        let ones = |n: usize| vec![1; n];
        let idx_placed = {
            let dims: Vec<usize> = ones(axis)
                .into_iter()
                .chain(index_dims.iter().copied())
                .chain(ones(after.len()))
                .collect();
            let r = self.reshape(idx, &dims)?;
            self.broadcast(r, &out_dims)?
        };
        // `x` with the index's extra dims inserted after the axis, broadcast over them (views: no copy).
        let x_placed = if k == 1 {
            x
        } else {
            let mut mid = vec![xt.dims()[axis]];
            mid.extend(ones(k - 1));
            let r = self.reshape(x, &shape_with(&mid))?;
            let mut mid = vec![xt.dims()[axis]];
            mid.extend_from_slice(&index_dims[1..]);
            self.broadcast(r, &shape_with(&mid))?
        };
        let out = self.gather(x_placed, idx_placed, axis as isize)?;
        if it.rank() == 0 {
            let dims = shape_with(&[]);
            return self.reshape(out, &dims);
        }
        Ok(out)
    }

    /// Rows of `table` `[V, D..]` by i32 `ids` of any shape: `[ids.., D..]` (PyTorch's `nn.functional.embedding`;
    /// an id outside `0..V` gives a zero row, SPEC §4). Its gradient is a `scatter_add` into the table's shape.
    pub fn embedding(&mut self, table: Value, ids: Value) -> Result<Value> {
        if self.ty(table).rank() == 0 {
            return Err(build_err(
                "embedding",
                format!("the table must have rank >= 1, got {}", self.ty(table)),
            ));
        }
        self.take(table, ids, 0)
    }

    /// The transpose of `gather`: `src` and i32 `idx` of one shape `S` give `S` with `S[axis] = size`, where
    /// `out[.., i, ..] = Σ_j [idx[.., j, ..] = i] · src[.., j, ..]`, summed in increasing `j` (deterministic on every
    /// backend and thread count); an index outside `0..size` adds nothing. Expanded as a `reduce_sum` over `j` of
    /// `select(idx == iota, src, 0)` on a `[.., size, S[axis], ..]` view, which fusion computes without storing it:
    /// `size · numel(S)` operations.
    pub fn scatter_add(
        &mut self,
        src: Value,
        idx: Value,
        axis: isize,
        size: usize,
    ) -> Result<Value> {
        let axis = self.normalize_axis("scatter_add", src, axis)?;
        let (st, it) = (self.ty(src).clone(), self.ty(idx).clone());
        if it.dtype != DType::I32 || it.dims() != st.dims() || !st.dtype.is_numeric() {
            return Err(build_err(
                "scatter_add",
                format!(
                    "needs a numeric source and an i32 index of the same shape, got {st} and {it}"
                ),
            ));
        }
        let mut keep_dims = st.dims().to_vec();
        keep_dims.insert(axis, 1);
        let mut wide = st.dims().to_vec();
        wide.insert(axis, size);
        let spread = |b: &mut Builder, v: Value| -> Result<Value> {
            let r = b.reshape(v, &keep_dims)?;
            b.broadcast(r, &wide)
        };
        let idx_wide = spread(self, idx)?;
        let src_wide = spread(self, src)?;
        let target = self.iota(TensorType::new(DType::I32, wide.clone()), axis)?;
        let hit = self.compare(CmpDir::Eq, idx_wide, target)?;
        let zero = self.zeros_like(src_wide)?;
        let terms = self.select(hit, src_wide, zero)?;
        self.reduce_sum(terms, &[axis as isize + 1], false)
    }
}
