//! Where the trainer's graphs run. A [`Backend`] loads a graph into a [`Program`] that keeps some inputs resident
//! (parameters, optimizer state) across runs and takes the rest (a minibatch) per run; outputs that alias an input
//! replace it in place.
//!
//! Three backends: the reference interpreter, the CPU backend (Cranelift-compiled kernels, a resident [`Session`] for
//! training steps) and Vulkan (SPIR-V shaders on the best device, a [`VulkanSession`] for training steps). The
//! interpreter keeps resident inputs on the host ([`HostProgram`]). On Vulkan, parameters and optimizer state stay in
//! device buffers across steps: a training step uploads only the minibatch and reads back only the outputs that
//! replace nothing (the loss); [`Program::get`] downloads a resident tensor on demand.

use super::Error;
use crate::backend::spirv::{Device, Residency, VulkanExecutable, VulkanSession};
use crate::compile::{compile, compile_vulkan, Options};
use kiln_ir::{interp, Collective, Graph, Role, Tensor};
use kiln_runtime::{Executable, Session};
use std::collections::HashMap;
use std::sync::Arc;

/// Prepares graphs for repeated runs.
pub trait Backend {
    fn name(&self) -> &'static str;

    /// Compiles (or just keeps) `graph`; every input starts unset, except `state` inputs, which start at zero.
    fn load(&self, graph: &Graph) -> Result<Box<dyn Program>, Error>;

    /// [`Backend::load`] as one rank of `group`: the graph's `all_reduce`s reduce across it (SPEC §3.12). A backend
    /// without collectives refuses, so a data-parallel step never runs silently as one process.
    fn load_in_group(
        &self,
        graph: &Graph,
        group: &Arc<dyn Collective>,
    ) -> Result<Box<dyn Program>, Error> {
        let _ = (graph, group);
        Err(Error::Config(format!(
            "the {} backend has no collectives: data-parallel training needs --backend cpu or interp",
            self.name()
        )))
    }
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

/// The backends `kiln train --backend` names.
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

    /// The backend; Vulkan opens the preferred device, an [`Error::Vulkan`] when there is none.
    pub fn create(self) -> Result<Box<dyn Backend>, Error> {
        match self {
            BackendKind::Interp => Ok(Box::new(Interpreter)),
            BackendKind::Cpu => Ok(Box::new(Cpu::default())),
            BackendKind::Vulkan => Ok(Box::new(Vulkan::open_best()?)),
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
        let owned = graph.clone();
        Ok(Box::new(HostProgram::new(
            graph,
            Box::new(move |inputs| Ok(interp::run(&owned, inputs)?)),
        )))
    }

    fn load_in_group(
        &self,
        graph: &Graph,
        group: &Arc<dyn Collective>,
    ) -> Result<Box<dyn Program>, Error> {
        kiln_ir::verify(graph)?;
        let owned = graph.clone();
        let group = Arc::clone(group);
        Ok(Box::new(HostProgram::new(
            graph,
            Box::new(move |inputs| Ok(interp::run_in_group(&owned, inputs, &*group)?)),
        )))
    }
}

/// Vulkan compute on one device ([`compile_vulkan`]: the CPU path's passes and fusion, then SPIR-V). A graph whose
/// outputs update inputs (a training step) runs in a [`VulkanSession`]: parameters and optimizer state stay on the
/// device between runs. Any other graph runs as a plain [`VulkanExecutable`] call.
#[derive(Clone, Debug)]
pub struct Vulkan {
    pub device: Device,
    /// Only `optimize` applies.
    pub options: Options,
}

impl Vulkan {
    /// The preferred device ([`Device::open_best`]), graphs optimized.
    pub fn open_best() -> Result<Vulkan, Error> {
        Ok(Vulkan {
            device: Device::open_best()?,
            options: Options::default(),
        })
    }
}

impl Backend for Vulkan {
    fn name(&self) -> &'static str {
        "vulkan"
    }

    fn load(&self, graph: &Graph) -> Result<Box<dyn Program>, Error> {
        let exe = compile_vulkan(&self.device, graph, &self.options)?;
        Ok(Box::new(CompiledProgram::<VulkanSession>::new(
            graph,
            Arc::new(exe),
        )))
    }
}

/// `value` fits input `name` of `graph`.
fn check_input(graph: &Graph, name: &str, value: &Tensor) -> Result<(), Error> {
    let input = graph
        .input(name)
        .ok_or_else(|| Error::Config(format!("graph `{}` has no input `{name}`", graph.name)))?;
    if value.ty() != input.ty {
        return Err(Error::Config(format!(
            "input `{name}` of graph `{}` is {}, given {}",
            graph.name,
            input.ty,
            value.ty()
        )));
    }
    Ok(())
}

