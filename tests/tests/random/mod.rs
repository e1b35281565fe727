//! Counter-based random numbers in the graph (SPEC §4: `philox4x32`, `random_uniform`, `dropout`): the same bits
//! on the interpreter, the CPU and Vulkan.

mod dropout;
mod philox;

use kiln::backend::spirv;
use kiln::ir::interp;
use kiln::{Graph, Tensor};
use kiln_tests::vulkan::device;

/// `graph`'s outputs on the interpreter, the CPU and (where there is a device) Vulkan, each named; the SPIR-V is
/// validated either way. The interpreter's comes first.
pub fn everywhere(graph: &Graph, inputs: &[Tensor]) -> Vec<(&'static str, Vec<Tensor>)> {
    let mut runs = vec![(
        "interpreter",
        interp::run(graph, inputs).unwrap_or_else(|e| panic!("interpreter: {e}")),
    )];
    let options = kiln::Options::default();
    let cpu = kiln::compile(graph, &options)
        .and_then(|exe| Ok(exe.run(inputs)?))
        .unwrap_or_else(|e| panic!("CPU: {e}"));
    runs.push(("cpu", cpu));
    let program = kiln::kernel_program(graph, &options).unwrap_or_else(|e| panic!("passes: {e}"));
    let kernels = spirv::lower(&program).unwrap_or_else(|e| panic!("SPIR-V: {e}"));
    kiln_tests::vulkan::validate(&kernels);
    if let Some(device) = device() {
        let exe = kiln::compile_vulkan(device, graph, &options)
            .unwrap_or_else(|e| panic!("Vulkan compile: {e}"));
        let gpu = exe
            .run(inputs)
            .unwrap_or_else(|e| panic!("Vulkan run: {e}"));
        runs.push(("vulkan", gpu));
    }
    runs
}
