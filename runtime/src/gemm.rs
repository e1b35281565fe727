//! The matrix products of matmul kernels: `C[β] = A[β] · B[β]` for every batch index `β`, C dense row-major.
//!
//! f32 and f64 go to `matrixmultiply` (runtime AVX/FMA dispatch, any strides, its own threads); i32 is a plain loop
//! that wraps, as the kernel IR's i32 arithmetic does.

use kiln_ir::DType;

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

impl Gemm {
    pub fn batch_count(&self) -> usize {
        self.batch.iter().product()
    }

    /// Runs the product on the buffers of `table`.
    ///
    /// # Safety
    /// Every slot the product uses must point to a live buffer of `self.dtype` elements that holds every element the
    /// views and the `batch·m·n` result reach, the result must not overlap an operand, and nothing else may access
    /// the result while this runs. (`Executable` checks the extents when it is built and lays out the buffers.)
    pub(crate) unsafe fn run(&self, table: &[*mut u8]) {
        let (m, n, k) = (self.m, self.n, self.k);
        if m == 0 || n == 0 || self.batch.contains(&0) {
            return;
        }
        let mut index = vec![0usize; self.batch.len()];
        for flat in 0..self.batch_count() {
            let mut rest = flat;
            for (d, &e) in self.batch.iter().enumerate().rev() {
                index[d] = rest % e;
                rest /= e;
            }
            let (a0, b0, c0) = (self.a.start(&index), self.b.start(&index), flat * m * n);
            let (rsa, csa) = (self.a.row_stride as isize, self.a.col_stride as isize);
            let (rsb, csb) = (self.b.row_stride as isize, self.b.col_stride as isize);
            let (a, b, c) = (table[self.a.buffer], table[self.b.buffer], table[self.out]);
            match self.dtype {
                DType::F32 => {
                    let (a, b, c) = (a.cast::<f32>(), b.cast::<f32>(), c.cast::<f32>());
                    // SAFETY: the caller guarantees the views and the result are in bounds of live f32 buffers and
                    // that the result is exclusively ours; `wrapping_add` stays inside those buffers.
                    unsafe {
                        matrixmultiply::sgemm(
                            m,
                            k,
                            n,
                            1.0,
                            a.wrapping_add(a0),
                            rsa,
                            csa,
                            b.wrapping_add(b0),
                            rsb,
                            csb,
                            0.0,
                            c.wrapping_add(c0),
                            n as isize,
                            1,
                        )
                    }
                }
                DType::F64 => {
                    let (a, b, c) = (a.cast::<f64>(), b.cast::<f64>(), c.cast::<f64>());
                    // SAFETY: as for f32.
                    unsafe {
                        matrixmultiply::dgemm(
                            m,
                            k,
                            n,
                            1.0,
                            a.wrapping_add(a0),
                            rsa,
                            csa,
                            b.wrapping_add(b0),
                            rsb,
                            csb,
                            0.0,
                            c.wrapping_add(c0),
                            n as isize,
                            1,
                        )
                    }
                }
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
                            // SAFETY: `c0 + i·n + j < batch·m·n`, in bounds and exclusively ours by the contract.
                            unsafe { c.add(c0 + i * n + j).write(acc) };
                        }
                    }
                }
            }
        }
    }
}