/// The value of input `name` for one run: given in `inputs` for this run, else set for every run (`fixed`). Every
/// program looks its inputs up this way, so all name a missing one alike.
fn input_value<'a>(
    graph: &Graph,
    fixed: &'a HashMap<String, Tensor>,
    name: &str,
    inputs: &'a [(&str, &Tensor)],
) -> Result<&'a Tensor, Error> {
    match inputs.iter().find(|(n, _)| *n == name) {
        Some((_, t)) => Ok(*t),
        None => fixed.get(name).ok_or_else(|| {
            Error::Config(format!(
                "graph `{}`: no value for input `{name}`",
                graph.name
            ))
        }),
    }
}

/// Some output of `graph` replaces an input.
fn updates_in_place(graph: &Graph) -> bool {
    graph.outputs().iter().any(|o| o.aliases.is_some())
}

/// Some output of `graph` replaces input `name`.
fn is_resident(graph: &Graph, name: &str) -> bool {
    graph
        .outputs()
        .iter()
        .any(|o| o.aliases.as_deref() == Some(name))
}

/// Runs a graph on all its inputs at once, in graph order, returning every output.
type Execute = Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>, Error>>;

/// A program whose resident inputs live on the host: every run passes all inputs to `execute` and stores the aliasing
/// outputs back.
struct HostProgram {
    graph: Graph,
    execute: Execute,
    resident: HashMap<String, Tensor>,
    /// Per output: the index of the input it replaces.
    alias_targets: Vec<Option<usize>>,
}

impl HostProgram {
    /// State inputs start at zero; the others are unset.
    fn new(graph: &Graph, execute: Execute) -> HostProgram {
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
        HostProgram {
            graph: graph.clone(),
            execute,
            resident,
            alias_targets,
        }
    }
}

impl Program for HostProgram {
    fn set(&mut self, name: &str, value: Tensor) -> Result<(), Error> {
        check_input(&self.graph, name, &value)?;
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
            values.push(input_value(&self.graph, &self.resident, input.name, inputs)?.clone());
        }
        let outputs = (self.execute)(&values)?;
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

/// Native code through Cranelift ([`crate::compile`]). A graph whose outputs update inputs in place (a training step)
/// runs in a [`Session`] that keeps parameters and optimizer state resident; any other graph runs as a plain
/// [`Executable`] call.
#[derive(Clone, Debug, Default)]
pub struct Cpu {
    pub options: Options,
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn load(&self, graph: &Graph) -> Result<Box<dyn Program>, Error> {
        let exe = Arc::new(compile(graph, &self.options)?);
        Ok(Box::new(CompiledProgram::<Session>::new(graph, exe)))
    }

    fn load_in_group(
        &self,
        graph: &Graph,
        group: &Arc<dyn Collective>,
    ) -> Result<Box<dyn Program>, Error> {
        let mut exe = compile(graph, &self.options)?;
        exe.set_group(Arc::clone(group));
        Ok(Box::new(CompiledProgram::<Session>::new(
            graph,
            Arc::new(exe),
        )))
    }
}

/// What a compiled program needs of a backend's executable and its resident session: [`CompiledProgram`] is the
/// same for the CPU ([`Session`]) and Vulkan ([`VulkanSession`]); only these calls differ.
trait ResidentSession: Sized {
    type Executable;

    /// Runs `exe` once on all inputs, in graph order.
    fn run_all(exe: &Self::Executable, values: &[Tensor]) -> Result<Vec<Tensor>, Error>;

    /// A session on `exe` starting from `fixed` (resident inputs by name; `state` inputs not given start at zero).
    fn open(
        exe: &Arc<Self::Executable>,
        graph: &Graph,
        fixed: &HashMap<String, Tensor>,
    ) -> Result<Self, Error>;

    fn data_input_names(&self) -> Vec<&str>;

    /// One step on the data inputs: the outputs that replace nothing, in graph order.
    fn step(&mut self, graph: &Graph, data: &[Tensor]) -> Result<Vec<Tensor>, Error>;

    fn write(&mut self, name: &str, value: &Tensor) -> Result<(), Error>;

    /// The current value of resident input `name` (`None`: not resident here).
    fn read(&self, name: &str) -> Result<Option<Tensor>, Error>;
}

impl ResidentSession for Session {
    type Executable = Executable;

    fn run_all(exe: &Executable, values: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        Ok(exe.run(values)?)
    }

