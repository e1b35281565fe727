//! The typing rule of every op: the result type of an op applied to operands of given types, or why it can't be.

use super::Axes;
use super::{Literal, Op};
use crate::types::{Abbreviated, DType, TensorType, MAX_ELEMENTS, MAX_RANK};

/// Why an op can't be applied to its operands. The message names the op and the offending types; the graph adds the
/// node.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

macro_rules! type_err {
    ($($arg:tt)*) => { Err(TypeError(format!($($arg)*))) };
}

/// The operand types for a message, abbreviated past 8 (a `concat` may have millions of operands).
fn list(types: &[&TensorType]) -> String {
    const SHOWN: usize = 8;
    let mut out = types
        .iter()
        .take(SHOWN)
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if types.len() > SHOWN {
        out += &format!(", … ({} operands)", types.len());
    }
    out
}

/// An integer attribute (`perm`, `start`, `axes`) for a message, as `[1, 0]`, abbreviated when huge.
fn ints(items: &[usize]) -> String {
    Abbreviated(items, ", ", "items").to_string()
}

impl Op {
    /// The typing rule: the result type of this op applied to operands of these types, or why it can't be applied.
    ///
    /// Every result is within SPEC §1's limits ([`TensorType::within_limits`]), and every shape computation on the
    /// way is checked, so no operand types (even ones beyond the limits) make it overflow or panic.
    pub fn infer(&self, operands: &[&TensorType]) -> Result<TensorType, TypeError> {
        let out = self.infer_unchecked(operands)?;
        if !out.within_limits() {
            let name = self.mnemonic();
            let of = if operands.is_empty() {
                String::new()
            } else {
                format!(" of {}", list(operands))
            };
            return type_err!(
                "{name}{of} gives {out}, beyond the limits: rank <= {MAX_RANK} and at most 2^40 elements (the product of the nonzero dims)"
            );
        }
        Ok(out)
    }

