//! Contractions and layers: `MatMul`, `Gemm`, `Conv`, pooling, `BatchNormalization` (inference),
//! `LayerNormalization`, `InstanceNormalization`, mapped onto Kiln's composites (SPEC §4).

use super::shape::axis_index;
use crate::onnx::convert::{Ctx, NodeCx, OpResult, Out};
use kiln_ir::{ConvSpec, DType, TensorType, Value};

/// NumPy's `matmul`: batch dims broadcast; a 1-D operand gets a dim of 1 added (before for `a`, after for `b`)
/// that the result then drops.
pub fn matmul(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let mut a = cx.input(n, 0)?;
    let mut b = cx.input(n, 1)?;
    let (ra, rb) = (cx.b.shape(a).len(), cx.b.shape(b).len());
    if ra == 1 {
        let k = cx.b.shape(a)[0];
        a = cx.b.reshape(a, &[1, k])?;
    }
    if rb == 1 {
        let k = cx.b.shape(b)[0];
        b = cx.b.reshape(b, &[k, 1])?;
    }
    let y = cx.b.matmul(a, b)?;
    if ra > 1 && rb > 1 {
        return Ok(y);
    }
    let mut dims = cx.b.shape(y).to_vec();
    let r = dims.len();
    if rb == 1 {
        dims.remove(r - 1);
    }
    if ra == 1 {
        dims.remove(r - 2);
    }
    Ok(cx.b.reshape(y, &dims)?)
}

/// `Y = alpha·op(A)·op(B) + beta·C`, `op` transposing when `transA`/`transB`; `C` broadcast to `[M, N]`.
pub fn gemm(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let mut a = cx.input(n, 0)?;
    let mut b = cx.input(n, 1)?;
    let c = cx.opt_input(n, 2)?;
    if n.attrs.int("transA", 0) != 0 {
        a = cx.b.transpose_last2(a)?;
    }
    if n.attrs.int("transB", 0) != 0 {
        b = cx.b.transpose_last2(b)?;
    }
    let mut y = cx.b.matmul(a, b)?;
    let alpha = n.attrs.float("alpha", 1.0);
    if alpha != 1.0 {
        y = cx.b.mul_scalar(y, alpha)?;
    }
    if let Some(c) = c {
        let beta = n.attrs.float("beta", 1.0);
        let c = if beta == 1.0 {
            c
        } else {
            cx.b.mul_scalar(c, beta)?
        };
        y = cx.b.add(y, c)?;
    }
    Ok(y)
}

/// Strides, dilations and padding of a conv or pool over `spatial` dims with windows `kernel` (ONNX's `pads` are
/// all begins, then all ends; `auto_pad` SAME_* pads so that `out = ceil(in / stride)`).
fn conv_spec(n: &NodeCx, input: &[usize], kernel: &[usize]) -> OpResult<ConvSpec> {
    let s = kernel.len();
    let list = |name: &str, default: usize| -> OpResult<Vec<usize>> {
        match n.attrs.ints(name) {
            None => Ok(vec![default; s]),
            Some(v) if v.len() == s && v.iter().all(|&x| x >= 1) => {
                Ok(v.iter().map(|&x| x as usize).collect())
            }
            Some(v) => Err(n.error(format!("{name} {v:?} for {s} spatial dims"))),
        }
    };
    let strides = list("strides", 1)?;
    let dilations = list("dilations", 1)?;
    if input.len() < s + 2 || kernel.contains(&0) {
        return Err(n.error(format!(
            "a window {kernel:?} for an input of dims {input:?}"
        )));
    }
    let spatial = &input[input.len() - s..];
    let padding: Vec<(usize, usize)> = match n.attrs.string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" => match n.attrs.ints("pads") {
            None => vec![(0, 0); s],
            Some(p) if p.len() == 2 * s && p.iter().all(|&x| x >= 0) => {
                (0..s).map(|d| (p[d] as usize, p[d + s] as usize)).collect()
            }
            Some(p) => return Err(n.error(format!("pads {p:?} for {s} spatial dims"))),
        },
        "VALID" => vec![(0, 0); s],
        mode @ ("SAME_UPPER" | "SAME_LOWER") => (0..s)
            .map(|d| {
                let out = spatial[d].div_ceil(strides[d]);
                let span = (kernel[d] - 1) * dilations[d] + 1;
                let total = (out.saturating_sub(1) * strides[d] + span).saturating_sub(spatial[d]);
                let small = total / 2;
                if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            })
            .collect(),
        other => return Err(n.error(format!("unknown auto_pad `{other}`"))),
    };
    Ok(ConvSpec::new(s)
        .stride(&strides)
        .dilation(&dilations)
        .padding_low_high(&padding))
}

