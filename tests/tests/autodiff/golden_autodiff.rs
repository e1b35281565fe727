//! The golden reference cases (an outside float64 autodiff system, `tests/data/golden/`) through Kiln's autodiff and
//! training steps on the interpreter.
//!
//! Tolerances (`|a - b| <= atol + rtol·|b|`): in f32, losses rtol 1e-5, gradients and parameters atol 1e-6 / rtol 1e-4
//! (as `tests/data/golden/README.md` suggests); the same graphs in f64 match within rtol 1e-9 (atol 1e-12).

use kiln::ir::{interp, DType, Graph, Tensor};
use kiln::{grad, step_on_interpreter, training_step};
use kiln_tests::golden::{self, GoldenCase, LOSS_OUTPUT};

#[derive(Clone, Copy)]
struct Tol {
    loss_rtol: f64,
    atol: f64,
    rtol: f64,
}

const F32: Tol = Tol {
    loss_rtol: 1e-5,
    atol: 1e-6,
    rtol: 1e-4,
};
const F64: Tol = Tol {
    loss_rtol: 1e-9,
    atol: 1e-12,
    rtol: 1e-9,
};

fn tolerances() -> [(DType, Tol); 2] {
    [(DType::F32, F32), (DType::F64, F64)]
}

fn assert_close(what: &str, got: &Tensor, expected: &Tensor, tol: Tol) {
    assert_eq!(got.dims(), expected.dims(), "{what}: shape");
    let (g, e) = (got.to_f64_vec(), expected.to_f64_vec());
    for (i, (a, b)) in g.iter().zip(&e).enumerate() {
        let allowed = tol.atol + tol.rtol * b.abs();
        assert!(
            (a - b).abs() <= allowed,
            "{what}[{i}]: got {a:e}, expected {b:e} (allowed {allowed:e})"
        );
    }
}

fn assert_loss(what: &str, got: f64, expected: f64, tol: Tol) {
    let rel = (got - expected).abs() / expected.abs().max(f64::MIN_POSITIVE);
    assert!(
        rel <= tol.loss_rtol,
        "{what}: loss {got}, expected {expected} (relative error {rel:e})"
    );
}

fn params_of(graph: &Graph) -> Vec<String> {
    kiln::autodiff::param_names(graph)
}

fn cases() -> Vec<GoldenCase> {
    let cases = golden::load_all().expect("golden cases load");
    assert!(
        cases.len() >= 7,
        "expected the 7 golden cases, found {}",
        cases.len()
    );
    cases
}

#[test]
fn gradients_match_the_reference() {
    for case in cases() {
        for (dtype, tol) in tolerances() {
            let model = case.graph(dtype).unwrap();
            let params = params_of(&model);
            let names: Vec<&str> = params.iter().map(String::as_str).collect();
            let with_grads = grad(&model, LOSS_OUTPUT, &names).unwrap().graph;
            let outputs = interp::run(&with_grads, &case.inputs(dtype)).unwrap();
            let by_name = |name: &str| {
                let i = with_grads
                    .outputs()
                    .iter()
                    .position(|o| o.name == name)
                    .unwrap();
                &outputs[i]
            };
            let what = format!("{} ({dtype})", case.name);
            assert_loss(
                &what,
                by_name(LOSS_OUTPUT).scalar_value().unwrap(),
                case.loss,
                tol,
            );
            for (param, expected) in &case.grads {
                assert_close(
                    &format!("{what} grad.{param}"),
                    by_name(&format!("grad.{param}")),
                    expected,
                    tol,
                );
            }
        }
    }
}

#[test]
fn optimizer_trajectories_match_the_reference() {
    for case in cases() {
        for (dtype, tol) in tolerances() {
            let model = case.graph(dtype).unwrap();
            let params = params_of(&model);
            let names: Vec<&str> = params.iter().map(String::as_str).collect();
            let step =
                training_step(&model, LOSS_OUTPUT, &names, &case.trajectory.optimizer).unwrap();
            let mut values = case.named_inputs(dtype);
            let what = format!("{} ({dtype}, {:?})", case.name, case.trajectory.optimizer);
            assert_eq!(
                case.trajectory.losses_before_each_step.len(),
                case.trajectory.steps
            );
            for (k, &expected) in case.trajectory.losses_before_each_step.iter().enumerate() {
                let loss = step_on_interpreter(&step, &mut values).unwrap();
                assert_loss(&format!("{what} step {k}"), loss, expected, tol);
            }
            for (param, expected) in &case.trajectory.params_after {
                assert_close(
                    &format!("{what} {param} after"),
                    &values[param],
                    expected,
                    tol,
                );
            }
        }
    }
}
