//! One Kiln node → ONNX nodes (opset [`super::OPSET`]). [`lower`] is one `match` over every primitive op with no
//! wildcard arm, so a new op does not compile until it is given a translation or a refusal here.
//!
//! Where ONNX leaves a case undefined that Kiln defines (an i32 division by zero, a float → i32 cast out of range,
//! a `gather` index out of range), the translation spells Kiln's meaning out with `Where`, so the exported model
//! computes Kiln's values on every input, not only on the well-behaved ones.

use super::emit::Emitter;
use super::proto_values::{attr_int, attr_ints, onnx_dtype};
use super::ExportError;
use kiln_ir::{BinaryOp, CmpDir, DType, Graph, Literal, NodeId, Op, Tensor, TensorType, UnaryOp};

/// Emits the nodes computing node `id` of `graph` into the value `out`; `ins` are its operands' value names.
pub fn lower(
    e: &mut Emitter,
    graph: &Graph,
    id: NodeId,
    ins: &[&str],
    out: &str,
) -> Result<(), ExportError> {
    let node = graph.node(id);
    let ty = &node.ty;
    let operand_ty = |i: usize| graph.ty(node.operands[i]);
    let refuse = |reason: &str| Err(ExportError::unsupported(graph, id, reason));
    match &node.op {
        // Graph inputs and initializers are values already; the caller lists them.
        Op::Input { .. } => {}
        Op::Constant { ty, value } => constant(e, ty, value, out)?,
        // An input-free node: its value, computed by the reference interpreter, is the initializer.
        Op::Iota { .. } => {
            let value = evaluate_source(&node.op).map_err(|m| ExportError::node(graph, id, &m))?;
            initializer(e, &value, out);
        }
        Op::Unary(u) => {
            let op_type = match u {
                UnaryOp::Neg => "Neg",
                UnaryOp::Exp => "Exp",
                UnaryOp::Log => "Log",
                UnaryOp::Sqrt => "Sqrt",
                UnaryOp::Recip => "Reciprocal",
                UnaryOp::Tanh => "Tanh",
                UnaryOp::Logistic => "Sigmoid",
                UnaryOp::Abs => "Abs",
                UnaryOp::Erf => "Erf",
                UnaryOp::Sin => "Sin",
                UnaryOp::Cos => "Cos",
                UnaryOp::Floor => "Floor",
                UnaryOp::Ceil => "Ceil",
                // ONNX's Round is also to nearest, ties to even.
                UnaryOp::Round => "Round",
                UnaryOp::Trunc => {
                    // No ONNX Trunc: ceil below zero, floor above (ceil keeps -0 for (-1, 0), as trunc does).
                    let x = ins[0];
                    let zero = e.scalar(out, ty.dtype, 0.0);
                    let negative = e.step(out, "Less", &[x, &zero], vec![]);
                    let up = e.step(out, "Ceil", &[x], vec![]);
                    let down = e.step(out, "Floor", &[x], vec![]);
                    e.node("Where", &[&negative, &up, &down], out, vec![]);
                    return Ok(());
                }
            };
            e.node(op_type, ins, out, vec![]);
        }
        Op::Cast { to } => cast(e, ins[0], operand_ty(0).dtype, *to, out),
        Op::Binary(b) => {
            let op_type = match b {
                BinaryOp::Add => "Add",
                BinaryOp::Sub => "Sub",
                BinaryOp::Mul => "Mul",
                BinaryOp::Div if ty.dtype == DType::I32 => {
                    int_div(e, ins[0], ins[1], out);
                    return Ok(());
                }
                BinaryOp::Div => "Div",
                BinaryOp::Max => "Max",
                BinaryOp::Min => "Min",
                BinaryOp::Pow => "Pow",
                BinaryOp::And => "BitwiseAnd",
                BinaryOp::Or => "BitwiseOr",
                BinaryOp::Xor => "BitwiseXor",
                // ONNX's BitShift takes only unsigned types and its amount is not taken mod 32; reading an i32 as
                // u32 needs a Cast whose out-of-range behaviour ONNX leaves undefined.
                BinaryOp::Shl | BinaryOp::Shr => {
                    return refuse("ONNX's BitShift is defined only on unsigned types, with no modulo-32 amount")
                }
                BinaryOp::MulHi => return refuse("ONNX has no high half of a 32-bit product"),
            };
            e.node(op_type, ins, out, vec![]);
        }
        Op::Compare(dir) => {
            let op_type = match dir {
                CmpDir::Lt => "Less",
                CmpDir::Le => "LessOrEqual",
                CmpDir::Gt => "Greater",
                CmpDir::Ge => "GreaterOrEqual",
                CmpDir::Eq => "Equal",
                CmpDir::Ne => {
                    let eq = e.step(out, "Equal", ins, vec![]);
                    e.node("Not", &[&eq], out, vec![]);
                    return Ok(());
                }
            };
            e.node(op_type, ins, out, vec![]);
        }
        Op::Select => select(e, ty.dtype, [ins[0], ins[1], ins[2]], out),
        Op::ReduceSum { axes, keep_dims } | Op::ReduceMax { axes, keep_dims } => {
            let op_type = if matches!(node.op, Op::ReduceSum { .. }) {
                "ReduceSum"
            } else {
                "ReduceMax"
            };
            // ONNX reduces every axis when `axes` is empty; Kiln reduces none.
            if axes.is_empty() {
                e.node("Identity", ins, out, vec![]);
            } else {
                let axes = e.ints(out, &to_i64(axes));
                let keep = attr_int("keepdims", i64::from(*keep_dims));
                e.node(op_type, &[ins[0], &axes], out, vec![keep]);
            }
        }
        Op::Reshape { shape } => {
            let dims = e.ints(out, &to_i64(shape.dims()));
            // Without `allowzero`, a 0 in ONNX's shape copies the input's dim; Kiln's 0 is a 0-sized dim.
            let attrs = if shape.dims().contains(&0) {
                vec![attr_int("allowzero", 1)]
            } else {
                vec![]
            };
            e.node("Reshape", &[ins[0], &dims], out, attrs);
        }
        Op::Transpose { perm } => {
            e.node("Transpose", ins, out, vec![attr_ints("perm", perm)]);
        }
        Op::Broadcast { shape } => {
            let dims = e.ints(out, &to_i64(shape.dims()));
            e.node("Expand", &[ins[0], &dims], out, vec![]);
        }
        Op::Slice { start, end } => slice(e, ins[0], operand_ty(0).dims(), start, end, out),
        Op::Concat { axis } => {
            e.node("Concat", ins, out, vec![attr_int("axis", *axis as i64)]);
        }
        Op::Matmul => {
            e.node("MatMul", ins, out, vec![]);
        }
        Op::Pad { low, high, value } => {
            let pads: Vec<i64> = to_i64(low).into_iter().chain(to_i64(high)).collect();
            let pads = e.ints(out, &pads);
            let fill = e.scalar(out, ty.dtype, value.get(0));
            e.node("Pad", &[ins[0], &pads, &fill], out, vec![]);
        }
        Op::Windows {
            window,
            stride,
            dilation,
        } => windows(e, ins[0], operand_ty(0).dims(), window, stride, dilation, out),
        Op::OverlapAdd { .. } => {
            return refuse(
                "overlap_add (the transpose of windows, a scatter-add of overlapping windows) has no ONNX op",
            )
        }
        Op::Gather { axis } => gather(e, ins, operand_ty(0), ty, *axis, out),
        Op::AllReduce { .. } => {
            return refuse(
                "all_reduce (a collective across processes, in data-parallel training steps) has no ONNX op",
            )
        }
    }
    Ok(())
}

