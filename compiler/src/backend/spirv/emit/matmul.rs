//! Matmul kernels: the per-point dot product and the tiled shader ([`Plan::Tiled`](super::plan::Plan::Tiled)); see
//! "Matmuls" in the parent module doc.

use super::{Emitter, Result};
use crate::kernel::{BufferId, Loop, MatmulKernel, Var};
use kiln_ir::{BinaryOp, DType};
use kiln_runtime::vulkan::DeviceLimits;
use rspirv::spirv::{BuiltIn, Op, Word};

/// The side of a matmul tile: a workgroup computes a `TILE × TILE` block of C.
pub(super) const TILE: u32 = 16;

/// A tiled matmul's workgroup counts: column blocks, row blocks, batch points; `None` if one exceeds the device's
/// `maxComputeWorkGroupCount` in its dimension (or a side is empty).
pub(super) fn tiled_groups(m: &MatmulKernel, limits: &DeviceLimits) -> Option<[u32; 3]> {
    let batch: u64 = m.batch().iter().map(|&b| b as u64).product();
    let counts = [
        (m.n() as u64).div_ceil(TILE as u64),
        (m.m() as u64).div_ceil(TILE as u64),
        batch,
    ];
    counts
        .iter()
        .zip(limits.max_workgroups)
        .all(|(&c, max)| (1..=max as u64).contains(&c))
        .then(|| counts.map(|c| c as u32))
}

