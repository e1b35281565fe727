//! Movement and shape ops: `Constant`, `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`, `Transpose`, `Concat`, `Split`,
//! `Slice`, `Expand`, `Tile`, `Pad`, `Gather`, `ConstantOfShape`.
//!
//! The shape-computing parts ([`target_dims`], [`slice_plan`]) are shared with [`crate::onnx::fold`], which applies
//! them to values known at import.

use crate::onnx::convert::{Ctx, NodeCx, OpError, OpResult, Out};
use crate::onnx::tensor::{Constant, Elements};
use kiln_ir::{builder::broadcast_shapes, CmpDir, DType, TensorType, Value};

/// A static integer list operand: input `i` from `opset_input` on, attribute `attr` before (`None` when absent).
pub fn ints_operand(
    cx: &Ctx,
    n: &NodeCx,
    attr: &str,
    i: usize,
    opset_input: i64,
) -> OpResult<Option<Vec<i64>>> {
    if n.opset < opset_input {
        return Ok(n.attrs.ints(attr));
    }
    Ok(cx.static_input(n, i, attr)?.map(|c| c.ints()))
}

/// `axis` (possibly negative) as an index into `0..rank`.
pub fn axis_index(n: &NodeCx, axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(n.error(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(((axis + r) % r.max(1)) as usize)
}

pub fn constant(n: &NodeCx) -> OpResult<Constant> {
    let a = &n.attrs;
    if let Some(t) = a.tensor("value")? {
        return Ok(t);
    }
    if a.has("value_float") {
        return Ok(Constant {
            dtype: DType::F32,
            dims: vec![],
            elements: Elements::Float(vec![a.float("value_float", 0.0)]),
        });
    }
    if let Some(v) = a.floats("value_floats") {
        return Ok(Constant {
            dtype: DType::F32,
            dims: vec![v.len()],
            elements: Elements::Float(v),
        });
    }
    if a.has("value_int") {
        return Ok(Constant::from_ints(vec![], vec![a.int("value_int", 0)]));
    }
    if let Some(v) = a.ints("value_ints") {
        return Ok(Constant::from_ints(vec![v.len()], v));
    }
    let names: Vec<&str> = a.names().collect();
    Err(n.unsupported(format!("value attribute {names:?}")))
}

/// The result dims of `Reshape`, `Flatten`, `Squeeze` and `Unsqueeze` applied to an input of dims `dims`.
pub fn target_dims(cx: &Ctx, n: &NodeCx, dims: &[usize]) -> OpResult<Vec<usize>> {
    let rank = dims.len();
    match n.op_type() {
        "Reshape" => {
            let spec = if n.opset < 5 {
                n.attrs.ints("shape")
            } else {
                cx.static_input(n, 1, "shape")?.map(|c| c.ints())
            }
            .ok_or_else(|| n.error("needs a shape"))?;
            let allowzero = n.attrs.int("allowzero", 0) != 0;
            reshape_dims(n, dims, &spec, allowzero)
        }
        "Flatten" => {
            let axis = n.attrs.int("axis", 1);
            let axis = if axis == rank as i64 {
                rank
            } else {
                axis_index(n, axis, rank)?
            };
            Ok(vec![
                dims[..axis].iter().product(),
                dims[axis..].iter().product(),
            ])
        }
        "Squeeze" => {
            let axes = ints_operand(cx, n, "axes", 1, 13)?;
            let axes: Vec<usize> = match axes {
                Some(axes) => axes
                    .iter()
                    .map(|&a| axis_index(n, a, rank))
                    .collect::<OpResult<_>>()?,
                None => (0..rank).filter(|&d| dims[d] == 1).collect(),
            };
            if let Some(&bad) = axes.iter().find(|&&a| dims[a] != 1) {
                return Err(n.error(format!("cannot squeeze axis {bad} of size {}", dims[bad])));
            }
            Ok((0..rank)
                .filter(|d| !axes.contains(d))
                .map(|d| dims[d])
                .collect())
        }
        _ => {
            // Unsqueeze: the axes index the result.
            let axes = ints_operand(cx, n, "axes", 1, 13)?.ok_or_else(|| n.error("needs axes"))?;
            let out_rank = rank + axes.len();
            let mut ones = vec![false; out_rank];
            for &a in &axes {
                let a = axis_index(n, a, out_rank)?;
                if std::mem::replace(&mut ones[a], true) {
                    return Err(n.error(format!("axis {a} is given twice")));
                }
            }
            let mut rest = dims.iter();
            Ok(ones
                .iter()
                .map(|&one| {
                    if one {
                        1
                    } else {
                        *rest.next().expect("counted")
                    }
                })
                .collect())
        }
    }
}

/// ONNX `Reshape`'s rules: `0` copies the input's dim (unless `allowzero`), `-1` is inferred.
fn reshape_dims(n: &NodeCx, dims: &[usize], spec: &[i64], allowzero: bool) -> OpResult<Vec<usize>> {
    let numel: usize = dims.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*dims.get(i).ok_or_else(|| {
                n.error(format!("shape {spec:?}: 0 at {i} has no input dim to copy"))
            })?),
            s if s >= 0 => out.push(s as usize),
            _ => return Err(n.error(format!("invalid shape {spec:?}"))),
        }
    }
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        if known == 0 || !numel.is_multiple_of(known) {
            return Err(n.error(format!(
                "cannot infer the -1 of shape {spec:?} for input dims {dims:?}"
            )));
        }
        out[i] = numel / known;
    }
    if out.iter().product::<usize>() != numel {
        return Err(n.error(format!(
            "shape {spec:?} does not hold the {numel} elements of {dims:?}"
        )));
    }
    Ok(out)
}

