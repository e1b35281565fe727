//! `kiln run FILE.kir`: run a stage's graph on a backend and print (and optionally save) its outputs.
//!
//! `--stage train` runs the training step `--steps` times, feeding each output that aliases an input (`new.<param>`,
//! `new.<state>`) back into that input, and prints the loss of every step. On the CPU backend the step is compiled
//! once and run through a `kiln::Session`, which keeps parameters and optimizer state resident and updates them in
//! place; compile time and steps per second go to stderr. On Vulkan (`--backend vulkan`, the best device of `kiln
//! devices`) the step is compiled once and run through a `VulkanSession`: parameters and optimizer state stay on the
//! device, each step uploads only the data inputs and reads back only the outputs that replace nothing (the loss).

use super::inputs::{self, InputFile};
use super::stage::{self, Stage, StageArgs};
use super::{
    check_count, check_graph_memory, check_tensor_sizes, check_threads, load_graph, npy, CliError,
    GraphFile, MAX_TENSOR_BYTES,
};
use clap::{Args, ValueEnum};
use kiln_ir::{DType, Graph, Role, Tensor, TensorData};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub graph: GraphFile,

    /// Where to run the graph.
    #[arg(long, value_enum, default_value_t = Backend::Interp)]
    pub backend: Backend,

    /// Seed of the generated inputs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Read input NAME from a .npy file instead of generating it (repeatable).
    #[arg(long = "input", value_name = "NAME=FILE.npy", value_parser = inputs::parse_input_file)]
    pub inputs: Vec<InputFile>,

    /// Read each input NAME that has a DIR/NAME.npy from it (`kiln import --trainable` writes the parameters so;
    /// --input wins).
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,

    /// Write every output to DIR/<name>.npy (train stage: DIR/losses.npy and the final params and state).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Training steps to run (train stage), 1 to 536870912 (each loss is kept for losses.npy).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub steps: usize,

    /// Threads of the CPU backend, 1 to 1024 [default: every core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub stage: StageArgs,
}

/// What executes a graph.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Backend {
    /// The reference interpreter (f32 in f32, f64 in f64).
    Interp,
    /// Native code through Cranelift, on every core (see --threads).
    Cpu,
    /// SPIR-V compute shaders on the best Vulkan device (see `kiln devices`).
    Vulkan,
}

/// A graph compiled (or kept) for repeated runs.
enum Loaded<'g> {
    Interp(&'g Graph),
    Cpu(kiln::Executable),
    Vulkan(kiln::backend::spirv::VulkanExecutable),
}

impl Loaded<'_> {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, CliError> {
        match self {
            Loaded::Interp(graph) => Ok(kiln_ir::interp::run(graph, inputs)?),
            Loaded::Cpu(exe) => Ok(exe.run(inputs)?),
            Loaded::Vulkan(exe) => Ok(exe.run(inputs)?),
        }
    }
}

impl RunArgs {
    /// Compiles `graph` for the CPU, reporting the compile time on stderr.
    fn compile(&self, graph: &Graph) -> Result<kiln::Executable, CliError> {
        let exe = kiln::compile(graph, &super::cpu_options(self.threads))?;
        super::note(format_args!(
            "cpu: compiled {} kernels in {:.1} ms ({} threads)",
            exe.steps().len(),
            exe.compile_time().as_secs_f64() * 1e3,
            exe.threads()
        ));
        Ok(exe)
    }

    /// Compiles `graph` for the best Vulkan device (the CPU path's passes and fusion, then SPIR-V), reporting the
    /// device and compile time on stderr.
    fn compile_vulkan(
        &self,
        graph: &Graph,
    ) -> Result<kiln::backend::spirv::VulkanExecutable, CliError> {
        use kiln::backend::spirv;
        let device = spirv::Device::open_best()
            .map_err(|e| CliError::new(format!("--backend vulkan: {e} (see `kiln devices`)")))?;
        let started = std::time::Instant::now();
        // Fusion within the device's binding limit (kiln::compile_vulkan's front half; the program is kept for the
        // kernel count).
        let options = spirv::Options::for_device(device.info());
        let program = kiln::compile::vulkan_program(graph, &kiln::Options::default(), &options)?;
        let exe = spirv::compile_with(&device, &program, &options)?;
        super::note(format_args!(
            "vulkan: compiled {} kernels in {:.1} ms on {}",
            program.kernels.len(),
            started.elapsed().as_secs_f64() * 1e3,
            device.info().name
        ));
        Ok(exe)
    }

    fn load<'g>(&self, graph: &'g Graph) -> Result<Loaded<'g>, CliError> {
        Ok(match self.backend {
            Backend::Interp => Loaded::Interp(graph),
            Backend::Cpu => Loaded::Cpu(self.compile(graph)?),
            Backend::Vulkan => Loaded::Vulkan(self.compile_vulkan(graph)?),
        })
    }
}

pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.stage.stage.is_lowered() {
        return Err(CliError::new(
            "kiln run works on graphs: --stage input, grad, train or optimized (the lowered stages are for kiln dump)",
        ));
    }
    if args.stage.stage != Stage::Train && args.steps != 1 {
        return Err(CliError::new("--steps applies to --stage train"));
    }
    // Every step's loss is kept for losses.npy, one f64 tensor under the per-tensor limit.
    check_count(
        "steps",
        args.steps,
        1,
        MAX_TENSOR_BYTES / 8,
        "the losses of all steps are kept, 8 bytes each, within the per-tensor limit",
    )?;
    check_threads(args.threads)?;
    let parsed = load_graph(&args.graph)?;
    let staged = stage::build(parsed, &args.stage)?;
    let graph = &staged.graph;
    check_tensor_sizes(graph)?;
    check_graph_memory(graph, args.backend == Backend::Interp)?;
    let mut files = args.inputs.clone();
    if let Some(dir) = &args.input_dir {
        files.extend(inputs::from_dir(graph, dir, &args.inputs)?);
    }
    let mut values = inputs::prepare(graph, args.seed, &files)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::new(format!("cannot create `{}`: {e}", dir.display())))?;
    }

    if args.threads.is_some() && args.backend != Backend::Cpu {
        return Err(CliError::new("--threads applies to --backend cpu"));
    }
    if args.stage.stage != Stage::Train {
        let outputs = args.load(graph)?.run(&values)?;
        print_table(out, graph, &outputs)?;
        if let Some(dir) = &args.out {
            for (output, tensor) in graph.outputs().iter().zip(&outputs) {
                npy::write(&npy_path(dir, &output.name), tensor)?;
            }
        }
        return Ok(());
    }

    let loss_name = staged.loss.as_deref().unwrap_or("loss");
    let loss_index = graph
        .outputs()
        .iter()
        .position(|o| o.name == loss_name)
        .ok_or_else(|| CliError::new(format!("the training step has no `{loss_name}` output")))?;
    // (output index, input index) of every output that replaces an input.
    let feedback: Vec<(usize, usize)> = graph
        .outputs()
        .iter()
        .enumerate()
        .filter_map(|(o, output)| {
            let target = output.aliases.as_deref()?;
            let i = graph.inputs().position(|input| input.name == target)?;
            Some((o, i))
        })
        .collect();
    let width = args.steps.to_string().len();
    // Grown step by step rather than reserved: up to 4 GiB for the largest --steps.
    let mut losses = Vec::new();
    let mut outputs = Vec::new();
    if args.backend == Backend::Cpu {
        let exe = args.compile(graph)?;
        let named = named_inputs(graph, &values);
        let mut session = kiln::Session::new(exe, &named)?;
        let data = pick(&named, &session.data_input_names());
        let started = std::time::Instant::now();
        for step in 1..=args.steps {
            let loss = session.step(&data)?;
            writeln!(out, "step {step:>width$}  loss {}", format_number(loss, 9))?;
            losses.push(loss);
        }
        let seconds = started.elapsed().as_secs_f64();
        super::note(format_args!(
            "cpu: {} steps in {:.1} ms ({:.1} steps/s)",
            args.steps,
            seconds * 1e3,
            args.steps as f64 / seconds
        ));
        for output in graph.outputs() {
            let value = session
                .output(&output.name, &data)
                .ok_or_else(|| CliError::new(format!("no output `{}`", output.name)))?;
            outputs.push(value);
        }
        for (input, value) in graph.inputs().zip(values.iter_mut()) {
            if let Some(updated) = session.get(input.name) {
                *value = updated;
            }
        }
    } else if args.backend == Backend::Vulkan {
        use kiln::backend::spirv::{Residency, VulkanSession};
        let exe = args.compile_vulkan(graph)?;
        let named = named_inputs(graph, &values);
        let mut session = VulkanSession::new(exe, &Residency::of_graph(graph), &named)?;
        let data = pick(&named, &session.data_input_names());
        // Where the loss is among the outputs a step returns (those replacing no input).
        let returned: Vec<usize> = graph
            .outputs()
            .iter()
            .enumerate()
            .filter(|(_, o)| o.aliases.is_none())
            .map(|(o, _)| o)
            .collect();
        let loss_at = returned.iter().position(|&o| o == loss_index);
        let mut step_outputs = Vec::new();
        let started = std::time::Instant::now();
        for step in 1..=args.steps {
            step_outputs = session.step(&data)?;
            let loss = loss_at
                .and_then(|k| step_outputs[k].scalar_value())
                .unwrap_or(f64::NAN);
            writeln!(out, "step {step:>width$}  loss {}", format_number(loss, 9))?;
            losses.push(loss);
        }
        let seconds = started.elapsed().as_secs_f64();
        let bytes = session.bytes_per_step();
        super::note(format_args!(
            "vulkan: {} steps in {:.1} ms ({:.1} steps/s; {} B up, {} B down per step, parameters and state stay on the device)",
            args.steps,
            seconds * 1e3,
            args.steps as f64 / seconds,
            bytes.upload,
            bytes.download
        ));
        for (input, value) in graph.inputs().zip(values.iter_mut()) {
            if session.resident_names().contains(&input.name) {
                *value = session.read(input.name)?;
            }
        }
        // An aliased output's value after the last step is its input's updated value.
        let mut fresh = step_outputs.into_iter();
        for output in graph.outputs() {
            let value = match output.aliases.as_deref() {
                Some(target) => session.read(target)?,
                None => fresh
                    .next()
                    .expect("one returned tensor per non-aliasing output"),
            };
            outputs.push(value);
        }
    } else {
        let loaded = args.load(graph)?;
        for step in 1..=args.steps {
            outputs = loaded.run(&values)?;
            let loss = outputs[loss_index].scalar_value().unwrap_or(f64::NAN);
            writeln!(out, "step {step:>width$}  loss {}", format_number(loss, 9))?;
            losses.push(loss);
            for &(o, i) in &feedback {
                values[i] = outputs[o].clone();
            }
        }
    }
    writeln!(out)?;
    print_table(out, graph, &outputs)?;
    if let Some(dir) = &args.out {
        let losses_tensor = Tensor::from_f64(&[losses.len()], losses)?;
        npy::write(&dir.join("losses.npy"), &losses_tensor)?;
        for (input, value) in graph.inputs().zip(&values) {
            if matches!(input.role, Role::Param | Role::State) {
                npy::write(&npy_path(dir, input.name), value)?;
            }
        }
    }
    Ok(())
}

