//! `kiln bench FILE.kir`: compile a stage's graph for the CPU (or `--backend vulkan`) and time it, kernel by kernel.
//!
//! Prints the compile time, then per kernel its median time over `--iters` profiled runs, its share of their sum
//! and its rate: GFLOP/s for a matmul kernel (`2·m·n·k` per batch), else GB/s of the bytes it moves — every buffer
//! it reads plus every buffer it writes, counted once each, from the kernel IR. The last line is the median time of a
//! whole run through a `kiln::Session` (kernels back to back, outputs kept in place), which is what a caller sees.
//!
//! With `--backend vulkan` (the preferred device, as `kiln run` opens it): the compile time is split into the kernel
//! IR, SPIR-V lowering and Vulkan object creation (pipelines, buffers, the recorded command buffer); a kernel's time
//! is its dispatch's device time from timestamp queries (`vkCmdWriteTimestamp` around each dispatch, times
//! `timestampPeriod`); the last line is the median wall time of a whole `run` (staging the inputs, one submission,
//! waiting, reading the outputs back). A queue without timestamps is said so, and only whole runs are timed.

use super::inputs;
use super::stage::{self, StageArgs};
use super::{
    check_count, check_graph_memory, check_tensor_sizes, check_threads, load_graph, CliError,
    GraphFile,
};
use clap::{Args, ValueEnum};
use kiln::kernel::{Kernel, KernelProgram};
use kiln_ir::Tensor;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// The most `--iters` (and `--warmup`) runs: a million runs of the smallest graph already take seconds.
const MAX_RUNS: usize = 1_000_000;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub graph: GraphFile,

    /// Where to run the graph.
    #[arg(long, value_enum, default_value_t = BenchBackend::Cpu)]
    pub backend: BenchBackend,

    /// Seed of the generated inputs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Timed runs (after the warm-up runs), 1 to 1000000.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub iters: usize,

    /// Untimed runs first, at most 1000000.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub warmup: usize,

    /// Threads of the CPU backend, 1 to 1024 [default: every core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub stage: StageArgs,
}

/// What `kiln bench` can time (the interpreter is not worth timing).
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum BenchBackend {
    /// Native code through Cranelift.
    Cpu,
    /// SPIR-V compute shaders on the preferred Vulkan device (`kiln devices`).
    Vulkan,
}

/// Which ISA the runtime's wide math routines run on in this process, and whether kernels call them.
fn wide_math(options: &kiln::Options) -> String {
    let isa = match kiln_runtime::wide::isa() {
        Ok(isa) => isa,
        Err(e) => return e.to_string(),
    };
    let usable = kiln::backend::cpu::jit::JitModule::new()
        .map(|mut jit| {
            jit.set_wide(true);
            jit.wide().is_some()
        })
        .unwrap_or(false);
    let use_ = match (usable, options.wide_math) {
        (true, true) => "strip-mined kernels call them",
        (true, false) => "unused: Options::wide_math is off (KILN_WIDE_STRIPS=0)",
        (false, _) => "unused: the JIT needs FMA and AVX2 or AVX-512 for them",
    };
    format!("{isa} ({use_})")
}

