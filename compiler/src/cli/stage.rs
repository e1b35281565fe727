//! `--stage`: which graph a command works on, and the flags that build it from the parsed one.
//!
//! Stages are ordered along the compilation pipeline. A new stage is one variant of [`Stage`] (its doc comment is its
//! `--help` text) and one arm in [`build`]; commands that cannot handle it say so where they match on it.

use super::CliError;
use clap::{Args, ValueEnum};
use kiln::autodiff::{param_names, sole_scalar_output};
use kiln::{Adam, Graph, Optimizer, Sgd};

/// A point in the compilation pipeline.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, ValueEnum)]
pub enum Stage {
    /// The graph as parsed.
    #[default]
    Input,
    /// The graph plus its backward pass: a `grad.<param>` output per parameter (see --of, --wrt).
    Grad,
    /// One training step: loss, backward pass and optimizer update (see --optimizer).
    Train,
    /// The graph after the optimization passes (simplify, constant folding, CSE, DCE to a fixed point); with
    /// --optimizer, the optimized training step instead of the forward graph.
    Optimized,
    /// The optimized graph partitioned into kernels: which nodes each kernel computes (DOT: one cluster per kernel).
    Fused,
    /// The kernel IR the backends compile: buffers, loop nests, loads/stores, reductions, matmuls with epilogues.
    Kernels,
    /// The memory plan: arena offsets of temporaries with reuse, in-place updates, peak bytes, traffic.
    Memory,
    /// The CLIF (Cranelift IR) of every kernel as the CPU backend builds it, before Cranelift optimizes it (see
    /// --kernel).
    Clif,
    /// The machine code of every kernel for this machine, as Cranelift disassembles it after optimizing the CLIF and
    /// allocating registers (see --kernel).
    Asm,
    /// The SPIR-V assembly of every kernel's compute shader as the Vulkan backend builds it, NaN-preserving (no
    /// device needed; see --kernel).
    Spirv,
}

impl Stage {
    /// Stages from `optimized` on work on the training step when an optimizer is named.
    fn takes_optimizer(self) -> bool {
        matches!(
            self,
            Stage::Train
                | Stage::Optimized
                | Stage::Fused
                | Stage::Kernels
                | Stage::Memory
                | Stage::Clif
                | Stage::Asm
                | Stage::Spirv
        )
    }

    /// Stages past the graph level: what they print is not a graph that `run` could execute.
    pub fn is_lowered(self) -> bool {
        matches!(
            self,
            Stage::Fused | Stage::Kernels | Stage::Memory | Stage::Clif | Stage::Asm | Stage::Spirv
        )
    }
}

/// The flags that choose and build a stage (shared by `dump` and `run`).
#[derive(Args, Debug, Clone)]
pub struct StageArgs {
    /// Which graph to work on.
    #[arg(long, value_enum, default_value_t = Stage::Input)]
    pub stage: Stage,

    /// Inputs to differentiate with respect to (grad and train stages) [default: every `param` input].
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub wrt: Option<Vec<String>>,

    /// The scalar output to differentiate (grad and train stages) [default: the only float scalar output].
    #[arg(long, value_name = "OUTPUT")]
    pub of: Option<String>,

    /// Print the graph after every pass (optimized stage).
    #[arg(long)]
    pub print_after_all: bool,

    /// Only kernel N (clif, asm and spirv stages).
    #[arg(long, value_name = "N")]
    pub kernel: Option<usize>,

    #[command(flatten)]
    pub optimizer: OptimizerArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, ValueEnum)]
pub enum OptimizerKind {
    /// Stochastic gradient descent, optionally with (Nesterov) momentum (`torch.optim.SGD`).
    #[default]
    Sgd,
    /// Adam with L2 weight decay (`torch.optim.Adam`).
    Adam,
    /// Adam with decoupled weight decay (`torch.optim.AdamW`).
    Adamw,
}

