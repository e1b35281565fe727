//! `Resize` (opset 11 on) with static scales or sizes: every mode (nearest with its four rounding rules, linear,
//! cubic, each with or without antialiasing), every coordinate transformation, `exclude_outside`,
//! `tf_crop_and_resize`'s roi and extrapolation value, `axes` and `keep_aspect_ratio_policy`.
//!
//! ONNX defines the result one axis at a time (its reference interpolates the last axis, then each earlier one, in
//! float64), and every mode is linear in the input: output position `j` of an axis is `Σ_k w[j][k] · x[i[j][k]]` over
//! a fixed number of taps. So the importer computes the taps' indices and weights in f64 here, exactly as the
//! reference does, and the graph is one `take` per tap and axis (a multiply-add for the weights; nearest is one
//! `take`, exact for integers too). Out-of-range neighbours read the edge element, as the reference's edge padding.

use super::shape::axis_index;
use crate::onnx::convert::{Ctx, NodeCx, OpResult};
use kiln_ir::{DType, TensorType, Value};

/// The taps of one axis: for each output position, the input indices and their weights, and whether the position
/// lies outside the roi (`tf_crop_and_resize`: the output there is the extrapolation value).
struct AxisTaps {
    index: Vec<Vec<i64>>,
    weight: Vec<Vec<f64>>,
    outside: Vec<bool>,
}

#[derive(Clone, Copy)]
enum Mode {
    Nearest(fn(f64) -> [f64; 2]),
    Linear,
    Cubic(f64),
}

struct Options<'a> {
    mode: Mode,
    antialias: bool,
    transform: &'a str,
    exclude_outside: bool,
}

pub fn resize(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    if n.opset < 11 {
        return Err(n.unsupported("opset 10's Resize (no coordinate transformation attribute)"));
    }
    let x = cx.input(n, 0)?;
    let dims = cx.b.shape(x).to_vec();
    let rank = dims.len();
    let mode = match n.attrs.string("mode", "nearest")?.as_str() {
        "nearest" => Mode::Nearest(
            match n
                .attrs
                .string("nearest_mode", "round_prefer_floor")?
                .as_str()
            {
                "round_prefer_floor" => |r| if r <= 0.5 { [1.0, 0.0] } else { [0.0, 1.0] },
                "round_prefer_ceil" => |r| if r < 0.5 { [1.0, 0.0] } else { [0.0, 1.0] },
                "floor" => |_| [1.0, 0.0],
                "ceil" => |_| [0.0, 1.0],
                other => return Err(n.unsupported(format!("nearest_mode `{other}`"))),
            },
        ),
        "linear" => Mode::Linear,
        "cubic" => Mode::Cubic(n.attrs.float("cubic_coeff_a", -0.75)),
        other => return Err(n.unsupported(format!("mode `{other}`"))),
    };
    let transform = n
        .attrs
        .string("coordinate_transformation_mode", "half_pixel")?;
    let known = [
        "half_pixel",
        "half_pixel_symmetric",
        "pytorch_half_pixel",
        "align_corners",
        "asymmetric",
        "tf_crop_and_resize",
    ];
    if !known.contains(&transform.as_str()) {
        return Err(n.unsupported(format!("coordinate_transformation_mode `{transform}`")));
    }
    let antialias = n.attrs.int("antialias", 0) != 0;
    if antialias && matches!(mode, Mode::Nearest(_)) {
        return Err(n.error("antialias applies to linear and cubic modes"));
    }
    if !matches!(mode, Mode::Nearest(_)) && !cx.b.dtype(x).is_float() {
        return Err(n.unsupported("linear or cubic interpolation of an integer tensor"));
    }
    let options = Options {
        mode,
        antialias,
        transform: &transform,
        exclude_outside: n.attrs.int("exclude_outside", 0) != 0,
    };

    let axes: Vec<usize> = match n.attrs.ints("axes") {
        Some(a) => a
            .iter()
            .map(|&a| axis_index(n, a, rank))
            .collect::<OpResult<_>>()?,
        None => (0..rank).collect(),
    };
    let nonempty =
        |c: Option<std::rc::Rc<crate::onnx::tensor::Constant>>| c.filter(|c| c.numel() > 0);
    let roi = if transform == "tf_crop_and_resize" {
        let roi = nonempty(cx.static_input(n, 1, "roi")?)
            .ok_or_else(|| n.error("tf_crop_and_resize needs a roi"))?
            .floats();
        if roi.len() != 2 * axes.len() {
            return Err(n.error(format!(
                "roi has {} values for {} axes",
                roi.len(),
                axes.len()
            )));
        }
        Some(roi)
    } else {
        None
    };
    let scales = nonempty(cx.static_input(n, 2, "scales")?).map(|c| c.floats());
    let sizes = nonempty(cx.static_input(n, 3, "sizes")?).map(|c| c.ints());
    let (scale, out) = match (scales, sizes) {
        (Some(s), None) => {
            if s.len() != axes.len() || s.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
                return Err(n.error(format!("scales {s:?} for {} axes", axes.len())));
            }
            // The reference truncates `scale · extent` to the output size.
            let out: Vec<usize> = axes
                .iter()
                .zip(&s)
                .map(|(&a, &v)| (v * dims[a] as f64) as usize)
                .collect();
            (s, out)
        }
        (None, Some(sizes)) => sized(n, &dims, &axes, &sizes)?,
        _ => return Err(n.error("needs exactly one of scales and sizes")),
    };

    let mut y = x;
    let mut outside = Vec::new();
    // The last axis first, as the reference's nesting computes it.
    for k in (0..axes.len()).rev() {
        let axis = axes[k];
        let roi = roi.as_ref().map(|r| (r[k], r[k + axes.len()]));
        let taps = axis_taps(dims[axis], out[k], scale[k], roi, &options);
        y = apply_taps(cx, n, y, axis, &taps)?;
        if taps.outside.iter().any(|&o| o) {
            outside.push((axis, taps.outside));
        }
    }
    // tf_crop_and_resize: a position outside the roi on any axis is the extrapolation value.
    let shape = cx.b.shape(y).to_vec();
    let mut any_outside: Option<Value> = None;
    for (axis, flags) in outside {
        let mut mask_shape = vec![1; rank];
        mask_shape[axis] = flags.len();
        let values = flags.iter().map(|&o| f64::from(u8::from(o))).collect();
        let mask =
            cx.b.literal(TensorType::new(DType::Bool, mask_shape), values)?;
        let mask = cx.b.broadcast(mask, &shape)?;
        any_outside = Some(match any_outside {
            None => mask,
            Some(m) => cx.b.select(m, m, mask)?,
        });
    }
    if let Some(mask) = any_outside {
        let fill = n.attrs.float("extrapolation_value", 0.0);
        let fill = cx.b.full(cx.b.ty(y).clone(), fill)?;
        y = cx.b.select(mask, fill, y)?;
    }
    Ok(y)
}

