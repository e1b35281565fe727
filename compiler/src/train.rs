//! Whole training steps as one graph: forward, loss, backward and the optimizer update.
//!
//! [`training_step`] appends an optimizer update (PyTorch's `torch.optim` formulas, written in SPEC.md) to the graph
//! that [`crate::autodiff::grad`] returns. Optimizer state (momentum buffers, Adam moments, the step count) enters as
//! `state` inputs; the outputs are `loss`, then `new.<param>` and `new.<state>`, each **aliasing** the input it
//! replaces, so a runtime can update parameters and state in place.
//!
//! Preserves: the forward computation of the loss. Requires: a verified graph with a float scalar loss output.

use crate::autodiff::grad;
use kiln_ir::{interp, verify, Builder, Graph, IrError, Role, Tensor, Value};
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
}

/// Builds one training step: the loss output `loss` of `model` is differentiated with respect to `params` and the
/// params are updated by `optimizer`.
///
/// The result's inputs are the model's inputs followed by the optimizer's state inputs (all start at zero); its
/// outputs are `loss`, `new.<param>` for each param and `new.<state>` for each state input, in that order.
pub fn training_step(
    model: &Graph,
    loss: &str,
    params: &[&str],
    optimizer: &Optimizer,
) -> Result<Graph, IrError> {
    if params.is_empty() {
        return Err(IrError::Invalid(
            "training_step: no parameters to train".into(),
        ));
    }
    let with_grads = grad(model, loss, params)?.graph;
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
    let mut graph = with_grads;
    graph.clear_outputs();
    let mut b = Builder::from_graph(graph);
    b.output("loss", loss_value)?;

    let prefix = optimizer.name();
    let mut state_updates: Vec<(String, Value)> = Vec::new();
    let step = match optimizer {
        Optimizer::Sgd(_) => None,
        Optimizer::Adam(_) | Optimizer::AdamW(_) => {
            // t counts completed steps; this step is number t + 1. Kept in the params' float dtype for `pow`.
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

/// `moment / (1 - β^t)` with the scalar step `t` broadcast over the moment.
fn bias_corrected(b: &mut Builder, moment: Value, beta: f64, t: Value) -> Result<Value, IrError> {
    let base = b.full_like(t, beta)?;
    let beta_t = b.pow(base, t)?;
    let correction = b.rsub_scalar(1.0, beta_t)?;
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
