//! The matrix products of matmul kernels: `C[β] = A[β] · B[β]` for every batch index `β`, C dense row-major.
//!
//! The result is cut into fixed tiles ([`Tiling`], a function of the shape only, never of the thread count); each
//! tile is one single-threaded GEMM call, so a tile's bits don't depend on which thread runs it or how many there
//! are. f32 and f64 go to the `gemm` crate (runtime AVX2/FMA/AVX-512 dispatch, any strides, `Parallelism::None`: the
//! runtime's pool is the only source of threads); i32 is a plain loop that wraps, as the kernel IR's i32 arithmetic
//! does.

use kiln_ir::DType;
use std::ops::Range;

/// A strided view of a buffer as a batch of matrices, in elements: element `(β, r, c)` is at
/// `offset + Σ β_t·batch_strides[t] + r·row_stride + c·col_stride`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MatrixOperand {
    /// Slot of the buffer in the kernel's buffer table.
    pub buffer: usize,
    pub offset: usize,
    pub batch_strides: Vec<usize>,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatrixOperand {
    /// The largest element index the view reaches, or `None` when it reaches none (an empty batch or matrix).
    pub fn max_index(&self, batch: &[usize], rows: usize, cols: usize) -> Option<usize> {
        if rows == 0 || cols == 0 || batch.contains(&0) {
            return None;
        }
        let batch_part: usize = batch
            .iter()
            .zip(&self.batch_strides)
            .map(|(e, s)| (e - 1) * s)
            .sum();
        Some(self.offset + batch_part + (rows - 1) * self.row_stride + (cols - 1) * self.col_stride)
    }

    fn start(&self, batch: &[usize]) -> usize {
        self.offset
            + batch
                .iter()
                .zip(&self.batch_strides)
                .map(|(b, s)| b * s)
                .sum::<usize>()
    }
}

/// One matmul kernel's product: `[β.., m, k] × [β.., k, n]` into the dense row-major `[β.., m, n]` at slot `out`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Gemm {
    pub dtype: DType,
    pub batch: Vec<usize>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: MatrixOperand,
    pub b: MatrixOperand,
    /// Slot of the dense result.
    pub out: usize,
}

/// Output rows per tile at most; the tiles of a matrix split its rows evenly, rounded up to [`ROW_GRAIN`]. Tall
/// tiles pack each column panel of B fewer times (`gemm` packs per call): on W5 at batch 1024, 512 rows ran in
/// 1.23–1.40 ms where 128 took 1.52–1.57 ms (`kiln bench`, interleaved, 2026-11-26), and W3 1024³ in 4.4–4.6 ms
/// where 128 took 4.7–4.9 ms.
const TILE_ROWS: usize = 512;
/// Output columns per tile at most, split evenly in multiples of [`COL_GRAIN`].
const TILE_COLS: usize = 128;
const ROW_GRAIN: usize = 8;
const COL_GRAIN: usize = 16;
/// The fewest multiply-adds worth a tile of its own: below this, claiming and packing cost more than splitting
/// saves, so small products (a batch-1 layer) stay one tile and run on the calling thread alone.
const MIN_TILE_WORK: usize = 1 << 15;
/// A product that would be one tile but has at least this many multiply-adds has its rows split in two, so that a
/// narrow layer (a 10-class head at batch 128: 327,680) runs on two threads. (An odd number of tiles is split
/// whatever its size: the tiles are already worth their packing.)
const SPLIT_WORK: usize = 1 << 18;

/// How a product's `[β.., m, n]` result is cut into tiles: `[tm, tn]` blocks of each matrix (smaller at the edges),
/// numbered batch-major, then by tile row, then by tile column. A function of `(batch, m, n, k)` only.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tiling {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    /// Rows and columns of a full tile.
    pub tm: usize,
    pub tn: usize,
}