pub fn conv(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let w = cx.input(n, 1)?;
    let bias = cx.opt_input(n, 2)?;
    let wdims = cx.b.shape(w).to_vec();
    if wdims.len() < 3 {
        return Err(n.error(format!("weights {} need spatial dims", cx.b.ty(w))));
    }
    let spec = conv_spec(n, cx.b.shape(x), &wdims[2..])?;
    let groups = n.attrs.int("group", 1).max(1) as usize;
    Ok(cx.b.conv(x, w, bias, &spec.groups(groups))?)
}

/// `ConvTranspose` (the gradient of a convolution with respect to its input), built like Kiln's own: per group,
/// `Wᵀ·x` gives every input position's window of contributions (`[N, M, in.., k..]`), which `overlap_add` sums
/// into the full output `stride·(in − 1) + span + output_padding`, then the pads are cropped and the bias added.
pub fn conv_transpose(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let w = cx.input(n, 1)?;
    let bias = cx.opt_input(n, 2)?;
    let (xd, wd) = (cx.b.shape(x).to_vec(), cx.b.shape(w).to_vec());
    let s = wd.len().saturating_sub(2);
    let groups = n.attrs.int("group", 1).max(1) as usize;
    if s == 0 || xd.len() != s + 2 || xd[1] != wd[0] || xd[1] % groups != 0 || wd.contains(&0) {
        return Err(n.error(format!(
            "input {} and weights {} do not fit a transposed convolution of {groups} groups",
            cx.b.ty(x),
            cx.b.ty(w)
        )));
    }
    let list = |name: &str, default: usize| -> OpResult<Vec<usize>> {
        match n.attrs.ints(name) {
            None => Ok(vec![default; s]),
            Some(v) if v.len() == s && v.iter().all(|&x| x >= 0) => {
                Ok(v.iter().map(|&x| x as usize).collect())
            }
            Some(v) => Err(n.error(format!("{name} {v:?} for {s} spatial dims"))),
        }
    };
    let strides = list("strides", 1)?;
    let dilations = list("dilations", 1)?;
    let out_pad = list("output_padding", 0)?;
    let (input, kernel) = (&xd[2..], &wd[2..]);
    if strides.contains(&0)
        || dilations.contains(&0)
        || input.contains(&0)
        || (0..s).any(|d| out_pad[d] >= strides[d])
    {
        return Err(
            n.error("strides and dilations must be >= 1 and output_padding below the stride")
        );
    }
    let full: Vec<usize> = (0..s)
        .map(|d| strides[d] * (input[d] - 1) + dilations[d] * (kernel[d] - 1) + 1 + out_pad[d])
        .collect();
    // Pads: explicit, or from output_shape / auto_pad (SAME_*: output = input·stride).
    let auto_pad = n.attrs.string("auto_pad", "NOTSET")?;
    let target: Option<Vec<usize>> = match n.attrs.ints("output_shape") {
        Some(o) => Some(
            o.iter()
                .rev()
                .take(s)
                .rev()
                .map(|&v| v.max(0) as usize)
                .collect(),
        ),
        None if auto_pad.starts_with("SAME") => {
            Some((0..s).map(|d| input[d] * strides[d]).collect())
        }
        None => None,
    };
    // ONNX's rule: SAME_UPPER puts the smaller half first, everything else the larger. A negative total (an
    // output_shape beyond the full output) pads the end with zeros.
    let pads: Vec<(i64, i64)> = match target {
        Some(t) => (0..s)
            .map(|d| {
                let total = full[d] as i64 - t[d] as i64;
                let half = total.div_euclid(2);
                if auto_pad == "SAME_UPPER" {
                    (half, total - half)
                } else {
                    (total - half, half)
                }
            })
            .collect(),
        None => match n.attrs.ints("pads") {
            None => vec![(0, 0); s],
            Some(p) if p.len() == 2 * s && p.iter().all(|&x| x >= 0) => {
                (0..s).map(|d| (p[d], p[d + s])).collect()
            }
            Some(p) => return Err(n.error(format!("pads {p:?} for {s} spatial dims"))),
        },
    };
    let (batch, c, g) = (xd[0], xd[1], groups);
    let (cg, mg) = (c / g, wd[1]);
    let k: usize = kernel.iter().product();
    let p: usize = input.iter().product();
    let b = &mut cx.b;
    // [N, G, C_g, P] and [G, M_g·K, C_g] → [N, G, M_g·K, P].
    let xg = b.reshape(x, &[batch, g, cg, p])?;
    let wg = b.reshape(w, &[g, cg, mg * k])?;
    let wt = b.transpose(wg, &[0, 2, 1])?;
    let wb = b.broadcast(wt, &[batch, g, mg * k, cg])?;
    let cols = b.matmul(wb, xg)?;
    // → [N, M, k.., in..] → [N, M, in.., k..], the layout of `windows`' result.
    let mut split = vec![batch, g * mg];
    split.extend_from_slice(kernel);
    split.extend_from_slice(input);
    let cols = b.reshape(cols, &split)?;
    let mut perm = vec![0, 1];
    perm.extend((2 + s..2 + 2 * s).chain(2..2 + s));
    let cols = b.transpose(cols, &perm)?;
    let mut y = b.overlap_add(cols, &full, &strides, &dilations)?;
    let yd = b.shape(y).to_vec();
    let mut start = vec![0; yd.len()];
    let mut end = yd.clone();
    let mut grow_low = vec![0; yd.len()];
    let mut grow_high = vec![0; yd.len()];
    for (d, &(lo, hi)) in pads.iter().enumerate() {
        let extent = yd[2 + d] as i64;
        if lo.max(0) + hi.max(0) > extent {
            return Err(n.error(format!("pads {pads:?} crop more than the output {full:?}")));
        }
        start[2 + d] = lo.max(0) as usize;
        end[2 + d] = (extent - hi.max(0)) as usize;
        grow_low[2 + d] = (-lo).max(0) as usize;
        grow_high[2 + d] = (-hi).max(0) as usize;
    }
    y = b.slice(y, &start, &end)?;
    y = b.pad(y, &grow_low, &grow_high, 0.0)?;
    if let Some(bias) = bias {
        let mut per_channel = vec![1; yd.len()];
        per_channel[1] = g * mg;
        let bias = b.reshape(bias, &per_channel)?;
        y = b.add(y, bias)?;
    }
    Ok(y)
}