pub fn reshape_family(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let dims = target_dims(cx, n, cx.b.shape(x))?;
    Ok(cx.b.reshape(x, &dims)?)
}

pub fn transpose(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let rank = cx.b.shape(x).len();
    let perm: Vec<usize> = match n.attrs.ints("perm") {
        Some(p) => p
            .iter()
            .map(|&a| axis_index(n, a, rank))
            .collect::<OpResult<_>>()?,
        None => (0..rank).rev().collect(),
    };
    Ok(cx.b.transpose(x, &perm)?)
}

pub fn concat(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let xs = cx.inputs(n)?;
    let axis = n.attrs.int("axis", 0) as isize;
    Ok(cx.b.concat(&xs, axis)?)
}

pub fn split(cx: &mut Ctx, n: &NodeCx) -> OpResult<Vec<Out>> {
    let x = cx.input(n, 0)?;
    let dims = cx.b.shape(x).to_vec();
    let axis = axis_index(n, n.attrs.int("axis", 0), dims.len())?;
    let total = dims[axis];
    // Without sizes: equal parts, one per output; from opset 18 the last may be smaller (`num_outputs` with a
    // remainder, which must equal the output count).
    let parts = n.output_count().max(1);
    let sizes: Vec<usize> = match ints_operand(cx, n, "split", 1, 13)? {
        Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
        None => {
            let chunk = total.div_ceil(parts);
            (0..parts)
                .map(|k| chunk.min(total.saturating_sub(k * chunk)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != total {
        return Err(n.error(format!(
            "split sizes {sizes:?} do not add up to dim {total}"
        )));
    }
    let mut start = vec![0; dims.len()];
    let mut outs = Vec::with_capacity(sizes.len());
    for s in sizes {
        let mut end = dims.clone();
        end[axis] = start[axis] + s;
        outs.push(Out::Node(cx.b.slice(x, &start, &end)?));
        start[axis] += s;
    }
    Ok(outs)
}

/// What a `Slice` keeps of one axis: `count` indices from `start`, `step` apart.
pub struct AxisSlice {
    pub axis: usize,
    pub start: usize,
    pub step: i64,
    pub count: usize,
}

impl AxisSlice {
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).map(|k| (self.start as i64 + k as i64 * self.step) as usize)
    }
}

pub struct SlicePlan {
    pub axes: Vec<AxisSlice>,
}

/// ONNX `Slice`'s clamping rules: negative starts and ends count from the end, then are clamped to the dim
/// (`[0, d]` for positive steps, `[-1, d-1]` for negative ones).
pub fn slice_plan(cx: &Ctx, n: &NodeCx, dims: &[usize]) -> OpResult<SlicePlan> {
    let (starts, ends, axes, steps) = if n.opset < 10 {
        (
            n.attrs.ints("starts"),
            n.attrs.ints("ends"),
            n.attrs.ints("axes"),
            None,
        )
    } else {
        let get = |i, what| cx.static_input(n, i, what).map(|c| c.map(|c| c.ints()));
        (
            get(1, "starts")?,
            get(2, "ends")?,
            get(3, "axes")?,
            get(4, "steps")?,
        )
    };
    let starts = starts.ok_or_else(|| n.error("needs starts"))?;
    let ends = ends.ok_or_else(|| n.error("needs ends"))?;
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(n.error("starts, ends, axes and steps differ in length"));
    }
    let mut plan = SlicePlan { axes: Vec::new() };
    for k in 0..starts.len() {
        let axis = axis_index(n, axes[k], dims.len())?;
        let d = dims[axis] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(n.error("a step of 0"));
        }
        let wrap = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = (wrap(starts[k]), wrap(ends[k]));
        let (s, count) = if step > 0 {
            let (s, e) = (s.clamp(0, d), e.clamp(0, d));
            (s, ((e - s).max(0) as u64).div_ceil(step as u64))
        } else {
            let (s, e) = (s.clamp(-1, d - 1), e.clamp(-1, d - 1));
            (
                s.max(0),
                ((s - e).max(0) as u64).div_ceil(step.unsigned_abs()),
            )
        };
        plan.axes.push(AxisSlice {
            axis,
            start: s as usize,
            step,
            count: count as usize,
        });
    }
    Ok(plan)
}