pub fn bench(args: &BenchArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.stage.stage.is_lowered() {
        return Err(CliError::new(
            "kiln bench works on graphs: --stage input, grad, train or optimized",
        ));
    }
    // Every timed run keeps its times (a Duration per kernel) until the medians are taken.
    let why = "the times of every run are kept in memory";
    check_count("iters", args.iters, 1, MAX_RUNS, why)?;
    check_count("warmup", args.warmup, 0, MAX_RUNS, "a run each")?;
    check_threads(args.threads)?;
    let staged = stage::build(load_graph(&args.graph)?, &args.stage)?;
    let graph = &staged.graph;
    check_tensor_sizes(graph)?;
    check_graph_memory(graph, false)?;
    let values = inputs::prepare(graph, args.seed, &[])?;
    if args.backend == BenchBackend::Vulkan {
        if args.threads.is_some() {
            return Err(CliError::new(
                "--threads applies to the CPU backend, not --backend vulkan",
            ));
        }
        return bench_vulkan(graph, &values, args, out);
    }
    let options = super::cpu_options(args.threads);

    let started = Instant::now();
    let exe = kiln::compile(graph, &options)?;
    let compile_wall = started.elapsed();
    writeln!(
        out,
        "graph {}: {} kernels, {} threads",
        graph.name,
        exe.steps().len(),
        exe.threads()
    )?;
    writeln!(out, "wide math: {}", wide_math(&options))?;
    writeln!(
        out,
        "compile: {:.2} ms ({:.2} ms wall)",
        ms(exe.compile_time()),
        ms(compile_wall)
    )?;
    // The kernel IR the executable was generated from: compile's own pipeline, run again for the buffer sizes.
    let program = kiln::fusion::lower(&kiln::optimize(graph)?)?;
    let matches_steps = program.kernels.len() == exe.steps().len()
        && program
            .kernels
            .iter()
            .zip(exe.steps())
            .all(|(k, s)| k.name() == s.name());

    for _ in 0..args.warmup {
        exe.run_profiled(&values)?;
    }
    let mut per_kernel: Vec<Vec<Duration>> = vec![Vec::new(); exe.steps().len()];
    for _ in 0..args.iters {
        let (_, times) = exe.run_profiled(&values)?;
        for (samples, t) in per_kernel.iter_mut().zip(times) {
            samples.push(t);
        }
    }
    let medians: Vec<Duration> = per_kernel.iter_mut().map(|s| median(s)).collect();
    let sum: Duration = medians.iter().sum();

    writeln!(
        out,
        "\n{:>3}  {:<28} {:>12} {:>7} {:>16}",
        "#", "kernel", "median µs", "share", "rate"
    )?;
    for (i, (step, t)) in exe.steps().iter().zip(&medians).enumerate() {
        let rate = if matches_steps {
            rate(&program, &program.kernels[i], *t)
        } else {
            "-".to_string()
        };
        writeln!(
            out,
            "{i:>3}  {:<28} {:>12.1} {:>6.1}% {:>16}",
            step.name(),
            t.as_secs_f64() * 1e6,
            100.0 * t.as_secs_f64() / sum.as_secs_f64().max(f64::MIN_POSITIVE),
            rate
        )?;
    }
    writeln!(
        out,
        "     {:<28} {:>12.1}",
        "sum of kernels",
        sum.as_secs_f64() * 1e6
    )?;

    let run = session_median(exe, graph, values, args)?;
    write_total(out, run, args.iters, "")?;
    Ok(())
}

