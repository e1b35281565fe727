//! Elementwise ops, activations, comparisons, logic, `Cast`, `Dropout` and `Softmax`/`LogSoftmax`.
//!
//! ONNX's multidirectional broadcasting is NumPy's, which the builder's binary ops already do.

use crate::onnx::convert::{Ctx, NodeCx, OpResult, Out};
use crate::onnx::tensor::kiln_dtype;
use kiln_ir::{BinaryOp, CmpDir, DType, GeluApprox, Value};

/// `Add Sub Mul Div Pow BitShift Bitwise{And,Or,Xor}`.
pub fn binary(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let a = cx.input(n, 0)?;
    let b = cx.input(n, 1)?;
    let op = match n.op_type() {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "BitwiseAnd" => BinaryOp::And,
        "BitwiseOr" => BinaryOp::Or,
        "BitwiseXor" => BinaryOp::Xor,
        "BitShift" => match n.attrs.string("direction", "")?.as_str() {
            "LEFT" => BinaryOp::Shl,
            "RIGHT" => BinaryOp::Shr,
            other => return Err(n.error(format!("unknown direction `{other}`"))),
        },
        _ => return pow(cx, a, b),
    };
    Ok(cx.b.binary(op, a, b)?)
}

/// ONNX's `Pow` allows an exponent of another type than the base, and integer bases; Kiln's `pow` is float-only on
/// equal types, so integers go through f64 (exact for i32) and the exponent is cast to the base's type.
fn pow(cx: &mut Ctx, a: Value, b: Value) -> OpResult<Value> {
    let dtype = cx.b.dtype(a);
    if dtype.is_float() {
        let b = cx.b.cast(b, dtype)?;
        return Ok(cx.b.pow(a, b)?);
    }
    let a64 = cx.b.cast(a, DType::F64)?;
    let b64 = cx.b.cast(b, DType::F64)?;
    let y = cx.b.pow(a64, b64)?;
    // The integer power is exact in f64 up to 2^53, but `pow` may land an ulp below it (9³ = 728.99..):
    // rounded to nearest (half away from zero) before the truncating cast.
    let negative = cx.b.compare_scalar(CmpDir::Lt, y, 0.0)?;
    let down = cx.b.full_like(y, -0.5)?;
    let up = cx.b.full_like(y, 0.5)?;
    let half = cx.b.select(negative, down, up)?;
    let rounded = cx.b.add(y, half)?;
    Ok(cx.b.cast(rounded, dtype)?)
}

/// `Max Min Sum Mean` over any number of broadcast operands.
pub fn variadic(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let xs = cx.inputs(n)?;
    let (&first, rest) = xs
        .split_first()
        .ok_or_else(|| n.error("needs at least one input"))?;
    let op = match n.op_type() {
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        _ => BinaryOp::Add,
    };
    let mut acc = first;
    for &x in rest {
        acc = cx.b.binary(op, acc, x)?;
    }
    if n.op_type() == "Mean" {
        let count = cx.b.full_like(acc, xs.len() as f64)?;
        acc = cx.b.div(acc, count)?;
    }
    Ok(acc)
}

/// Unary ops without attributes.
pub fn unary(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let b = &mut cx.b;
    Ok(match n.op_type() {
        "Abs" => b.abs(x)?,
        "Neg" => b.neg(x)?,
        "Exp" => b.exp(x)?,
        "Log" => b.log(x)?,
        "Sqrt" => b.sqrt(x)?,
        "Reciprocal" => b.recip(x)?,
        "Tanh" => b.tanh(x)?,
        "Sigmoid" => b.sigmoid(x)?,
        "Erf" => b.erf(x)?,
        "Sin" => b.sin(x)?,
        "Cos" => b.cos(x)?,
        "Floor" => b.floor(x)?,
        "Ceil" => b.ceil(x)?,
        "Round" => b.round(x)?,
        "Relu" => b.relu(x)?,
        "Softplus" => b.softplus(x)?,
        "Softsign" => {
            // x / (1 + |x|)
            let a = b.abs(x)?;
            let d = b.add_scalar(a, 1.0)?;
            b.div(x, d)?
        }
        _ => {
            // Sign: 1 for x > 0, -1 for x < 0, x itself for 0 and NaN.
            let pos = b.compare_scalar(CmpDir::Gt, x, 0.0)?;
            let neg = b.compare_scalar(CmpDir::Lt, x, 0.0)?;
            let one = b.full_like(x, 1.0)?;
            let minus_one = b.full_like(x, -1.0)?;
            let rest = b.select(neg, minus_one, x)?;
            b.select(pos, one, rest)?
        }
    })
}