pub fn pool(cx: &mut Ctx, n: &NodeCx) -> OpResult<Vec<Out>> {
    let x = cx.input(n, 0)?;
    let kernel: Vec<usize> = n
        .attrs
        .ints("kernel_shape")
        .ok_or_else(|| n.error("needs kernel_shape"))?
        .iter()
        .map(|&k| k.max(1) as usize)
        .collect();
    let wants_indices = n.node.output.iter().skip(1).any(|o| !o.is_empty());
    if wants_indices && (n.op_type() != "MaxPool" || !cx.b.dtype(x).is_float()) {
        return Err(n.unsupported("the Indices output of an integer max pool"));
    }
    let dims = cx.b.shape(x).to_vec();
    let mut spec = conv_spec(n, &dims, &kernel)?;
    let include = n.attrs.int("count_include_pad", 0) != 0;
    if n.attrs.int("ceil_mode", 0) != 0 {
        // With count_include_pad, ONNX's reference (and so its node tests) divides every window by the full kernel
        // size, the ceil overhang counted as padding; PyTorch clips the divisor at the padded input instead.
        ceil_mode_padding(&mut spec, &dims[2..], &kernel);
    }
    if wants_indices {
        let order = n.attrs.int("storage_order", 0);
        let [y, indices] = max_pool_with_indices(cx, x, &kernel, &spec, order != 0)?;
        return Ok(vec![Out::Node(y), Out::Node(indices)]);
    }
    let dtype = cx.b.dtype(x);
    Ok(vec![Out::Node(
        if n.op_type() == "MaxPool" && !dtype.is_float() {
            // Integer max pools (uint8 and int8 images) go through f64, which holds every i32 exactly.
            let xf = cx.b.cast(x, DType::F64)?;
            let y = max_pool(cx, xf, &kernel, &spec)?;
            cx.b.cast(y, dtype)?
        } else if n.op_type() == "MaxPool" {
            max_pool(cx, x, &kernel, &spec)?
        } else {
            cx.b.avg_pool(x, &kernel, &spec, include)?
        },
    )])
}