pub fn slice(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let mut x = cx.input(n, 0)?;
    let plan = slice_plan(cx, n, cx.b.shape(x))?;
    for a in plan.axes {
        let dims = cx.b.shape(x).to_vec();
        if a.step == 1 || a.count == 0 {
            let mut start = vec![0; dims.len()];
            let mut end = dims.clone();
            start[a.axis] = if a.count == 0 { 0 } else { a.start };
            end[a.axis] = start[a.axis] + a.count;
            x = cx.b.slice(x, &start, &end)?;
        } else {
            // Steps other than 1 pick elements by index: a `take` of constant indices.
            let ty = TensorType::new(DType::I32, [a.count].as_slice());
            let values = a.indices().map(|i| i as f64).collect();
            let indices = cx.b.literal(ty, values)?;
            x = cx.b.take(x, indices, a.axis as isize)?;
        }
    }
    Ok(x)
}

pub fn expand(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let shape = cx
        .static_input(n, 1, "shape")?
        .ok_or_else(|| n.error("needs a shape"))?;
    let shape: Vec<usize> = shape.ints().iter().map(|&d| d.max(0) as usize).collect();
    let out = broadcast_shapes(cx.b.shape(x), &shape).ok_or_else(|| {
        n.error(format!(
            "shape {:?} does not broadcast with {shape:?}",
            cx.b.shape(x)
        ))
    })?;
    Ok(cx.b.broadcast(x, &out)?)
}

/// The most copies `Tile` concatenates along one axis (one operand each).
const MAX_REPEATS: i64 = 4096;

/// `Tile`: each axis with `r > 1` repeats is a `concat` of `r` copies.
pub fn tile(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let mut x = cx.input(n, 0)?;
    let repeats = cx
        .static_input(n, 1, "repeats")?
        .ok_or_else(|| n.error("needs repeats"))?;
    let repeats = repeats.ints();
    if repeats.len() != cx.b.shape(x).len() || repeats.iter().any(|&r| r < 0) {
        return Err(n.error(format!("repeats {repeats:?} do not fit {}", cx.b.ty(x))));
    }
    for (axis, &r) in repeats.iter().enumerate() {
        if r > MAX_REPEATS {
            return Err(n.unsupported(format!("{r} repeats (at most {MAX_REPEATS})")));
        }
        if r == 1 {
            continue;
        }
        if r == 0 {
            let dims = cx.b.shape(x).to_vec();
            let mut end = dims.clone();
            end[axis] = 0;
            x = cx.b.slice(x, &vec![0; dims.len()], &end)?;
            continue;
        }
        let copies = vec![x; r as usize];
        x = cx.b.concat(&copies, axis as isize)?;
    }
    Ok(x)
}

