//! Whole training steps as one graph: forward, loss, backward and the optimizer update.
//!
//! [`training_step`] appends an optimizer update (PyTorch's `torch.optim` formulas, written in SPEC.md) to the graph
//! that [`crate::autodiff::grad`] returns. Optimizer state (momentum buffers, Adam moments, the step count) enters as
//! `state` inputs; the outputs are `loss`, then `new.<param>` and `new.<state>`, then the model's own aliasing outputs
//! (batch norm's running statistics), each **aliasing** the input it replaces, so a runtime can update parameters and
//! state in place.
//!
//! Preserves: the forward computation of the loss. Requires: a verified graph with a float scalar loss output.

mod data_parallel;

pub use data_parallel::DataParallel;

use crate::autodiff::grad;
use kiln_ir::{interp, verify, Builder, DType, Graph, IrError, Role, Tensor, Value};
use std::collections::HashMap;

/// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay (`torch.optim.SGD`, dampening 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

impl Default for Sgd {
    fn default() -> Sgd {
        Sgd {
            lr: 1e-2,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// Adam's hyper-parameters; `weight_decay` is L2 for [`Optimizer::Adam`] and decoupled for [`Optimizer::AdamW`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for Adam {
    fn default() -> Adam {
        Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd(Sgd),
    Adam(Adam),
    AdamW(Adam),
}

impl Optimizer {
    /// Prefix of the optimizer's state inputs (`sgd.momentum.w`, `adam.m.w`, `adamw.step`).
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd(_) => "sgd",
            Optimizer::Adam(_) => "adam",
            Optimizer::AdamW(_) => "adamw",
        }
    }

    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Sgd(s) => s.lr,
            Optimizer::Adam(a) | Optimizer::AdamW(a) => a.lr,
        }
    }

    /// The same optimizer with learning rate `lr` (a schedule's step).
    pub fn with_lr(mut self, lr: f64) -> Optimizer {
        match &mut self {
            Optimizer::Sgd(s) => s.lr = lr,
            Optimizer::Adam(a) | Optimizer::AdamW(a) => a.lr = lr,
        }
        self
    }

    /// Checks the hyper-parameters (the rules of SPEC.md §5): `lr` positive and finite; SGD's `momentum` in
    /// `[0, 1)`, and `nesterov` only with `momentum > 0`; Adam's `beta1` and `beta2` in `[0, 1)` and `eps` positive
    /// and finite; `weight_decay` finite and `>= 0`. NaN fails every rule. [`training_step`] calls this (through
    /// [`Optimizer::validate_in`]), so the library and every `kiln` command refuse the same settings.
    pub fn validate(&self) -> Result<(), InvalidHyperParameter> {
        self.validate_in(DType::F64)
    }

    /// [`Optimizer::validate`], and each value must still obey its rule once rounded to `dtype`, the dtype the
    /// training step computes in: in f32, `beta2 = 0.99999999` rounds to 1 (and `1 - β^t = 0` turns every parameter
    /// into NaN), `lr = 1e-50` to 0.
    pub fn validate_in(&self, dtype: DType) -> Result<(), InvalidHyperParameter> {
        let optimizer = self.name();
        let check = |name: &'static str, value: f64, rule: Rule| {
            let rounded = match dtype {
                DType::F32 => f64::from(value as f32),
                DType::F64 | DType::I32 | DType::Bool => value,
            };
            let problem = if !rule.holds(value) {
                format!("must be {}, got {value}", rule.text())
            } else if !rule.holds(rounded) {
                format!(
                    "must be {} in {dtype}, got {value}, which rounds to {rounded}",
                    rule.text()
                )
            } else {
                return Ok(());
            };
            Err(InvalidHyperParameter {
                optimizer,
                name,
                problem,
            })
        };
        match self {
            Optimizer::Sgd(s) => {
                check("lr", s.lr, Rule::Positive)?;
                check("momentum", s.momentum, Rule::UnitInterval)?;
                check("weight_decay", s.weight_decay, Rule::NonNegative)?;
                // As `torch.optim.SGD`: Nesterov's look-ahead is along the momentum buffer, which needs momentum.
                if s.nesterov && s.momentum == 0.0 {
                    return Err(InvalidHyperParameter {
                        optimizer,
                        name: "nesterov",
                        problem: "needs momentum > 0".into(),
                    });
                }
            }
            Optimizer::Adam(a) | Optimizer::AdamW(a) => {
                check("lr", a.lr, Rule::Positive)?;
                check("beta1", a.beta1, Rule::UnitInterval)?;
                check("beta2", a.beta2, Rule::UnitInterval)?;
                check("eps", a.eps, Rule::Positive)?;
                check("weight_decay", a.weight_decay, Rule::NonNegative)?;
            }
        }
        Ok(())
    }
}

