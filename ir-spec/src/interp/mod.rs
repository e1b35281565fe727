//! The reference interpreter: evaluates a verified graph on host tensors, f32 in f32 and f64 in f64, row-major.
//!
//! It is the oracle every pass and backend is compared against, so it is written to be obviously correct, not fast:
//! each node is evaluated in graph order into a fresh dense tensor.
//!
//! - Per-dtype element semantics (IEEE floats with NaN-propagating `max`/`min`, wrapping i32) are in [`number`].
//! - Index arithmetic (strided views for transpose/broadcast/slice, reductions, matmul, concat) is in [`index`].
//! - `reduce_sum` folds in row-major order of the reduced indices, starting from the first reduced element (0 when
//!   there is none); `matmul` accumulates from 0 in increasing k. Both accumulate in the dtype.
//!
//! Requires nothing of the graph: it is verified first. Refuses (with an error) any node of more than 2^31 elements.

mod index;
mod number;

use crate::collective::{Collective, CollectiveBuffer, SingleProcess};
use crate::error::IrError;
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, CmpDir, Literal, Op, UnaryOp};
use crate::tensor::{Tensor, TensorData};
use index::StridedView;
use indexmap::IndexMap;
use number::Number;
use std::collections::HashMap;

/// The largest tensor the interpreter evaluates.
pub const MAX_INTERP_ELEMENTS: usize = 1 << 31;

/// Runs `graph` on `inputs` (in `graph.inputs()` order) and returns its outputs (in `graph.outputs()` order).
///
/// Only the nodes some output depends on are evaluated.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, IrError> {
    run_in_group(graph, inputs, &SingleProcess)
}

/// [`run`] as one rank of `group`: each `all_reduce` (SPEC §3.12) calls the group, in node order. Every rank must
/// run the same graph, so that they call the same collectives in the same order.
pub fn run_in_group(
    graph: &Graph,
    inputs: &[Tensor],
    group: &dyn Collective,
) -> Result<Vec<Tensor>, IrError> {
    let values = evaluate(graph, inputs, &graph.live(), group)?;
    graph
        .outputs()
        .iter()
        .map(|o| {
            values[o.value.index()]
                .clone()
                .ok_or_else(|| internal(graph, o.value, "output was not evaluated"))
        })
        .collect()
}