/// `Pad` in constant mode. Pads are an attribute before opset 11 (`paddings` before 2), an input from 11, with an
/// optional `axes` input from 18; negative pads crop.
pub fn pad(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let mode = n.attrs.string("mode", "constant")?;
    // `None` for constant padding (Kiln's `pad`); else where output position j − low reads from.
    let index_of: Option<fn(i64, i64) -> i64> = match mode.as_str() {
        "constant" => None,
        "edge" => Some(|i, n| i.clamp(0, n - 1)),
        // Mirrored without repeating the edge (NumPy's `reflect`): period 2(n − 1).
        "reflect" => Some(|i, n| {
            if n == 1 {
                return 0;
            }
            let m = i.rem_euclid(2 * (n - 1));
            if m < n {
                m
            } else {
                2 * (n - 1) - m
            }
        }),
        "wrap" => Some(|i, n| i.rem_euclid(n)),
        _ => return Err(n.unsupported(format!("mode `{mode}`"))),
    };
    let rank = cx.b.shape(x).len();
    let (pads, value, axes) = if n.opset < 11 {
        let pads = n.attrs.ints(if n.opset < 2 { "paddings" } else { "pads" });
        (pads, n.attrs.float("value", 0.0), None)
    } else {
        let pads = cx.static_input(n, 1, "pads")?.map(|c| c.ints());
        let value = match cx.static_input(n, 2, "constant_value")? {
            Some(c) => c.floats().first().copied().unwrap_or(0.0),
            None => 0.0,
        };
        let axes = cx.static_input(n, 3, "axes")?.map(|c| c.ints());
        (pads, value, axes)
    };
    let pads = pads.ok_or_else(|| n.error("needs pads"))?;
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| axis_index(n, a, rank))
            .collect::<OpResult<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(n.error(format!("{} pads for {} axes", pads.len(), axes.len())));
    }
    let mut low = vec![0i64; rank];
    let mut high = vec![0i64; rank];
    for (k, &a) in axes.iter().enumerate() {
        low[a] = pads[k];
        high[a] = pads[k + axes.len()];
    }
    if let Some(index_of) = index_of {
        return pad_by_index(cx, n, x, &low, &high, index_of);
    }
    let pos = |v: &[i64]| v.iter().map(|&p| p.max(0) as usize).collect::<Vec<_>>();
    let y = cx.b.pad(x, &pos(&low), &pos(&high), value)?;
    if low.iter().chain(&high).all(|&p| p >= 0) {
        return Ok(y);
    }
    // Negative pads: crop what the (non-negative) padding left.
    let dims = cx.b.shape(y).to_vec();
    let start: Vec<usize> = low.iter().map(|&p| (-p).max(0) as usize).collect();
    let end: Vec<usize> = dims
        .iter()
        .zip(&high)
        .map(|(&d, &p)| d.saturating_sub((-p).max(0) as usize))
        .collect();
    if start.iter().zip(&end).any(|(s, e)| s > e) {
        return Err(n.error(format!("pads {pads:?} crop more than {}", cx.b.ty(x))));
    }
    Ok(cx.b.slice(y, &start, &end)?)
}

