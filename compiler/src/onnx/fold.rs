//! Evaluation at import of the nodes that compute static operands: `Shape`, `Size`, `Constant`,
//! `ConstantOfShape`, `Range`, and shape-changing or integer ops whose operands are all known (the
//! `Shape → Gather → Unsqueeze → Concat → Reshape` chains exporters write for a dynamic reshape).
//!
//! [`fold`] returns `None` when it cannot evaluate a node; the node is then translated into the graph, which
//! reports any error it has.

use super::convert::{Ctx, NodeCx};
use super::ops::shape::{axis_index, constant, constant_of_shape_value, slice_plan, target_dims};
use super::tensor::{kiln_dtype, Constant, Elements};
use kiln_ir::DType;
use std::rc::Rc;

/// The most elements a folded `Range` may have: beyond, it is not a shape computation.
const MAX_FOLDED: i64 = 1 << 24;

pub fn fold(cx: &Ctx, n: &NodeCx) -> Option<Vec<Constant>> {
    match n.op_type() {
        "Constant" => constant(n).ok().map(|c| vec![c]),
        "Shape" => {
            let dims = cx.shape_of(n.input_name(0)?)?;
            let r = dims.len() as i64;
            // Opset 15's start/end, clamped like Slice's.
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(n.attrs.int("start", 0));
            let end = clamp(n.attrs.int("end", r)).max(start);
            let v: Vec<i64> = dims[start..end].iter().map(|&d| d as i64).collect();
            Some(vec![Constant::from_ints(vec![v.len()], v)])
        }
        "Size" => {
            let dims = cx.shape_of(n.input_name(0)?)?;
            Some(vec![Constant::from_ints(
                vec![],
                vec![dims.iter().product::<usize>() as i64],
            )])
        }
        "ConstantOfShape" => constant_of_shape_value(cx, n).ok().map(|c| vec![c]),
        "Range" => range(cx, n).map(|c| vec![c]),
        "CastLike" => {
            let x = cx.constant_of(n.input_name(0)?)?;
            cast(&x, cx.dtype_of(n.input_name(1)?)?).map(|c| vec![c])
        }
        _ => {
            let inputs: Vec<Rc<Constant>> = (0..n.input_count())
                .map(|i| cx.constant_of(n.input_name(i)?))
                .collect::<Option<_>>()?;
            fold_known(cx, n, &inputs).map(|c| vec![c])
        }
    }
}

/// Nodes whose every input is known.
fn fold_known(cx: &Ctx, n: &NodeCx, inputs: &[Rc<Constant>]) -> Option<Constant> {
    let first = inputs.first()?;
    match n.op_type() {
        "Identity" => Some((**first).clone()),
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
            let dims = target_dims(cx, n, &first.dims).ok()?;
            Some(Constant {
                dims,
                ..(**first).clone()
            })
        }
        "Cast" => cast(
            first,
            kiln_dtype(i32::try_from(n.attrs.int("to", 0)).ok()?)?,
        ),
        "Neg" if first.dtype == DType::I32 => {
            let v: Option<Vec<i64>> = first.ints().iter().map(|x| x.checked_neg()).collect();
            Some(Constant::from_ints(first.dims.clone(), v?))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" => {
            let [a, b] = inputs else { return None };
            int_binary(n.op_type(), a, b)
        }
        "Concat" => {
            // Rank-1 lists only (shapes).
            let mut out = Vec::new();
            for c in inputs {
                if c.dims.len() != 1 || c.dtype != DType::I32 {
                    return None;
                }
                out.extend(c.ints());
            }
            Some(Constant::from_ints(vec![out.len()], out))
        }
        "Gather" => {
            let [data, idx] = inputs else { return None };
            if data.dims.len() != 1
                || data.dtype != DType::I32
                || axis_index(n, n.attrs.int("axis", 0), 1).is_err()
            {
                return None;
            }
            let values = data.ints();
            let len = values.len() as i64;
            let picked: Option<Vec<i64>> = idx
                .ints()
                .iter()
                .map(|&i| {
                    values
                        .get(usize::try_from(if i < 0 { i + len } else { i }).ok()?)
                        .copied()
                })
                .collect();
            Some(Constant::from_ints(idx.dims.clone(), picked?))
        }
        "Slice" => {
            if first.dims.len() != 1 || first.dtype != DType::I32 {
                return None;
            }
            let plan = slice_plan(cx, n, &first.dims).ok()?;
            let values = first.ints();
            let v: Vec<i64> = plan.axes.first()?.indices().map(|i| values[i]).collect();
            Some(Constant::from_ints(vec![v.len()], v))
        }
        _ => None,
    }
}