    fn open(
        exe: &Arc<Executable>,
        graph: &Graph,
        fixed: &HashMap<String, Tensor>,
    ) -> Result<Session, Error> {
        let state_defaults: HashMap<String, Tensor> = graph
            .inputs()
            .filter(|i| i.role == Role::State && !fixed.contains_key(i.name))
            .map(|i| (i.name.to_string(), Tensor::zeros(i.ty.clone())))
            .collect();
        let mut initial = fixed.clone();
        initial.extend(state_defaults);
        Ok(Session::new(Arc::clone(exe), &initial)?)
    }

    fn data_input_names(&self) -> Vec<&str> {
        Session::data_input_names(self)
    }

    fn step(&mut self, graph: &Graph, data: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        Session::step(self, data)?;
        let mut returned = Vec::new();
        for output in graph.outputs().iter().filter(|o| o.aliases.is_none()) {
            let value = self.output(&output.name, data).ok_or_else(|| {
                Error::Config(format!(
                    "graph `{}`: no output `{}`",
                    graph.name, output.name
                ))
            })?;
            returned.push(value);
        }
        Ok(returned)
    }

    fn write(&mut self, name: &str, value: &Tensor) -> Result<(), Error> {
        Ok(self.set(name, value)?)
    }

    fn read(&self, name: &str) -> Result<Option<Tensor>, Error> {
        Ok(self.get(name))
    }
}

impl ResidentSession for VulkanSession {
    type Executable = VulkanExecutable;

    fn run_all(exe: &VulkanExecutable, values: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        Ok(exe.run(values)?)
    }

    fn open(
        exe: &Arc<VulkanExecutable>,
        graph: &Graph,
        fixed: &HashMap<String, Tensor>,
    ) -> Result<VulkanSession, Error> {
        // State inputs not set start at zero (the session's rule for `state`).
        Ok(VulkanSession::new(
            Arc::clone(exe),
            &Residency::of_graph(graph),
            fixed,
        )?)
    }

    fn data_input_names(&self) -> Vec<&str> {
        VulkanSession::data_input_names(self)
    }

    fn step(&mut self, _graph: &Graph, data: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        // The session returns exactly the outputs that replace nothing, in graph order.
        Ok(VulkanSession::step(self, data)?)
    }

    fn write(&mut self, name: &str, value: &Tensor) -> Result<(), Error> {
        Ok(VulkanSession::write(self, name, value)?)
    }

    fn read(&self, name: &str) -> Result<Option<Tensor>, Error> {
        Ok(Some(VulkanSession::read(self, name)?))
    }
}

/// A compiled graph: a graph whose outputs update inputs in place runs in a resident session `S` (created on its
/// first run from the inputs set so far); any other graph is a plain run of the executable.
struct CompiledProgram<S: ResidentSession> {
    graph: Graph,
    exe: Arc<S::Executable>,
    /// Inputs set for every run (and, before the session exists, the starting values of resident ones).
    fixed: HashMap<String, Tensor>,
    session: Option<S>,
}

impl<S: ResidentSession> CompiledProgram<S> {
    fn new(graph: &Graph, exe: Arc<S::Executable>) -> CompiledProgram<S> {
        CompiledProgram {
            graph: graph.clone(),
            exe,
            fixed: HashMap::new(),
            session: None,
        }
    }

    fn value<'a>(&'a self, name: &str, inputs: &'a [(&str, &Tensor)]) -> Result<&'a Tensor, Error> {
        input_value(&self.graph, &self.fixed, name, inputs)
    }
}

impl<S: ResidentSession> Program for CompiledProgram<S> {
    fn set(&mut self, name: &str, value: Tensor) -> Result<(), Error> {
        check_input(&self.graph, name, &value)?;
        let resident = is_resident(&self.graph, name);
        if let (Some(session), true) = (&mut self.session, resident) {
            session.write(name, &value)?;
        } else {
            self.fixed.insert(name.to_string(), value);
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Tensor, Error> {
        if let (Some(session), true) = (&self.session, is_resident(&self.graph, name)) {
            if let Some(value) = session.read(name)? {
                return Ok(value);
            }
        }
        self.fixed.get(name).cloned().ok_or_else(|| {
            Error::Config(format!(
                "graph `{}` has no resident input `{name}`",
                self.graph.name
            ))
        })
    }

    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>, Error> {
        if !updates_in_place(&self.graph) {
            let values = self
                .graph
                .inputs()
                .map(|i| self.value(i.name, inputs).cloned())
                .collect::<Result<Vec<_>, _>>()?;
            return S::run_all(&self.exe, &values);
        }
        if self.session.is_none() {
            self.session = Some(S::open(&self.exe, &self.graph, &self.fixed)?);
        }
        let session = self.session.as_ref().expect("created above");
        let data = session
            .data_input_names()
            .into_iter()
            .map(|name| self.value(name, inputs).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        let session = self.session.as_mut().expect("created above");
        session.step(&self.graph, &data)
    }
}