fn to_i64(values: &[usize]) -> Vec<i64> {
    values.iter().map(|&v| v as i64).collect()
}

/// The value of an input-free node, by the reference interpreter (so it is Kiln's meaning, whatever the op).
fn evaluate_source(op: &Op) -> Result<Tensor, String> {
    let mut g = Graph::new("source");
    let id = g.add(op.clone(), &[]).map_err(|e| e.to_string())?;
    g.add_output("value", id).map_err(|e| e.to_string())?;
    let mut values = kiln_ir::interp::run(&g, &[]).map_err(|e| e.to_string())?;
    values
        .pop()
        .ok_or_else(|| "the interpreter returned no value".to_string())
}

/// An initializer named `out` (the node's own value name).
fn initializer(e: &mut Emitter, value: &Tensor, out: &str) {
    e.initializers
        .push(super::proto_values::tensor_proto(out, value));
}

/// A dense constant becomes an initializer; a splat of more than one element a scalar initializer and an `Expand`
/// (a splat of zeros over a large shape would otherwise be stored element by element).
fn constant(
    e: &mut Emitter,
    ty: &TensorType,
    value: &Literal,
    out: &str,
) -> Result<(), ExportError> {
    let invalid = |err: kiln_ir::IrError| ExportError::Invalid(format!("constant `{out}`: {err}"));
    match value {
        Literal::Splat(v) if ty.numel() > 1 => {
            let scalar = e.scalar(out, ty.dtype, *v);
            let dims = e.ints(out, &to_i64(ty.dims()));
            e.node("Expand", &[&scalar, &dims], out, vec![]);
        }
        Literal::Splat(v) => {
            let t = Tensor::from_f64_values(ty.clone(), &vec![*v; ty.numel()]).map_err(invalid)?;
            initializer(e, &t, out);
        }
        Literal::Dense(vs) => {
            let t = Tensor::from_f64_values(ty.clone(), vs).map_err(invalid)?;
            initializer(e, &t, out);
        }
    }
    Ok(())
}

