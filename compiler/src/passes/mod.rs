//! Graph-level optimization passes and the pass manager that runs them.
//!
//! Every pass is a module with one entry point, `run(&Graph) -> Result<Graph, IrError>`, that builds a new graph
//! (through [`rewrite::Rewriter`]) and leaves its argument untouched. Each module's doc says what the pass does, what
//! it preserves and what it requires. Passes know nothing of kernels or backends.
//!
//! - [`simplify`]: algebraic identities (`x * 1`, `neg(neg x)`, chains of movement ops, ...).
//! - [`const_fold`]: nodes of constants become constants (splats stay splats).
//! - [`cse`]: equal nodes become one.
//! - [`dce`]: nodes no output needs are dropped (inputs stay).
//!
//! [`optimize`] runs all four, in that order, until the graph stops changing (at most [`DEFAULT_MAX_ROUNDS`] rounds).
//! Every pass's result is verified; inputs (names, roles, order) and outputs (names, order, aliases) never change.

pub mod const_fold;
pub mod cse;
pub mod dce;
pub mod rewrite;
pub mod simplify;

use kiln_ir::{verify, Graph, IrError};
use std::fmt;

/// A pass's entry point.
pub type PassFn = fn(&Graph) -> Result<Graph, IrError>;

/// Every pass, by the name the pass manager and the CLI use.
pub const PASSES: [(&str, PassFn); 4] = [
    ("simplify", simplify::run),
    ("const_fold", const_fold::run),
    ("cse", cse::run),
    ("dce", dce::run),
];

/// A pass by name.
pub fn pass(name: &str) -> Option<PassFn> {
    PASSES.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// Called after every pass with its statistics and its (verified) result; the CLI's `--print-after-all` prints it.
pub type AfterPass<'a> = &'a mut dyn FnMut(&PassStats, &Graph);

/// Rounds of the default pipeline before [`optimize`] stops even if the graph still changes.
pub const DEFAULT_MAX_ROUNDS: usize = 8;

/// One pass run: its name, the round it ran in (from 1), and the node counts around it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassStats {
    pub pass: &'static str,
    pub round: usize,
    pub nodes_before: usize,
    pub nodes_after: usize,
}

/// What a [`PassManager::run_traced`] did: every pass run in order, and whether a fixed point was reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub runs: Vec<PassStats>,
    pub rounds: usize,
    /// The last round changed nothing (else the round cap stopped the pipeline).
    pub converged: bool,
}

impl Report {
    /// Nodes before the first pass (`None` if no pass ran).
    pub fn nodes_before(&self) -> Option<usize> {
        self.runs.first().map(|r| r.nodes_before)
    }

    /// Nodes after the last pass (`None` if no pass ran).
    pub fn nodes_after(&self) -> Option<usize> {
        self.runs.last().map(|r| r.nodes_after)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.runs {
            writeln!(
                f,
                "round {} {:<10} {:>6} -> {:>6} nodes",
                r.round, r.pass, r.nodes_before, r.nodes_after
            )?;
        }
        write!(
            f,
            "{} round(s), {}",
            self.rounds,
            if self.converged {
                "fixed point reached"
            } else {
                "stopped at the round cap"
            }
        )
    }
}

/// A sequence of named passes, run in rounds until a round leaves the graph unchanged or the round cap is reached.
/// The input and every pass's result are verified.
#[derive(Clone, Debug)]
pub struct PassManager {
    passes: Vec<(&'static str, PassFn)>,
    max_rounds: usize,
}

impl Default for PassManager {
    /// The pipeline of [`optimize`].
    fn default() -> PassManager {
        PASSES
            .iter()
            .fold(PassManager::new(DEFAULT_MAX_ROUNDS), |pm, &(name, f)| {
                pm.with_pass(name, f)
            })
    }
}

impl PassManager {
    /// No passes yet; `max_rounds` rounds at most (1 runs each pass once).
    pub fn new(max_rounds: usize) -> PassManager {
        PassManager {
            passes: Vec::new(),
            max_rounds: max_rounds.max(1),
        }
    }

    /// Appends a pass.
    pub fn with_pass(mut self, name: &'static str, pass: PassFn) -> PassManager {
        self.passes.push((name, pass));
        self
    }

    pub fn pass_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.passes.iter().map(|(n, _)| *n)
    }

    pub fn run(&self, graph: &Graph) -> Result<Graph, IrError> {
        self.run_traced(graph, None).map(|(g, _)| g)
    }

    /// Runs the passes and reports what each did; `after_pass` sees every pass's result.
    pub fn run_traced(
        &self,
        graph: &Graph,
        mut after_pass: Option<AfterPass<'_>>,
    ) -> Result<(Graph, Report), IrError> {
        verify(graph)?;
        let mut report = Report::default();
        let mut current = graph.clone();
        for round in 1..=self.max_rounds {
            let start = current.clone();
            for &(name, pass) in &self.passes {
                let next = pass(&current)?;
                verify(&next).map_err(|e| {
                    IrError::Invalid(format!("the graph after pass `{name}` is invalid: {e}"))
                })?;
                let stats = PassStats {
                    pass: name,
                    round,
                    nodes_before: current.len(),
                    nodes_after: next.len(),
                };
                if let Some(hook) = after_pass.as_mut() {
                    hook(&stats, &next);
                }
                report.runs.push(stats);
                current = next;
            }
            report.rounds = round;
            if current == start {
                report.converged = true;
                break;
            }
        }
        Ok((current, report))
    }
}

/// The default pipeline: simplify, const_fold, cse, dce, to a fixed point (at most [`DEFAULT_MAX_ROUNDS`] rounds).
///
/// Preserves: the inputs, the outputs' names, order and aliases, and every output's value as the interpreter computes
/// it, bit-for-bit except for the sign of zeros produced by `x + 0` (see [`simplify`]). Requires: a verified graph.
pub fn optimize(graph: &Graph) -> Result<Graph, IrError> {
    PassManager::default().run(graph)
}
