//! The `kiln` tool's commands, arguments and error type.
//!
//! - [`stage`]: which graph a command works on (`--stage input|grad|train`) and the flags that build it.
//! - [`check`], [`dump`], [`run`], [`bench`], [`train`], [`predict`], [`devices`]: one module per command.
//! - [`inputs`]: seeded input generation and `--input NAME=FILE.npy`; [`npy`]: `.npy` files.
//!
//! Commands write their results to the `out` they are given and return a [`CliError`]; only `main` turns that into
//! an exit code.

mod bench;
mod check;
mod data_parallel;
mod devices;
mod dump;
mod export;
mod generate;
mod import;
mod inputs;
mod npy;
mod predict;
mod run;
mod stage;
mod train;
mod train_seq;

use clap::{Parser, Subcommand};
use kiln_ir::text::ParseError;
use kiln_ir::IrError;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Kiln: a deep-learning graph compiler.
///
/// Reads graphs in the `.kir` text format, differentiates them, builds training steps and runs them.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and verify a .kir file.
    ///
    /// Prints a one-line summary (`ok: graph mlp, 27 nodes, 6 inputs, 2 outputs`), or the first error with its line,
    /// column and a caret.
    Check(check::CheckArgs),
    /// Print a graph at some stage of compilation, as .kir text or Graphviz DOT.
    ///
    /// Examples:
    ///   kiln dump model.kir --stage grad --format dot | dot -Tsvg > grad.svg
    ///   kiln dump model.kir --stage train --optimizer adam --lr 1e-3
    #[command(verbatim_doc_comment)]
    Dump(dump::DumpArgs),
    /// Run a graph on seeded random (or given) inputs and print its outputs.
    ///
    /// Inputs not given with --input are generated from --seed: floats ~ N(0, 1), i32 uniform in [0, 10), bool
    /// uniform; optimizer state inputs start at zero. Each output is printed with its type, its first values and two
    /// checksums (sum and sum of absolute values).
    ///
    /// Examples:
    ///   kiln run model.kir --seed 1 --out results/
    ///   kiln run model.kir --input x=x.npy --input y=y.npy
    ///   kiln run model.kir --stage train --steps 100 --optimizer adam --lr 1e-2 --out trained/
    #[command(verbatim_doc_comment)]
    Run(run::RunArgs),
    /// Compile a graph for the CPU and time it: compile time, then each kernel's median time and rate.
    ///
    /// Inputs are generated from --seed as for `kiln run`. Each kernel's rate is GFLOP/s for a matmul, else GB/s of
    /// the buffers it reads and writes; the total is the median time of a whole run through a session.
    ///
    /// Examples:
    ///   kiln bench model.kir --iters 100
    ///   kiln bench model.kir --stage train --optimizer sgd --lr 0.1
    #[command(verbatim_doc_comment)]
    Bench(bench::BenchArgs),
    /// Train a model on a data set and save it (defaults: MLP 64-128-10, ReLU, Adam, on the 8x8 digits).
    ///
    /// Prints an epoch table (train loss, test loss, test accuracy, seconds) with a progress bar on a terminal, and
    /// writes DIR/model.safetensors (parameters and a model description), DIR/metrics.csv and DIR/metrics.svg.
    ///
    /// Examples:
    ///   kiln train
    ///   kiln train --dataset moons --model twolayer --epochs 50
    ///   kiln train --model logreg --optimizer sgd --lr 0.5 --out runs/logreg
    #[command(verbatim_doc_comment)]
    Train(train::TrainArgs),
    /// Evaluate a checkpoint written by `kiln train` on a test split.
    Predict(predict::PredictArgs),
    /// Continue a prompt with a transformer checkpoint (`kiln train --model transformer`).
    ///
    /// Examples:
    ///   kiln generate --checkpoint runs/latest --prompt "3 1 4 1 5 9"
    ///   kiln generate --checkpoint runs/text --prompt "The " --tokens 300 --temperature 0.8 --seed 1
    #[command(verbatim_doc_comment)]
    Generate(generate::GenerateArgs),
    /// Translate an ONNX model to a .kir file and print a summary of it.
    ///
    /// Examples:
    ///   kiln import model.onnx -o model.kir
    ///   kiln import model.onnx --shape batch=8
    ///   kiln import model.onnx --shape input=1,3,32,32
    #[command(verbatim_doc_comment)]
    Import(import::ImportArgs),
    /// Write a graph as an ONNX model (opset 18, static shapes); --input values become initializers.
    ///
    /// Examples:
    ///   kiln export model.kir -o model.onnx
    ///   kiln export model.kir -o model.onnx --input l1.weight=w1.npy --input l1.bias=b1.npy
    #[command(verbatim_doc_comment)]
    Export(export::ExportArgs),
    /// List the Vulkan devices able to run Kiln's shaders, marking the one `--backend vulkan` uses.
    ///
    /// Exits with an error when no Vulkan loader or device is available.
    Devices,
}

