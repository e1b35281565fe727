//! The comparisons of a backend against the golden nets, shared by both families (`golden_nets::conv_nets` and
//! `golden_nets::gpt_nets` in the test binary): the loss and every gradient (`kiln::grad` of the model graph), the
//! running statistics after one training-mode forward, and the optimizer trajectory (`kiln::training_step` run
//! `steps` times, every aliasing output written back over its input, or a CPU [`Session`]).
//!
//! A [`Report`] collects the worst error of each kind of check per case as a fraction of its tolerance, and every
//! entry out of tolerance, so one run reports all of them and a passing run's log shows how close it came.

use super::{update_output, NetCase, NetModel, LOSS_OUTPUT};
use kiln::ir::{interp, DType, Graph, Role, Tensor};
use kiln::{grad, training_step, Optimizer, Session};
use std::fmt::Write as _;

/// `|a − b| ≤ atol + rtol·|b|` per entry; losses by relative error only.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub loss_rtol: f64,
    /// `expected.grads`, `expected.buffers`.
    pub atol: f64,
    pub rtol: f64,
    /// `trajectory.params_after`, `trajectory.buffers_after`.
    pub after_atol: f64,
    pub after_rtol: f64,
}

/// The README's f32 tolerances.
pub const F32: Tol = Tol {
    loss_rtol: 1e-5,
    atol: 1e-6,
    rtol: 1e-4,
    after_atol: 1e-5,
    after_rtol: 1e-4,
};

/// f64 against the oracle's float64: only the summation order differs.
pub const F64: Tol = Tol {
    loss_rtol: 1e-10,
    atol: 1e-12,
    rtol: 1e-9,
    after_atol: 1e-11,
    after_rtol: 1e-9,
};

/// Runs a graph on one backend: the graph's outputs in order, or why not.
pub type Runner = Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>, String>>;

#[derive(Clone, Copy)]
pub enum Backend {
    Interpreter(DType),
    Cpu,
    Vulkan(&'static kiln::backend::spirv::Device),
}

/// The CPU backend's options here: two threads, as the test machines share their cores.
fn cpu_options() -> kiln::Options {
    kiln::Options {
        threads: 2,
        ..kiln::Options::default()
    }
}

impl Backend {
    pub fn name(self) -> String {
        match self {
            Backend::Interpreter(dtype) => format!("interpreter {dtype}"),
            Backend::Cpu => "cpu f32".into(),
            Backend::Vulkan(_) => "vulkan f32".into(),
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            Backend::Interpreter(dtype) => dtype,
            Backend::Cpu | Backend::Vulkan(_) => DType::F32,
        }
    }

    pub fn tol(self) -> Tol {
        match self.dtype() {
            DType::F64 => F64,
            _ => F32,
        }
    }

    pub fn compile(self, graph: &Graph) -> Runner {
        let what = format!("{} on {}", graph.name, self.name());
        match self {
            Backend::Interpreter(_) => {
                let graph = graph.clone();
                Box::new(move |inputs| interp::run(&graph, inputs).map_err(|e| e.to_string()))
            }
            Backend::Cpu => {
                let exe = kiln::compile(graph, &cpu_options())
                    .unwrap_or_else(|e| panic!("{what}: compile: {e}"));
                Box::new(move |inputs| exe.run(inputs).map_err(|e| e.to_string()))
            }
            Backend::Vulkan(device) => {
                let exe = kiln::compile_vulkan(device, graph, &kiln::Options::default())
                    .unwrap_or_else(|e| panic!("{what}: compile: {e}"));
                Box::new(move |inputs| exe.run(inputs).map_err(|e| e.to_string()))
            }
        }
    }
}

/// `x ≤ limit`, false for NaN.
fn within(x: f64, limit: f64) -> bool {
    x <= limit
}

/// Every comparison of one backend: the worst error of each kind of check per case (as a fraction of its
/// tolerance) and every entry out of tolerance.
#[derive(Default)]
pub struct Report {
    /// `"{case}: {kind}"` → (worst |a − b| / allowed, where and what it was).
    pub worst: Vec<(String, f64, String)>,
    pub failures: Vec<String>,
}

impl Report {
    fn record(&mut self, key: String, ratio: f64, detail: String) {
        let ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
        match self.worst.iter_mut().find(|(k, ..)| *k == key) {
            Some(entry) if entry.1 >= ratio => {}
            Some(entry) => *entry = (key, ratio, detail),
            None => self.worst.push((key, ratio, detail)),
        }
    }

    /// `case: kind` is the report's key, `what` the entry's name in it.
    pub fn loss(
        &mut self,
        (case, kind): (&str, &str),
        what: &str,
        got: f64,
        expected: f64,
        rtol: f64,
    ) {
        let rel = (got - expected).abs() / expected.abs().max(f64::MIN_POSITIVE);
        let detail = format!("{what}: {got:e} vs {expected:e}");
        if !within(rel, rtol) {
            self.failures.push(format!(
                "{case}: {what}: loss {got}, expected {expected} (relative error {rel:.3e} > {rtol:e})"
            ));
        }
        self.record(format!("{case}: {kind}"), rel / rtol, detail);
    }