/// Optimizer flags of the train stage; unset ones take PyTorch's defaults (`kiln::Sgd::default()`,
/// `kiln::Adam::default()`).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Optimizer (--stage train)")]
pub struct OptimizerArgs {
    /// The update rule [default: sgd]; from --stage optimized on, naming one works on the training step.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate [default: 0.01 for sgd, 0.001 for adam and adamw].
    #[arg(long, value_name = "X")]
    pub lr: Option<f64>,
    /// Momentum factor (sgd) [default: 0].
    #[arg(long, value_name = "M")]
    pub momentum: Option<f64>,
    /// Use Nesterov momentum (sgd; needs --momentum).
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay: L2 for sgd and adam, decoupled for adamw [default: 0].
    #[arg(long, value_name = "W")]
    pub weight_decay: Option<f64>,
    /// Decay of the first moment (adam, adamw) [default: 0.9].
    #[arg(long, value_name = "B1")]
    pub beta1: Option<f64>,
    /// Decay of the second moment (adam, adamw) [default: 0.999].
    #[arg(long, value_name = "B2")]
    pub beta2: Option<f64>,
    /// Term added to the denominator (adam, adamw) [default: 1e-8].
    #[arg(long, value_name = "E")]
    pub eps: Option<f64>,
}

impl OptimizerArgs {
    /// Whether any optimizer flag was given, which only the train stage reads.
    fn any_given(&self) -> bool {
        self.optimizer.is_some()
            || self.lr.is_some()
            || self.momentum.is_some()
            || self.nesterov
            || self.weight_decay.is_some()
            || self.beta1.is_some()
            || self.beta2.is_some()
            || self.eps.is_some()
    }

    /// The optimizer the flags describe, checked by [`Optimizer::validate`] (the library's rules, named by flag).
    pub fn to_optimizer(&self) -> Result<Optimizer, CliError> {
        let kind = self.optimizer.unwrap_or_default();
        let optimizer = match kind {
            OptimizerKind::Sgd => {
                let not_for_sgd = [
                    ("beta1", self.beta1),
                    ("beta2", self.beta2),
                    ("eps", self.eps),
                ];
                if let Some((flag, _)) = not_for_sgd.iter().find(|(_, v)| v.is_some()) {
                    return Err(CliError::new(format!(
                        "--{flag} applies to adam and adamw, not sgd (choose one with --optimizer)"
                    )));
                }
                let defaults = Sgd::default();
                Optimizer::Sgd(Sgd {
                    lr: self.lr.unwrap_or(defaults.lr),
                    momentum: self.momentum.unwrap_or(defaults.momentum),
                    nesterov: self.nesterov,
                    weight_decay: self.weight_decay.unwrap_or(defaults.weight_decay),
                })
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                if self.momentum.is_some() || self.nesterov {
                    let flag = if self.nesterov {
                        "nesterov"
                    } else {
                        "momentum"
                    };
                    return Err(CliError::new(format!(
                        "--{flag} applies to sgd only; adam's momentum is --beta1"
                    )));
                }
                let defaults = Adam::default();
                let adam = Adam {
                    lr: self.lr.unwrap_or(defaults.lr),
                    beta1: self.beta1.unwrap_or(defaults.beta1),
                    beta2: self.beta2.unwrap_or(defaults.beta2),
                    eps: self.eps.unwrap_or(defaults.eps),
                    weight_decay: self.weight_decay.unwrap_or(defaults.weight_decay),
                };
                if kind == OptimizerKind::Adam {
                    Optimizer::Adam(adam)
                } else {
                    Optimizer::AdamW(adam)
                }
            }
        };
        validated(optimizer)
    }
}

/// `optimizer` if [`Optimizer::validate`] accepts it, else its complaint with the field named as the flag that sets
/// it (`--beta2 must be in [0, 1), got 2`). Used by every command that builds an optimizer from flags.
pub fn validated(optimizer: Optimizer) -> Result<Optimizer, CliError> {
    optimizer.validate().map_err(|e| {
        let flag = e.name.replace('_', "-");
        let problem = e.problem.replace("momentum > 0", "a nonzero --momentum");
        CliError::new(format!("--{flag} {problem}"))
    })?;
    Ok(optimizer)
}