/// Runs one command, writing its results to stdout.
///
/// A closed stdout (`kiln train | head -1`) stops the printing, not the work: the command runs to the end and writes
/// its files (see [`Printer`]).
pub fn execute(cli: Cli) -> Result<(), CliError> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(Printer::new(stdout.lock()));
    let result = match &cli.command {
        Command::Check(args) => check::check(args, &mut out),
        Command::Dump(args) => dump::dump(args, &mut out),
        Command::Run(args) => run::run(args, &mut out),
        Command::Bench(args) => bench::bench(args, &mut out),
        Command::Train(args) => train::train(args, &mut out),
        Command::Predict(args) => predict::predict(args, &mut out),
        Command::Generate(args) => generate::generate(args, &mut out),
        Command::Import(args) => import::import(args, &mut out),
        Command::Export(args) => export::export(args, &mut out),
        Command::Devices => devices::devices(&mut out),
    };
    result.and_then(|()| out.flush().map_err(CliError::from))
}

/// A user error: the command stops and `kiln` exits with code 1.
#[derive(Debug)]
pub enum CliError {
    /// Printed as `error: <message>`.
    Message(String),
    /// A `.kir` syntax or type error, rendered with its file, line, column and caret.
    Parse(Box<ParseError>),
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError::Message(message.into())
    }

    /// The text `main` prints on stderr.
    pub fn render(&self) -> String {
        match self {
            CliError::Message(message) => format!("error: {message}"),
            CliError::Parse(e) => {
                let rendered = e.to_string();
                if rendered.starts_with("error") {
                    rendered
                } else {
                    format!("error: {rendered}")
                }
            }
        }
    }
}

impl From<IrError> for CliError {
    fn from(e: IrError) -> CliError {
        match e {
            IrError::Parse(parse) => CliError::Parse(parse),
            other => CliError::Message(other.to_string()),
        }
    }
}

impl From<kiln::Error> for CliError {
    fn from(e: kiln::Error) -> CliError {
        match e {
            kiln::Error::Ir(ir) => ir.into(),
            other => CliError::Message(other.to_string()),
        }
    }
}

impl From<kiln::RunError> for CliError {
    fn from(e: kiln::RunError) -> CliError {
        CliError::Message(e.to_string())
    }
}

impl From<kiln::backend::spirv::Error> for CliError {
    fn from(e: kiln::backend::spirv::Error) -> CliError {
        CliError::Message(e.to_string())
    }
}

impl From<kiln::backend::spirv::VulkanError> for CliError {
    fn from(e: kiln::backend::spirv::VulkanError) -> CliError {
        CliError::Message(e.to_string())
    }
}

impl From<io::Error> for CliError {
    /// Only for writing results to stdout; file errors name their file (see [`read_source`]). A closed stdout
    /// never gets here: [`Printer`] swallows it.
    fn from(e: io::Error) -> CliError {
        CliError::Message(format!("cannot write the output: {e}"))
    }
}

/// stdout for the commands: once a write fails with a broken pipe (whoever read our output has gone: `kiln train |
/// head -1`), every later write and flush succeeds without writing, so the command carries on and writes its files,
/// and `kiln` exits with 0. Rust ignores SIGPIPE, so a closed pipe reaches us as this error rather than killing the
/// process halfway through writing a checkpoint.
pub struct Printer<W: Write> {
    inner: W,
    closed: bool,
}

impl<W: Write> Printer<W> {
    pub fn new(inner: W) -> Printer<W> {
        Printer {
            inner,
            closed: false,
        }
    }

    fn absorb<T>(&mut self, result: io::Result<T>, done: T) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(done)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for Printer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let result = self.inner.write(buf);
        self.absorb(result, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = self.inner.flush();
        self.absorb(result, ())
    }
}

/// Writes one line to stderr (timings, warnings). Unlike `eprintln!`, which panics when stderr is a closed pipe
/// (`kiln run ... 2>&1 | head -1`), a failure is ignored: a note nobody can read is not worth stopping the work.
pub fn note(line: std::fmt::Arguments) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Reads and parses a `.kir` file; parse errors carry the file's path for rendering. A `.onnx` file is imported
/// instead, its symbolic dims fixed by `--shape`.
pub fn load_graph(file: &GraphFile) -> Result<kiln_ir::Graph, CliError> {
    let path = file.file.as_path();
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        let options = import::import_options(&file.shapes)?;
        return Ok(import::load_onnx(path, &options)?.graph);
    }
    if !file.shapes.is_empty() {
        return Err(CliError::new(format!(
            "--shape applies to .onnx models; `{}` is a .kir graph, whose shapes are fixed in its text",
            path.display()
        )));
    }
    let source = read_source(path)?;
    kiln_ir::text::parse(&source).map_err(|mut e| {
        e.path = Some(path.display().to_string());
        CliError::Parse(Box::new(e))
    })
}