    /// The typing rule without the final limit check; its own arithmetic is checked.
    fn infer_unchecked(&self, operands: &[&TensorType]) -> Result<TensorType, TypeError> {
        let name = self.mnemonic();
        match self.arity() {
            Some(n) if operands.len() != n => {
                return type_err!("{name} takes {n} operand(s), got {}", operands.len());
            }
            None if operands.is_empty() => {
                return type_err!("{name} takes at least one operand, got none")
            }
            _ => {}
        }
        match self {
            Op::Input { ty, .. } => check_shape_size(name, ty).map(|()| ty.clone()),
            Op::Constant { ty, value } => {
                // Before comparing against `numel`, which saturates beyond the limits.
                check_shape_size(name, ty)?;
                if let Literal::Dense(vs) = value {
                    if vs.len() != ty.numel() {
                        return type_err!(
                            "constant of type {ty} has {} values, expected {}",
                            vs.len(),
                            ty.numel()
                        );
                    }
                }
                for &v in value.values() {
                    if !representable(v, ty.dtype) {
                        return type_err!(
                            "constant value {v} is not representable as {}",
                            ty.dtype
                        );
                    }
                }
                Ok(ty.clone())
            }
            Op::Iota { ty, axis } => {
                check_shape_size(name, ty)?;
                if *axis >= ty.rank() {
                    return type_err!("iota axis {axis} out of range for {ty}");
                }
                if !ty.dtype.is_numeric() {
                    return type_err!("iota needs a numeric type, got {ty}");
                }
                Ok(ty.clone())
            }
            Op::Unary(u) => {
                let t = operands[0];
                if u.float_only() && !t.dtype.is_float() {
                    return type_err!("{name} needs a float operand, got {t}");
                }
                if !t.dtype.is_numeric() {
                    return type_err!("{name} needs a numeric operand, got {t}");
                }
                Ok(t.clone())
            }
            Op::Cast { to } => Ok(operands[0].with_dtype(*to)),
            Op::Binary(b) => {
                let (l, r) = (operands[0], operands[1]);
                if l != r {
                    return type_err!("{name} needs operands of equal type, got {l} and {r}");
                }
                if b.float_only() && !l.dtype.is_float() {
                    return type_err!("{name} needs float operands, got {l}");
                }
                if b.int_only() && l.dtype != DType::I32 {
                    return type_err!("{name} needs i32 operands, got {l}");
                }
                if !l.dtype.is_numeric() {
                    return type_err!("{name} needs numeric operands, got {l}");
                }
                Ok(l.clone())
            }
            Op::Compare(dir) => {
                let (l, r) = (operands[0], operands[1]);
                if l != r {
                    return type_err!(
                        "compare.{} needs operands of equal type, got {l} and {r}",
                        dir.name()
                    );
                }
                if dir.is_ordering() && !l.dtype.is_numeric() {
                    return type_err!("compare.{} needs numeric operands, got {l}", dir.name());
                }
                Ok(l.with_dtype(DType::Bool))
            }
            Op::Select => {
                let (c, a, b) = (operands[0], operands[1], operands[2]);
                if c.dtype != DType::Bool {
                    return type_err!("select needs a bool condition, got {c}");
                }
                if a != b {
                    return type_err!("select needs branches of equal type, got {a} and {b}");
                }
                if c.shape != a.shape {
                    return type_err!(
                        "select needs a condition of the branches' shape, got {c} for {a}"
                    );
                }
                Ok(a.clone())
            }
            Op::ReduceSum { axes, keep_dims } | Op::ReduceMax { axes, keep_dims } => {
                let t = operands[0];
                if !t.dtype.is_numeric() {
                    return type_err!("{name} needs a numeric operand, got {t}");
                }
                check_axes(name, axes, t)?;
                let dims: Vec<usize> = if *keep_dims {
                    t.dims()
                        .iter()
                        .enumerate()
                        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
                        .collect()
                } else {
                    t.dims()
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, &d)| d)
                        .collect()
                };
                Ok(t.with_shape(dims))
            }
            Op::Reshape { shape } => {
                let t = operands[0];
                let out = t.with_shape(shape.clone());
                // Both counts must be exact (not saturated) to compare them.
                check_shape_size(name, t)?;
                check_shape_size(name, &out)?;
                if shape.numel() != t.numel() {
                    return type_err!("reshape of {t} to {shape} changes the element count");
                }
                Ok(out)
            }
            Op::Transpose { perm } => {
                let t = operands[0];
                let mut seen = [false; MAX_RANK];
                let is_perm = perm.len() == t.rank()
                    && perm
                        .iter()
                        .all(|&p| p < t.rank() && !std::mem::replace(&mut seen[p], true));
                if !is_perm {
                    return type_err!(
                        "transpose permutation {} is not a permutation of the dims of {t}",
                        ints(perm)
                    );
                }
                Ok(t.with_shape(perm.iter().map(|&p| t.dims()[p]).collect::<Vec<_>>()))
            }
            Op::Broadcast { shape } => {
                let t = operands[0];
                let out = t.with_shape(shape.clone());
                if !broadcastable_to(t.dims(), shape.dims()) {
                    return type_err!("cannot broadcast {t} to {shape}");
                }
                Ok(out)
            }
            Op::Slice { start, end } => {
                let t = operands[0];
                let ok = start.len() == t.rank()
                    && end.len() == t.rank()
                    && (0..t.rank()).all(|i| start[i] <= end[i] && end[i] <= t.dims()[i]);
                if !ok {
                    return type_err!("slice [{}, {}) is not within {t}", ints(start), ints(end));
                }
                Ok(t.with_shape((0..t.rank()).map(|i| end[i] - start[i]).collect::<Vec<_>>()))
            }
            Op::Concat { axis } => {
                let first = operands[0];
                if *axis >= first.rank() {
                    return type_err!("concat axis {axis} out of range for {first}");
                }
                let mut dims = first.dims().to_vec();
                dims[*axis] = 0;
                for t in operands {
                    let same_but_axis = t.dtype == first.dtype
                        && t.rank() == first.rank()
                        && (0..t.rank()).all(|i| i == *axis || t.dims()[i] == first.dims()[i]);
                    if !same_but_axis {
                        return type_err!(
                            "concat along axis {axis} needs equal types except that axis, got {}",
                            list(operands)
                        );
                    }
                    // Checked: extents beyond the limits (`f32[0,2^63]` twice) must not wrap to a small type.
                    dims[*axis] = match dims[*axis].checked_add(t.dims()[*axis]) {
                        Some(sum) if sum <= MAX_ELEMENTS => sum,
                        _ => {
                            return type_err!(
                                "concat along axis {axis} of {}: the result's extent exceeds 2^40",
                                list(operands)
                            )
                        }
                    };
                }
                Ok(first.with_shape(dims))
            }
            Op::Matmul => {
                let (a, b) = (operands[0], operands[1]);
                let r = a.rank();
                let ok = a.dtype == b.dtype
                    && a.dtype.is_numeric()
                    && r >= 2
                    && b.rank() == r
                    && a.dims()[..r - 2] == b.dims()[..r - 2]
                    && a.dims()[r - 1] == b.dims()[r - 2];
                if !ok {
                    return type_err!(
                        "matmul needs [...,m,k] x [...,k,n] of one numeric type and equal batch dims, got {a} and {b}"
                    );
                }
                let mut dims = a.dims().to_vec();
                dims[r - 1] = b.dims()[r - 1];
                Ok(a.with_shape(dims))
            }
            Op::Pad { low, high, value } => {
                let t = operands[0];
                if low.len() != t.rank() || high.len() != t.rank() {
                    return type_err!(
                        "pad of {t} needs one low and one high padding per dim, got low {} and high {}",
                        ints(low),
                        ints(high)
                    );
                }
                let Literal::Splat(v) = value else {
                    return type_err!("pad value must be one number");
                };
                if !representable(*v, t.dtype) {
                    return type_err!("pad value {v} is not representable as {}", t.dtype);
                }
                let mut dims = Vec::with_capacity(t.rank());
                for (d, &n) in t.dims().iter().enumerate() {
                    match n
                        .checked_add(low[d])
                        .and_then(|x| x.checked_add(high[d]))
                        .filter(|&x| x <= MAX_ELEMENTS)
                    {
                        Some(x) => dims.push(x),
                        None => {
                            return type_err!("pad of {t}: dim {d}'s padded extent exceeds 2^40")
                        }
                    }
                }
                Ok(t.with_shape(dims))
            }
            Op::Windows {
                window,
                stride,
                dilation,
            } => {
                let t = operands[0];
                let lead = window_lead(t, window, stride, dilation, "windows")?;
                let mut dims = t.dims()[..lead].to_vec();
                for (d, &k) in window.iter().enumerate() {
                    let n = t.dims()[lead + d];
                    match windows_out(n, k, stride[d], dilation[d]) {
                        Some(o) => dims.push(o),
                        None => {
                            return type_err!(
                                "windows of {t}: window {} with dilation {} spans {} elements, more than dim {}'s {n}",
                                k,
                                dilation[d],
                                span(k, dilation[d]).map_or("too many".into(), |s| s.to_string()),
                                lead + d
                            )
                        }
                    }
                }
                dims.extend_from_slice(window);
                Ok(t.with_shape(dims))
            }
            Op::OverlapAdd {
                size,
                stride,
                dilation,
            } => {
                let t = operands[0];
                let s = size.len();
                if stride.len() != s || dilation.len() != s || t.rank() < 2 * s {
                    return type_err!(
                        "overlap_add of {t} needs size, stride and dilation of one length s with rank >= 2s, got size {}, stride {}, dilation {}",
                        ints(size),
                        ints(stride),
                        ints(dilation)
                    );
                }
                if !t.dtype.is_numeric() {
                    return type_err!("overlap_add of {t}: not numeric");
                }
                let lead = t.rank() - 2 * s;
                let window = &t.dims()[lead + s..];
                if stride.contains(&0) || dilation.contains(&0) || window.contains(&0) {
                    return type_err!(
                        "overlap_add of {t}: strides {}, dilations {} and windows must be positive",
                        ints(stride),
                        ints(dilation)
                    );
                }
                for d in 0..s {
                    let o = t.dims()[lead + d];
                    if windows_out(size[d], window[d], stride[d], dilation[d]) != Some(o) {
                        return type_err!(
                            "overlap_add of {t}: {o} windows of {} (stride {}, dilation {}) don't tile size {}",
                            window[d],
                            stride[d],
                            dilation[d],
                            size[d]
                        );
                    }
                }
                let mut dims = t.dims()[..lead].to_vec();
                dims.extend_from_slice(size);
                Ok(t.with_shape(dims))
            }
            Op::Gather { axis } => {
                let (x, idx) = (operands[0], operands[1]);
                if idx.dtype != DType::I32 {
                    return type_err!("gather's index must be i32, got {idx}");
                }
                if x.rank() != idx.rank() || *axis >= x.rank().max(1) || x.rank() == 0 {
                    return type_err!(
                        "gather of {x} by {idx} along axis {axis}: needs operands of one rank >= 1 and an axis below it"
                    );
                }
                let fits = (0..x.rank()).all(|d| d == *axis || x.dims()[d] == idx.dims()[d]);
                if !fits {
                    return type_err!(
                        "gather of {x} by {idx} along axis {axis}: dims other than the axis must be equal"
                    );
                }
                Ok(x.with_shape(idx.dims().to_vec()))
            }
            Op::AllReduce { op, group } => {
                let x = operands[0];
                if !x.dtype.is_float() {
                    return type_err!(
                        "all_reduce{{op={op}}} of {x}: the operand must be f32 or f64"
                    );
                }
                if *group != 0 {
                    return type_err!(
                        "all_reduce of {x}: group {group} is not defined (group 0 is every process; sub-groups are reserved)"
                    );
                }
                Ok(x.clone())
            }
        }
    }
}