/// MaxPool's values and its `Indices`, from one set of windows: the values are each window's maximum (as
/// [`max_pool`]), the indices the flat index into `x` (row-major, or with `column_major` the spatial dims transposed, as
/// ONNX's `storage_order = 1`) of each window's maximum, the first in row-major window order among equal maxima (as
/// `max_pool`'s gradient and onnxruntime choose). The index of every window tap is a constant computed here.
fn max_pool_with_indices(
    cx: &mut Ctx,
    x: Value,
    kernel: &[usize],
    spec: &ConvSpec,
    column_major: bool,
) -> OpResult<[Value; 2]> {
    let dims = cx.b.shape(x).to_vec();
    let (s, lead) = (kernel.len(), dims.len() - kernel.len());
    let spatial = &dims[lead..];
    let (mut low, mut high) = (vec![0; dims.len()], vec![0; dims.len()]);
    for (d, &(lo, hi)) in spec.padding.iter().enumerate() {
        (low[lead + d], high[lead + d]) = (lo, hi);
    }
    let b = &mut cx.b;
    let xp = b.pad(x, &low, &high, f64::NEG_INFINITY)?;
    let w = b.windows(xp, kernel, &spec.stride, &spec.dilation)?;
    let wd = b.shape(w).to_vec();
    let out: Vec<usize> = wd[lead..lead + s].to_vec();
    let taps: usize = kernel.iter().product();
    // [.., out.., K]: the window's taps on one axis, in row-major window order.
    let mut flat = wd[..lead + s].to_vec();
    flat.push(taps);
    let w = b.reshape(w, &flat)?;
    let last = flat.len() as isize - 1;
    let window_max = b.reduce_max(w, &[last], true)?;
    let max = b.broadcast(window_max, &flat)?;
    let hit = b.compare(kiln_ir::CmpDir::Eq, w, max)?;
    let tap = b.iota(TensorType::new(DType::I32, flat.clone()), flat.len() - 1)?;
    let miss = b.full(TensorType::new(DType::I32, flat.clone()), taps as f64)?;
    let candidates = b.select(hit, tap, miss)?;
    // The first hit: the least tap, as −max(−tap) (Kiln reduces by sum and max).
    let negated = b.neg(candidates)?;
    let first = b.reduce_max(negated, &[last], true)?;
    let first = b.neg(first)?;
    // The spatial index of every (output position, tap), padding taps never chosen (they hold −inf).
    let positions: usize = out.iter().product();
    let mut table = Vec::with_capacity(positions * taps);
    for o in 0..positions {
        for k in 0..taps {
            let (mut o_rest, mut k_rest) = (o, k);
            let mut coords = vec![0i64; s];
            for d in (0..s).rev() {
                let (od, kd) = (o_rest % out[d], k_rest % kernel[d]);
                (o_rest, k_rest) = (o_rest / out[d], k_rest / kernel[d]);
                coords[d] =
                    (od * spec.stride[d] + kd * spec.dilation[d]) as i64 - spec.padding[d].0 as i64;
            }
            let order: Vec<usize> = if column_major {
                (0..s).rev().collect()
            } else {
                (0..s).collect()
            };
            let index = order
                .iter()
                .fold(0i64, |acc, &d| acc * spatial[d] as i64 + coords[d]);
            table.push(index as f64);
        }
    }
    let mut table_dims = vec![1; lead];
    table_dims.extend(&out);
    table_dims.push(taps);
    let table = b.literal(TensorType::new(DType::I32, table_dims), table)?;
    let table = b.broadcast(table, &flat)?;
    let spatial_index = b.gather(table, first, last)?;
    // Plus the offset of the (batch, channel) plane.
    let plane: usize = spatial.iter().product();
    let mut lead_dims = flat.clone();
    *lead_dims.last_mut().expect("rank ≥ 1") = 1;
    let mut offset: Option<Value> = None;
    let mut stride = plane;
    for d in (0..lead).rev() {
        let i = b.iota(TensorType::new(DType::I32, lead_dims.clone()), d)?;
        let term = b.mul_scalar(i, stride as f64)?;
        offset = Some(match offset {
            None => term,
            Some(o) => b.add(o, term)?,
        });
        stride *= dims[d];
    }
    let index = match offset {
        Some(o) => b.add(spatial_index, o)?,
        None => spatial_index,
    };
    let mut out_dims = dims[..lead].to_vec();
    out_dims.extend(&out);
    Ok([
        b.reshape(window_max, &out_dims)?,
        b.reshape(index, &out_dims)?,
    ])
}