fn read_source(path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::new(format!("cannot read `{}`: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|e| {
        CliError::new(format!(
            "`{}` is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// `FILE` arguments: a path to a `.kir` file, or an ONNX model with the shapes to import it at.
#[derive(clap::Args, Debug, Clone)]
pub struct GraphFile {
    /// The .kir file to read (or a .onnx model, imported as `kiln import` does).
    #[arg(value_name = "FILE.kir")]
    pub file: PathBuf,

    /// For a .onnx model: fix a symbolic dim (`--shape batch=8`) or an input's shape (`--shape x=1,3,32,32`);
    /// repeatable.
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shapes: Vec<String>,
}

/// Writes `text` to `out`, for commands that print one block.
fn emit(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// No tensor of a run may be larger than this, so a typo'd shape is an error rather than an out-of-memory abort.
pub const MAX_TENSOR_BYTES: usize = 1 << 32;

/// The most threads `--threads` starts: far above any core count, far below what makes the OS refuse a thread.
pub const MAX_THREADS: usize = 1024;

/// Checks every node's tensor against [`MAX_TENSOR_BYTES`] before anything is allocated for the graph (`kiln run`,
/// `kiln bench`, the model of `kiln train`): the message names the node.
pub fn check_tensor_sizes(graph: &kiln_ir::Graph) -> Result<(), CliError> {
    for (i, node) in graph.nodes().iter().enumerate() {
        if node_bytes(&node.ty).is_none() {
            return Err(CliError::new(format!(
                "node %{} of graph {} is {}, larger than the {} GiB that kiln allows per tensor",
                graph.label(kiln_ir::NodeId(i as u32)),
                graph.name,
                node.ty,
                MAX_TENSOR_BYTES >> 30
            )));
        }
    }
    Ok(())
}

/// Checks what `kiln` allocates for `graph` before compiling it — its inputs, and with `every_node` (the interpreter,
/// which keeps every value of a run) all of its nodes — against the available memory
/// ([`kiln::compile::check_memory`]; `kiln::compile` checks its own plan the same way). Call after
/// [`check_tensor_sizes`].
pub fn check_graph_memory(graph: &kiln_ir::Graph, every_node: bool) -> Result<(), CliError> {
    let total = graph
        .nodes()
        .iter()
        .filter(|node| every_node || matches!(node.op, kiln_ir::Op::Input { .. }))
        .fold(0usize, |sum, node| {
            sum.saturating_add(node_bytes(&node.ty).unwrap_or(usize::MAX))
        });
    Ok(kiln::compile::check_memory(&graph.name, total)?)
}

/// The bytes of a tensor of type `ty`, if within [`MAX_TENSOR_BYTES`].
fn node_bytes(ty: &kiln_ir::TensorType) -> Option<usize> {
    ty.dims()
        .iter()
        .try_fold(ty.dtype.size_bytes(), |acc, &d| acc.checked_mul(d))
        .filter(|&bytes| bytes <= MAX_TENSOR_BYTES)
}

/// A count given by the user (`--steps`, `--epochs`, `--iters`...): at least `min`, at most `max` (`why` says what
/// the limit protects), checked before anything is sized by it.
pub fn check_count(
    flag: &str,
    value: usize,
    min: usize,
    max: usize,
    why: &str,
) -> Result<(), CliError> {
    if value < min {
        return Err(CliError::new(format!("--{flag} must be at least {min}")));
    }
    if value > max {
        return Err(CliError::new(format!(
            "--{flag} {value} is too large: at most {max} ({why})"
        )));
    }
    Ok(())
}

/// Checks `--threads` of the CPU backend, when given (the default, every core, is the machine's own number).
pub fn check_threads(threads: Option<usize>) -> Result<(), CliError> {
    match threads {
        Some(n) => check_count(
            "threads",
            n,
            1,
            MAX_THREADS,
            "each is an OS thread started by the first run",
        ),
        None => Ok(()),
    }
}

/// Compile options for `--threads` (checked by [`check_threads`]).
pub fn cpu_options(threads: Option<usize>) -> kiln::Options {
    let defaults = kiln::Options::default();
    kiln::Options {
        threads: threads.unwrap_or(defaults.threads),
        ..defaults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stdout whose reader goes away after `accept` bytes; `other` fails with another error instead.
    struct Pipe {
        accept: usize,
        written: Vec<u8>,
        other: bool,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written.len() + buf.len() > self.accept {
                let kind = if self.other {
                    io::ErrorKind::PermissionDenied
                } else {
                    io::ErrorKind::BrokenPipe
                };
                return Err(io::Error::from(kind));
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn printer_goes_quiet_after_a_broken_pipe_and_reports_other_errors() {
        let mut printer = Printer::new(Pipe {
            accept: 6,
            written: Vec::new(),
            other: false,
        });
        writeln!(printer, "first").unwrap();
        writeln!(printer, "second").unwrap();
        writeln!(printer, "third").unwrap();
        printer.flush().unwrap();
        assert_eq!(printer.inner.written, b"first\n");
        assert!(printer.closed);

        let mut printer = Printer::new(Pipe {
            accept: 0,
            written: Vec::new(),
            other: true,
        });
        let e = writeln!(printer, "x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }
}
