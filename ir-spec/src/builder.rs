//! The builder: what a Rust user writes to make a graph.
//!
//! Unlike the IR, the builder broadcasts implicitly (NumPy's rules) by inserting explicit `broadcast` nodes, accepts
//! negative axes, and reports a shape or dtype error at the call, naming the op and both types. Composite layers,
//! activations and losses (`composite.rs`) are builder methods that expand into primitives.

use crate::error::IrError;
use crate::graph::{Graph, NodeId};
use crate::op::{fit_to_dtype, Axes, BinaryOp, CmpDir, Literal, Op, Role, UnaryOp};
use crate::types::{DType, Shape, TensorType};

/// A value in the graph being built.
pub type Value = NodeId;

type Result<T> = std::result::Result<T, IrError>;

/// Builds a [`Graph`] one op at a time.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    graph: Graph,
}

fn build_err(op: &str, message: String) -> IrError {
    IrError::Build {
        op: op.to_string(),
        message,
    }
}

impl Builder {
    pub fn new(name: impl Into<String>) -> Builder {
        Builder {
            graph: Graph::new(name),
        }
    }

    /// Continues building on an existing graph (autodiff appends the backward pass this way).
    pub fn from_graph(graph: Graph) -> Builder {
        Builder { graph }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn finish(self) -> Graph {
        self.graph
    }

    pub fn ty(&self, v: Value) -> &TensorType {
        self.graph.ty(v)
    }

    pub fn shape(&self, v: Value) -> &[usize] {
        self.graph.ty(v).dims()
    }

    pub fn dtype(&self, v: Value) -> DType {
        self.graph.ty(v).dtype
    }

    /// Appends a primitive as is (no broadcasting); the typing rule's error names the op and types.
    pub fn op(&mut self, op: Op, operands: &[Value]) -> Result<Value> {
        self.graph.add(op, operands)
    }

    /// Gives `v` a label for printing.
    pub fn name(&mut self, v: Value, name: &str) -> Result<Value> {
        self.graph.set_name(v, name)?;
        Ok(v)
    }

    pub fn output(&mut self, name: &str, v: Value) -> Result<()> {
        self.graph.add_output(name, v)
    }

    pub fn output_aliasing(&mut self, name: &str, v: Value, input: &str) -> Result<()> {
        self.graph
            .add_output_aliasing(name, v, Some(input.to_string()))
    }

    // ---- sources ----

    pub fn input(&mut self, name: &str, role: Role, ty: TensorType) -> Result<Value> {
        self.graph.add_input(name, role, ty)
    }

    pub fn data(&mut self, name: &str, ty: TensorType) -> Result<Value> {
        self.input(name, Role::Data, ty)
    }

    pub fn param(&mut self, name: &str, ty: TensorType) -> Result<Value> {
        self.input(name, Role::Param, ty)
    }

    pub fn state(&mut self, name: &str, ty: TensorType) -> Result<Value> {
        self.input(name, Role::State, ty)
    }

    /// A tensor of type `ty` filled with `value`.
    pub fn full(&mut self, ty: TensorType, value: f64) -> Result<Value> {
        // Rounded to the dtype's precision: `0.01` in an f32 graph is the nearest f32.
        let value = fit_to_dtype(value, ty.dtype);
        self.op(
            Op::Constant {
                ty,
                value: Literal::Splat(value),
            },
            &[],
        )
    }

    /// A tensor of `v`'s type filled with `value`.
    pub fn full_like(&mut self, v: Value, value: f64) -> Result<Value> {
        let ty = self.ty(v).clone();
        self.full(ty, value)
    }

    pub fn zeros_like(&mut self, v: Value) -> Result<Value> {
        self.full_like(v, 0.0)
    }

    /// A rank-0 constant.
    pub fn scalar(&mut self, value: f64, dtype: DType) -> Result<Value> {
        self.full(TensorType::scalar(dtype), value)
    }

    /// A constant with every element given, row-major.
    pub fn literal(&mut self, ty: TensorType, values: Vec<f64>) -> Result<Value> {
        let values = values
            .into_iter()
            .map(|v| fit_to_dtype(v, ty.dtype))
            .collect();
        self.op(
            Op::Constant {
                ty,
                value: Literal::Dense(values),
            },
            &[],
        )
    }

    pub fn iota(&mut self, ty: TensorType, axis: usize) -> Result<Value> {
        self.op(Op::Iota { ty, axis }, &[])
    }

    // ---- elementwise ----

    pub fn unary(&mut self, op: UnaryOp, x: Value) -> Result<Value> {
        self.op(Op::Unary(op), &[x])
    }

    pub fn neg(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Neg, x)
    }
    pub fn exp(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Exp, x)
    }
    pub fn log(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Log, x)
    }
    pub fn sqrt(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Sqrt, x)
    }
    pub fn recip(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Recip, x)
    }
    pub fn tanh(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Tanh, x)
    }
    /// The logistic sigmoid primitive (also available as [`Builder::sigmoid`]).
    pub fn logistic(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Logistic, x)
    }
    pub fn abs(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Abs, x)
    }
    pub fn erf(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Erf, x)
    }
    pub fn sin(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Sin, x)
    }
    pub fn cos(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Cos, x)
    }
    /// Toward −∞, to an integer value in the float type.
    pub fn floor(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Floor, x)
    }
    /// Toward +∞.
    pub fn ceil(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Ceil, x)
    }
    /// To the nearest integer value, ties to even (NumPy's `round`, ONNX's `Round`).
    pub fn round(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Round, x)
    }
    /// Toward zero.
    pub fn trunc(&mut self, x: Value) -> Result<Value> {
        self.unary(UnaryOp::Trunc, x)
    }

    pub fn cast(&mut self, x: Value, to: DType) -> Result<Value> {
        if self.dtype(x) == to {
            return Ok(x);
        }
        self.op(Op::Cast { to }, &[x])
    }

    /// A binary primitive with NumPy-style implicit broadcasting of both operands.
    pub fn binary(&mut self, op: BinaryOp, a: Value, b: Value) -> Result<Value> {
        let [a, b] = self.broadcast_together(op.name(), [a, b])?;
        self.op(Op::Binary(op), &[a, b])
    }

    pub fn add(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Add, a, b)
    }
    pub fn sub(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Sub, a, b)
    }
    pub fn mul(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Mul, a, b)
    }
    pub fn div(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Div, a, b)
    }
    pub fn max(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Max, a, b)
    }
    pub fn min(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Min, a, b)
    }
    pub fn pow(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Pow, a, b)
    }

    /// `x (op) c` for a constant `c` of `x`'s dtype and shape.
    pub fn binary_scalar(&mut self, op: BinaryOp, x: Value, c: f64) -> Result<Value> {
        let c = self.full_like(x, c)?;
        self.op(Op::Binary(op), &[x, c])
    }

    pub fn add_scalar(&mut self, x: Value, c: f64) -> Result<Value> {
        self.binary_scalar(BinaryOp::Add, x, c)
    }
    pub fn mul_scalar(&mut self, x: Value, c: f64) -> Result<Value> {
        self.binary_scalar(BinaryOp::Mul, x, c)
    }
    pub fn max_scalar(&mut self, x: Value, c: f64) -> Result<Value> {
        self.binary_scalar(BinaryOp::Max, x, c)
    }
    pub fn min_scalar(&mut self, x: Value, c: f64) -> Result<Value> {
        self.binary_scalar(BinaryOp::Min, x, c)
    }
    pub fn pow_scalar(&mut self, x: Value, c: f64) -> Result<Value> {
        self.binary_scalar(BinaryOp::Pow, x, c)
    }
    /// `c - x`.
    pub fn rsub_scalar(&mut self, c: f64, x: Value) -> Result<Value> {
        let c = self.full_like(x, c)?;
        self.op(Op::Binary(BinaryOp::Sub), &[c, x])
    }

    pub fn compare(&mut self, dir: CmpDir, a: Value, b: Value) -> Result<Value> {
        let [a, b] = self.broadcast_together(&format!("compare.{}", dir.name()), [a, b])?;
        self.op(Op::Compare(dir), &[a, b])
    }

    /// `x (dir) c` for a constant `c`.
    pub fn compare_scalar(&mut self, dir: CmpDir, x: Value, c: f64) -> Result<Value> {
        let c = self.full_like(x, c)?;
        self.op(Op::Compare(dir), &[x, c])
    }

    /// `a` where `cond`, else `b`; all three broadcast together.
    pub fn select(&mut self, cond: Value, a: Value, b: Value) -> Result<Value> {
        let shape = self.broadcast_shape("select", &[cond, a, b])?;
        let cond = self.broadcast(cond, &shape)?;
        let a = self.broadcast(a, &shape)?;
        let b = self.broadcast(b, &shape)?;
        self.op(Op::Select, &[cond, a, b])
    }

    // ---- reductions ----

    /// Sum over `axes` (negative axes count from the end; an empty list sums nothing).
    pub fn reduce_sum(&mut self, x: Value, axes: &[isize], keep_dims: bool) -> Result<Value> {
        let axes = self.normalize_axes("reduce_sum", x, axes)?;
        self.op(Op::ReduceSum { axes, keep_dims }, &[x])
    }

    pub fn reduce_max(&mut self, x: Value, axes: &[isize], keep_dims: bool) -> Result<Value> {
        let axes = self.normalize_axes("reduce_max", x, axes)?;
        self.op(Op::ReduceMax { axes, keep_dims }, &[x])
    }

    /// Sum of every element, as a scalar.
    pub fn sum_all(&mut self, x: Value) -> Result<Value> {
        let axes: Vec<isize> = (0..self.ty(x).rank() as isize).collect();
        self.reduce_sum(x, &axes, false)
    }

    // ---- movement ----

    pub fn reshape(&mut self, x: Value, shape: &[usize]) -> Result<Value> {
        if self.shape(x) == shape {
            return Ok(x);
        }
        self.op(
            Op::Reshape {
                shape: Shape::new(shape),
            },
            &[x],
        )
    }

    pub fn transpose(&mut self, x: Value, perm: &[usize]) -> Result<Value> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == self.ty(x).rank() {
            return Ok(x);
        }
        self.op(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// Swaps the last two dims (`x.mT` in PyTorch).
    pub fn transpose_last2(&mut self, x: Value) -> Result<Value> {
        let rank = self.ty(x).rank();
        if rank < 2 {
            return Err(build_err(
                "transpose",
                format!("needs rank >= 2, got {}", self.ty(x)),
            ));
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(rank - 2, rank - 1);
        self.transpose(x, &perm)
    }

    /// Explicit broadcast to `shape` (no node if the shape already matches).
    pub fn broadcast(&mut self, x: Value, shape: &[usize]) -> Result<Value> {
        if self.shape(x) == shape {
            return Ok(x);
        }
        self.op(
            Op::Broadcast {
                shape: Shape::new(shape),
            },
            &[x],
        )
    }

    pub fn slice(&mut self, x: Value, start: &[usize], end: &[usize]) -> Result<Value> {
        self.op(
            Op::Slice {
                start: start.to_vec(),
                end: end.to_vec(),
            },
            &[x],
        )
    }

    /// Pads every dim with `low[d]` copies of `value` before and `high[d]` after (no node if there is no padding).
    pub fn pad(&mut self, x: Value, low: &[usize], high: &[usize], value: f64) -> Result<Value> {
        if low.len() == high.len()
            && low.iter().chain(high).all(|&p| p == 0)
            && low.len() == self.shape(x).len()
        {
            return Ok(x);
        }
        let value = Literal::Splat(fit_to_dtype(value, self.dtype(x)));
        self.op(
            Op::Pad {
                low: low.to_vec(),
                high: high.to_vec(),
                value,
            },
            &[x],
        )
    }

    /// The sliding windows over the last `window.len()` dims (SPEC `windows`).
    pub fn windows(
        &mut self,
        x: Value,
        window: &[usize],
        stride: &[usize],
        dilation: &[usize],
    ) -> Result<Value> {
        self.op(
            Op::Windows {
                window: window.to_vec(),
                stride: stride.to_vec(),
                dilation: dilation.to_vec(),
            },
            &[x],
        )
    }

    /// Windows summed back into `size` (SPEC `overlap_add`, the transpose of [`Builder::windows`]).
    pub fn overlap_add(
        &mut self,
        x: Value,
        size: &[usize],
        stride: &[usize],
        dilation: &[usize],
    ) -> Result<Value> {
        self.op(
            Op::OverlapAdd {
                size: size.to_vec(),
                stride: stride.to_vec(),
                dilation: dilation.to_vec(),
            },
            &[x],
        )
    }

    /// `out[p] = x[p with p[axis] := idx[p]]` (SPEC `gather`, NumPy's `take_along_axis`); an index outside
    /// `0..x.dims[axis]` reads 0. For a lookup by an index of any shape (embeddings, `index_select`) see
    /// [`Builder::take`].
    pub fn gather(&mut self, x: Value, idx: Value, axis: isize) -> Result<Value> {
        let axis = self.normalize_axis("gather", x, axis)?;
        self.op(Op::Gather { axis }, &[x, idx])
    }

    /// `all_reduce{op, group}` (SPEC §3.12): every process's `x` summed (or averaged) in rank order.
    pub fn all_reduce(&mut self, x: Value, op: crate::op::ReduceOp, group: usize) -> Result<Value> {
        self.op(Op::AllReduce { op, group }, &[x])
    }

    pub fn concat(&mut self, xs: &[Value], axis: isize) -> Result<Value> {
        let Some(&first) = xs.first() else {
            return Err(build_err("concat", "needs at least one operand".into()));
        };
        let axis = self.normalize_axis("concat", first, axis)?;
        self.op(Op::Concat { axis }, xs)
    }

    // ---- contraction ----

    /// Matrix product `[..., m, k] x [..., k, n]`; batch dims broadcast NumPy-style.
    pub fn matmul(&mut self, a: Value, b: Value) -> Result<Value> {
        let (ta, tb) = (self.ty(a).clone(), self.ty(b).clone());
        if ta.rank() < 2 || tb.rank() < 2 || ta.dims()[ta.rank() - 1] != tb.dims()[tb.rank() - 2] {
            return Err(build_err(
                "matmul",
                format!("cannot multiply {ta} by {tb}: need [...,m,k] x [...,k,n]"),
            ));
        }
        let batch_a = &ta.dims()[..ta.rank() - 2];
        let batch_b = &tb.dims()[..tb.rank() - 2];
        let batch = broadcast_shapes(batch_a, batch_b).ok_or_else(|| {
            build_err(
                "matmul",
                format!("batch dims of {ta} and {tb} do not broadcast"),
            )
        })?;
        let full = |b: &[usize], t: &TensorType| -> Vec<usize> {
            b.iter().chain(&t.dims()[t.rank() - 2..]).copied().collect()
        };
        let a = self.broadcast(a, &full(&batch, &ta))?;
        let b = self.broadcast(b, &full(&batch, &tb))?;
        self.op(Op::Matmul, &[a, b])
    }

    // ---- helpers ----

    /// The common NumPy broadcast shape of `values`, or an error naming `op` and every type.
    pub fn broadcast_shape(&self, op: &str, values: &[Value]) -> Result<Vec<usize>> {
        let mut shape: Vec<usize> = Vec::new();
        for &v in values {
            shape = broadcast_shapes(&shape, self.shape(v)).ok_or_else(|| {
                let types: Vec<String> = values.iter().map(|&v| self.ty(v).to_string()).collect();
                build_err(
                    op,
                    format!("shapes of {} do not broadcast", types.join(" and ")),
                )
            })?;
        }
        Ok(shape)
    }

    fn broadcast_together(&mut self, op: &str, [a, b]: [Value; 2]) -> Result<[Value; 2]> {
        if self.dtype(a) != self.dtype(b) {
            return Err(build_err(
                op,
                format!("dtypes differ: {} and {}", self.ty(a), self.ty(b)),
            ));
        }
        let shape = self.broadcast_shape(op, &[a, b])?;
        Ok([self.broadcast(a, &shape)?, self.broadcast(b, &shape)?])
    }

    /// Maps a possibly negative axis into `0..rank`.
    pub fn normalize_axis(&self, op: &str, x: Value, axis: isize) -> Result<usize> {
        let rank = self.ty(x).rank() as isize;
        let a = if axis < 0 { axis + rank } else { axis };
        if a < 0 || a >= rank {
            return Err(build_err(
                op,
                format!("axis {axis} out of range for {}", self.ty(x)),
            ));
        }
        Ok(a as usize)
    }

    fn normalize_axes(&self, op: &str, x: Value, axes: &[isize]) -> Result<Axes> {
        let mut out = Axes::new();
        for &a in axes {
            out.push(self.normalize_axis(op, x, a)?);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// NumPy's broadcast of two shapes, or `None` if they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i < rank - s.len() {
            1
        } else {
            s[i - (rank - s.len())]
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}