/// MaxPool's values as the maximum over each window of the −inf-padded input. The builder's `max_pool` computes
/// the same values (a window holding NaN gives NaN either way) but picks the window's first maximum, so that the
/// gradient goes there as in PyTorch; that pick (a second reduction over positions, then a masked sum) made the
/// LeNet fixture's first pool kernel 2.6× slower on the CPU (15.0 against 5.7 ms at batch 64), so it is kept for
/// [`ImportOptions::trainable`] imports, which are made to be differentiated. Here a gradient splits evenly among tied maxima
/// (`reduce_max`'s rule).
///
/// [`ImportOptions::trainable`]: crate::onnx::ImportOptions::trainable
fn max_pool(cx: &mut Ctx, x: Value, kernel: &[usize], spec: &ConvSpec) -> OpResult<Value> {
    if cx.trainable {
        return Ok(cx.b.max_pool(x, kernel, spec)?);
    }
    let rank = cx.b.shape(x).len();
    let lead = rank - kernel.len();
    let padded = if spec.padding.iter().all(|&(lo, hi)| lo == 0 && hi == 0) {
        x
    } else {
        let pads = |side: fn(&(usize, usize)) -> usize| -> Vec<usize> {
            let spatial = spec.padding.iter().map(side);
            vec![0; lead].into_iter().chain(spatial).collect()
        };
        let (low, high) = (pads(|p| p.0), pads(|p| p.1));
        cx.b.pad(x, &low, &high, f64::NEG_INFINITY)?
    };
    let windows = cx.b.windows(padded, kernel, &spec.stride, &spec.dilation)?;
    let axes: Vec<isize> = (rank..rank + kernel.len()).map(|a| a as isize).collect();
    Ok(cx.b.reduce_max(windows, &axes, false)?)
}

/// `ceil_mode`: `out = ⌈(L − span) / stride⌉ + 1` (`L` the padded extent) instead of the floor, less one when the
/// last window would start past the input and its low padding; made by padding the high side enough for that many
/// windows (the max pool's fill, −inf, and the average's real-element count both ignore it).
fn ceil_mode_padding(spec: &mut ConvSpec, spatial: &[usize], kernel: &[usize]) {
    for d in 0..kernel.len() {
        let (lo, hi) = spec.padding[d];
        let (s, span) = (spec.stride[d], spec.dilation[d] * (kernel[d] - 1) + 1);
        let extent = spatial[d] + lo + hi;
        if extent < span {
            continue;
        }
        let mut out = (extent - span).div_ceil(s) + 1;
        if (out - 1) * s >= spatial[d] + lo {
            out -= 1;
        }
        let needed = (out - 1) * s + span;
        spec.padding[d].1 += needed.saturating_sub(extent);
    }
}

/// `GlobalAveragePool`/`GlobalMaxPool`: over every spatial dim, kept as 1s (`[N, C, 1, ..]`).
pub fn global_pool(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let rank = cx.b.shape(x).len() as isize;
    let axes: Vec<isize> = (2..rank).collect();
    Ok(if n.op_type() == "GlobalAveragePool" {
        cx.b.mean(x, &axes, true)?
    } else {
        cx.b.reduce_max(x, &axes, true)?
    })
}

