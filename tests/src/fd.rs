//! Finite-difference gradient checks on the reference interpreter.
//!
//! A case builds a graph with one output `y` and gives values for its inputs. The check contracts `y` with a random
//! weight tensor (`loss = sum(y * w)`, so the cotangent is random rather than all ones), differentiates the loss with
//! respect to every `param` input, and compares each gradient element with a central difference.

use kiln::ir::interp;
use kiln::ir::{Builder, DType, Graph, IrError, Role, Tensor, TensorType};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Tolerances of a check: an analytic element `a` passes against the numeric `n` when
/// `|a - n| <= atol + rtol * max(|a|, |n|)`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
    /// Relative step: `h = step * max(1, |x|)`.
    pub step: f64,
}

/// For f64 graphs: central differences with h = 1e-6 are accurate to ~1e-10 relative, so 1e-6 leaves a wide margin
/// while still catching any wrong rule (which is off by O(1)).
pub const F64_TOLERANCE: Tolerance = Tolerance {
    atol: 1e-8,
    rtol: 1e-6,
    step: 1e-6,
};

/// Seeded normal values for a tensor of `ty` (f32/f64); i32 inputs get values in `[0, 10)`; bools are random.
pub fn random_tensor(ty: &TensorType, rng: &mut ChaCha8Rng) -> Tensor {
    let values: Vec<f64> = (0..ty.numel())
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            match ty.dtype {
                DType::F32 | DType::F64 => z,
                DType::I32 => ((z.abs() * 4.0) as i64).min(9) as f64,
                DType::Bool => (z > 0.0) as u8 as f64,
            }
        })
        .collect();
    Tensor::from_f64_values(ty.clone(), &values).expect("values match the type")
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// The worst element found by a check, for messages.
#[derive(Debug)]
pub struct Report {
    pub checked: usize,
    pub worst_excess: f64,
}

/// Checks the gradients of `sum(y * w)` with respect to every `param` input of `graph` at `inputs`.
///
/// Panics (this is test support) with the input, element, analytic and numeric values of the first failure.
pub fn check_gradients(graph: &Graph, inputs: &[Tensor], tol: Tolerance, seed: u64) -> Report {
    let (loss_graph, weights) =
        contract_output(graph, seed).expect("case graph has one output `y`");
    let mut full_inputs = inputs.to_vec();
    full_inputs.push(weights);
    let params: Vec<String> = loss_graph
        .inputs()
        .filter(|i| i.role == Role::Param)
        .map(|i| i.name.to_string())
        .collect();
    let param_refs: Vec<&str> = params.iter().map(String::as_str).collect();
    let with_grads = kiln::grad(&loss_graph, "loss", &param_refs)
        .expect("grad builds")
        .graph;
    let outputs = interp::run(&with_grads, &full_inputs).expect("gradient graph runs");
    let loss_index = loss_graph
        .outputs()
        .iter()
        .position(|o| o.name == "loss")
        .expect("loss output");
    let loss_at = |inputs: &[Tensor]| -> f64 {
        let out = interp::run(&loss_graph, inputs).expect("loss graph runs");
        out[loss_index].scalar_value().expect("scalar loss")
    };

    let mut report = Report {
        checked: 0,
        worst_excess: f64::NEG_INFINITY,
    };
    for name in &params {
        let position = loss_graph
            .inputs()
            .position(|i| i.name == name)
            .expect("param is an input");
        let analytic_index = with_grads
            .outputs()
            .iter()
            .position(|o| o.name == format!("grad.{name}"))
            .unwrap();
        let analytic = outputs[analytic_index].to_f64_vec();
        let base = full_inputs[position].clone();
        let values = base.to_f64_vec();
        for (j, &x) in values.iter().enumerate() {
            let h = tol.step * x.abs().max(1.0);
            let mut perturbed = values.clone();
            perturbed[j] = x + h;
            full_inputs[position] = Tensor::from_f64_values(base.ty().clone(), &perturbed).unwrap();
            let plus = loss_at(&full_inputs);
            perturbed[j] = x - h;
            full_inputs[position] = Tensor::from_f64_values(base.ty().clone(), &perturbed).unwrap();
            let minus = loss_at(&full_inputs);
            full_inputs[position] = base.clone();
            let numeric = (plus - minus) / (2.0 * h);
            let a = analytic[j];
            let allowed = tol.atol + tol.rtol * a.abs().max(numeric.abs());
            let excess = (a - numeric).abs() - allowed;
            report.worst_excess = report.worst_excess.max(excess);
            report.checked += 1;
            assert!(
                excess <= 0.0,
                "{}: d loss / d {name}[{j}]: analytic {a:e}, numeric {numeric:e} (x = {x}, tolerance {allowed:e})",
                graph.name
            );
        }
    }
    report
}

/// `graph` with a data input `fd.w` shaped like output `y` and an output `loss = sum(y * fd.w)`, plus seeded values
/// for `fd.w`.
fn contract_output(graph: &Graph, seed: u64) -> Result<(Graph, Tensor), IrError> {
    let y = graph
        .output("y")
        .ok_or_else(|| IrError::Invalid("case has no output `y`".into()))?
        .value;
    let ty = graph.ty(y).clone();
    let mut b = Builder::from_graph(graph.clone());
    let w = b.data("fd.w", ty.clone())?;
    let weighted = b.mul(y, w)?;
    let loss = b.sum_all(weighted)?;
    b.output("loss", loss)?;
    Ok((b.finish(), random_tensor(&ty, &mut rng(seed ^ 0x5eed))))
}