/// `edge`, `reflect` and `wrap` padding: along each padded axis, output position `j` reads input position
/// `index_of(j − low, extent)`, a constant index vector for `take` (negative pads crop the same way).
fn pad_by_index(
    cx: &mut Ctx,
    n: &NodeCx,
    mut x: Value,
    low: &[i64],
    high: &[i64],
    index_of: fn(i64, i64) -> i64,
) -> OpResult<Value> {
    for axis in 0..low.len() {
        if low[axis] == 0 && high[axis] == 0 {
            continue;
        }
        let extent = cx.b.shape(x)[axis] as i64;
        let out = extent + low[axis] + high[axis];
        if out < 0 || (extent == 0 && out > 0) {
            return Err(n.error(format!(
                "pads {}/{} on axis {axis} of {}",
                low[axis],
                high[axis],
                cx.b.ty(x)
            )));
        }
        let index: Vec<f64> = (0..out)
            .map(|j| index_of(j - low[axis], extent) as f64)
            .collect();
        let index =
            cx.b.literal(TensorType::new(DType::I32, [out as usize]), index)?;
        x = cx.b.take(x, index, axis as isize)?;
    }
    Ok(x)
}

/// `Gather` (NumPy's `take`) and `GatherElements` (`take_along_axis`, Kiln's `gather`); negative indices count
/// from the end. Kiln reads 0 for an index out of range, where ONNX's behaviour is undefined.
pub fn gather(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let rank = cx.b.shape(x).len();
    let axis = axis_index(n, n.attrs.int("axis", 0), rank)?;
    let extent = cx.b.shape(x)[axis] as i64;
    let indices = wrapped_indices(cx, n, extent)?;
    Ok(if n.op_type() == "GatherElements" {
        cx.b.gather(x, indices, axis as isize)?
    } else {
        cx.b.take(x, indices, axis as isize)?
    })
}

/// Input 1 (indices into a dim of `extent`) with negative indices counted from the end: at import when known,
/// else by a `select` in the graph.
fn wrapped_indices(cx: &mut Ctx, n: &NodeCx, extent: i64) -> OpResult<Value> {
    Ok(
        match n.input_name(1).and_then(|name| cx.constant_of(name)) {
            Some(c) => {
                let values: Vec<f64> = c
                    .ints()
                    .iter()
                    .map(|&i| if i < 0 { i + extent } else { i } as f64)
                    .collect();
                let ty = TensorType::new(DType::I32, c.dims.as_slice());
                cx.b.literal(ty, values)?
            }
            None => {
                let i = cx.input(n, 1)?;
                let negative = cx.b.compare_scalar(CmpDir::Lt, i, 0.0)?;
                let wrapped = cx.b.add_scalar(i, extent as f64)?;
                cx.b.select(negative, wrapped, i)?
            }
        },
    )
}

/// `Trilu`: keeps the upper (`upper = 1`, column ≥ row + k) or lower (column ≤ row + k) triangle of the last two
/// dims, zeroing the rest; `k` is an optional static input.
pub fn trilu(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let dims = cx.b.shape(x).to_vec();
    if dims.len() < 2 {
        return Err(n.error(format!("input {} needs rank >= 2", cx.b.ty(x))));
    }
    let k = match cx.static_input(n, 1, "k")? {
        Some(c) => c.ints().first().copied().unwrap_or(0),
        None => 0,
    };
    let k = i32::try_from(k).map_err(|_| n.error(format!("k = {k} does not fit i32")))?;
    let square = TensorType::new(DType::I32, &dims[dims.len() - 2..]);
    let row = cx.b.iota(square.clone(), 0)?;
    let col = cx.b.iota(square, 1)?;
    let diagonal = cx.b.add_scalar(row, k as f64)?;
    let dir = if n.attrs.int("upper", 1) != 0 {
        CmpDir::Ge
    } else {
        CmpDir::Le
    };
    let keep = cx.b.compare(dir, col, diagonal)?;
    let zero = cx.b.zeros_like(x)?;
    Ok(cx.b.select(keep, x, zero)?)
}

pub fn constant_of_shape(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let c = constant_of_shape_value(cx, n)?;
    let name = n.node.output.first().cloned().unwrap_or_default();
    let t = c.to_tensor(&name).map_err(OpError::Import)?;
    Ok(cx.b.literal(t.ty().clone(), t.to_f64_vec())?)
}

/// The most elements of a `ConstantOfShape` (held dense at import).
const MAX_FILLED: usize = 1 << 24;