impl Tiling {
    /// Tiles of at most `TILE_ROWS × TILE_COLS`, merged (columns first) while a tile has less than
    /// `MIN_TILE_WORK` multiply-adds; then the row tiles are halved where that makes an odd number of tiles even, or
    /// a single matrix of `SPLIT_WORK` or more multiply-adds two tiles.
    pub fn new(batch: usize, m: usize, n: usize, k: usize) -> Tiling {
        let size = |extent: usize, tiles: usize, grain: usize| {
            extent
                .div_ceil(tiles.max(1))
                .next_multiple_of(grain)
                .min(extent)
                .max(1)
        };
        let (mut mt, mut nt) = (m.div_ceil(TILE_ROWS), n.div_ceil(TILE_COLS));
        let (mut tm, mut tn) = (size(m, mt, ROW_GRAIN), size(n, nt, COL_GRAIN));
        while (mt > 1 || nt > 1) && tm.saturating_mul(tn).saturating_mul(k) < MIN_TILE_WORK {
            if nt > 1 {
                nt = nt.div_ceil(2);
            } else {
                mt = mt.div_ceil(2);
            }
            (tm, tn) = (size(m, mt, ROW_GRAIN), size(n, nt, COL_GRAIN));
        }
        // One tile of a big product, or an odd number of tiles (a 256×784 weight gradient: 7 column tiles), leaves a
        // thread of two idle for a tile's time: split the rows in two where they allow it.
        let row_tiles = m.div_ceil(tm);
        let tiles = batch * row_tiles * n.div_ceil(tn);
        let split = if tiles == 1 {
            m.saturating_mul(n).saturating_mul(k) >= SPLIT_WORK
        } else {
            tiles % 2 == 1
        };
        if split && tm >= 2 * ROW_GRAIN {
            tm = size(m, 2 * row_tiles, ROW_GRAIN);
        }
        Tiling {
            batch,
            m,
            n,
            tm,
            tn,
        }
    }

    fn row_tiles(&self) -> usize {
        self.m.div_ceil(self.tm)
    }

    fn col_tiles(&self) -> usize {
        self.n.div_ceil(self.tn)
    }

    /// The number of tiles (0 for an empty result).
    pub fn count(&self) -> usize {
        if self.m == 0 || self.n == 0 {
            return 0;
        }
        self.batch * self.row_tiles() * self.col_tiles()
    }

    /// Tile `t`'s batch index (flattened), rows and columns.
    pub fn tile(&self, t: usize) -> (usize, Range<usize>, Range<usize>) {
        let per_matrix = self.row_tiles() * self.col_tiles();
        let (b, r) = (t / per_matrix, t % per_matrix);
        let (ti, tj) = (r / self.col_tiles(), r % self.col_tiles());
        let rows = ti * self.tm..((ti + 1) * self.tm).min(self.m);
        let cols = tj * self.tn..((tj + 1) * self.tn).min(self.n);
        (b, rows, cols)
    }

    /// Tile `t` as ranges of flattened result points (row-major over `[β.., m, n]`), one per row of the tile.
    pub fn rows_of(&self, t: usize) -> impl Iterator<Item = Range<usize>> {
        let (b, rows, cols) = self.tile(t);
        let (m, n) = (self.m, self.n);
        rows.map(move |i| {
            let start = (b * m + i) * n + cols.start;
            start..start + cols.len()
        })
    }
}

impl Gemm {
    pub fn batch_count(&self) -> usize {
        self.batch.iter().product()
    }

    /// The tiles the runtime cuts this product into.
    pub fn tiling(&self) -> Tiling {
        Tiling::new(self.batch_count(), self.m, self.n, self.k)
    }

