//! Differential testing support: seeded inputs for a graph, and the comparison of a backend's outputs with the
//! reference interpreter's (integers and bools exactly, floats within a stated tolerance, NaN equal to NaN).

use crate::fd::{random_tensor, rng};
use kiln::ir::{Graph, Role, Tensor};

/// Floats `a` (backend) and `b` (reference) agree when `|a - b| <= atol + rtol·|b|`; NaN matches NaN and infinities
/// must be equal.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

impl Tolerance {
    pub fn close(&self, a: f64, b: f64) -> bool {
        if a.is_nan() || b.is_nan() {
            return a.is_nan() && b.is_nan();
        }
        if a.is_infinite() || b.is_infinite() {
            return a == b;
        }
        (a - b).abs() <= self.atol + self.rtol * b.abs()
    }
}

/// Seeded inputs for every input of `graph`, as [`random_tensor`] draws them.
pub fn random_inputs(graph: &Graph, seed: u64) -> Vec<Tensor> {
    let mut r = rng(seed);
    graph
        .inputs()
        .map(|i| random_tensor(i.ty, &mut r))
        .collect()
}

/// [`random_inputs`] with 2-D float parameters scaled by `1/sqrt(fan_in)`, as an initializer would: with unscaled
/// weights an MLP's activations grow to thousands and its outputs are differences of huge sums, where any summation
/// order (a GEMM's, a GPU's) moves the result by more than a relative tolerance can allow.
pub fn random_inputs_at_init_scale(graph: &Graph, seed: u64) -> Vec<Tensor> {
    graph
        .inputs()
        .zip(random_inputs(graph, seed))
        .map(|(i, t)| match (i.role, i.ty.dims()) {
            (Role::Param, &[_, fan_in]) if i.ty.dtype.is_float() => {
                let scale = 1.0 / (fan_in as f64).sqrt();
                let v: Vec<f64> = t.to_f64_vec().iter().map(|x| x * scale).collect();
                Tensor::from_f64_values(i.ty.clone(), &v).expect("same type")
            }
            _ => t,
        })
        .collect()
}

/// The first output element where `actual` (from `backend`) disagrees with the interpreter's `expected`, described
/// for a failure message; `None` when every output matches.
pub fn first_mismatch(
    graph: &Graph,
    expected: &[Tensor],
    actual: &[Tensor],
    tol: Tolerance,
    backend: &str,
) -> Option<String> {
    if expected.len() != actual.len() {
        return Some(format!(
            "{}: {} outputs from {backend}, expected {}",
            graph.name,
            actual.len(),
            expected.len()
        ));
    }
    for ((o, e), a) in graph.outputs().iter().zip(expected).zip(actual) {
        if e.ty() != a.ty() {
            return Some(format!(
                "{}: output {} is {} from {backend}, expected {}",
                graph.name,
                o.name,
                a.ty(),
                e.ty()
            ));
        }
        let (ev, av) = (e.to_f64_vec(), a.to_f64_vec());
        let exact = !e.dtype().is_float();
        let differs = |i: &usize| {
            if exact {
                ev[*i] != av[*i]
            } else {
                !tol.close(av[*i], ev[*i])
            }
        };
        if let Some(i) = (0..ev.len()).find(differs) {
            return Some(format!(
                "{}: output {} element {i}: interpreter {}, {backend} {}",
                graph.name, o.name, ev[i], av[i]
            ));
        }
    }
    None
}

/// Panics with [`first_mismatch`]'s description (and `context`, e.g. the lowered program) on a mismatch.
pub fn assert_outputs_match(
    graph: &Graph,
    expected: &[Tensor],
    actual: &[Tensor],
    tol: Tolerance,
    backend: &str,
    context: impl FnOnce() -> String,
) {
    if let Some(message) = first_mismatch(graph, expected, actual, tol, backend) {
        panic!("{message}\n{}", context());
    }
}

/// Runs `graph` at `inputs` on the CPU (1 and 3 threads), the kernel-IR interpreter and Vulkan (where a device is
/// present; the SPIR-V is validated either way) and compares each with the graph interpreter within `tol`.
pub fn check_every_backend(graph: &Graph, inputs: &[Tensor], tol: Tolerance) {
    let want = kiln::ir::interp::run(graph, inputs).unwrap();
    for threads in [1, 3] {
        let options = kiln::Options {
            threads,
            ..kiln::Options::default()
        };
        let got = kiln::compile(graph, &options)
            .and_then(|exe| Ok(exe.run(inputs)?))
            .unwrap_or_else(|e| panic!("{}: CPU: {e}", graph.name));
        assert_outputs_match(graph, &want, &got, tol, "cpu", || {
            kiln::kernel::print(&kiln::fusion::lower(graph).unwrap())
        });
    }
    let program = kiln::fusion::lower(graph).unwrap();
    let kernel_out = kiln::kernel::interp::run(&program, inputs).unwrap();
    assert_outputs_match(graph, &want, &kernel_out, tol, "kernel interpreter", || {
        kiln::kernel::print(&program)
    });
    let kernels = kiln::backend::spirv::lower(&program)
        .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", graph.name));
    crate::vulkan::validate(&kernels);
    if let Some(device) = crate::vulkan::device() {
        let got = kiln::backend::spirv::compile(device, &program)
            .and_then(|exe| Ok(exe.run(inputs)?))
            .unwrap_or_else(|e| panic!("{}: Vulkan: {e}", graph.name));
        assert_outputs_match(graph, &want, &got, tol, "vulkan", || {
            kiln::kernel::print(&program)
        });
    }
}