/// A graph at some stage, with what DOT export needs to cluster it.
pub struct StagedGraph {
    pub graph: Graph,
    /// Per node, an index into `group_names` (for `DotOptions`); `None` draws the graph unclustered.
    pub groups: Option<Vec<usize>>,
    pub group_names: Vec<String>,
    /// The output differentiated by the grad and train stages.
    pub loss: Option<String>,
    /// Optimized stage: the graph after each pass, headed by the pass's name and round.
    pub trace: Vec<(String, Graph)>,
    /// Optimized stage: nodes before and after each pass.
    pub report: Option<String>,
    /// Fused, kernels and memory stages: the text to print instead of the graph.
    pub listing: Option<String>,
}

/// Builds the graph of `args.stage` from the parsed graph.
pub fn build(parsed: Graph, args: &StageArgs) -> Result<StagedGraph, CliError> {
    let differentiates = matches!(args.stage, Stage::Grad | Stage::Train);
    if !differentiates && (args.wrt.is_some() || args.of.is_some()) {
        return Err(CliError::new(
            "--wrt and --of apply to --stage grad and --stage train",
        ));
    }
    if !args.stage.takes_optimizer() && args.optimizer.any_given() {
        return Err(CliError::new(
            "optimizer flags (--optimizer, --lr, ...) apply to --stage train and optimized",
        ));
    }
    if args.kernel.is_some() && !matches!(args.stage, Stage::Clif | Stage::Asm | Stage::Spirv) {
        return Err(CliError::new(
            "--kernel applies to --stage clif, asm and spirv",
        ));
    }
    if args.print_after_all && args.stage != Stage::Optimized {
        return Err(CliError::new(
            "--print-after-all applies to --stage optimized",
        ));
    }
    match args.stage {
        Stage::Input => Ok(StagedGraph {
            graph: parsed,
            groups: None,
            group_names: Vec::new(),
            loss: None,
            trace: Vec::new(),
            report: None,
            listing: None,
        }),
        Stage::Fused | Stage::Kernels | Stage::Memory | Stage::Clif | Stage::Asm | Stage::Spirv => {
            let optimized_args = StageArgs {
                stage: Stage::Optimized,
                kernel: None,
                ..args.clone()
            };
            let mut staged = build(parsed, &optimized_args)?;
            let graph = &staged.graph;
            let listing = match args.stage {
                Stage::Fused => {
                    let partition = kiln::fusion::partition(graph);
                    let (groups, names) = partition.dot_groups(graph);
                    staged.groups = Some(groups);
                    staged.group_names = names;
                    partition.print(graph)
                }
                Stage::Kernels => kiln::kernel::print(&kiln::fusion::lower(graph)?),
                Stage::Clif => {
                    let program = kiln::fusion::lower(graph)?;
                    kernel_listing(&program, args.kernel, &|k| clif(&program, k))?
                }
                Stage::Asm => {
                    let program = kiln::fusion::lower(graph)?;
                    kernel_listing(&program, args.kernel, &|k| {
                        kiln::backend::cpu::codegen::asm_text(&program, k)
                            .map_err(|e| CliError::new(e.to_string()))
                    })?
                }
                Stage::Spirv => {
                    let program = kiln::fusion::lower(graph)?;
                    let shaders = kiln::backend::spirv::lower(&program)
                        .map_err(|e| CliError::new(e.to_string()))?;
                    kernel_listing(&program, args.kernel, &|k| Ok(spirv(k, &shaders[k])))?
                }
                _ => {
                    let program = kiln::fusion::lower(graph)?;
                    kiln::memory::plan(&program).report(&program)
                }
            };
            staged.listing = Some(listing);
            Ok(staged)
        }
        Stage::Optimized => {
            let (graph, loss) = if args.optimizer.any_given() {
                let train_args = StageArgs {
                    stage: Stage::Train,
                    print_after_all: false,
                    ..args.clone()
                };
                let step = build(parsed, &train_args)?;
                (step.graph, step.loss)
            } else {
                (parsed, None)
            };
            let mut trace = Vec::new();
            let mut record = |stats: &kiln::passes::PassStats, g: &Graph| {
                if args.print_after_all {
                    trace.push((
                        format!("after {} (round {})", stats.pass, stats.round),
                        g.clone(),
                    ));
                }
            };
            let (graph, report) =
                kiln::passes::PassManager::default().run_traced(&graph, Some(&mut record))?;
            Ok(StagedGraph {
                graph,
                groups: None,
                group_names: Vec::new(),
                loss,
                trace,
                report: Some(report.to_string()),
                listing: None,
            })
        }
        Stage::Grad => {
            let (of, wrt) = differentiation_target(&parsed, args)?;
            let wrt: Vec<&str> = wrt.iter().map(String::as_str).collect();
            let grad = kiln::grad(&parsed, &of, &wrt)?;
            Ok(StagedGraph {
                groups: Some(grad.dot_groups()),
                graph: grad.graph,
                group_names: vec!["forward".into(), "backward".into()],
                loss: Some(of),
                trace: Vec::new(),
                report: None,
                listing: None,
            })
        }
        Stage::Train => {
            let optimizer = args.optimizer.to_optimizer()?;
            let (of, params) = differentiation_target(&parsed, args)?;
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            let graph = kiln::training_step(&parsed, &of, &params, &optimizer)?;
            let forward_len = parsed.len();
            Ok(StagedGraph {
                groups: Some(
                    (0..graph.len())
                        .map(|i| usize::from(i >= forward_len))
                        .collect(),
                ),
                graph,
                group_names: vec!["forward".into(), "backward + update".into()],
                // `training_step` names the loss output `loss` whatever the model called it.
                loss: Some("loss".into()),
                trace: Vec::new(),
                report: None,
                listing: None,
            })
        }
    }
}