    /// Runs tile `t` of `tiling` (this product's [`Gemm::tiling`]): one single-threaded GEMM call of the tile's rows
    /// of A by its columns of B into its block of the result.
    ///
    /// # Safety
    /// Every slot the product uses must point to a live buffer of `self.dtype` elements that holds every element the
    /// views and the `batch·m·n` result reach, the result must not overlap an operand, and nothing else may access
    /// the tile's block of the result while this runs. (`Executable` checks the extents when it is built and lays
    /// out the buffers.)
    pub(crate) unsafe fn run_tile(&self, table: &[*mut u8], tiling: &Tiling, t: usize) {
        let (flat, rows, cols) = tiling.tile(t);
        let (m, n, k) = (rows.len(), cols.len(), self.k);
        if m == 0 || n == 0 {
            return;
        }
        let mut index = vec![0usize; self.batch.len()];
        let mut rest = flat;
        for (d, &e) in self.batch.iter().enumerate().rev() {
            index[d] = rest % e;
            rest /= e;
        }
        let a0 = self.a.start(&index) + rows.start * self.a.row_stride;
        let b0 = self.b.start(&index) + cols.start * self.b.col_stride;
        let c0 = (flat * self.m + rows.start) * self.n + cols.start;
        let (rsa, csa) = (self.a.row_stride as isize, self.a.col_stride as isize);
        let (rsb, csb) = (self.b.row_stride as isize, self.b.col_stride as isize);
        let rsc = self.n as isize;
        let (a, b, c) = (table[self.a.buffer], table[self.b.buffer], table[self.out]);
        match self.dtype {
            // SAFETY (both floats): the caller guarantees the views and the result are in bounds of live buffers of
            // this dtype and that the tile's block of the result is exclusively ours; the tile's rows of A, columns
            // of B and block of C lie inside those views, so every offset stays inside its buffer.
            DType::F32 => unsafe {
                product(
                    m,
                    n,
                    k,
                    (c.cast::<f32>().add(c0), rsc),
                    (a.cast::<f32>().add(a0), rsa, csa),
                    (b.cast::<f32>().add(b0), rsb, csb),
                )
            },
            // SAFETY: as for F32 above, for f64 buffers.
            DType::F64 => unsafe {
                product(
                    m,
                    n,
                    k,
                    (c.cast::<f64>().add(c0), rsc),
                    (a.cast::<f64>().add(a0), rsa, csa),
                    (b.cast::<f64>().add(b0), rsb, csb),
                )
            },
            DType::I32 | DType::Bool => {
                let (a, b, c) = (a.cast::<i32>(), b.cast::<i32>(), c.cast::<i32>());
                for i in 0..m {
                    for j in 0..n {
                        let mut acc = 0i32;
                        for l in 0..k {
                            let ai = a0 + i * self.a.row_stride + l * self.a.col_stride;
                            let bi = b0 + l * self.b.row_stride + j * self.b.col_stride;
                            // SAFETY: `ai` and `bi` are elements the views reach, in bounds by the contract.
                            let (x, y) = unsafe { (a.add(ai).read(), b.add(bi).read()) };
                            acc = acc.wrapping_add(x.wrapping_mul(y));
                        }
                        // SAFETY: `c0 + i·n + j` is in the tile's block, in bounds and ours by the contract.
                        unsafe { c.add(c0 + i * self.n + j).write(acc) };
                    }
                }
            }
        }
    }
}

/// `C = A · B` for one `m×n` block, `C` with unit column stride, on the calling thread.
///
/// # Safety
/// Every element the strides reach must be inside a live allocation, and `C`'s elements must not be accessed by
/// anything else during the call.
unsafe fn product<T: 'static + Copy + std::ops::Add<Output = T> + num_like::Zero>(
    m: usize,
    n: usize,
    k: usize,
    (c, rsc): (*mut T, isize),
    (a, rsa, csa): (*const T, isize, isize),
    (b, rsb, csb): (*const T, isize, isize),
) {
    // SAFETY: forwarded from the caller. `gemm` takes column strides first; `read_dst = false` ignores C's old
    // contents (alpha unused), beta = 1 gives C = A·B. `Parallelism::None`: the runtime's pool does the threading.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            rsc,
            false,
            a,
            csa,
            rsa,
            b,
            csb,
            rsb,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    // `gemm`'s small-size paths may start a sum from its first product, which makes an all-`-0` sum `-0`; SPEC's
    // matmul starts from +0 (as BLAS's beta = 0 does), so `1 / y` is +inf there. Adding +0 turns `-0` into `+0` and
    // changes nothing else. Its blocked path starts every accumulator at +0, so the extra pass over the block (up to
    // a tenth of a small training step) is only made where a small-size path may have run.
    if !may_start_from_a_product(m, n, k) {
        return;
    }
    for i in 0..m {
        // SAFETY: row `i` of the block, `n` elements at unit stride, in bounds and exclusively ours (the caller's
        // contract above); no other reference to it is live.
        let row = unsafe { std::slice::from_raw_parts_mut(c.offset(i as isize * rsc), n) };
        for x in row {
            *x = *x + T::ZERO;
        }
    }
}

/// Whether `gemm` 0.19 may compute an `m×n×k` product on a path that starts a sum from its first product rather
/// than from +0: its horizontal kernels (`m·n ≤ 256`), `gevv` (`k ≤ 2`) and `gemv` (`m ≤ 1` or `n ≤ 1`), in either
/// orientation (it transposes row-major results first). Its blocked path zeroes its accumulators and then adds every
/// product with an FMA, so an all-`-0` sum is `+0` there (`negative_zero_products_sum_to_positive_zero` checks both
/// sides of these bounds against the crate).
fn may_start_from_a_product(m: usize, n: usize, k: usize) -> bool {
    m * n <= 16 * 16 || k <= 2 || m <= 1 || n <= 1
}