/// The value of a `ConstantOfShape` (its shape operand must be static).
pub fn constant_of_shape_value(cx: &Ctx, n: &NodeCx) -> OpResult<Constant> {
    let shape = cx
        .static_input(n, 0, "shape")?
        .ok_or_else(|| n.error("needs a shape"))?;
    let dims: Vec<usize> = shape.ints().iter().map(|&d| d.max(0) as usize).collect();
    let numel = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let numel = numel.filter(|&e| e <= MAX_FILLED).ok_or_else(|| {
        n.unsupported(format!(
            "a filled tensor of dims {dims:?} (at most {MAX_FILLED} elements)"
        ))
    })?;
    let fill = n.attrs.tensor("value")?.unwrap_or(Constant {
        dtype: DType::F32,
        dims: vec![1],
        elements: Elements::Float(vec![0.0]),
    });
    let elements = match fill.elements {
        Elements::Float(v) => Elements::Float(vec![v.first().copied().unwrap_or(0.0); numel]),
        Elements::Int(v) => Elements::Int(vec![v.first().copied().unwrap_or(0); numel]),
        Elements::Bool(v) => Elements::Bool(vec![v.first().copied().unwrap_or(false); numel]),
    };
    Ok(Constant {
        dtype: fill.dtype,
        dims,
        elements,
    })
}

/// `OneHot(indices, depth, values)`: `values[1]` where the position along the new `axis` equals the index
/// (negative indices count from `depth`), `values[0]` elsewhere; `depth` must be static.
pub fn one_hot(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let indices = cx.input(n, 0)?;
    let depth = cx
        .static_input(n, 1, "depth")?
        .ok_or_else(|| n.error("needs depth"))?;
    let depth = depth.floats().first().copied().unwrap_or(0.0);
    if !(depth >= 1.0 && depth <= i32::MAX as f64) {
        return Err(n.error(format!("depth {depth} is not a positive i32")));
    }
    let depth = depth as usize;
    let values = cx.input(n, 2)?;
    let b = &mut cx.b;
    let idx = b.cast(indices, DType::I32)?;
    let negative = b.compare_scalar(CmpDir::Lt, idx, 0.0)?;
    let wrapped = b.add_scalar(idx, depth as f64)?;
    let idx = b.select(negative, wrapped, idx)?;
    let mut dims = b.shape(idx).to_vec();
    let axis = axis_index(n, n.attrs.int("axis", -1), dims.len() + 1)?;
    let mut one = dims.clone();
    one.insert(axis, 1);
    let idx = b.reshape(idx, &one)?;
    dims.insert(axis, depth);
    let position = b.iota(TensorType::new(DType::I32, dims.as_slice()), axis)?;
    let hit = b.compare(CmpDir::Eq, idx, position)?;
    if b.shape(values) != [2] {
        return Err(n.error(format!("values {} must hold [off, on]", b.ty(values))));
    }
    let off = b.slice(values, &[0], &[1])?;
    let off = b.reshape(off, &[])?;
    let on = b.slice(values, &[1], &[2])?;
    let on = b.reshape(on, &[])?;
    Ok(b.select(hit, on, off)?)
}

/// `EyeLike`: ones on the `k`-th diagonal of a matrix of the input's shape, in the `dtype` attribute's type (the
/// input's by default).
pub fn eye_like(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let dims = cx.b.shape(x).to_vec();
    if dims.len() != 2 {
        return Err(n.error(format!("input {} must be a matrix", cx.b.ty(x))));
    }
    let dtype = match n.attrs.has("dtype") {
        true => i32::try_from(n.attrs.int("dtype", 0))
            .ok()
            .and_then(crate::onnx::tensor::kiln_dtype)
            .ok_or_else(|| n.unsupported("its dtype"))?,
        false => cx.b.dtype(x),
    };
    let k = n.attrs.int("k", 0);
    let k = i32::try_from(k).map_err(|_| n.error(format!("k = {k} does not fit i32")))?;
    let b = &mut cx.b;
    let square = TensorType::new(DType::I32, dims.as_slice());
    let row = b.iota(square.clone(), 0)?;
    let col = b.iota(square, 1)?;
    let diagonal = b.add_scalar(row, k as f64)?;
    let hit = b.compare(CmpDir::Eq, col, diagonal)?;
    Ok(b.cast(hit, dtype)?)
}