/// `cast`. Float → i32 is spelled out: Kiln's cast truncates, saturates at the i32 range and maps NaN to 0 (Rust's
/// `as`), where ONNX leaves out-of-range values undefined. The largest f32 below 2^31 is 2^31 - 128, so an f32 is
/// clipped to `[-2^31, 2^31 - 128]` and values from 2^31 up become `i32::MAX` by a `Where`.
fn cast(e: &mut Emitter, x: &str, from: DType, to: DType, out: &str) {
    let to_attr = || vec![attr_int("to", onnx_dtype(to) as i32 as i64)];
    if !(from.is_float() && to == DType::I32) {
        e.node("Cast", &[x], out, to_attr());
        return;
    }
    let nan = e.step(out, "IsNaN", &[x], vec![]);
    let zero = e.scalar(out, from, 0.0);
    let finite = e.step(out, "Where", &[&nan, &zero, x], vec![]);
    let lo = e.scalar(out, from, -2_147_483_648.0);
    let hi_value = if from == DType::F32 {
        2_147_483_520.0
    } else {
        2_147_483_647.0
    };
    let hi = e.scalar(out, from, hi_value);
    let clipped = e.step(out, "Clip", &[&finite, &lo, &hi], vec![]);
    if from == DType::F64 {
        e.node("Cast", &[&clipped], out, to_attr());
        return;
    }
    let cast = e.step(out, "Cast", &[&clipped], to_attr());
    let limit = e.scalar(out, from, 2_147_483_648.0);
    let above = e.step(out, "GreaterOrEqual", &[&finite, &limit], vec![]);
    let max = e.scalar(out, DType::I32, i32::MAX as f64);
    e.node("Where", &[&above, &max, &cast], out, vec![]);
}

/// i32 `div`: ONNX's integer `Div` is undefined for a zero divisor and for `MIN / -1` (both trap on x86). Kiln's:
/// `x / 0 = 0`, `MIN / -1 = MIN` (= `-x` with wrapping). So divide by 1 there and pick the results with `Where`.
fn int_div(e: &mut Emitter, a: &str, b: &str, out: &str) {
    let zero = e.scalar(out, DType::I32, 0.0);
    let one = e.scalar(out, DType::I32, 1.0);
    let minus_one = e.scalar(out, DType::I32, -1.0);
    let by_zero = e.step(out, "Equal", &[b, &zero], vec![]);
    let by_minus_one = e.step(out, "Equal", &[b, &minus_one], vec![]);
    let special = e.step(out, "Or", &[&by_zero, &by_minus_one], vec![]);
    let safe = e.step(out, "Where", &[&special, &one, b], vec![]);
    let quotient = e.step(out, "Div", &[a, &safe], vec![]);
    let negated = e.step(out, "Neg", &[a], vec![]);
    let nonzero = e.step(out, "Where", &[&by_minus_one, &negated, &quotient], vec![]);
    e.node("Where", &[&by_zero, &zero, &nonzero], out, vec![]);
}

/// `slice`: ONNX `Slice` over the axes whose range is not the whole dim (`Identity` when none).
fn slice(e: &mut Emitter, x: &str, dims: &[usize], start: &[usize], end: &[usize], out: &str) {
    let axes: Vec<usize> = (0..dims.len())
        .filter(|&k| start[k] != 0 || end[k] != dims[k])
        .collect();
    if axes.is_empty() {
        e.node("Identity", &[x], out, vec![]);
        return;
    }
    let pick = |v: &[usize]| axes.iter().map(|&k| v[k] as i64).collect::<Vec<i64>>();
    let starts = e.ints(out, &pick(start));
    let ends = e.ints(out, &pick(end));
    let axes = e.ints(out, &to_i64(&axes));
    e.node("Slice", &[x, &starts, &ends, &axes], out, vec![]);
}