mod num_like {
    /// The two constants [`super::product`] passes as `gemm`'s alpha and beta.
    pub trait Zero {
        const ZERO: Self;
        const ONE: Self;
    }
    impl Zero for f32 {
        const ZERO: f32 = 0.0;
        const ONE: f32 = 1.0;
    }
    impl Zero for f64 {
        const ZERO: f64 = 0.0;
        const ONE: f64 = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::{product, Tiling};

    /// Products whose every term is `-0` (A all `-0`, B all ones) sum to `+0`, as SPEC's matmul says, on each side of
    /// `may_start_from_a_product`'s bounds, for row-major and transposed operands, in f32 and f64: the fix-up is
    /// skipped only where `gemm` itself starts from +0.
    #[test]
    fn negative_zero_products_sum_to_positive_zero() {
        trait Element:
            'static
            + Copy
            + std::ops::Add<Output = Self>
            + super::num_like::Zero
            + std::fmt::Debug
        {
            const NEGATIVE_ZERO: Self;
            fn is_positive_zero(&self) -> bool;
        }
        impl Element for f32 {
            const NEGATIVE_ZERO: f32 = -0.0;
            fn is_positive_zero(&self) -> bool {
                self.to_bits() == 0
            }
        }
        impl Element for f64 {
            const NEGATIVE_ZERO: f64 = -0.0;
            fn is_positive_zero(&self) -> bool {
                self.to_bits() == 0
            }
        }
        fn check<T: Element>(m: usize, n: usize, k: usize, transposed: bool) {
            let a = vec![T::NEGATIVE_ZERO; m * k];
            let b = vec![T::ONE; k * n];
            let mut c = vec![T::ONE; m * n];
            let ((rsa, csa), (rsb, csb)) = if transposed {
                ((1, m as isize), (1, k as isize))
            } else {
                ((k as isize, 1), (n as isize, 1))
            };
            // SAFETY: the strides reach exactly the m·k, k·n and m·n elements of the three vectors.
            unsafe {
                product(
                    m,
                    n,
                    k,
                    (c.as_mut_ptr(), n as isize),
                    (a.as_ptr(), rsa, csa),
                    (b.as_ptr(), rsb, csb),
                )
            };
            assert!(
                c.iter().all(T::is_positive_zero),
                "{m}x{n}x{k} (transposed: {transposed}): {:?}",
                c.iter().find(|x| !x.is_positive_zero())
            );
        }
        for (m, n, k) in [
            (1, 1, 1),
            (1, 300, 40),
            (300, 1, 40),
            (2, 1000, 5),
            (1000, 2, 5),
            (16, 16, 64),
            (16, 17, 64),
            (17, 16, 3),
            (33, 7, 3),
            (64, 64, 2),
            (64, 64, 3),
            (128, 10, 256),
            (10, 128, 256),
            (128, 128, 784),
            (37, 91, 1000),
        ] {
            for transposed in [false, true] {
                check::<f32>(m, n, k, transposed);
                check::<f64>(m, n, k, transposed);
            }
        }
    }

    /// Tiles cover every point of the result exactly once, and small products are one tile.
    #[test]
    fn tiles_cover_the_result_once() {
        for (batch, m, n, k) in [
            (1, 1, 256, 784),
            (1, 128, 256, 784),
            (3, 129, 300, 64),
            (2, 1000, 17, 512),
            (1, 128, 10, 256),
            (1, 1029, 300, 64),
        ] {
            let tiling = Tiling::new(batch, m, n, k);
            let mut seen = vec![0u8; batch * m * n];
            for t in 0..tiling.count() {
                for points in tiling.rows_of(t) {
                    seen[points].iter_mut().for_each(|p| *p += 1);
                }
            }
            assert!(seen.iter().all(|&p| p == 1), "{tiling:?}");
        }
        assert_eq!(Tiling::new(1, 1, 10, 256).count(), 1);
        assert_eq!(Tiling::new(1, 1, 256, 784).count(), 2);
        assert_eq!(Tiling::new(1, 128, 256, 784).count(), 2);
        assert_eq!(Tiling::new(1, 1024, 1024, 1024).count(), 16);
        assert_eq!(Tiling::new(1, 128, 10, 256).count(), 2);
        assert_eq!(Tiling::new(1, 128, 10, 64).count(), 1);
        assert_eq!(Tiling::new(1, 256, 784, 128).count(), 14);
        assert_eq!(Tiling::new(1, 0, 5, 5).count(), 0);
    }
}
