//! The example graphs shipped in `ir-spec/examples/`, built with the builder.
//!
//! The `.kir` files are these graphs printed; a test keeps the two in step. Parameters are named as PyTorch's
//! `nn.Sequential` would name them (`l0.weight`, `l0.bias`, ...), which is also what `../shared/golden` uses.
//!
//! The activations and losses are the model API's ([`crate::nn::Activation`], [`crate::nn::Loss`]): one vocabulary,
//! and the same builder calls, for a model built here and one built by `kiln::nn`.

use crate::nn::{Activation, Loss};
use kiln_ir::{Builder, DType, Graph, IrError, TensorType};

type Result<T> = std::result::Result<T, IrError>;

/// A multi-layer perceptron `layers[0] → ... → layers[n]` on a batch of `batch` rows, with `activation` after every
/// layer but the last and `loss` on the output. Inputs: `x` (data), then `l{i}.weight` / `l{i}.bias` (params), then
/// `y` (data: i32 labels `[batch]` for cross-entropy, else targets like the output). Outputs: `out` (the last layer's
/// output) and `loss`.
pub fn mlp(
    name: &str,
    layers: &[usize],
    batch: usize,
    activation: Activation,
    loss: Loss,
    dtype: DType,
) -> Result<Graph> {
    if layers.len() < 2 {
        return Err(IrError::Invalid(format!(
            "an MLP needs at least two layer sizes, got {layers:?}"
        )));
    }
    let mut b = Builder::new(name);
    let mut h = b.data("x", TensorType::new(dtype, [batch, layers[0]]))?;
    let last = layers.len() - 2;
    let mut params = Vec::new();
    for (i, pair) in layers.windows(2).enumerate() {
        let w = b.param(
            &format!("l{i}.weight"),
            TensorType::new(dtype, [pair[1], pair[0]]),
        )?;
        let bias = b.param(&format!("l{i}.bias"), TensorType::new(dtype, [pair[1]]))?;
        params.push((w, bias));
    }
    let y_ty = match loss {
        Loss::CrossEntropy => TensorType::new(DType::I32, [batch]),
        _ => TensorType::new(dtype, [batch, layers[layers.len() - 1]]),
    };
    let y = b.data("y", y_ty)?;
    for (i, &(w, bias)) in params.iter().enumerate() {
        h = b.linear(h, w, Some(bias))?;
        if i < last {
            h = activation.apply(&mut b, h)?;
        }
        b.name(h, &format!("h{i}"))?;
    }
    let value = loss.apply(&mut b, h, y)?;
    b.output("out", h)?;
    b.output("loss", value)?;
    Ok(b.finish())
}

/// Logistic regression with binary cross-entropy: `p = sigmoid(x wᵀ + b)`, `loss = bce(p, y)`, on 64 points in 2-D.
pub fn logreg() -> Result<Graph> {
    let mut b = Builder::new("logreg");
    let x = b.data("x", TensorType::f32(&[64, 2]))?;
    let w = b.param("weight", TensorType::f32(&[1, 2]))?;
    let bias = b.param("bias", TensorType::f32(&[1]))?;
    let y = b.data("y", TensorType::f32(&[64, 1]))?;
    let z = b.linear(x, w, Some(bias))?;
    let p = b.sigmoid(z)?;
    b.name(p, "prob")?;
    let loss = b.bce_loss(p, y)?;
    b.output("prob", p)?;
    b.output("loss", loss)?;
    Ok(b.finish())
}

/// The lecture's `TwoLayerNet(2, 20, 1)`: Linear, `clamp(min=0)`, Linear, with an MSE loss, on the four XOR points.
pub fn twolayer() -> Result<Graph> {
    mlp(
        "twolayer",
        &[2, 20, 1],
        4,
        Activation::Relu,
        Loss::Mse,
        DType::F32,
    )
}

/// The 784-256-256-10 ReLU classifier on a batch of 128, with softmax cross-entropy on integer labels.
pub fn mlp_784() -> Result<Graph> {
    mlp(
        "mlp",
        &[784, 256, 256, 10],
        128,
        Activation::Relu,
        Loss::CrossEntropy,
        DType::F32,
    )
}

/// All six activations of the lecture applied to one input.
pub fn activations() -> Result<Graph> {
    let mut b = Builder::new("activations");
    let x = b.data("x", TensorType::f32(&[4, 8]))?;
    let sigmoid = b.sigmoid(x)?;
    let tanh = b.tanh(x)?;
    let relu = b.relu(x)?;
    let softplus = b.softplus(x)?;
    let leaky = b.leaky_relu(x, Activation::LEAKY_SLOPE)?;
    let heaviside = b.heaviside(x)?;
    for (name, v) in [
        ("sigmoid", sigmoid),
        ("tanh", tanh),
        ("relu", relu),
        ("softplus", softplus),
        ("leaky_relu", leaky),
        ("heaviside", heaviside),
    ] {
        b.output(name, v)?;
    }
    Ok(b.finish())
}

/// Every example shipped in `ir-spec/examples/`, by file stem.
pub fn examples() -> Result<Vec<(&'static str, Graph)>> {
    Ok(vec![
        ("logreg", logreg()?),
        ("twolayer", twolayer()?),
        ("mlp", mlp_784()?),
        ("activations", activations()?),
    ])
}

/// The optimizers the corpus trains with: SGD, SGD with Nesterov momentum and weight decay, Adam, AdamW.
pub fn corpus_optimizers() -> Vec<(&'static str, crate::Optimizer)> {
    use crate::{Adam, Optimizer, Sgd};
    let nesterov = Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 1e-4,
        ..Sgd::default()
    };
    vec![
        ("sgd", Optimizer::Sgd(Sgd::default())),
        ("sgd_nesterov", Optimizer::Sgd(nesterov)),
        ("adam", Optimizer::Adam(Adam::default())),
        (
            "adamw",
            Optimizer::AdamW(Adam {
                weight_decay: 1e-2,
                ..Adam::default()
            }),
        ),
    ]
}

/// The graphs every pass and backend is checked on: each example, its gradient graph (`<name>_grad`) and its
/// training step under each of `optimizers` (`<name>_step_<optimizer>`).
pub fn corpus(optimizers: &[(&str, crate::Optimizer)]) -> Result<Vec<Graph>> {
    let mut graphs = Vec::new();
    for (_, model) in examples()? {
        graphs.push(model.clone());
        let params = crate::autodiff::param_names(&model);
        if params.is_empty() || model.output("loss").is_none() {
            continue;
        }
        let names: Vec<&str> = params.iter().map(String::as_str).collect();
        let mut g = crate::grad(&model, "loss", &names)?.graph;
        g.name = format!("{}_grad", model.name);
        graphs.push(g);
        for (name, opt) in optimizers {
            let mut step = crate::training_step(&model, "loss", &names, opt)?;
            step.name = format!("{}_step_{name}", model.name);
            graphs.push(step);
        }
    }
    Ok(graphs)
}