    pub fn tensor(
        &mut self,
        (case, kind): (&str, &str),
        what: &str,
        got: &Tensor,
        expected: &Tensor,
        (atol, rtol): (f64, f64),
    ) {
        if got.dims() != expected.dims() {
            self.failures.push(format!(
                "{case}: {what}: shape {:?}, expected {:?}",
                got.dims(),
                expected.dims()
            ));
            return;
        }
        let mut worst = (0.0, String::new());
        let mut bad = Vec::new();
        for (i, (a, b)) in got
            .to_f64_vec()
            .iter()
            .zip(expected.to_f64_vec())
            .enumerate()
        {
            let ratio = (a - b).abs() / (atol + rtol * b.abs());
            let entry = || format!("{what}[{i}]: {a:e} vs {b:e}");
            if !within(ratio, 1.0) {
                bad.push(entry());
            }
            if i == 0 || !within(ratio, worst.0) {
                worst = (ratio, entry());
            }
        }
        if !bad.is_empty() {
            self.failures.push(format!(
                "{case}: {what}: {} of {} entries out of atol {atol:e} + rtol {rtol:e}, first {}",
                bad.len(),
                got.numel(),
                bad[0]
            ));
        }
        self.record(format!("{case}: {kind}"), worst.0, worst.1);
    }