/// `DepthToSpace` (modes DCR and CRD) and `SpaceToDepth`: reshape, transpose, reshape.
pub fn depth_space(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let dims = cx.b.shape(x).to_vec();
    let bs = n.attrs.int("blocksize", 0);
    let &[batch, c, h, w] = dims.as_slice() else {
        return Err(n.error(format!("input {} must be [N, C, H, W]", cx.b.ty(x))));
    };
    let k = usize::try_from(bs)
        .ok()
        .filter(|&k| k >= 1)
        .ok_or_else(|| n.error(format!("blocksize {bs}")))?;
    let b = &mut cx.b;
    if n.op_type() == "SpaceToDepth" {
        if h % k != 0 || w % k != 0 {
            return Err(n.error(format!("blocksize {k} does not divide {h}x{w}")));
        }
        let y = b.reshape(x, &[batch, c, h / k, k, w / k, k])?;
        let y = b.transpose(y, &[0, 3, 5, 1, 2, 4])?;
        return Ok(b.reshape(y, &[batch, c * k * k, h / k, w / k])?);
    }
    if c % (k * k) != 0 {
        return Err(n.error(format!("blocksize {k}² does not divide {c} channels")));
    }
    let cc = c / (k * k);
    let y = if n.attrs.string("mode", "DCR")? == "CRD" {
        let y = b.reshape(x, &[batch, cc, k, k, h, w])?;
        b.transpose(y, &[0, 1, 4, 2, 5, 3])?
    } else {
        let y = b.reshape(x, &[batch, k, k, cc, h, w])?;
        b.transpose(y, &[0, 3, 4, 1, 5, 2])?
    };
    Ok(b.reshape(y, &[batch, cc, h * k, w * k])?)
}

/// `CumSum` along a static `axis`: the axis moved last and multiplied by a triangular matrix of ones (lower for
/// `reverse`, strict for `exclusive`), which also sums integers exactly (i32 `matmul`).
pub fn cumsum(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let dims = cx.b.shape(x).to_vec();
    let axis = cx
        .static_input(n, 1, "axis")?
        .ok_or_else(|| n.error("needs axis"))?;
    let axis = axis_index(n, axis.ints().first().copied().unwrap_or(0), dims.len())?;
    let (exclusive, reverse) = (
        n.attrs.int("exclusive", 0) != 0,
        n.attrs.int("reverse", 0) != 0,
    );
    let b = &mut cx.b;
    let len = dims[axis];
    let mut perm: Vec<usize> = (0..dims.len()).filter(|&d| d != axis).collect();
    perm.push(axis);
    let moved = b.transpose(x, &perm)?;
    let md = b.shape(moved).to_vec();
    let rows: usize = md[..md.len() - 1].iter().product();
    let flat = b.reshape(moved, &[rows, len])?;
    // y[.., j] = Σ_i x[.., i]·M[i, j]: M[i, j] = 1 where i ≤ j (reverse: i ≥ j; exclusive: strictly).
    let square = TensorType::new(DType::I32, [len, len].as_slice());
    let i = b.iota(square.clone(), 0)?;
    let j = b.iota(square, 1)?;
    let dir = match (reverse, exclusive) {
        (false, false) => CmpDir::Le,
        (false, true) => CmpDir::Lt,
        (true, false) => CmpDir::Ge,
        (true, true) => CmpDir::Gt,
    };
    let mask = b.compare(dir, i, j)?;
    let mask = b.cast(mask, b.dtype(x))?;
    let y = b.matmul(flat, mask)?;
    let y = b.reshape(y, &md)?;
    let mut inverse = vec![0; perm.len()];
    for (k, &p) in perm.iter().enumerate() {
        inverse[p] = k;
    }
    Ok(b.transpose(y, &inverse)?)
}
