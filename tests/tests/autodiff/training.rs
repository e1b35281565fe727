//! Gradients of gradients, training-step graphs, and training to convergence on the interpreter.

use kiln::ir::{interp, Builder, DType, Graph, Role, Tensor, TensorType};
use kiln::nn::{Activation, Loss};
use kiln::zoo;
use kiln::{grad, step_on_interpreter, training_step, Adam, Optimizer, Sgd};
use kiln_tests::fd::{random_tensor, rng};
use rand::RngExt;
use std::collections::HashMap;

fn inputs_for(graph: &Graph, values: &HashMap<String, Tensor>) -> Vec<Tensor> {
    graph.inputs().map(|i| values[i.name].clone()).collect()
}

fn output<'a>(graph: &Graph, outputs: &'a [Tensor], name: &str) -> &'a Tensor {
    &outputs[graph
        .outputs()
        .iter()
        .position(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output {name}"))]
}

/// PyTorch's default `Linear` init: weight and bias uniform in ±1/sqrt(fan_in).
fn init_params(graph: &Graph, seed: u64) -> HashMap<String, Tensor> {
    let mut r = rng(seed);
    let mut values = HashMap::new();
    for input in graph.inputs().filter(|i| i.role == Role::Param) {
        // A bias shares its layer's fan-in: that of the weight of the same name.
        let weight = input.name.replace("bias", "weight");
        let fan_in = graph.input(&weight).map_or(1, |w| w.ty.dims()[1]);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let v: Vec<f64> = (0..input.ty.numel())
            .map(|_| r.random_range(-bound..bound))
            .collect();
        values.insert(
            input.name.to_string(),
            Tensor::from_f64_values(input.ty.clone(), &v).unwrap(),
        );
    }
    values
}

#[test]
fn hessian_vector_product_matches_finite_differences_of_the_gradient() {
    let model = zoo::mlp(
        "hvp",
        &[3, 4, 2],
        5,
        Activation::Tanh,
        Loss::Mse,
        DType::F64,
    )
    .unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let g1 = grad(&model, "loss", &names).unwrap().graph;

    // f(p) = Σ_p <∇_p loss, v_p>; then ∇f = H v.
    let mut b = Builder::from_graph(g1.clone());
    let mut dot = None;
    for p in &params {
        let gp = g1.output(&format!("grad.{p}")).unwrap().value;
        let v = b.data(&format!("v.{p}"), b.ty(gp).clone()).unwrap();
        let prod = b.mul(gp, v).unwrap();
        let s = b.sum_all(prod).unwrap();
        dot = Some(match dot {
            None => s,
            Some(acc) => b.add(acc, s).unwrap(),
        });
    }
    b.output("gv", dot.unwrap()).unwrap();
    let g2 = kiln::autodiff::grad_with_prefix(&b.finish(), "gv", &names, "hvp")
        .unwrap()
        .graph;

    let mut r = rng(7);
    let mut values: HashMap<String, Tensor> = HashMap::new();
    for input in g2.inputs() {
        values.insert(input.name.to_string(), random_tensor(input.ty, &mut r));
    }
    let out = interp::run(&g2, &inputs_for(&g2, &values)).unwrap();

    // Central difference of the gradient along v: (∇L(p + h v) - ∇L(p - h v)) / 2h.
    let h = 1e-5;
    let shifted = |sign: f64| {
        let mut moved = values.clone();
        for p in &params {
            let base = values[p].to_f64_vec();
            let v = values[&format!("v.{p}")].to_f64_vec();
            let x: Vec<f64> = base.iter().zip(&v).map(|(b, v)| b + sign * h * v).collect();
            moved.insert(
                p.clone(),
                Tensor::from_f64_values(values[p].ty().clone(), &x).unwrap(),
            );
        }
        interp::run(&g1, &inputs_for(&g1, &moved)).unwrap()
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    for p in &params {
        let name = format!("grad.{p}");
        let hv = output(&g2, &out, &format!("hvp.{p}")).to_f64_vec();
        let gp = output(&g1, &plus, &name).to_f64_vec();
        let gm = output(&g1, &minus, &name).to_f64_vec();
        for j in 0..hv.len() {
            let numeric = (gp[j] - gm[j]) / (2.0 * h);
            let tol = 1e-7 + 1e-6 * numeric.abs().max(hv[j].abs());
            assert!(
                (hv[j] - numeric).abs() <= tol,
                "(Hv)_{p}[{j}]: {} vs finite difference {numeric}",
                hv[j]
            );
        }
    }
}

#[test]
fn training_step_outputs_alias_params_and_state() {
    let model = zoo::twolayer().unwrap();
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let step = training_step(&model, "loss", &names, &Optimizer::Adam(Adam::default())).unwrap();
    let outputs: Vec<(&str, Option<&str>)> = step
        .outputs()
        .iter()
        .map(|o| (o.name.as_str(), o.aliases.as_deref()))
        .collect();
    assert_eq!(outputs[0], ("loss", None));
    for p in &params {
        let new = format!("new.{p}");
        assert!(
            outputs.contains(&(new.as_str(), Some(p.as_str()))),
            "{new} should alias {p}"
        );
        for slot in ["m", "v"] {
            let state = format!("adam.{slot}.{p}");
            assert_eq!(step.input(&state).map(|i| i.role), Some(Role::State));
            let new = format!("new.{state}");
            assert!(outputs.contains(&(new.as_str(), Some(state.as_str()))));
        }
    }
    assert_eq!(
        step.input("adam.step").map(|i| i.ty.clone()),
        Some(TensorType::scalar(DType::F32))
    );
}

#[test]
fn grad_rejects_bad_requests() {
    let model = zoo::twolayer().unwrap();
    let err = grad(&model, "out", &["l0.weight"]).unwrap_err().to_string();
    assert!(
        err.contains("float scalar") && err.contains("f32[4,1]"),
        "{err}"
    );
    let err = grad(&model, "nope", &["l0.weight"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no output `nope`"), "{err}");
    let err = grad(&model, "loss", &["missing"]).unwrap_err().to_string();
    assert!(err.contains("no input `missing`"), "{err}");
    let mlp = zoo::mlp(
        "ce",
        &[2, 3],
        4,
        Activation::Relu,
        Loss::CrossEntropy,
        DType::F32,
    )
    .unwrap();
    let err = grad(&mlp, "loss", &["y"]).unwrap_err().to_string();
    assert!(
        err.contains("i32[4]") && err.contains("float inputs"),
        "{err}"
    );
}

#[test]
fn logistic_regression_separates_separable_data() {
    let model = zoo::logreg().unwrap();
    let mut r = rng(11);
    // Points on either side of the line x0 + 2 x1 = 0.3, at least 0.1 away from it.
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    while ys.len() < 64 {
        let (a, b): (f64, f64) = (r.random_range(-1.0..1.0), r.random_range(-1.0..1.0));
        let margin = a + 2.0 * b - 0.3;
        if margin.abs() < 0.1 {
            continue;
        }
        xs.extend([a, b]);
        ys.push(if margin > 0.0 { 1.0 } else { 0.0 });
    }
    let mut values = init_params(&model, 1);
    values.insert(
        "x".into(),
        Tensor::from_f64_values(TensorType::f32(&[64, 2]), &xs).unwrap(),
    );
    values.insert(
        "y".into(),
        Tensor::from_f64_values(TensorType::f32(&[64, 1]), &ys).unwrap(),
    );
    let sgd = Optimizer::Sgd(Sgd {
        lr: 1.0,
        ..Sgd::default()
    });
    let step = training_step(&model, "loss", &["weight", "bias"], &sgd).unwrap();
    let first = step_on_interpreter(&step, &mut values).unwrap();
    let mut last = first;
    for _ in 0..3000 {
        last = step_on_interpreter(&step, &mut values).unwrap();
    }
    assert!(last < first * 0.5, "loss went from {first} to {last}");
    let out = interp::run(&model, &inputs_for(&model, &values)).unwrap();
    let prob = output(&model, &out, "prob").to_f64_vec();
    let correct = prob
        .iter()
        .zip(&ys)
        .filter(|(p, y)| (**p > 0.5) == (**y > 0.5))
        .count();
    assert_eq!(
        correct, 64,
        "training accuracy {correct}/64 after loss {last}"
    );
}

#[test]
fn two_layer_net_fits_xor() {
    let model = zoo::twolayer().unwrap();
    let mut values = init_params(&model, 3);
    let x = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let y = [0.0, 1.0, 1.0, 0.0];
    values.insert(
        "x".into(),
        Tensor::from_f64_values(TensorType::f32(&[4, 2]), &x).unwrap(),
    );
    values.insert(
        "y".into(),
        Tensor::from_f64_values(TensorType::f32(&[4, 1]), &y).unwrap(),
    );
    let params = kiln::autodiff::param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let adam = Optimizer::Adam(Adam {
        lr: 0.05,
        ..Adam::default()
    });
    let step = training_step(&model, "loss", &names, &adam).unwrap();
    let mut loss = f64::INFINITY;
    for _ in 0..500 {
        loss = step_on_interpreter(&step, &mut values).unwrap();
    }
    assert!(loss < 1e-3, "XOR loss after 500 Adam steps: {loss}");
    let out = interp::run(&model, &inputs_for(&model, &values)).unwrap();
    let pred = output(&model, &out, "out").to_f64_vec();
    for (p, t) in pred.iter().zip(y) {
        assert!(
            (p - t).abs() < 0.1,
            "XOR prediction {p} for target {t} (all: {pred:?})"
        );
    }
}
