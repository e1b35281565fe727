//! `NegativeLogLikelihoodLoss` and `SoftmaxCrossEntropyLoss` (its `log_softmax` then the same loss), with
//! class weights, `ignore_index` and the `none`/`sum`/`mean` reductions.

use crate::onnx::convert::{Ctx, NodeCx, OpResult, Out};
use kiln_ir::{CmpDir, Value};

pub fn loss(cx: &mut Ctx, n: &NodeCx) -> OpResult<Vec<Out>> {
    let scores = cx.input(n, 0)?;
    let target = cx.input(n, 1)?;
    let weight = cx.opt_input(n, 2)?;
    let reduction = n.attrs.string("reduction", "mean")?;
    if !matches!(reduction.as_str(), "none" | "sum" | "mean") {
        return Err(n.error(format!("unknown reduction `{reduction}`")));
    }
    let ignore = n
        .attrs
        .has("ignore_index")
        .then(|| n.attrs.int("ignore_index", 0));
    if n.op_type() == "NegativeLogLikelihoodLoss" {
        let y = nll(cx, n, scores, target, weight, &reduction, ignore)?;
        return Ok(vec![Out::Node(y)]);
    }
    let log_prob = cx.b.log_softmax(scores, 1)?;
    let y = nll(cx, n, log_prob, target, weight, &reduction, ignore)?;
    Ok(vec![Out::Node(y), Out::Node(log_prob)])
}

/// `loss[n, d..] = −x[n, t[n, d..], d..] · w[t[n, d..]]`, 0 where `t` is `ignore_index`; `mean` divides the sum by
/// the sum of the weights used (the count of targets not ignored when there are no weights).
fn nll(
    cx: &mut Ctx,
    n: &NodeCx,
    x: Value,
    target: Value,
    weight: Option<Value>,
    reduction: &str,
    ignore: Option<i64>,
) -> OpResult<Value> {
    let b = &mut cx.b;
    let xd = b.shape(x).to_vec();
    let td = b.shape(target).to_vec();
    let fits = xd.len() >= 2 && td.len() == xd.len() - 1 && td[0] == xd[0] && td[1..] == xd[2..];
    if !fits {
        return Err(n.error(format!(
            "input {} and target {} do not fit",
            b.ty(x),
            b.ty(target)
        )));
    }
    // The target as an index along the class axis: Kiln's gather reads 0 for an index out of range.
    let mut index_dims = td.clone();
    index_dims.insert(1, 1);
    let index = b.reshape(target, &index_dims)?;
    let picked = b.gather(x, index, 1)?;
    let picked = b.reshape(picked, &td)?;
    let mut w = match weight {
        Some(w) => b.take(w, target, 0)?,
        None => b.full_like(picked, 1.0)?,
    };
    if let Some(ignore) = ignore {
        let ignore = i32::try_from(ignore)
            .map_err(|_| n.error(format!("ignore_index {ignore} does not fit i32")))?;
        let kept = b.compare_scalar(CmpDir::Ne, target, ignore as f64)?;
        let zero = b.zeros_like(w)?;
        w = b.select(kept, w, zero)?;
    }
    let weighted = b.mul(picked, w)?;
    let loss = b.neg(weighted)?;
    Ok(match reduction {
        "none" => loss,
        "sum" => b.sum_all(loss)?,
        _ => {
            let total = b.sum_all(loss)?;
            let weights = b.sum_all(w)?;
            b.div(total, weights)?
        }
    })
}