/// `DIR/<name>.npy`; names are ASCII letters, digits, `_` and `.`, so they are safe file names once `.npy` is added.
/// The training step's inputs by name: what both the CPU `Session` and the `VulkanSession` are opened with.
fn named_inputs(graph: &Graph, values: &[Tensor]) -> HashMap<String, Tensor> {
    graph
        .inputs()
        .zip(values)
        .map(|(i, t)| (i.name.to_string(), t.clone()))
        .collect()
}

/// The tensors of `names` (a session's data inputs, fed each step, in its order) from `named` ([`named_inputs`]).
fn pick(named: &HashMap<String, Tensor>, names: &[&str]) -> Vec<Tensor> {
    names.iter().map(|n| named[*n].clone()).collect()
}

fn npy_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.npy"))
}

/// How many leading elements of each output the table shows.
const SHOWN_VALUES: usize = 8;

/// One row per output: name, type, sum, sum of |x| and the first few elements.
fn print_table(out: &mut dyn Write, graph: &Graph, outputs: &[Tensor]) -> Result<(), CliError> {
    let header = ["output", "type", "sum", "sum|x|", "values"];
    let rows: Vec<[String; 5]> = graph
        .outputs()
        .iter()
        .zip(outputs)
        .map(|(output, tensor)| {
            let all = tensor.to_f64_vec();
            let sum: f64 = all.iter().sum();
            let abs_sum: f64 = all.iter().map(|x| x.abs()).sum();
            let shown: Vec<String> = (0..tensor.numel().min(SHOWN_VALUES))
                .map(|i| format_element(tensor.data(), i))
                .collect();
            let more = if tensor.numel() > SHOWN_VALUES {
                ", ..."
            } else {
                ""
            };
            [
                output.name.clone(),
                tensor.ty().to_string(),
                format_number(sum, 9),
                format_number(abs_sum, 9),
                format!("[{}{more}]", shown.join(", ")),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut line = |cells: [&str; 5]| -> std::io::Result<()> {
        let [name, ty, sum, abs_sum, values] = cells;
        writeln!(
            out,
            "{name:<w0$}  {ty:<w1$}  {sum:>w2$}  {abs_sum:>w3$}  {values}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )
    };
    line(header)?;
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]])?;
    }
    Ok(())
}

fn format_element(data: &TensorData, i: usize) -> String {
    match data.dtype() {
        DType::F32 | DType::F64 => format_number(data.get_f64(i), 6),
        DType::I32 => format!("{}", data.get_f64(i)),
        DType::Bool => (data.get_f64(i) != 0.0).to_string(),
    }
}

/// `x` with `digits` significant digits, like C's `%g`: plain notation for moderate magnitudes, else scientific.
fn format_number(x: f64, digits: usize) -> String {
    if x == 0.0 {
        // -0.0 (a loss of -mean(0)) reads as a sign bug; both zeros print as 0.
        return "0".into();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    let exponent = x.abs().log10().floor() as i32;
    if (-5..digits as i32).contains(&exponent) {
        let decimals = (digits as i32 - 1 - exponent).max(0) as usize;
        let text = format!("{x:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    } else {
        format!("{x:.prec$e}", prec = digits - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::format_number;

    #[test]
    fn numbers_print_like_percent_g() {
        assert_eq!(format_number(0.0, 6), "0");
        assert_eq!(format_number(1.5, 6), "1.5");
        assert_eq!(format_number(-std::f64::consts::LN_2, 6), "-0.693147");
        assert_eq!(format_number(123456.0, 6), "123456");
        assert_eq!(format_number(1234567.0, 6), "1.23457e6");
        assert_eq!(format_number(1.0e-7, 6), "1.00000e-7");
        assert_eq!(format_number(f64::NAN, 6), "NaN");
    }
}