/// Inference: the running statistics. Training mode (`training_mode = 1`, opset 14 on) normalizes with the batch's
/// mean and biased variance over every dim but the channel, and also returns the running statistics updated as
/// ONNX defines them: `running = input · momentum + batch · (1 − momentum)`, the variance's batch term biased too
/// (unlike PyTorch's, which is unbiased).
pub fn batch_norm(cx: &mut Ctx, n: &NodeCx) -> OpResult<Vec<Out>> {
    if n.opset < 7 && n.attrs.int("is_test", 0) == 0 {
        return Err(n.unsupported("training mode before opset 7"));
    }
    let x = cx.input(n, 0)?;
    let scale = cx.input(n, 1)?;
    let bias = cx.input(n, 2)?;
    let mean = cx.input(n, 3)?;
    let var = cx.input(n, 4)?;
    let eps = n.attrs.float("epsilon", 1e-5);
    if n.attrs.int("training_mode", 0) == 0 {
        let y =
            cx.b.batch_norm_eval(x, Some(scale), Some(bias), (mean, var), eps)?;
        return Ok(vec![Out::Node(y)]);
    }
    let momentum = n.attrs.float("momentum", 0.9);
    let rank = cx.b.shape(x).len() as isize;
    let axes: Vec<isize> = std::iter::once(0).chain(2..rank).collect();
    let b = &mut cx.b;
    let batch_mean = b.mean(x, &axes, false)?;
    let mu = b.mean(x, &axes, true)?;
    let d = b.sub(x, mu)?;
    let sq = b.mul(d, d)?;
    let batch_var = b.mean(sq, &axes, false)?;
    let y = b.batch_norm_eval(x, Some(scale), Some(bias), (batch_mean, batch_var), eps)?;
    let mut running = |stat: Value, batch: Value| -> OpResult<Value> {
        let kept = b.mul_scalar(stat, momentum)?;
        let new = b.mul_scalar(batch, 1.0 - momentum)?;
        Ok(b.add(kept, new)?)
    };
    let running_mean = running(mean, batch_mean)?;
    let running_var = running(var, batch_var)?;
    Ok(vec![
        Out::Node(y),
        Out::Node(running_mean),
        Out::Node(running_var),
    ])
}

/// `(x − μ)·recip(sqrt(σ² + ε))` over `axes` (biased variance, two passes), with μ and the inverse deviation.
fn normalize(cx: &mut Ctx, x: Value, axes: &[isize], eps: f64) -> OpResult<[Value; 3]> {
    let b = &mut cx.b;
    let mu = b.mean(x, axes, true)?;
    let d = b.sub(x, mu)?;
    let sq = b.mul(d, d)?;
    let var = b.mean(sq, axes, true)?;
    let ve = b.add_scalar(var, eps)?;
    let sd = b.sqrt(ve)?;
    let inv = b.recip(sd)?;
    Ok([b.mul(d, inv)?, mu, inv])
}

/// Over the dims from `axis` on; `Scale` and `B` broadcast; the optional `Mean` and `InvStdDev` outputs keep the
/// normalized dims as 1s.
pub fn layer_norm(cx: &mut Ctx, n: &NodeCx) -> OpResult<Vec<Out>> {
    let x = cx.input(n, 0)?;
    let rank = cx.b.shape(x).len();
    let axis = axis_index(n, n.attrs.int("axis", -1), rank)?;
    let axes: Vec<isize> = (axis as isize..rank as isize).collect();
    let eps = n.attrs.float("epsilon", 1e-5);
    let [mut y, mu, inv] = normalize(cx, x, &axes, eps)?;
    let scale = cx.input(n, 1)?;
    y = cx.b.mul(y, scale)?;
    if let Some(bias) = cx.opt_input(n, 2)? {
        y = cx.b.add(y, bias)?;
    }
    Ok(vec![Out::Node(y), Out::Node(mu), Out::Node(inv)])
}

/// Per image and channel, over the spatial dims; `scale` and `B` are `[C]`.
pub fn instance_norm(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let dims = cx.b.shape(x).to_vec();
    if dims.len() < 3 {
        return Err(n.error(format!("input {} needs spatial dims", cx.b.ty(x))));
    }
    let axes: Vec<isize> = (2..dims.len() as isize).collect();
    let eps = n.attrs.float("epsilon", 1e-5);
    let [y, _, _] = normalize(cx, x, &axes, eps)?;
    let mut per_channel = vec![1; dims.len()];
    per_channel[1] = dims[1];
    let scale = cx.input(n, 1)?;
    let scale = cx.b.reshape(scale, &per_channel)?;
    let bias = cx.input(n, 2)?;
    let bias = cx.b.reshape(bias, &per_channel)?;
    let y = cx.b.mul(y, scale)?;
    Ok(cx.b.add(y, bias)?)
}