/// Activations with attributes (defaults from the ONNX spec, the same in every opset).
pub fn activation(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let a = &n.attrs;
    let op = n.op_type();
    if op == "PRelu" {
        // select(x < 0, slope·x, x), the slope broadcast to x.
        let slope = cx.input(n, 1)?;
        let scaled = cx.b.mul(x, slope)?;
        let negative = cx.b.compare_scalar(CmpDir::Lt, x, 0.0)?;
        return Ok(cx.b.select(negative, scaled, x)?);
    }
    let b = &mut cx.b;
    Ok(match op {
        "LeakyRelu" => b.leaky_relu(x, a.float("alpha", 0.01))?,
        "ThresholdedRelu" => {
            // select(x > α, x, 0)
            let above = b.compare_scalar(CmpDir::Gt, x, a.float("alpha", 1.0))?;
            let zero = b.zeros_like(x)?;
            b.select(above, x, zero)?
        }
        "Elu" | "Selu" => {
            // Elu: select(x > 0, x, α(eˣ − 1)); Selu: γ·select(x > 0, x, αeˣ − α).
            let (alpha, gamma) = if op == "Elu" {
                (a.float("alpha", 1.0), 1.0)
            } else {
                (
                    a.float("alpha", 1.673_263_192_176_818_8),
                    a.float("gamma", 1.050_701_022_148_132_3),
                )
            };
            let e = b.exp(x)?;
            let em1 = b.add_scalar(e, -1.0)?;
            let negative = b.mul_scalar(em1, alpha)?;
            let positive = b.compare_scalar(CmpDir::Gt, x, 0.0)?;
            let y = b.select(positive, x, negative)?;
            if gamma == 1.0 {
                y
            } else {
                b.mul_scalar(y, gamma)?
            }
        }
        "HardSigmoid" | "HardSwish" => {
            // max(0, min(1, αx + β)); HardSwish is x · HardSigmoid(x) with α = 1/6, β = ½.
            let (alpha, beta) = if op == "HardSigmoid" {
                (a.float("alpha", 0.2), a.float("beta", 0.5))
            } else {
                (1.0 / 6.0, 0.5)
            };
            let ax = b.mul_scalar(x, alpha)?;
            let lin = b.add_scalar(ax, beta)?;
            let upper = b.min_scalar(lin, 1.0)?;
            let hs = b.max_scalar(upper, 0.0)?;
            if op == "HardSigmoid" {
                hs
            } else {
                b.mul(x, hs)?
            }
        }
        "Gelu" => {
            let approx = match a.string("approximate", "none")?.as_str() {
                "none" => GeluApprox::None,
                "tanh" => GeluApprox::Tanh,
                other => return Err(n.error(format!("unknown approximate `{other}`"))),
            };
            b.gelu(x, approx)?
        }
        _ => {
            // Mish: x · tanh(softplus(x)).
            let sp = b.softplus(x)?;
            let t = b.tanh(sp)?;
            b.mul(x, t)?
        }
    })
}