fn cast(c: &Constant, to: DType) -> Option<Constant> {
    let elements = match (to, &c.elements) {
        (DType::I32, Elements::Float(v)) => Elements::Int(v.iter().map(|&x| x as i64).collect()),
        (DType::I32, _) => Elements::Int(c.ints()),
        (DType::F32, _) => Elements::Float(c.floats().iter().map(|&x| x as f32 as f64).collect()),
        (DType::F64, _) => Elements::Float(c.floats()),
        (DType::Bool, _) => Elements::Bool(c.floats().iter().map(|&x| x != 0.0).collect()),
    };
    Some(Constant {
        dtype: to,
        dims: c.dims.clone(),
        elements,
    })
}

/// Integer arithmetic of equal shapes or with a one-element operand (what shape computations use).
fn int_binary(op: &str, a: &Constant, b: &Constant) -> Option<Constant> {
    if a.dtype != DType::I32 || b.dtype != DType::I32 {
        return None;
    }
    let (av, bv) = (a.ints(), b.ints());
    let dims = if a.dims == b.dims || bv.len() == 1 && a.dims.len() >= b.dims.len() {
        a.dims.clone()
    } else if av.len() == 1 && b.dims.len() >= a.dims.len() {
        b.dims.clone()
    } else {
        return None;
    };
    let n: usize = dims.iter().product();
    let at = |v: &[i64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (x, y) = (at(&av, i), at(&bv, i));
        out.push(match op {
            "Add" => x.checked_add(y)?,
            "Sub" => x.checked_sub(y)?,
            "Mul" => x.checked_mul(y)?,
            "Max" => x.max(y),
            "Min" => x.min(y),
            // ONNX integer division truncates (C's).
            _ => x.checked_div(y)?,
        });
    }
    Some(Constant::from_ints(dims, out))
}

/// `Range(start, limit, delta)`: `max(ceil((limit − start) / delta), 0)` elements.
fn range(cx: &Ctx, n: &NodeCx) -> Option<Constant> {
    let get = |i| cx.constant_of(n.input_name(i)?);
    let (start, limit, delta) = (get(0)?, get(1)?, get(2)?);
    if start.dtype == DType::I32 {
        let (s, l, d) = (start.ints()[0], limit.ints()[0], delta.ints()[0]);
        if d == 0 {
            return None;
        }
        let count = ((l as f64 - s as f64) / d as f64).ceil().max(0.0) as i64;
        if count > MAX_FOLDED {
            return None;
        }
        let v: Vec<i64> = (0..count).map(|k| s + k * d).collect();
        return Some(Constant::from_ints(vec![v.len()], v));
    }
    let (s, l, d) = (start.floats()[0], limit.floats()[0], delta.floats()[0]);
    if d == 0.0 || !(s.is_finite() && l.is_finite() && d.is_finite()) {
        return None;
    }
    let count = ((l - s) / d).ceil().max(0.0) as usize;
    if count > MAX_FOLDED as usize {
        return None;
    }
    let round = |x: f64| {
        if start.dtype == DType::F32 {
            x as f32 as f64
        } else {
            x
        }
    };
    let v: Vec<f64> = (0..count).map(|k| round(s + k as f64 * d)).collect();
    Some(Constant {
        dtype: start.dtype,
        dims: vec![count],
        elements: Elements::Float(v),
    })
}