/// Runs `graph` on `inputs` (in `graph.inputs()` order) and returns the value of every node (index = `NodeId`).
pub fn run_all(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, IrError> {
    let values = evaluate(graph, inputs, &vec![true; graph.len()], &SingleProcess)?;
    values
        .into_iter()
        .zip(graph.ids())
        .map(|(v, id)| v.ok_or_else(|| internal(graph, id, "node was not evaluated")))
        .collect()
}

/// Runs `graph` on inputs given by name and returns its outputs by name, in `graph.outputs()` order.
pub fn run_named(
    graph: &Graph,
    inputs: &HashMap<String, Tensor>,
) -> Result<IndexMap<String, Tensor>, IrError> {
    let mut ordered = Vec::with_capacity(inputs.len());
    for input in graph.inputs() {
        let value = inputs.get(input.name).ok_or_else(|| IrError::BadInput {
            input: input.name.to_string(),
            message: format!("no value given for this {} input", input.ty),
        })?;
        ordered.push(value.clone());
    }
    let mut unknown: Vec<&String> = inputs
        .keys()
        .filter(|name| graph.input(name).is_none())
        .collect();
    unknown.sort();
    if let Some(name) = unknown.first() {
        return Err(IrError::BadInput {
            input: name.to_string(),
            message: format!("graph `{}` has no input of this name", graph.name),
        });
    }
    let outputs = run(graph, &ordered)?;
    Ok(graph
        .outputs()
        .iter()
        .map(|o| o.name.clone())
        .zip(outputs)
        .collect())
}

/// Checks the graph and inputs, then evaluates every node marked `wanted` (and nothing else) in graph order.
fn evaluate(
    graph: &Graph,
    inputs: &[Tensor],
    wanted: &[bool],
    group: &dyn Collective,
) -> Result<Vec<Option<Tensor>>, IrError> {
    crate::verify::verify(graph)?;
    check_inputs(graph, inputs)?;
    for id in graph.ids().filter(|id| wanted[id.index()]) {
        let ty = graph.ty(id);
        if ty.numel() > MAX_INTERP_ELEMENTS {
            return Err(internal(
                graph,
                id,
                &format!(
                    "result {ty} has more than 2^31 elements, beyond the reference interpreter"
                ),
            ));
        }
    }
    let mut values: Vec<Option<Tensor>> = vec![None; graph.len()];
    let mut next_input = inputs.iter();
    for id in graph.ids() {
        // Inputs are consumed in order whether wanted or not, so that they stay matched to their nodes.
        let given = if matches!(graph.node(id).op, Op::Input { .. }) {
            next_input.next()
        } else {
            None
        };
        if !wanted[id.index()] {
            continue;
        }
        let value = match given {
            Some(t) => t.clone(),
            None => eval_node(graph, id, &values, group)?,
        };
        values[id.index()] = Some(value);
    }
    Ok(values)
}

/// One tensor per graph input, in order, each of exactly the input's type.
fn check_inputs(graph: &Graph, inputs: &[Tensor]) -> Result<(), IrError> {
    let expected: Vec<_> = graph.inputs().collect();
    if inputs.len() != expected.len() {
        let names: Vec<&str> = expected.iter().map(|i| i.name).collect();
        let input = match expected.get(inputs.len()) {
            Some(missing) => missing.name.to_string(),
            None => format!("#{}", expected.len()),
        };
        return Err(IrError::BadInput {
            input,
            message: format!(
                "graph `{}` takes {} input(s) ({}), got {}",
                graph.name,
                expected.len(),
                names.join(", "),
                inputs.len()
            ),
        });
    }
    for (info, tensor) in expected.iter().zip(inputs) {
        if tensor.ty() != info.ty {
            let what = if tensor.dtype() != info.ty.dtype {
                "dtype"
            } else {
                "shape"
            };
            return Err(IrError::BadInput {
                input: info.name.to_string(),
                message: format!("{what} mismatch: expected {}, got {}", info.ty, tensor.ty()),
            });
        }
    }
    Ok(())
}

/// An inconsistency the verifier should have excluded, reported rather than panicking.
fn internal(graph: &Graph, id: NodeId, message: &str) -> IrError {
    IrError::Invalid(format!(
        "node %{} ({}): {message}",
        graph.label(id),
        graph.node(id).op.mnemonic()
    ))
}

/// `TensorData::X(v) => TensorData::X(body)` for every dtype.
macro_rules! each_dtype {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::Bool($v) => TensorData::Bool($body),
        }
    };
}

/// `TensorData::X(v) => TensorData::X(body)` for the numeric dtypes; `$bool` for bool.
macro_rules! each_number {
    ($data:expr, $v:ident => $body:expr, bool => $bool:expr) => {
        match $data {
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::Bool(_) => $bool,
        }
    };
}

/// `(X(a), X(b)) => X(body)` for two operands of one dtype (`numeric` only: f32, f64, i32); `$mixed` for any other
/// pair.
macro_rules! each_pair {
    (numeric $a:expr, $b:expr, $x:ident, $y:ident => $body:expr, else => $mixed:expr) => {
        match ($a, $b) {
            (TensorData::F32($x), TensorData::F32($y)) => TensorData::F32($body),
            (TensorData::F64($x), TensorData::F64($y)) => TensorData::F64($body),
            (TensorData::I32($x), TensorData::I32($y)) => TensorData::I32($body),
            _ => $mixed,
        }
    };
    ($a:expr, $b:expr, $x:ident, $y:ident => $body:expr, else => $mixed:expr) => {
        match ($a, $b) {
            (TensorData::Bool($x), TensorData::Bool($y)) => TensorData::Bool($body),
            (a, b) => each_pair!(numeric a, b, $x, $y => $body, else => $mixed),
        }
    };
}