/// `Clip`: bounds are attributes before opset 11 (defaults ±f32::MAX), optional inputs from 11.
pub fn clip(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let mut y = cx.input(n, 0)?;
    if n.opset < 11 {
        let lo = n.attrs.float("min", f32::MIN as f64);
        let hi = n.attrs.float("max", f32::MAX as f64);
        y = cx.b.max_scalar(y, lo)?;
        return Ok(cx.b.min_scalar(y, hi)?);
    }
    if let Some(lo) = cx.opt_input(n, 1)? {
        y = cx.b.max(y, lo)?;
    }
    if let Some(hi) = cx.opt_input(n, 2)? {
        y = cx.b.min(y, hi)?;
    }
    Ok(y)
}

pub fn compare(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let a = cx.input(n, 0)?;
    let b = cx.input(n, 1)?;
    let dir = match n.op_type() {
        "Equal" => CmpDir::Eq,
        "Less" => CmpDir::Lt,
        "Greater" => CmpDir::Gt,
        "LessOrEqual" => CmpDir::Le,
        _ => CmpDir::Ge,
    };
    Ok(cx.b.compare(dir, a, b)?)
}

/// `Not And Or Xor` on bools: Kiln's bitwise ops are i32-only, so the operands go through i32 and back.
pub fn logical(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let a = cx.input(n, 0)?;
    if n.op_type() == "Not" {
        return Ok(cx.b.compare_scalar(CmpDir::Eq, a, 0.0)?);
    }
    let b = cx.input(n, 1)?;
    let ai = cx.b.cast(a, DType::I32)?;
    let bi = cx.b.cast(b, DType::I32)?;
    let y = match n.op_type() {
        "And" => cx.b.bit_and(ai, bi)?,
        "Or" => cx.b.bit_or(ai, bi)?,
        _ => cx.b.bit_xor(ai, bi)?,
    };
    Ok(cx.b.cast(y, DType::Bool)?)
}

pub fn where_(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let c = cx.input(n, 0)?;
    let a = cx.input(n, 1)?;
    let b = cx.input(n, 2)?;
    Ok(cx.b.select(c, a, b)?)
}

/// `Cast` to the `to` attribute's type; `CastLike` to the type of its second input.
pub fn cast(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    if n.op_type() == "CastLike" {
        let like = n
            .input_name(1)
            .ok_or_else(|| n.error("input 1 is required"))?;
        let dtype = cx
            .dtype_of(like)
            .ok_or_else(|| n.error(format!("value `{like}` is used before it is defined")))?;
        return Ok(cx.b.cast(x, dtype)?);
    }
    let to = n.attrs.int("to", 0);
    let dtype = i32::try_from(to).ok().and_then(kiln_dtype).ok_or_else(|| {
        n.unsupported(format!(
            "cast to {}",
            crate::onnx::tensor::type_name(to as i32)
        ))
    })?;
    Ok(cx.b.cast(x, dtype)?)
}

/// Inference, or training with a ratio of 0: the identity, the optional mask output all true. Training with a
/// positive ratio is not supported: its mask comes from the runtime's random generator, which Kiln's (Philox, in the
/// graph) cannot reproduce bit for bit.
pub fn dropout(cx: &mut Ctx, n: &NodeCx) -> OpResult<Vec<Out>> {
    let x = cx.input(n, 0)?;
    if let Some(training) = cx.static_input(n, 2, "training_mode")? {
        if training.ints().iter().any(|&t| t != 0) {
            // The ratio is an attribute before opset 12, then input 1 (default 0.5).
            let ratio = if n.opset < 12 {
                n.attrs.float("ratio", 0.5)
            } else {
                match cx.static_input(n, 1, "ratio")? {
                    Some(r) => r.floats().first().copied().unwrap_or(0.5),
                    None => 0.5,
                }
            };
            if ratio != 0.0 {
                return Err(n.unsupported(format!(
                    "training_mode = true with ratio {ratio} (a random mask)"
                )));
            }
        }
    }
    let mut outs = vec![Out::Node(x)];
    if n.output_count() > 1 {
        let ty = kiln_ir::TensorType::new(DType::Bool, cx.b.shape(x));
        outs.push(Out::Node(cx.b.full(ty, 1.0)?));
    }
    Ok(outs)
}