impl Emitter<'_> {
    /// `Σ_l a[β, i, l] · b[β, l, j]` for the current point, accumulated in the dtype from 0.
    pub(super) fn matmul_dot(&mut self, m: &MatmulKernel) -> Result<Word> {
        let ty = self.ty(m.dtype);
        let zero = self.typed_const(m.dtype, 0.0);
        let acc = self.function_var(ty);
        self.store_var(acc, zero)?;
        let rank = m.parallel.len();
        let point: Vec<Word> = m.parallel.iter().map(|l| self.vars[&l.var]).collect();
        let (batch, i, j) = (&point[..rank - 2], point[rank - 2], point[rank - 1]);
        // The row / column part of each operand's index does not depend on `l`.
        let a_base = self.view_base(&m.a, batch, i, m.a.row_stride)?;
        let b_base = self.view_base(&m.b, batch, j, m.b.col_stride)?;
        let l_var = Var(u32::MAX);
        let (a_buf, b_buf) = (m.a.buffer, m.b.buffer);
        let (a_step, b_step) = (m.a.col_stride, m.b.row_stride);
        self.loops(
            &[Loop {
                var: l_var,
                extent: m.k,
            }],
            &mut |e| {
                let l = e.vars[&l_var];
                let ai = e.affine(a_base, l, a_step)?;
                let bi = e.affine(b_base, l, b_step)?;
                let x = e.load_element(a_buf, ai)?;
                let y = e.load_element(b_buf, bi)?;
                let p = e.binary(BinaryOp::Mul, m.dtype, x, y)?;
                let s = e.load_var(ty, acc)?;
                let s = e.binary(BinaryOp::Add, m.dtype, s, p)?;
                e.store_var(acc, s)
            },
        )?;
        self.load_var(ty, acc)
    }

    /// `x`, with `-0` made `+0` (floats; other dtypes unchanged). A matmul's sum starts from +0 (SPEC §3.9), so an
    /// all-`-0` sum is `+0`; but device compilers fold `+0 + p` to `p` even under `SignedZeroInfNanPreserve`
    /// (lavapipe does), so the sign is fixed after the sum, on the bits, where no float rule can fold it away.
    pub(super) fn positive_zero(&mut self, dtype: DType, x: Word) -> Result<Word> {
        let u = self.t_u32;
        let is_negative_zero = match dtype {
            DType::F32 => {
                let bits = self.op(Op::Bitcast, u, &[x])?;
                let sign = self.u32_const(0x8000_0000);
                self.bool_op(Op::IEqual, &[bits, sign])?
            }
            DType::F64 => {
                // Two u32 words (low first): a 64-bit integer type would need the Int64 capability.
                let words_ty = self.b.type_vector(u, 2);
                let words = self.op(Op::Bitcast, words_ty, &[x])?;
                let low = self
                    .b
                    .composite_extract(u, None, words, [0])
                    .map_err(|e| self.build_err(e))?;
                let high = self
                    .b
                    .composite_extract(u, None, words, [1])
                    .map_err(|e| self.build_err(e))?;
                let (zero, sign) = (self.u32_const(0), self.u32_const(0x8000_0000));
                let low_zero = self.bool_op(Op::IEqual, &[low, zero])?;
                let high_sign = self.bool_op(Op::IEqual, &[high, sign])?;
                self.bool_op(Op::LogicalAnd, &[low_zero, high_sign])?
            }
            DType::I32 | DType::Bool => return Ok(x),
        };
        let ty = self.ty(dtype);
        let positive = self.typed_const(dtype, 0.0);
        self.select(ty, is_negative_zero, positive, x)
    }

    /// The tiled matmul ([`Plan::Tiled`]). Workgroup `(bx, by, bz)` computes `C[bz, by·T + r, bx·T + c]` for
    /// `r, c < T` (invocation `r·T + c`). For each step `k0 = 0, T, …`, every invocation loads one element of the A
    /// tile `A[bz, by·T + r, k0 + c]` and one of the B tile `B[bz, k0 + r, bx·T + c]` into shared memory — 0 where
    /// the index is past `m`, `n` or `k`, so edges need no special case and nothing out of bounds is read — then,
    /// after a barrier, adds `As[r][l] · Bs[l][c]` for `l = 0..T` in order, and waits at a second barrier before the
    /// tiles are overwritten. Products past `k` are `0 · 0 = +0`, so the accumulator sees exactly the terms of the
    /// per-point shader, in the same order (`l = 0..k`), from the same `+0`. Finally an invocation inside `m × n`
    /// runs the fused epilogue on its accumulator (in a register). Barriers are outside every non-uniform branch:
    /// the dispatch has no workgroup past the end and every invocation walks all steps.
    pub(super) fn tiled_matmul(&mut self, m: &MatmulKernel) -> Result<()> {
        let ty = self.ty(m.dtype);
        let u = self.t_u32;
        let v3 = self.b.type_vector(u, 3);
        let wid = self.builtin(BuiltIn::WorkgroupId, v3)?;
        let mut w = [0; 3];
        for (c, slot) in w.iter_mut().enumerate() {
            *slot = self
                .b
                .composite_extract(u, None, wid, [c as u32])
                .map_err(|e| self.build_err(e))?;
        }
        let lid = self.builtin(BuiltIn::LocalInvocationIndex, u)?;
        let t = self.u32_const(TILE);
        let r = self.op(Op::UDiv, u, &[lid, t])?;
        let c = self.op(Op::UMod, u, &[lid, t])?;
        let row0 = self.op(Op::IMul, u, &[w[1], t])?;
        let col0 = self.op(Op::IMul, u, &[w[0], t])?;
        let i = self.op(Op::IAdd, u, &[row0, r])?;
        let j = self.op(Op::IAdd, u, &[col0, c])?;
        let rank = m.parallel.len();
        self.parallel_point(&m.parallel[..rank - 2], w[2])?;
        let batch: Vec<Word> = m.parallel[..rank - 2]
            .iter()
            .map(|l| self.vars[&l.var])
            .collect();
        let (mm, nn, kk) = (
            self.u32_const(m.m() as u32),
            self.u32_const(m.n() as u32),
            self.u32_const(m.k as u32),
        );
        let i_ok = self.bool_op(Op::ULessThan, &[i, mm])?;
        let j_ok = self.bool_op(Op::ULessThan, &[j, nn])?;
        let a_row = self.view_base(&m.a, &batch, i, m.a.row_stride)?;
        let b_col = self.view_base(&m.b, &batch, j, m.b.col_stride)?;
        let a_tile = self.new_shared_array(ty, TILE * TILE);
        let b_tile = self.new_shared_array(ty, TILE * TILE);
        let zero = self.typed_const(m.dtype, 0.0);
        let acc = self.function_var(ty);
        self.store_var(acc, zero)?;
        let staged = self.function_var(ty);
        let steps = self.u32_const((m.k as u32).div_ceil(TILE));
        let first = self.u32_const(0);
        let (a_buf, b_buf) = (m.a.buffer, m.b.buffer);
        let (a_step, b_step) = (m.a.col_stride, m.b.row_stride);
        let dtype = m.dtype;
        // Stages one element of a tile, the same for A and B: `tile[lid] = ok ? buf[base + k·step] : 0` (through
        // `staged`, as a structured `if`).
        let stage = |e: &mut Self,
                     ok: Word,
                     buf: BufferId,
                     base: Word,
                     k: Word,
                     step: usize,
                     tile: Word| {
            e.store_var(staged, zero)?;
            e.if_then(ok, &mut |e| {
                let idx = e.affine(base, k, step)?;
                let x = e.load_element(buf, idx)?;
                e.store_var(staged, x)
            })?;
            let x = e.load_var(ty, staged)?;
            let p = e.shared_ptr(tile, ty, lid)?;
            e.store_var(p, x)
        };
        self.counted_loop(
            first,
            steps,
            &|e, s| {
                let one = e.u32_const(1);
                e.op(Op::IAdd, e.t_u32, &[s, one])
            },
            &mut |e, s| {
                let k0 = e.op(Op::IMul, u, &[s, t])?;
                // As[r][c] = A[i, k0 + c]
                let ka = e.op(Op::IAdd, u, &[k0, c])?;
                let ka_ok = e.bool_op(Op::ULessThan, &[ka, kk])?;
                let a_ok = e.bool_op(Op::LogicalAnd, &[i_ok, ka_ok])?;
                stage(e, a_ok, a_buf, a_row, ka, a_step, a_tile)?;
                // Bs[r][c] = B[k0 + r, j]
                let kb = e.op(Op::IAdd, u, &[k0, r])?;
                let kb_ok = e.bool_op(Op::ULessThan, &[kb, kk])?;
                let b_ok = e.bool_op(Op::LogicalAnd, &[kb_ok, j_ok])?;
                stage(e, b_ok, b_buf, b_col, kb, b_step, b_tile)?;
                e.barrier()?;
                let a_base = e.op(Op::IMul, u, &[r, t])?;
                for l in 0..TILE {
                    let lc = e.u32_const(l);
                    let ai = e.op(Op::IAdd, u, &[a_base, lc])?;
                    let lt = e.u32_const(l * TILE);
                    let bi = e.op(Op::IAdd, u, &[lt, c])?;
                    let (pa, pb) = (e.shared_ptr(a_tile, ty, ai)?, e.shared_ptr(b_tile, ty, bi)?);
                    let (x, y) = (e.load_var(ty, pa)?, e.load_var(ty, pb)?);
                    let prod = e.binary(BinaryOp::Mul, dtype, x, y)?;
                    let sum = e.load_var(ty, acc)?;
                    let sum = e.binary(BinaryOp::Add, dtype, sum, prod)?;
                    e.store_var(acc, sum)?;
                }
                e.barrier()
            },
        )?;
        let inside = self.bool_op(Op::LogicalAnd, &[i_ok, j_ok])?;
        self.vars.insert(m.parallel[rank - 2].var, i);
        self.vars.insert(m.parallel[rank - 1].var, j);
        self.if_then(inside, &mut |e| {
            let a = e.load_var(ty, acc)?;
            let a = e.positive_zero(dtype, a)?;
            e.matmul_acc = Some((a, dtype));
            e.block(&m.epilogue)
        })
    }

    /// `offset + Σ β_t·batch_strides[t] + x·stride` as a u32.
    pub(super) fn view_base(
        &mut self,
        v: &crate::kernel::MatrixView,
        batch: &[Word],
        x: Word,
        stride: usize,
    ) -> Result<Word> {
        let mut acc = self.u32_const(v.offset as u32);
        for (&bv, &s) in batch.iter().zip(&v.batch_strides) {
            acc = self.affine(acc, bv, s)?;
        }
        self.affine(acc, x, stride)
    }

    /// `base + var·stride` as a u32 (folding zero strides).
    pub(super) fn affine(&mut self, base: Word, var: Word, stride: usize) -> Result<Word> {
        if stride == 0 {
            return Ok(base);
        }
        let term = if stride == 1 {
            var
        } else {
            let s = self.u32_const(stride as u32);
            self.op(Op::IMul, self.t_u32, &[var, s])?
        };
        self.op(Op::IAdd, self.t_u32, &[base, term])
    }
}