/// `print(k)` of every kernel `k` of `program`, or of kernel `only`.
fn kernel_listing(
    program: &kiln::kernel::KernelProgram,
    only: Option<usize>,
    print: &dyn Fn(usize) -> Result<String, CliError>,
) -> Result<String, CliError> {
    let count = program.kernels.len();
    let kernels: Vec<usize> = match only {
        Some(k) if k >= count => {
            return Err(CliError::new(format!(
                "--kernel {k}: program {} has {count} kernels (0..{})",
                program.name,
                count.saturating_sub(1)
            )))
        }
        Some(k) => vec![k],
        None => (0..count).collect(),
    };
    let mut out = String::new();
    for k in kernels {
        out.push_str(&print(k)?);
        out.push('\n');
    }
    Ok(out)
}

/// Kernel `k` in CLIF, before Cranelift optimizes it.
fn clif(program: &kiln::kernel::KernelProgram, k: usize) -> Result<String, CliError> {
    kiln::backend::cpu::codegen::clif_text(program, k).map_err(|e| CliError::new(e.to_string()))
}

/// Kernel `k`'s shader in SPIR-V assembly, headed by the kernel's index, name and dispatch.
fn spirv(k: usize, shader: &kiln::backend::spirv::SpirvKernel) -> String {
    let [x, y, z] = shader.groups;
    format!(
        "; kernel {k}: {}, {x}x{y}x{z} workgroups of {}, bindings {:?}\n{}",
        shader.name,
        shader.local_size,
        shader
            .bindings
            .iter()
            .map(|b| b.index())
            .collect::<Vec<_>>(),
        shader.disassemble()
    )
}

/// `--of` and `--wrt`, or their defaults: the only float scalar output and every `param` input.
fn differentiation_target(
    graph: &Graph,
    args: &StageArgs,
) -> Result<(String, Vec<String>), CliError> {
    let of = match &args.of {
        Some(of) => of.clone(),
        None => sole_scalar_output(graph)?,
    };
    let wrt = match &args.wrt {
        Some(wrt) => wrt.clone(),
        None => param_names(graph),
    };
    if wrt.is_empty() {
        return Err(CliError::new(format!(
            "graph {} has no `param` inputs to differentiate with respect to; name some with --wrt",
            graph.name
        )));
    }
    Ok((of, wrt))
}