/// `Softmax`/`LogSoftmax`: before opset 13 the input is coerced to 2-D at `axis` (default 1) and normalized over
/// everything from `axis` on; from 13 over the one `axis` (default -1).
pub fn softmax(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let log = n.op_type() == "LogSoftmax";
    let shape = cx.b.shape(x).to_vec();
    if n.opset >= 13 {
        let axis = n.attrs.int("axis", -1) as isize;
        return Ok(if log {
            cx.b.log_softmax(x, axis)?
        } else {
            cx.b.softmax(x, axis)?
        });
    }
    let axis = n.attrs.int("axis", 1) as isize;
    let axis = cx.b.normalize_axis(n.op_type(), x, axis).or_else(|e| {
        // Rank-0 input: coerced to [1, 1].
        if shape.is_empty() {
            Ok(0)
        } else {
            Err(e)
        }
    })?;
    let rows: usize = shape[..axis].iter().product();
    let cols: usize = shape[axis..].iter().product();
    let flat = cx.b.reshape(x, &[rows, cols])?;
    let y = if log {
        cx.b.log_softmax(flat, 1)?
    } else {
        cx.b.softmax(flat, 1)?
    };
    Ok(cx.b.reshape(y, &shape)?)
}

/// `IsNaN` (`x ≠ x`) and `IsInf` (`x = ±inf`, each sign as `detect_positive`/`detect_negative` say).
pub fn is_special(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let b = &mut cx.b;
    if n.op_type() == "IsNaN" {
        return Ok(b.compare(CmpDir::Ne, x, x)?);
    }
    let positive = n.attrs.int("detect_positive", 1) != 0;
    let negative = n.attrs.int("detect_negative", 1) != 0;
    Ok(match (positive, negative) {
        (true, true) => {
            let a = b.abs(x)?;
            b.compare_scalar(CmpDir::Eq, a, f64::INFINITY)?
        }
        (true, false) => b.compare_scalar(CmpDir::Eq, x, f64::INFINITY)?,
        (false, true) => b.compare_scalar(CmpDir::Eq, x, f64::NEG_INFINITY)?,
        (false, false) => {
            let ty = kiln_ir::TensorType::new(DType::Bool, b.shape(x));
            b.full(ty, 0.0)?
        }
    })
}

/// `Mod` on integers (`fmod = 0`): the remainder takes the divisor's sign (Python's `%`), from the truncating
/// division: `r = a − (a / b)·b`, plus `b` where `r ≠ 0` and the signs differ. A zero divisor gives `a` (Kiln's
/// `x / 0 = 0`); ONNX leaves it undefined. Float `fmod` needs a truncation Kiln lacks.
pub fn modulo(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let a = cx.input(n, 0)?;
    let d = cx.input(n, 1)?;
    let b = &mut cx.b;
    if b.dtype(a).is_float() {
        if n.attrs.int("fmod", 0) == 0 {
            return Err(n.error("floats need fmod = 1 (the ONNX spec)"));
        }
        // C's fmod as `a − trunc(a / d)·d`: exact while the quotient's integer part is exact (|a / d| < 2^24 in
        // f32), unlike C's, which is exact everywhere.
        let q = b.div(a, d)?;
        let t = b.trunc(q)?;
        let td = b.mul(t, d)?;
        return Ok(b.sub(a, td)?);
    }
    let q = b.div(a, d)?;
    let qd = b.mul(q, d)?;
    let r = b.sub(a, qd)?;
    if n.attrs.int("fmod", 0) != 0 {
        // C's fmod: the dividend's sign, which the truncating division already gives.
        return Ok(r);
    }
    let shape = b.shape(r).to_vec();
    let d = b.broadcast(d, &shape)?;
    let nonzero = b.compare_scalar(CmpDir::Ne, r, 0.0)?;
    let r_neg = b.compare_scalar(CmpDir::Lt, r, 0.0)?;
    let d_neg = b.compare_scalar(CmpDir::Lt, d, 0.0)?;
    let differ = b.compare(CmpDir::Ne, r_neg, d_neg)?;
    let fixed = b.add(r, d)?;
    let adjust = b.select(differ, fixed, r)?;
    Ok(b.select(nonzero, adjust, r)?)
}