/// The elements a window of `k` with dilation `d` spans: `d·(k − 1) + 1`.
fn span(k: usize, d: usize) -> Option<usize> {
    d.checked_mul(k.checked_sub(1)?)?.checked_add(1)
}

/// How many windows of `k` (stride `s`, dilation `d`) fit in `n` elements: `(n − span) / s + 1`; `None` if none fits.
pub fn windows_out(n: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    let span = span(k, d)?;
    (n >= span && s > 0).then(|| (n - span) / s + 1)
}

/// Checks the attribute lists of a `windows` over `t` and returns the number of leading (unwindowed) dims.
fn window_lead(
    t: &TensorType,
    window: &[usize],
    stride: &[usize],
    dilation: &[usize],
    name: &str,
) -> Result<usize, TypeError> {
    let s = window.len();
    if stride.len() != s || dilation.len() != s || s > t.rank() {
        return type_err!(
            "{name} of {t} needs window, stride and dilation of one length, at most the rank, got window {}, stride {}, dilation {}",
            ints(window),
            ints(stride),
            ints(dilation)
        );
    }
    if window.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
        return type_err!(
            "{name} of {t}: window {}, stride {} and dilation {} must be positive",
            ints(window),
            ints(stride),
            ints(dilation)
        );
    }
    Ok(t.rank() - s)
}