/// An optimizer hyper-parameter outside its range ([`Optimizer::validate`]), e.g. `adam beta2 must be in [0, 1),
/// got 2`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{optimizer} {name} {problem}")]
pub struct InvalidHyperParameter {
    /// `sgd`, `adam` or `adamw`.
    pub optimizer: &'static str,
    /// The field of [`Sgd`] or [`Adam`]: `lr`, `momentum`, `nesterov`, `weight_decay`, `beta1`, `beta2`, `eps`.
    pub name: &'static str,
    /// What is wrong, e.g. `must be in [0, 1), got 2`.
    pub problem: String,
}

/// The range a hyper-parameter must lie in.
#[derive(Clone, Copy)]
enum Rule {
    /// `(0, ∞)`: a zero learning rate trains nothing, a zero `eps` divides 0 by 0 for a param with a zero gradient.
    Positive,
    /// `[0, ∞)`, finite.
    NonNegative,
    /// `[0, 1)`: a decay of 1 or more never forgets (momentum) or divides by `1 - β^t = 0` (Adam's bias correction).
    UnitInterval,
}

impl Rule {
    fn holds(self, x: f64) -> bool {
        match self {
            Rule::Positive => x.is_finite() && x > 0.0,
            Rule::NonNegative => x.is_finite() && x >= 0.0,
            Rule::UnitInterval => (0.0..1.0).contains(&x),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Rule::Positive => "a positive finite number",
            Rule::NonNegative => "a finite number >= 0",
            Rule::UnitInterval => "in [0, 1)",
        }
    }
}

/// Builds one training step: the loss output `loss` of `model` is differentiated with respect to `params` and the
/// params are updated by `optimizer`.
///
/// The result's inputs are the model's inputs followed by the optimizer's state inputs (all start at zero); its
/// outputs are `loss`, `new.<param>` for each param, `new.<state>` for each optimizer state input, and then each
/// output of `model` that aliases an input (a model's own state updates, e.g. batch norm's running statistics,
/// kept with its name and alias), in that order. The model's other outputs are dropped.
pub fn training_step(
    model: &Graph,
    loss: &str,
    params: &[&str],
    optimizer: &Optimizer,
) -> Result<Graph, IrError> {
    training_step_clipped(model, loss, params, optimizer, None)
}

/// [`training_step`], the gradients first clipped by their global norm when `max_norm` is given (PyTorch's
/// `clip_grad_norm_`): `n = sqrt(Σ_p Σ g_p²)` over every param's gradient, and each gradient scaled by
/// `min(1, max_norm / (n + 1e-6))` before the optimizer sees it (weight decay included after it, as PyTorch clips
/// `.grad` before `step()`). `max_norm` must be positive and finite.
pub fn training_step_clipped(
    model: &Graph,
    loss: &str,
    params: &[&str],
    optimizer: &Optimizer,
    max_norm: Option<f64>,
) -> Result<Graph, IrError> {
    step_graph(model, loss, params, optimizer, max_norm, None)
}