/// Hyperbolic and inverse-hyperbolic functions and `Tan`, from Kiln's `exp`, `log`, `sqrt`, `sin` and `cos`.
pub fn math(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let b = &mut cx.b;
    Ok(match n.op_type() {
        "Sinh" | "Cosh" => {
            // (eˣ ∓ e⁻ˣ) / 2
            let e = b.exp(x)?;
            let nx = b.neg(x)?;
            let en = b.exp(nx)?;
            let s = if n.op_type() == "Sinh" {
                b.sub(e, en)?
            } else {
                b.add(e, en)?
            };
            b.mul_scalar(s, 0.5)?
        }
        "Tan" => {
            let s = b.sin(x)?;
            let c = b.cos(x)?;
            b.div(s, c)?
        }
        "Asinh" => {
            // sign(x)·log(|x| + √(x² + 1)), odd so that negative x does not cancel.
            let a = b.abs(x)?;
            let sq = b.mul(x, x)?;
            let sq1 = b.add_scalar(sq, 1.0)?;
            let r = b.sqrt(sq1)?;
            let sum = b.add(a, r)?;
            let l = b.log(sum)?;
            let negative = b.compare_scalar(CmpDir::Lt, x, 0.0)?;
            let nl = b.neg(l)?;
            b.select(negative, nl, l)?
        }
        "Acosh" => {
            // log(x + √(x² − 1))
            let sq = b.mul(x, x)?;
            let sq1 = b.add_scalar(sq, -1.0)?;
            let r = b.sqrt(sq1)?;
            let sum = b.add(x, r)?;
            b.log(sum)?
        }
        _ => {
            // Atanh: ½·log((1 + x) / (1 − x))
            let num = b.add_scalar(x, 1.0)?;
            let den = b.rsub_scalar(1.0, x)?;
            let q = b.div(num, den)?;
            let l = b.log(q)?;
            b.mul_scalar(l, 0.5)?
        }
    })
}

/// `Shrink` (`x + bias` below `−λ`, `x − bias` above `λ`, else 0) and `Celu` (`max(0, x) + min(0, α(e^(x/α) − 1))`).
pub fn shrink_celu(cx: &mut Ctx, n: &NodeCx) -> OpResult<Value> {
    let x = cx.input(n, 0)?;
    let a = &n.attrs;
    let b = &mut cx.b;
    if n.op_type() == "Celu" {
        let alpha = a.float("alpha", 1.0);
        let scaled = b.mul_scalar(x, 1.0 / alpha)?;
        let e = b.exp(scaled)?;
        let em1 = b.add_scalar(e, -1.0)?;
        let neg = b.mul_scalar(em1, alpha)?;
        let neg = b.min_scalar(neg, 0.0)?;
        let pos = b.max_scalar(x, 0.0)?;
        return Ok(b.add(pos, neg)?);
    }
    let (lambd, bias) = (a.float("lambd", 0.5), a.float("bias", 0.0));
    let below = b.compare_scalar(CmpDir::Lt, x, -lambd)?;
    let above = b.compare_scalar(CmpDir::Gt, x, lambd)?;
    let up = b.add_scalar(x, bias)?;
    let down = b.add_scalar(x, -bias)?;
    let zero = b.zeros_like(x)?;
    let rest = b.select(above, down, zero)?;
    Ok(b.select(below, up, rest)?)
}