/// Whether `dtype` holds `value` exactly (the check on every constant, in the graph and the kernel IR).
pub fn representable(v: f64, dtype: DType) -> bool {
    match dtype {
        DType::F32 => v.is_nan() || v.is_infinite() || (v as f32) as f64 == v,
        DType::F64 => true,
        DType::I32 => v.fract() == 0.0 && v >= i32::MIN as f64 && v <= i32::MAX as f64,
        DType::Bool => v == 0.0 || v == 1.0,
    }
}

/// SPEC §1's limits for a type an op is given (its source type, or an operand whose count it compares).
fn check_shape_size(name: &str, ty: &TensorType) -> Result<(), TypeError> {
    if ty.rank() > MAX_RANK {
        return type_err!("{name} type {ty} has rank {} > {MAX_RANK}", ty.rank());
    }
    if !ty.within_limits() {
        return type_err!(
            "{name} type {ty} is too large: more than 2^40 elements (the product of its nonzero dims)"
        );
    }
    Ok(())
}

fn check_axes(name: &str, axes: &Axes, t: &TensorType) -> Result<(), TypeError> {
    let sorted_unique = axes.windows(2).all(|w| w[0] < w[1]);
    if !sorted_unique || axes.iter().any(|&a| a >= t.rank()) {
        return type_err!(
            "{name} axes {} must be sorted, distinct and < rank of {t}",
            ints(axes)
        );
    }
    Ok(())
}

/// NumPy's rule: align from the right; each source dim equals the target's or is 1.
pub fn broadcastable_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(&f, &t)| f == t || f == 1)
}