/// `GroupNormalization`: statistics per image and group of `C/G` channels; `scale`/`bias` are per channel (`[C]`)
/// from opset 21, per group (`[G]`) before.
pub fn group_norm(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let dims = cx.b.shape(x).to_vec();
    let groups = n.attrs.int("num_groups", 0);
    let g = usize::try_from(groups).ok().filter(|&g| g >= 1);
    let Some(g) = g.filter(|&g| dims.len() >= 2 && dims[1].is_multiple_of(g)) else {
        return Err(n.error(format!(
            "{groups} groups do not divide the channels of {}",
            cx.b.ty(x)
        )));
    };
    let (batch, c) = (dims[0], dims[1]);
    let rest: usize = dims[2..].iter().product();
    let grouped = cx.b.reshape(x, &[batch, g, (c / g) * rest])?;
    let eps = n.attrs.float("epsilon", 1e-5);
    let [y, _, _] = normalize(cx, grouped, &[2], eps)?;
    let scale = cx.input(n, 1)?;
    let bias = cx.input(n, 2)?;
    let b = &mut cx.b;
    let (scale, bias) = if n.opset >= 21 {
        // Per channel: back to [N, C, rest] first.
        (b.reshape(scale, &[1, c, 1])?, b.reshape(bias, &[1, c, 1])?)
    } else {
        (b.reshape(scale, &[1, g, 1])?, b.reshape(bias, &[1, g, 1])?)
    };
    let y = if n.opset >= 21 {
        b.reshape(y, &[batch, c, rest])?
    } else {
        y
    };
    let y = b.mul(y, scale)?;
    let y = b.add(y, bias)?;
    Ok(b.reshape(y, &dims)?)
}

/// `MeanVarianceNormalization`: `(x − mean) / sqrt(var)` over `axes` (default `[0, 2, 3]`), with ONNX's
/// function body's ε-free form.
pub fn mvn(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let rank = cx.b.shape(x).len();
    let axes: Vec<isize> = n
        .attrs
        .ints("axes")
        .unwrap_or_else(|| vec![0, 2, 3])
        .iter()
        .map(|&a| axis_index(n, a, rank).map(|a| a as isize))
        .collect::<OpResult<_>>()?;
    let b = &mut cx.b;
    let mu = b.mean(x, &axes, true)?;
    let d = b.sub(x, mu)?;
    let sq = b.mul(d, d)?;
    let var = b.mean(sq, &axes, true)?;
    let sd = b.sqrt(var)?;
    Ok(b.div(d, sd)?)
}

/// `LRN` across channels: `x / (bias + α/size · Σ x²)^β`, the sum over the `size` channels centred on each
/// (⌊(size−1)/2⌋ before, ⌈(size−1)/2⌉ after, zero-padded): channels moved last, padded, summed over `windows`.
pub fn lrn(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let dims = cx.b.shape(x).to_vec();
    let size = n.attrs.int("size", 0);
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s >= 1 && dims.len() >= 2)
        .ok_or_else(|| n.error(format!("size {size} for input of dims {dims:?}")))?;
    let (alpha, beta, bias) = (
        n.attrs.float("alpha", 1e-4),
        n.attrs.float("beta", 0.75),
        n.attrs.float("bias", 1.0),
    );
    let b = &mut cx.b;
    let sq = b.mul(x, x)?;
    let rank = dims.len();
    let mut perm: Vec<usize> = (0..rank).filter(|&d| d != 1).collect();
    perm.push(1);
    let moved = b.transpose(sq, &perm)?;
    let mut low = vec![0; rank];
    let mut high = vec![0; rank];
    low[rank - 1] = (size - 1) / 2;
    high[rank - 1] = size - 1 - (size - 1) / 2;
    let padded = b.pad(moved, &low, &high, 0.0)?;
    let w = b.windows(padded, &[size], &[1], &[1])?;
    let sums = b.reduce_sum(w, &[rank as isize], false)?;
    let mut inverse = vec![0; rank];
    for (k, &p) in perm.iter().enumerate() {
        inverse[p] = k;
    }
    let sums = b.transpose(sums, &inverse)?;
    let scaled = b.mul_scalar(sums, alpha / size as f64)?;
    let base = b.add_scalar(scaled, bias)?;
    let denom = b.pow_scalar(base, beta)?;
    Ok(b.div(x, denom)?)
}