/// `windows` as one `Gather` per windowed dim: the index table `[o, k]` holding `o·stride + a·dilation` replaces the
/// dim `n` by the two dims `(o, k)`. After all of them the dims are `[lead.., o_1, k_1, o_2, k_2, ..]`, and a
/// `Transpose` puts the window positions last, as `windows` does. Exact for every stride and dilation (pooling and
/// im2col read through it).
fn windows(
    e: &mut Emitter,
    x: &str,
    dims: &[usize],
    window: &[usize],
    stride: &[usize],
    dilation: &[usize],
    out: &str,
) {
    let s = window.len();
    if s == 0 {
        // No windowed dim: the view is the operand itself.
        e.node("Identity", &[x], out, vec![]);
        return;
    }
    let lead = dims.len() - s;
    let mut current = x.to_string();
    let dims = window.iter().zip(stride).zip(dilation).zip(&dims[lead..]);
    for (k, (((&window, &stride), &dilation), &n)) in dims.enumerate() {
        let span = dilation * (window - 1) + 1;
        // The typing rule guarantees span ≤ n, so there is at least one window.
        let count = (n - span) / stride + 1;
        let table: Vec<i64> = (0..count)
            .flat_map(|o| (0..window).map(move |a| (o * stride + a * dilation) as i64))
            .collect();
        let indices = e.int_table(out, &[count, window], &table);
        let axis = attr_int("axis", (lead + 2 * k) as i64);
        // With one windowed dim the gather's result is the node's value; with more, the transpose's.
        current = if s == 1 {
            e.node("Gather", &[&current, &indices], out, vec![axis])
        } else {
            e.step(out, "Gather", &[&current, &indices], vec![axis])
        };
    }
    if s > 1 {
        let perm: Vec<usize> = (0..lead)
            .chain((0..s).map(|k| lead + 2 * k))
            .chain((0..s).map(|k| lead + 2 * k + 1))
            .collect();
        e.node(
            "Transpose",
            &[&current],
            out,
            vec![attr_ints("perm", &perm)],
        );
    }
}

/// `gather` → `GatherElements`, with Kiln's rule for an index outside `0..n` (it reads 0; ONNX rejects it and counts
/// negative indices from the end): the index is replaced by 0 there and the element by a zero.
fn gather(
    e: &mut Emitter,
    ins: &[&str],
    x_ty: &TensorType,
    ty: &TensorType,
    axis: usize,
    out: &str,
) {
    let (x, idx) = (ins[0], ins[1]);
    let zero_element = e.scalar(out, ty.dtype, 0.0);
    let n = x_ty.dims()[axis];
    if n == 0 {
        // Nothing to read: every index is out of range.
        let dims = e.ints(out, &to_i64(ty.dims()));
        e.node("Expand", &[&zero_element, &dims], out, vec![]);
        return;
    }
    let zero = e.scalar(out, DType::I32, 0.0);
    let extent = e.scalar(out, DType::I32, n as f64);
    let non_negative = e.step(out, "GreaterOrEqual", &[idx, &zero], vec![]);
    let below = e.step(out, "Less", &[idx, &extent], vec![]);
    let valid = e.step(out, "And", &[&non_negative, &below], vec![]);
    let safe = e.step(out, "Where", &[&valid, idx, &zero], vec![]);
    let axis = attr_int("axis", axis as i64);
    let gathered = e.step(out, "GatherElements", &[x, &safe], vec![axis]);
    select(e, ty.dtype, [&valid, &gathered, &zero_element], out);
}

/// `Where(c, a, b)` into `out`. On bool branches it is `Or(And(c, a), And(Not(c), b))`: ONNX defines `Where` on
/// bool, but onnxruntime (1.23) has no bool kernel for it, and the logical form is the same values everywhere.
fn select(e: &mut Emitter, dtype: DType, [c, a, b]: [&str; 3], out: &str) {
    if dtype != DType::Bool {
        e.node("Where", &[c, a, b], out, vec![]);
        return;
    }
    let when = e.step(out, "And", &[c, a], vec![]);
    let not = e.step(out, "Not", &[c], vec![]);
    let otherwise = e.step(out, "And", &[&not, b], vec![]);
    e.node("Or", &[&when, &otherwise], out, vec![]);
}