/// Evaluates one non-input node from its operands' values.
fn eval_node(
    graph: &Graph,
    id: NodeId,
    values: &[Option<Tensor>],
    group: &dyn Collective,
) -> Result<Tensor, IrError> {
    let node = graph.node(id);
    let fail = |message: &str| internal(graph, id, message);
    let operands = node
        .operands
        .iter()
        .map(|o| values[o.index()].as_ref())
        .collect::<Option<Vec<&Tensor>>>()
        .ok_or_else(|| fail("an operand was not evaluated"))?;
    let arg = |i: usize| -> Result<&Tensor, IrError> {
        operands
            .get(i)
            .copied()
            .ok_or_else(|| fail("missing operand"))
    };
    let mismatch = || fail("operand dtypes do not fit the op");
    let ty = node.ty.clone();
    let data = match &node.op {
        Op::Input { .. } => return Err(fail("no value for input")),
        Op::Constant { value, .. } => {
            let values = match value {
                Literal::Splat(v) => vec![*v; ty.numel()],
                Literal::Dense(vs) => vs.clone(),
            };
            return Tensor::from_f64_values(ty, &values);
        }
        Op::Iota { axis, .. } => {
            let dims = ty.dims();
            let inner: usize = dims[axis + 1..].iter().product();
            let extent = dims[*axis];
            let index = |i: usize| (i / inner.max(1) % extent.max(1)) as f64;
            return Tensor::from_f64_values(
                ty.clone(),
                &(0..ty.numel()).map(index).collect::<Vec<_>>(),
            );
        }
        Op::Unary(op) => {
            let x = arg(0)?.data();
            each_number!(x, v => unary(*op, v).ok_or_else(mismatch)?, bool => return Err(mismatch()))
        }
        Op::Cast { to } => return Ok(arg(0)?.cast(*to)),
        Op::Binary(op) => {
            let (a, b) = (arg(0)?.data(), arg(1)?.data());
            each_pair!(numeric a, b, x, y => binary(*op, x, y).ok_or_else(mismatch)?, else => return Err(mismatch()))
        }
        Op::Compare(dir) => {
            let (a, b) = (arg(0)?.data(), arg(1)?.data());
            let bools = match (a, b) {
                (TensorData::F32(x), TensorData::F32(y)) => compare(*dir, x, y),
                (TensorData::F64(x), TensorData::F64(y)) => compare(*dir, x, y),
                (TensorData::I32(x), TensorData::I32(y)) => compare(*dir, x, y),
                (TensorData::Bool(x), TensorData::Bool(y)) => compare(*dir, x, y),
                _ => return Err(mismatch()),
            };
            TensorData::Bool(bools)
        }
        Op::Select => {
            let TensorData::Bool(cond) = arg(0)?.data() else {
                return Err(mismatch());
            };
            let (a, b) = (arg(1)?.data(), arg(2)?.data());
            each_pair!(a, b, x, y => select(cond, x, y), else => return Err(mismatch()))
        }
        Op::ReduceSum { axes, .. } => {
            let x = arg(0)?;
            let dims = x.dims();
            each_number!(
                x.data(),
                v => index::reduce(v, dims, axes, Number::ZERO, Number::step(BinaryOp::Add)),
                bool => return Err(mismatch())
            )
        }
        Op::ReduceMax { axes, .. } => {
            let x = arg(0)?;
            let dims = x.dims();
            each_number!(
                x.data(),
                v => index::reduce(v, dims, axes, Number::MAX_IDENTITY, Number::step(BinaryOp::Max)),
                bool => return Err(mismatch())
            )
        }
        Op::Reshape { .. } => arg(0)?.data().clone(),
        Op::Transpose { perm } => {
            let x = arg(0)?;
            let view = StridedView::transpose(x.dims(), perm);
            each_dtype!(x.data(), v => view.gather(v))
        }
        Op::Broadcast { shape } => {
            let x = arg(0)?;
            let view = StridedView::broadcast(x.dims(), shape.dims());
            each_dtype!(x.data(), v => view.gather(v))
        }
        Op::Slice { start, end } => {
            let x = arg(0)?;
            let view = StridedView::slice(x.dims(), start, end);
            each_dtype!(x.data(), v => view.gather(v))
        }
        Op::Concat { axis } => {
            let first = arg(0)?;
            // Each operand's slice of `first`'s dtype, or a mismatch.
            macro_rules! parts {
                ($variant:ident) => {
                    operands
                        .iter()
                        .map(|t| match t.data() {
                            TensorData::$variant(v) => Ok((v.as_slice(), t.dims())),
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<Vec<_>, _>>()?
                };
            }
            match first.data() {
                TensorData::F32(_) => TensorData::F32(index::concat(&parts!(F32), *axis)),
                TensorData::F64(_) => TensorData::F64(index::concat(&parts!(F64), *axis)),
                TensorData::I32(_) => TensorData::I32(index::concat(&parts!(I32), *axis)),
                TensorData::Bool(_) => TensorData::Bool(index::concat(&parts!(Bool), *axis)),
            }
        }
        Op::Matmul => {
            let (a, b) = (arg(0)?, arg(1)?);
            let (da, db) = (a.dims(), b.dims());
            each_pair!(numeric a.data(), b.data(), x, y => index::matmul(x, y, da, db), else => return Err(mismatch()))
        }
        Op::Pad { low, high, value } => {
            let x = arg(0)?;
            let fill = value.get(0);
            let values: Vec<f64> = index::pad_sources(x.dims(), low, high)
                .into_iter()
                .map(|at| at.map_or(fill, |i| x.data().get_f64(i)))
                .collect();
            return Tensor::from_f64_values(ty, &values);
        }
        Op::Windows {
            window,
            stride,
            dilation,
        } => {
            let x = arg(0)?;
            let view = StridedView::windows(x.dims(), window, stride, dilation);
            each_dtype!(x.data(), v => view.gather(v))
        }
        Op::Gather { axis } => {
            let (x, idx) = (arg(0)?, arg(1)?);
            let TensorData::I32(indices) = idx.data() else {
                return Err(mismatch());
            };
            let values: Vec<f64> = index::gather_sources(x.dims(), idx.dims(), indices, *axis)
                .into_iter()
                .map(|at| at.map_or(0.0, |i| x.data().get_f64(i)))
                .collect();
            return Tensor::from_f64_values(ty, &values);
        }
        Op::OverlapAdd {
            size,
            stride,
            dilation,
        } => {
            let x = arg(0)?;
            let dims = x.dims();
            each_number!(
                x.data(),
                v => index::overlap_add(v, dims, size, stride, dilation),
                bool => return Err(mismatch())
            )
        }
        Op::AllReduce { op, .. } => {
            let mut data = arg(0)?.data().clone();
            let buffer = match &mut data {
                TensorData::F32(v) => CollectiveBuffer::F32(v),
                TensorData::F64(v) => CollectiveBuffer::F64(v),
                TensorData::I32(_) | TensorData::Bool(_) => return Err(mismatch()),
            };
            let during = format!("%{} (all_reduce)", graph.label(id));
            group
                .all_reduce(buffer, *op, &during)
                .map_err(|e| IrError::Invalid(e.to_string()))?;
            data
        }
    };
    Tensor::new(ty, data)
}

fn unary<T: Number>(op: UnaryOp, x: &[T]) -> Option<Vec<T>> {
    let f = T::unary(op)?;
    Some(x.iter().map(|&a| f(a)).collect())
}

/// `None` where the dtype's table excludes the op.
fn binary<T: Number>(op: BinaryOp, x: &[T], y: &[T]) -> Option<Vec<T>> {
    let f = T::binary(op)?;
    Some(x.iter().zip(y).map(|(&a, &b)| f(a, b)).collect())
}

/// IEEE comparisons (the table's [`CmpDir::eval`]); bool only reaches here with eq/ne.
fn compare<T: PartialOrd>(dir: CmpDir, x: &[T], y: &[T]) -> Vec<bool> {
    x.iter().zip(y).map(|(a, b)| dir.eval(a, b)).collect()
}

fn select<T: Copy>(cond: &[bool], a: &[T], b: &[T]) -> Vec<T> {
    cond.iter()
        .zip(a.iter().zip(b))
        .map(|(&c, (&x, &y))| if c { x } else { y })
        .collect()
}