    /// Prints each check's worst error (so a passing run's log shows how close it came), then fails with every
    /// mismatch. `what` names the run, e.g. "golden conv nets on cpu f32".
    pub fn finish(self, what: &str) {
        let mut log = format!("{what}: worst |error| / tolerance\n");
        for (key, ratio, detail) in &self.worst {
            let _ = writeln!(log, "  {ratio:9.3e}  {key}  ({detail})");
        }
        eprintln!("{log}");
        assert!(
            !self.worst.is_empty() || !self.failures.is_empty(),
            "{what}: nothing was compared"
        );
        assert!(
            self.failures.is_empty(),
            "{what}: {} mismatches:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

pub fn param_names(graph: &Graph) -> Vec<String> {
    kiln::autodiff::param_names(graph)
}

pub fn output<'a>(graph: &Graph, outputs: &'a [Tensor], name: &str) -> &'a Tensor {
    let i = graph
        .outputs()
        .iter()
        .position(|o| o.name == name)
        .unwrap_or_else(|| panic!("{}: no output `{name}`", graph.name));
    &outputs[i]
}

pub fn is_adam<M>(case: &NetCase<M>) -> bool {
    matches!(
        case.trajectory.optimizer,
        Optimizer::Adam(_) | Optimizer::AdamW(_)
    )
}

/// The loss, every gradient and the running statistics after one forward. The gradient of a `zero_grad_params`
/// entry is exactly 0 in the reference and round-off here, so it is held to the absolute tolerance only (README).
pub fn check_gradients<M: NetModel>(case: &NetCase<M>, backend: Backend, report: &mut Report) {
    let (dtype, tol) = (backend.dtype(), backend.tol());
    let model = case.graph(dtype).unwrap();
    let params = param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let with_grads = grad(&model, LOSS_OUTPUT, &names).unwrap().graph;
    let outputs = match backend.compile(&with_grads)(&case.inputs_of(&with_grads, dtype)) {
        Ok(outputs) => outputs,
        Err(e) => {
            report
                .failures
                .push(format!("{}: gradient graph: {e}", case.name));
            return;
        }
    };
    let loss = output(&with_grads, &outputs, LOSS_OUTPUT)
        .scalar_value()
        .unwrap();
    report.loss((&case.name, "loss"), "loss", loss, case.loss, tol.loss_rtol);
    for (param, expected) in &case.grads {
        let name = format!("grad.{param}");
        let got = output(&with_grads, &outputs, &name);
        let (kind, tols) = if case.zero_grad_params.contains(param) {
            ("grads of zero_grad_params (atol only)", (tol.atol, 0.0))
        } else {
            ("grads", (tol.atol, tol.rtol))
        };
        report.tensor((&case.name, kind), &name, got, expected, tols);
    }
    for (buffer, expected) in &case.buffers_after_forward {
        let got = output(&with_grads, &outputs, &update_output(buffer));
        report.tensor(
            (&case.name, "running stats after one forward"),
            buffer,
            got,
            expected,
            (tol.atol, tol.rtol),
        );
    }
}

/// The case's training step, checked to keep the running-statistic updates.
pub fn step_graph<M: NetModel>(case: &NetCase<M>, dtype: DType) -> Graph {
    let model = case.graph(dtype).unwrap();
    let params = param_names(&model);
    let names: Vec<&str> = params.iter().map(String::as_str).collect();
    let step = training_step(&model, LOSS_OUTPUT, &names, &case.trajectory.optimizer).unwrap();
    for buffer in case.buffers.keys() {
        let kept = step
            .outputs()
            .iter()
            .any(|o| o.aliases.as_deref() == Some(buffer.as_str()));
        assert!(
            kept,
            "{}: the training step drops the update of `{buffer}`",
            case.name
        );
    }
    step
}

/// The params and running statistics after the trajectory (`value` by name) against the reference, less
/// `zero_grad_params`: Adam turns their round-off gradients into steps of up to ~lr (README).
pub fn check_after<M>(
    case: &NetCase<M>,
    tol: Tol,
    report: &mut Report,
    value: impl Fn(&str) -> Tensor,
) {
    let kind = format!(
        "{} {} steps: params and running stats after",
        case.trajectory.optimizer.name(),
        case.trajectory.steps
    );
    let after = case
        .trajectory
        .params_after
        .iter()
        .filter(|(name, _)| !case.zero_grad_params.contains(name))
        .chain(&case.trajectory.buffers_after);
    for (name, expected) in after {
        report.tensor(
            (&case.name, &kind),
            name,
            &value(name),
            expected,
            (tol.after_atol, tol.after_rtol),
        );
    }
}

pub fn trajectory_loss_kind<M>(case: &NetCase<M>) -> String {
    format!(
        "{} {} steps: losses",
        case.trajectory.optimizer.name(),
        case.trajectory.steps
    )
}

/// `steps` training steps with the case's optimizer; every aliasing output (params, optimizer state, running
/// statistics) replaces its input after each.
pub fn check_trajectory<M: NetModel>(case: &NetCase<M>, backend: Backend, report: &mut Report) {
    let (dtype, tol) = (backend.dtype(), backend.tol());
    let step = step_graph(case, dtype);
    let run = backend.compile(&step);
    let mut values = case.named_inputs(dtype);
    for (k, &expected) in case.trajectory.losses_before_each_step.iter().enumerate() {
        let inputs: Vec<Tensor> = step
            .inputs()
            .map(|i| match values.get(i.name) {
                Some(t) => t.clone(),
                None if i.role == Role::State => Tensor::zeros(i.ty.clone()),
                None => panic!("{}: no value for input `{}`", case.name, i.name),
            })
            .collect();
        let outputs = match run(&inputs) {
            Ok(outputs) => outputs,
            Err(e) => {
                report
                    .failures
                    .push(format!("{}: step {k}: {e}", case.name));
                return;
            }
        };
        let loss = output(&step, &outputs, LOSS_OUTPUT).scalar_value().unwrap();
        let what = format!("loss before step {k}");
        let kind = trajectory_loss_kind(case);
        report.loss((&case.name, &kind), &what, loss, expected, tol.loss_rtol);
        for (o, value) in step.outputs().iter().zip(outputs) {
            if let Some(target) = &o.aliases {
                values.insert(target.clone(), value);
            }
        }
    }
    check_after(case, tol, report, |name| values[name].clone());
}

/// The trajectory through a CPU [`Session`] in f32: params, optimizer state and running statistics resident and
/// updated in place (the memory plan writes aliased outputs over their inputs); the data inputs are the case's.
pub fn check_session_trajectory<M: NetModel>(case: &NetCase<M>, report: &mut Report) {
    let step = step_graph(case, DType::F32);
    let named = case.named_inputs(DType::F32);
    let exe = kiln::compile(&step, &cpu_options()).unwrap();
    let mut session = Session::new(exe, &named).unwrap();
    let mut data_names: Vec<&str> = session.data_input_names().to_vec();
    data_names.sort();
    let mut expected_names: Vec<&str> = case.inputs.keys().map(String::as_str).collect();
    expected_names.sort();
    assert_eq!(data_names, expected_names, "{}: data inputs", case.name);
    let data: Vec<Tensor> = session
        .data_input_names()
        .iter()
        .map(|n| named[*n].clone())
        .collect();
    for (k, &expected) in case.trajectory.losses_before_each_step.iter().enumerate() {
        let loss = session.step(&data).unwrap();
        let kind = trajectory_loss_kind(case);
        let what = format!("loss before step {k}");
        report.loss((&case.name, &kind), &what, loss, expected, F32.loss_rtol);
    }
    check_after(case, F32, report, |name| {
        session.get(name).expect("a resident input")
    });
}

/// Gradients and running statistics of every case; the trajectories of the cases `trajectories` selects.
pub fn check_backend<M: NetModel>(
    family: &str,
    cases: &[NetCase<M>],
    backend: Backend,
    trajectories: impl Fn(&NetCase<M>) -> bool,
) {
    let mut report = Report::default();
    for case in cases {
        check_gradients(case, backend, &mut report);
        if trajectories(case) {
            check_trajectory(case, backend, &mut report);
        }
    }
    report.finish(&format!("golden {family} nets on {}", backend.name()));
}