/// [`training_step_clipped`] for one of several processes, each on its own equal shard of the global batch (SPEC §5,
/// "Data-parallel steps"): every gradient is replaced by its mean over the processes (`all_reduce{mean}`, bucketed
/// as `data_parallel` says) before clipping and the update, the `loss` output is the mean of the ranks' losses, and
/// the model's own state updates are averaged. Run it with an executable or interpreter given the process group;
/// every rank must start from the same parameters (`Collective::broadcast` them from rank 0).
pub fn training_step_data_parallel(
    model: &Graph,
    loss: &str,
    params: &[&str],
    optimizer: &Optimizer,
    max_norm: Option<f64>,
    data_parallel: DataParallel,
) -> Result<Graph, IrError> {
    step_graph(
        model,
        loss,
        params,
        optimizer,
        max_norm,
        Some(data_parallel),
    )
}

/// The training step; with `data_parallel`, its gradients, loss and state updates averaged across processes.
fn step_graph(
    model: &Graph,
    loss: &str,
    params: &[&str],
    optimizer: &Optimizer,
    max_norm: Option<f64>,
    data_parallel: Option<DataParallel>,
) -> Result<Graph, IrError> {
    if let Some(m) = max_norm {
        if !(m.is_finite() && m > 0.0) {
            return Err(IrError::Invalid(format!(
                "training_step: a gradient-norm clip of {m} is not a positive number"
            )));
        }
    }
    if params.is_empty() {
        return Err(IrError::Invalid(
            "training_step: no parameters to train".into(),
        ));
    }
    let invalid = |e: InvalidHyperParameter| IrError::Invalid(format!("training_step: {e}"));
    optimizer.validate().map_err(invalid)?;
    let with_grads = grad(model, loss, params)?.graph;
    // `grad` checked that the params exist and are floats of one dtype, the one the update computes in.
    let dtype = with_grads
        .input(params[0])
        .map_or(DType::F64, |input| input.ty.dtype);
    optimizer.validate_in(dtype).map_err(invalid)?;
    let loss_value = with_grads
        .output(loss)
        .expect("grad keeps the outputs")
        .value;
    let grads: Vec<Value> = params
        .iter()
        .map(|p| {
            with_grads
                .output(&format!("grad.{p}"))
                .expect("grad adds one output per param")
                .value
        })
        .collect();
    // The model's own in-place updates (batch norm's running statistics) stay: a session keeps those inputs resident
    // as it keeps the optimizer's state. Every other model output (the logits) is dropped.
    let model_updates: Vec<(String, Value, String)> = with_grads
        .outputs()
        .iter()
        .filter_map(|o| Some((o.name.clone(), o.value, o.aliases.clone()?)))
        .collect();
    let mut graph = with_grads;
    graph.clear_outputs();
    let mut b = Builder::from_graph(graph);
    let (loss_value, grads, model_updates) = match &data_parallel {
        Some(dp) => {
            let loss_value = data_parallel::mean(&mut b, loss_value)?;
            let grads = data_parallel::mean_of_gradients(&mut b, &grads, dp)?;
            // Batch norm's running statistics: averaged so that every rank keeps the same values.
            let mut averaged = Vec::with_capacity(model_updates.len());
            for (name, value, input) in model_updates {
                // An integer update (batch norm's step counter) is the same on every rank already.
                let value = match b.dtype(value).is_float() {
                    true => data_parallel::mean(&mut b, value)?,
                    false => value,
                };
                averaged.push((name, value, input));
            }
            (loss_value, grads, averaged)
        }
        None => (loss_value, grads, model_updates),
    };
    b.output("loss", loss_value)?;
    let grads = match max_norm {
        Some(max_norm) => clip_by_global_norm(&mut b, &grads, max_norm)?,
        None => grads,
    };

    let prefix = optimizer.name();
    let mut state_updates: Vec<(String, Value)> = Vec::new();
    let step = match optimizer {
        Optimizer::Sgd(_) => None,
        Optimizer::Adam(_) | Optimizer::AdamW(_) => {
            // t counts completed steps; this step is number t + 1. Kept in the params' float dtype for the bias correction.
            let dtype = b.dtype(
                b.graph()
                    .input(params[0])
                    .expect("grad checked the params")
                    .id,
            );
            let name = format!("{prefix}.step");
            let t = b.state(&name, kiln_ir::TensorType::scalar(dtype))?;
            let t1 = b.add_scalar(t, 1.0)?;
            state_updates.push((name, t1));
            Some(t1)
        }
    };

    for (param, &g) in params.iter().zip(&grads) {
        let p = b.graph().input(param).expect("grad checked the params").id;
        let ty = b.ty(p).clone();
        let new_p = match optimizer {
            Optimizer::Sgd(s) => {
                // g ← ∇ + λ p
                let g = add_weight_decay(&mut b, g, p, s.weight_decay)?;
                let direction = if s.momentum != 0.0 {
                    // buf ← μ buf + g (buf starts at 0, which is PyTorch's first-step buf = g)
                    let name = format!("{prefix}.momentum.{param}");
                    let buf = b.state(&name, ty.clone())?;
                    let decayed = b.mul_scalar(buf, s.momentum)?;
                    let new_buf = b.add(decayed, g)?;
                    state_updates.push((name, new_buf));
                    if s.nesterov {
                        // g ← g + μ buf
                        let look_ahead = b.mul_scalar(new_buf, s.momentum)?;
                        b.add(g, look_ahead)?
                    } else {
                        new_buf
                    }
                } else {
                    g
                };
                // p ← p - lr g
                let stepped = b.mul_scalar(direction, s.lr)?;
                b.sub(p, stepped)?
            }
            Optimizer::Adam(a) | Optimizer::AdamW(a) => {
                let t1 = step.expect("Adam has a step count");
                let decoupled = matches!(optimizer, Optimizer::AdamW(_));
                // AdamW: p ← p (1 - lr λ) before the Adam step; Adam: g ← ∇ + λ p.
                let (p_start, g) = if decoupled {
                    let shrink = if a.weight_decay != 0.0 {
                        b.mul_scalar(p, 1.0 - a.lr * a.weight_decay)?
                    } else {
                        p
                    };
                    (shrink, g)
                } else {
                    (p, add_weight_decay(&mut b, g, p, a.weight_decay)?)
                };
                let m_name = format!("{prefix}.m.{param}");
                let v_name = format!("{prefix}.v.{param}");
                let m = b.state(&m_name, ty.clone())?;
                let v = b.state(&v_name, ty.clone())?;
                // m ← β1 m + (1 - β1) g
                let m_decayed = b.mul_scalar(m, a.beta1)?;
                let g_part = b.mul_scalar(g, 1.0 - a.beta1)?;
                let new_m = b.add(m_decayed, g_part)?;
                // v ← β2 v + (1 - β2) g²
                let v_decayed = b.mul_scalar(v, a.beta2)?;
                let g2 = b.mul(g, g)?;
                let g2_part = b.mul_scalar(g2, 1.0 - a.beta2)?;
                let new_v = b.add(v_decayed, g2_part)?;
                // m̂ = m / (1 - β1^t), v̂ = v / (1 - β2^t)
                let m_hat = bias_corrected(&mut b, new_m, a.beta1, t1)?;
                let v_hat = bias_corrected(&mut b, new_v, a.beta2, t1)?;
                // p ← p - lr m̂ / (sqrt(v̂) + ε)
                let root = b.sqrt(v_hat)?;
                let denom = b.add_scalar(root, a.eps)?;
                let ratio = b.div(m_hat, denom)?;
                let stepped = b.mul_scalar(ratio, a.lr)?;
                state_updates.push((m_name, new_m));
                state_updates.push((v_name, new_v));
                b.sub(p_start, stepped)?
            }
        };
        b.output_aliasing(&format!("new.{param}"), new_p, param)?;
    }
    for (name, value) in &state_updates {
        b.output_aliasing(&format!("new.{name}"), *value, name)?;
    }
    for (name, value, input) in &model_updates {
        if params.contains(&input.as_str()) {
            return Err(IrError::Invalid(format!(
                "training_step: the model's output `{name}` replaces `{input}`, which the optimizer updates"
            )));
        }
        b.output_aliasing(name, *value, input)?;
    }
    let graph = b.finish();
    verify(&graph)?;
    Ok(graph)
}

