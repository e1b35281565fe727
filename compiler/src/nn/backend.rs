//! Where the trainer's graphs run. A [`Backend`] loads a graph into a [`Program`] that keeps some inputs resident
//! (parameters, optimizer state) across runs and takes the rest (a minibatch) per run; outputs that alias an input
//! replace it in place.
//!
//! The reference interpreter is the only backend today; a compiled backend slots in as one more `impl Backend` and
//! one arm of [`BackendKind::create`].

use super::Error;
use kiln_ir::{interp, Graph, Role, Tensor};
use std::collections::HashMap;

/// Prepares graphs for repeated runs.
pub trait Backend {
    fn name(&self) -> &'static str;

    /// Compiles (or just keeps) `graph`; every input starts unset, except `state` inputs, which start at zero.
    fn load(&self, graph: &Graph) -> Result<Box<dyn Program>, Error>;
}

/// A loaded graph with its resident inputs.
pub trait Program {
    /// Sets input `name` for every following run.
    fn set(&mut self, name: &str, value: Tensor) -> Result<(), Error>;

    /// The current value of a resident input (after the updates of the runs so far).
    fn get(&self, name: &str) -> Result<Tensor, Error>;

    /// Runs once with `inputs` given for this run only (the others resident). Each output that aliases an input is
    /// written back over that input; the other outputs are returned, in graph order.
    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>, Error>;
}

/// The backends `kiln train --backend` names; only the interpreter is built today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Interp,
    Cpu,
    Vulkan,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Interp => "interp",
            BackendKind::Cpu => "cpu",
            BackendKind::Vulkan => "vulkan",
        }
    }

    /// The backend, or [`Error::BackendUnavailable`] for one this build does not have.
    pub fn create(self) -> Result<Box<dyn Backend>, Error> {
        match self {
            BackendKind::Interp => Ok(Box::new(Interpreter)),
            BackendKind::Cpu | BackendKind::Vulkan => Err(Error::BackendUnavailable(self.name())),
        }
    }
}

/// The reference interpreter ([`kiln_ir::interp`]): slow and exact, the oracle for every other backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Interpreter;

impl Backend for Interpreter {
    fn name(&self) -> &'static str {
        "interp"
    }

    fn load(&self, graph: &Graph) -> Result<Box<dyn Program>, Error> {
        kiln_ir::verify(graph)?;
        let resident = graph
            .inputs()
            .filter(|i| i.role == Role::State)
            .map(|i| (i.name.to_string(), Tensor::zeros(i.ty.clone())))
            .collect();
        let alias_targets = graph
            .outputs()
            .iter()
            .map(|o| {
                o.aliases
                    .as_deref()
                    .and_then(|name| graph.inputs().position(|i| i.name == name))
            })
            .collect();
        Ok(Box::new(InterpProgram {
            graph: graph.clone(),
            resident,
            alias_targets,
        }))
    }
}

struct InterpProgram {
    graph: Graph,
    resident: HashMap<String, Tensor>,
    /// Per output: the index of the input it replaces.
    alias_targets: Vec<Option<usize>>,
}

impl Program for InterpProgram {
    fn set(&mut self, name: &str, value: Tensor) -> Result<(), Error> {
        let input = self.graph.input(name).ok_or_else(|| {
            Error::Config(format!("graph `{}` has no input `{name}`", self.graph.name))
        })?;
        if value.ty() != input.ty {
            return Err(Error::Config(format!(
                "input `{name}` of graph `{}` is {}, given {}",
                self.graph.name,
                input.ty,
                value.ty()
            )));
        }
        self.resident.insert(name.to_string(), value);
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Tensor, Error> {
        self.resident.get(name).cloned().ok_or_else(|| {
            Error::Config(format!(
                "graph `{}` has no resident input `{name}`",
                self.graph.name
            ))
        })
    }

    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>, Error> {
        let mut values = Vec::with_capacity(self.graph.inputs().count());
        for input in self.graph.inputs() {
            let value = match inputs.iter().find(|(name, _)| *name == input.name) {
                Some((_, t)) => (*t).clone(),
                None => self.resident.get(input.name).cloned().ok_or_else(|| {
                    Error::Config(format!(
                        "graph `{}`: no value for input `{}`",
                        self.graph.name, input.name
                    ))
                })?,
            };
            values.push(value);
        }
        let outputs = interp::run(&self.graph, &values)?;
        let mut returned = Vec::new();
        for (value, target) in outputs.into_iter().zip(&self.alias_targets) {
            match target {
                Some(i) => {
                    let name = self.graph.inputs().nth(*i).expect("found at load").name;
                    self.resident.insert(name.to_string(), value);
                }
                None => returned.push(value),
            }
        }
        Ok(returned)
    }
}