/// `kiln bench --backend vulkan` (see the module doc).
fn bench_vulkan(
    graph: &kiln_ir::Graph,
    values: &[Tensor],
    args: &BenchArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    use kiln::backend::spirv;
    let started = Instant::now();
    let device = spirv::Device::open_best()
        .map_err(|e| CliError::new(format!("--backend vulkan: {e} (see `kiln devices`)")))?;
    let opened = started.elapsed();
    let started = Instant::now();
    let options = spirv::Options::for_device(device.info());
    let program = kiln::compile::vulkan_program(graph, &kiln::Options::default(), &options)?;
    let kernel_ir = started.elapsed();
    let started = Instant::now();
    let shaders = spirv::lower_with(&program, &options)?;
    let lowering = started.elapsed();
    let started = Instant::now();
    let desc = spirv::program_desc(&program, &shaders)?;
    let exe = spirv::VulkanExecutable::new(&device, desc).map_err(spirv::Error::from)?;
    let creation = started.elapsed();
    let info = device.info();
    writeln!(
        out,
        "graph {}: {} kernels on {} ({:?}; opened in {:.1} ms)",
        graph.name,
        program.kernels.len(),
        info.name,
        info.kind,
        ms(opened)
    )?;
    writeln!(
        out,
        "compile: {:.2} ms (kernel IR {:.2} ms, SPIR-V {:.2} ms, pipelines and buffers {:.2} ms)",
        ms(kernel_ir + lowering + creation),
        ms(kernel_ir),
        ms(lowering),
        ms(creation)
    )?;

    for _ in 0..args.warmup {
        exe.run_profiled(values)?;
    }
    let mut per_kernel: Vec<Vec<Duration>> = vec![Vec::new(); shaders.len()];
    let mut runs = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let started = Instant::now();
        let (_, times) = exe.run_profiled(values)?;
        runs.push(started.elapsed());
        for (samples, t) in per_kernel.iter_mut().zip(times.unwrap_or_default()) {
            samples.push(t);
        }
    }
    if exe.has_timestamps() {
        let medians: Vec<Duration> = per_kernel.iter_mut().map(|s| median(s)).collect();
        let sum: Duration = medians.iter().sum();
        writeln!(
            out,
            "\n{:>3}  {:<28} {:>16} {:>12} {:>7} {:>16}",
            "#", "kernel", "dispatch", "median µs", "share", "rate"
        )?;
        for (i, (shader, t)) in shaders.iter().zip(&medians).enumerate() {
            let [x, y, z] = shader.groups;
            writeln!(
                out,
                "{i:>3}  {:<28} {:>16} {:>12.1} {:>6.1}% {:>16}",
                shader.name,
                format!("{x}x{y}x{z}*{}", shader.local_size),
                t.as_secs_f64() * 1e6,
                100.0 * t.as_secs_f64() / sum.as_secs_f64().max(f64::MIN_POSITIVE),
                rate(&program, &program.kernels[i], *t)
            )?;
        }
        writeln!(
            out,
            "     {:<28} {:>16} {:>12.1}",
            "sum of dispatches (device)",
            "",
            sum.as_secs_f64() * 1e6
        )?;
    } else {
        writeln!(
            out,
            "\nthe device's compute queue has no timestamp support: timing whole submissions only"
        )?;
    }
    let run = median(&mut runs);
    write_total(
        out,
        run,
        args.iters,
        ", wall: upload, submit, wait, download",
    )?;
    Ok(())
}

/// The last line of both backends' reports, kept in one form: the median time of a whole run over `iters` runs,
/// `how` (empty, or `, …`) adding what that time covers.
fn write_total(out: &mut dyn Write, run: Duration, iters: usize, how: &str) -> std::io::Result<()> {
    writeln!(
        out,
        "\ntotal: {:.1} µs per run (median of {iters}{how}), {:.1} runs/s",
        run.as_secs_f64() * 1e6,
        1.0 / run.as_secs_f64().max(f64::MIN_POSITIVE)
    )
}

/// The median time of a whole step through a session that holds the resident inputs (parameters, optimizer
/// state) and is fed the others.
fn session_median(
    exe: kiln::Executable,
    graph: &kiln_ir::Graph,
    values: Vec<Tensor>,
    args: &BenchArgs,
) -> Result<Duration, CliError> {
    let named: HashMap<String, Tensor> = graph
        .inputs()
        .zip(values)
        .map(|(i, t)| (i.name.to_string(), t))
        .collect();
    let mut session = kiln::Session::new(exe, &named)?;
    let data: Vec<Tensor> = session
        .data_input_names()
        .iter()
        .map(|n| named[*n].clone())
        .collect();
    for _ in 0..args.warmup {
        session.step(&data)?;
    }
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let started = Instant::now();
        session.step(&data)?;
        times.push(started.elapsed());
    }
    Ok(median(&mut times))
}

/// `12.3 GFLOP/s` for a matmul, `4.56 GB/s` for a loop kernel.
fn rate(program: &KernelProgram, kernel: &Kernel, t: Duration) -> String {
    let seconds = t.as_secs_f64().max(f64::MIN_POSITIVE);
    match kernel {
        Kernel::Matmul(m) => {
            let batch: usize = m.batch().iter().product();
            let flops = 2.0 * (batch * m.m() * m.n() * m.k) as f64;
            format!("{:.2} GFLOP/s", flops / seconds / 1e9)
        }
        Kernel::Loop(_) | Kernel::Collective(_) => {
            let bytes: usize = kernel
                .reads()
                .into_iter()
                .chain(kernel.writes())
                .map(|b| program.buffers[b.index()].ty.size_bytes())
                .sum();
            format!("{:.2} GB/s", bytes as f64 / seconds / 1e9)
        }
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(t: Duration) -> f64 {
    t.as_secs_f64() * 1e3
}
