//! Differential testing support: seeded inputs for a graph, and the comparison of a backend's outputs with the
//! reference interpreter's (integers and bools exactly, floats within a stated tolerance, NaN equal to NaN).

use crate::fd::{random_tensor, rng};
use kiln::backend::spirv;
use kiln::ir::{Builder, Graph, Role, Tensor};

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

/// Runs `graph` at `inputs` on the CPU backend (1 and 3 threads), the kernel interpreter and Vulkan (when there is a
/// device; the SPIR-V through `spirv-val` when it is installed), and panics on the first output outside `tol` of the
/// graph interpreter's, with the lowered program for context.
pub fn check_every_backend(graph: &Graph, inputs: &[Tensor], tol: Tolerance) {
    let want = kiln::ir::interp::run(graph, inputs).unwrap();
    let program = kiln::fusion::lower(graph).unwrap();
    for threads in [1, 3] {
        let options = kiln::Options {
            threads,
            ..kiln::Options::default()
        };
        let got = kiln::compile(graph, &options)
            .and_then(|exe| Ok(exe.run(inputs)?))
            .unwrap_or_else(|e| panic!("{}: CPU: {e}", graph.name));
        assert_outputs_match(graph, &want, &got, tol, "cpu", || {
            kiln::kernel::print(&program)
        });
    }
    let kernel_out = kiln::kernel::interp::run(&program, inputs).unwrap();
    assert_outputs_match(graph, &want, &kernel_out, tol, "kernel interpreter", || {
        kiln::kernel::print(&program)
    });
    let kernels = spirv::lower(&program).unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", graph.name));
    crate::vulkan::validate(&kernels);
    if let Some(device) = crate::vulkan::device() {
        let got = spirv::compile(device, &program)
            .and_then(|exe| Ok(exe.run(inputs)?))
            .unwrap_or_else(|e| panic!("{}: Vulkan: {e}", graph.name));
        assert_outputs_match(graph, &want, &got, tol, "vulkan", || {
            kiln::kernel::print(&program)
        });
    }
}

/// `graph` (output 0 contracted with a new data input `r` of its type: `loss = Σ y·r`, so the cotangent is random)
/// with the gradients of `loss` with respect to every param and the inputs in `also` as outputs `grad.NAME`.
pub fn with_gradients(graph: &Graph, also: &[&str]) -> Graph {
    let mut b = Builder::from_graph(graph.clone());
    let y = graph.outputs()[0].value;
    let ty = graph.ty(y).clone();
    let r = b.data("r", ty).unwrap();
    let yr = b.mul(y, r).unwrap();
    let loss = b.sum_all(yr).unwrap();
    b.output("loss", loss).unwrap();
    let loss_graph = b.finish();
    let params: Vec<String> = kiln::autodiff::param_names(&loss_graph);
    let wrt: Vec<&str> = params
        .iter()
        .map(String::as_str)
        .chain(also.iter().copied())
        .collect();
    kiln::grad(&loss_graph, "loss", &wrt).unwrap().graph
}