/// Output sizes and scales from `sizes`, with `keep_aspect_ratio_policy`.
fn sized(
    n: &NodeCx,
    dims: &[usize],
    axes: &[usize],
    sizes: &[i64],
) -> OpResult<(Vec<f64>, Vec<usize>)> {
    if sizes.len() != axes.len() || sizes.iter().any(|&s| s <= 0) {
        return Err(n.error(format!("sizes {sizes:?} for {} axes", axes.len())));
    }
    let mut scale: Vec<f64> = axes
        .iter()
        .zip(sizes)
        .map(|(&a, &s)| s as f64 / dims[a] as f64)
        .collect();
    let mut out: Vec<usize> = sizes.iter().map(|&s| s as usize).collect();
    let policy = n.attrs.string("keep_aspect_ratio_policy", "stretch")?;
    let pick = match policy.as_str() {
        "stretch" => return Ok((scale, out)),
        "not_larger" => f64::min,
        "not_smaller" => f64::max,
        other => return Err(n.unsupported(format!("keep_aspect_ratio_policy `{other}`"))),
    };
    let s = scale.iter().copied().reduce(pick).unwrap_or(1.0);
    for (k, &a) in axes.iter().enumerate() {
        scale[k] = s;
        // Rounded half up, as the reference.
        out[k] = (s * dims[a] as f64 + 0.5) as usize;
    }
    Ok((scale, out))
}

/// The reference's `_interpolate_1d_with_x` for every output position of one axis.
fn axis_taps(
    input: usize,
    output: usize,
    scale: f64,
    roi: Option<(f64, f64)>,
    o: &Options,
) -> AxisTaps {
    let mut taps = AxisTaps {
        index: Vec::with_capacity(output),
        weight: Vec::with_capacity(output),
        outside: Vec::with_capacity(output),
    };
    let width = scale * input as f64;
    let last = input as f64 - 1.0;
    for j in 0..output {
        let x = j as f64;
        let mut outside = false;
        let x_ori = match o.transform {
            "align_corners" if width == 1.0 => 0.0,
            "align_corners" => x * last / (width - 1.0),
            "asymmetric" => x / scale,
            "tf_crop_and_resize" => {
                let (start, end) = roi.unwrap_or((0.0, 1.0));
                let x_ori = if width == 1.0 {
                    (end - start) * last / 2.0
                } else {
                    x * (end - start) * last / (width - 1.0)
                } + start * last;
                outside = x_ori < 0.0 || x_ori > last;
                x_ori
            }
            "pytorch_half_pixel" if width == 1.0 => -0.5,
            "half_pixel_symmetric" => {
                let adjustment = output as f64 / width;
                let offset = input as f64 / 2.0 * (1.0 - adjustment);
                offset + (x + 0.5) / scale - 0.5
            }
            _ => (x + 0.5) / scale - 0.5,
        };
        // The reference keeps the ratio in (0, 1]: an integral coordinate is its left neighbour plus 1.
        let (base, ratio) = if x_ori.fract() == 0.0 {
            (x_ori - 1.0, 1.0)
        } else {
            (x_ori.floor(), x_ori - x_ori.floor())
        };
        let (first, mut weight) = coefficients(ratio, scale, o);
        let count = weight.len() as i64;
        // The `count` nearest positions of the edge-padded input (pad ⌈count/2⌉ each side), ties to the left.
        let pad = (count + 1) / 2;
        let limit = input as i64 + 2 * pad;
        let start = (base as i64 + first + pad).clamp(0, (limit - count).max(0)) - pad;
        let positions: Vec<i64> = (start..start + count).collect();
        if o.exclude_outside {
            for (w, &p) in weight.iter_mut().zip(&positions) {
                if p < 0 || p >= input as i64 {
                    *w = 0.0;
                }
            }
            let sum: f64 = weight.iter().sum();
            weight.iter_mut().for_each(|w| *w /= sum);
        }
        taps.index.push(
            positions
                .iter()
                .map(|&p| p.clamp(0, input as i64 - 1))
                .collect(),
        );
        taps.weight.push(weight);
        taps.outside.push(outside);
    }
    taps
}