/// `g + λ p` (L2 weight decay folded into the gradient), or `g` when λ = 0.
fn add_weight_decay(
    b: &mut Builder,
    g: Value,
    p: Value,
    weight_decay: f64,
) -> Result<Value, IrError> {
    if weight_decay == 0.0 {
        return Ok(g);
    }
    let decay = b.mul_scalar(p, weight_decay)?;
    b.add(g, decay)
}

/// `moment / (1 - β^t)` with the scalar step `t` broadcast over the moment. `1 - β^t` is `-expm1(t·ln β)` with `ln β`
/// taken from the f64 `β`: a few ulp on every backend, like PyTorch's f64 bias correction. `1 - pow(β, t)` rounds
/// `β` to the dtype first (1.3e-5 relative off at t = 1 in f32) and, on Vulkan, GLSL's `pow` is 1e-4 relative off.
fn bias_corrected(b: &mut Builder, moment: Value, beta: f64, t: Value) -> Result<Value, IrError> {
    // β = 0 gives ln β = -inf, t·ln β = -inf and expm1 = -1: a correction of exactly 1, as 1 - 0^t.
    let exponent = b.mul_scalar(t, beta.ln())?;
    let expm1 = b.expm1(exponent)?;
    let correction = b.neg(expm1)?;
    b.div(moment, correction)
}