/// The weights of the taps at offsets `first, first + 1, ...` from the left neighbour, for `ratio` in (0, 1].
fn coefficients(ratio: f64, scale: f64, o: &Options) -> (i64, Vec<f64>) {
    match (o.mode, o.antialias) {
        (Mode::Nearest(_), _) if ratio == 1.0 => (0, vec![0.0, 1.0]),
        (Mode::Nearest(rule), _) => (0, rule(ratio).to_vec()),
        (Mode::Linear, false) => (0, vec![1.0 - ratio, ratio]),
        (Mode::Cubic(a), false) => {
            let (r, s) = (ratio + 1.0, 1.0 - ratio);
            let t = s + 1.0;
            let w = vec![
                ((a * r - 5.0 * a) * r + 8.0 * a) * r - 4.0 * a,
                ((a + 2.0) * ratio - (a + 3.0)) * ratio * ratio + 1.0,
                ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
                ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a,
            ];
            (-1, w)
        }
        (Mode::Linear, true) => {
            let scale = scale.min(1.0);
            let start = (-1.0 / scale).floor() as i64 + 1;
            let w: Vec<f64> = (start..2 - start)
                .map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0))
                .collect();
            (start, normalized(w))
        }
        (Mode::Cubic(a), true) => {
            let scale = scale.min(1.0);
            let cubic = |x: f64| {
                let x = x.abs();
                let (x2, x3) = (x * x, x * x * x);
                if x <= 1.0 {
                    (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
                } else if x < 2.0 {
                    a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
                } else {
                    0.0
                }
            };
            let start = (-2.0 / scale).floor() as i64 + 1;
            let w: Vec<f64> = (start..2 - start)
                .map(|i| cubic(scale * (i as f64 - ratio)))
                .collect();
            (start, normalized(w))
        }
    }
}

fn normalized(w: Vec<f64>) -> Vec<f64> {
    let sum: f64 = w.iter().sum();
    w.into_iter().map(|v| v / sum).collect()
}

/// `Σ_k w[·][k] · take(x, i[·][k], axis)`: one `take` per tap whose weight is ever nonzero (a single `take` when
/// one weight is 1 and the rest 0 at every position, as in nearest mode).
fn apply_taps(cx: &mut Ctx, n: &NodeCx, x: Value, axis: usize, taps: &AxisTaps) -> OpResult<Value> {
    let out = taps.index.len();
    let count = taps.weight.first().map_or(0, Vec::len);
    let rank = cx.b.shape(x).len();
    let dtype = cx.b.dtype(x);
    let one_hot = taps
        .weight
        .iter()
        .all(|w| w.iter().filter(|&&v| v != 0.0).count() == 1 && w.contains(&1.0));
    let index_of = |k: Option<usize>| -> Vec<f64> {
        (0..out)
            .map(|j| {
                let k =
                    k.unwrap_or_else(|| taps.weight[j].iter().position(|&v| v == 1.0).unwrap_or(0));
                taps.index[j][k] as f64
            })
            .collect()
    };
    if one_hot || count == 0 {
        let index =
            cx.b.literal(TensorType::new(DType::I32, [out]), index_of(None))?;
        return Ok(cx.b.take(x, index, axis as isize)?);
    }
    let mut weight_shape = vec![1; rank];
    weight_shape[axis] = out;
    let mut sum: Option<Value> = None;
    for k in 0..count {
        let weights: Vec<f64> = taps.weight.iter().map(|w| w[k]).collect();
        if weights.iter().all(|&w| w == 0.0) {
            continue;
        }
        let index =
            cx.b.literal(TensorType::new(DType::I32, [out]), index_of(Some(k)))?;
        let picked = cx.b.take(x, index, axis as isize)?;
        let w =
            cx.b.literal(TensorType::new(dtype, weight_shape.clone()), weights)?;
        let term = cx.b.mul(picked, w)?;
        sum = Some(match sum {
            None => term,
            Some(s) => cx.b.add(s, term)?,
        });
    }
    sum.ok_or_else(|| n.error(format!("every weight of axis {axis} is zero")))
}