/// Runs one training step on the reference interpreter: reads every input by name from `values`, then writes each
/// aliasing output back over the input it replaces. Returns the step's loss (the `loss` output, before the update).
///
/// State inputs missing from `values` start at zero, as optimizers define them.
pub fn step_on_interpreter(
    step: &Graph,
    values: &mut HashMap<String, Tensor>,
) -> Result<f64, IrError> {
    let mut inputs = Vec::new();
    for input in step.inputs() {
        let value = match values.get(input.name) {
            Some(t) => t.clone(),
            None if input.role == Role::State => Tensor::zeros(input.ty.clone()),
            None => {
                return Err(IrError::Invalid(format!(
                    "training step: no value for input `{}`",
                    input.name
                )));
            }
        };
        inputs.push(value);
    }
    let outputs = interp::run(step, &inputs)?;
    let mut loss = f64::NAN;
    for (output, value) in step.outputs().iter().zip(outputs) {
        if output.name == "loss" {
            loss = value.scalar_value().unwrap_or(f64::NAN);
        }
        if let Some(target) = &output.aliases {
            values.insert(target.clone(), value);
        }
    }
    Ok(loss)
}

/// The gradients scaled by `min(1, max_norm / (‖g‖ + 1e-6))`, `‖g‖` the norm of all of them together.
fn clip_by_global_norm(
    b: &mut Builder,
    grads: &[Value],
    max_norm: f64,
) -> Result<Vec<Value>, IrError> {
    let mut total: Option<Value> = None;
    for &g in grads {
        let sq = b.mul(g, g)?;
        let s = b.sum_all(sq)?;
        total = Some(match total {
            Some(t) => b.add(t, s)?,
            None => s,
        });
    }
    let Some(total) = total else {
        return Ok(Vec::new());
    };
    let norm = b.sqrt(total)?;
    let shifted = b.add_scalar(norm, 1e-6)?;
    let coef = b.recip(shifted)?;
    let coef = b.mul_scalar(coef, max_norm)?;
    let scale = b.min_scalar(coef, 1.0)?;
    grads.iter().map(|&g| b.mul(g, scale)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::TensorType;

    fn sgd(lr: f64, momentum: f64, nesterov: bool, weight_decay: f64) -> Optimizer {
        Optimizer::Sgd(Sgd {
            lr,
            momentum,
            nesterov,
            weight_decay,
        })
    }

    fn adam(beta1: f64, beta2: f64, eps: f64) -> Optimizer {
        Optimizer::Adam(Adam {
            beta1,
            beta2,
            eps,
            ..Adam::default()
        })
    }

    /// Which hyper-parameter `validate` names for `optimizer`, or `None` when it accepts it.
    fn rejected(optimizer: Optimizer) -> Option<&'static str> {
        optimizer.validate().err().map(|e| e.name)
    }

    #[test]
    fn validate_accepts_the_defaults_and_the_edges_of_each_range() {
        for ok in [
            Optimizer::Sgd(Sgd::default()),
            Optimizer::Adam(Adam::default()),
            Optimizer::AdamW(Adam::default()),
            sgd(1e-30, 0.0, false, 0.0),
            sgd(1e6, 0.999, true, 5.0),
            adam(0.0, 0.0, 1e-30),
        ] {
            assert_eq!(ok.validate(), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn validate_names_the_bad_hyper_parameter() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let cases = [
            (sgd(-1.0, 0.0, false, 0.0), "lr"),
            (sgd(0.0, 0.0, false, 0.0), "lr"),
            (sgd(nan, 0.0, false, 0.0), "lr"),
            (sgd(inf, 0.0, false, 0.0), "lr"),
            (sgd(0.1, 5.0, false, 0.0), "momentum"),
            (sgd(0.1, 1.0, false, 0.0), "momentum"),
            (sgd(0.1, -0.5, false, 0.0), "momentum"),
            (sgd(0.1, nan, false, 0.0), "momentum"),
            (sgd(0.1, 0.0, true, 0.0), "nesterov"),
            (sgd(0.1, 0.0, false, -1.0), "weight_decay"),
            (sgd(0.1, 0.0, false, inf), "weight_decay"),
            (adam(1.0, 0.999, 1e-8), "beta1"),
            (adam(-0.1, 0.999, 1e-8), "beta1"),
            (adam(0.9, 2.0, 1e-8), "beta2"),
            (adam(0.9, nan, 1e-8), "beta2"),
            (adam(0.9, 0.999, -1.0), "eps"),
            (adam(0.9, 0.999, 0.0), "eps"),
            (
                Optimizer::AdamW(Adam {
                    lr: -1.0,
                    ..Adam::default()
                }),
                "lr",
            ),
        ];
        for (optimizer, name) in cases {
            assert_eq!(rejected(optimizer), Some(name), "{optimizer:?}");
        }
        let e = adam(0.9, 2.0, 1e-8).validate().unwrap_err();
        assert_eq!(e.to_string(), "adam beta2 must be in [0, 1), got 2");
    }

    #[test]
    fn values_that_round_out_of_range_in_f32_are_rejected_for_f32_only() {
        let close_to_one = adam(0.9, 0.999_999_999, 1e-8);
        assert_eq!(close_to_one.validate_in(DType::F64), Ok(()));
        let e = close_to_one.validate_in(DType::F32).unwrap_err();
        assert_eq!(e.name, "beta2");
        assert!(
            e.problem.contains("in f32") && e.problem.contains("rounds to 1"),
            "{e}"
        );
        let tiny_lr = sgd(1e-50, 0.0, false, 0.0);
        assert_eq!(tiny_lr.validate_in(DType::F64), Ok(()));
        assert_eq!(tiny_lr.validate_in(DType::F32).unwrap_err().name, "lr");
    }

    /// The library path: `training_step` itself refuses what `validate` refuses (before, `beta1 = 1` built a step
    /// that turned every parameter into NaN).
    #[test]
    fn training_step_refuses_invalid_settings() {
        let mut b = Builder::new("tiny");
        let w = b.param("w", TensorType::f32(&[3])).unwrap();
        let sq = b.mul(w, w).unwrap();
        let loss = b.reduce_sum(sq, &[0], false).unwrap();
        b.output("loss", loss).unwrap();
        let graph = b.finish();
        for (optimizer, name) in [
            (adam(1.0, 0.999, 1e-8), "beta1"),
            (sgd(-1.0, 0.0, false, 0.0), "lr"),
            (adam(0.9, 0.999_999_999, 1e-8), "beta2"),
        ] {
            let e = training_step(&graph, "loss", &["w"], &optimizer).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
        training_step(&graph, "loss", &["w"], &Optimizer::Adam(Adam::default())).unwrap();
    }
}
