//! A training session: parameters and optimizer state stay resident between steps and are updated in place.
//!
//! The inputs that some output replaces (`new.w` aliasing `w`) are *resident*: the session owns their storage. Each
//! [`Session::step`] feeds the other inputs (the data), runs the program, and leaves the resident storage holding
//! the updated values: outputs the memory plan writes in place need nothing more, the others are copied over their
//! input after the run. No buffer is allocated per step: the arena and the output buffers are the session's
//! (a step allocates only its small table of buffer pointers, and on the thread pool the job that shares it).

use crate::buffer::{tensor_ptr, HostBuffer};
use crate::executable::{Executable, Place};
use crate::step::Table;
use crate::RunError;
use kiln_ir::{Role, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Session {
    exe: Arc<Executable>,
    /// Per input: its storage if it is resident.
    resident: Vec<Option<HostBuffer>>,
    /// The inputs fed each step, in input order.
    data_inputs: Vec<usize>,
    /// Per buffer: the session's own storage for outputs that aren't written in place.
    own: Vec<Option<HostBuffer>>,
    arena: HostBuffer,
    /// Output index of the loss.
    loss: Option<usize>,
}

impl Session {
    /// A session on `exe` starting from `initial` values of the resident inputs (by name). A missing resident input
    /// of role `state` starts at zero, as optimizer state does; any other missing one is an error.
    pub fn new(
        exe: impl Into<Arc<Executable>>,
        initial: &HashMap<String, Tensor>,
    ) -> Result<Session, RunError> {
        let exe = exe.into();
        let layout = exe.layout();
        let mut resident: Vec<Option<HostBuffer>> = vec![None; layout.inputs.len()];
        for output in &layout.outputs {
            let Some(i) = output.aliases else { continue };
            let spec = &layout.inputs[i];
            let value = match initial.get(&spec.name) {
                Some(t) if t.ty() == &spec.ty => HostBuffer::from_tensor(t),
                Some(t) => {
                    return Err(RunError::Input {
                        name: spec.name.clone(),
                        expected: spec.ty.to_string(),
                        got: t.ty().to_string(),
                    })
                }
                None if spec.role == Role::State => HostBuffer::zeroed(spec.ty.size_bytes()),
                None => return Err(RunError::MissingInput(spec.name.clone())),
            };
            resident[i] = Some(value);
        }
        let data_inputs = (0..layout.inputs.len())
            .filter(|&i| resident[i].is_none())
            .collect();
        let own = layout
            .buffers
            .iter()
            .map(|b| match b.place {
                Place::Output | Place::CopyBack { .. } => {
                    Some(HostBuffer::zeroed(b.ty.size_bytes()))
                }
                _ => None,
            })
            .collect();
        let loss = layout.outputs.iter().position(|o| o.name == "loss");
        let arena = exe.take_arena();
        Ok(Session {
            exe,
            resident,
            data_inputs,
            own,
            arena,
            loss,
        })
    }

    /// The names of the inputs [`Session::step`] takes, in order.
    pub fn data_input_names(&self) -> Vec<&str> {
        let inputs = &self.exe.layout().inputs;
        self.data_inputs
            .iter()
            .map(|&i| inputs[i].name.as_str())
            .collect()
    }

    /// Runs one step on `data` (the non-resident inputs, in input order) and returns the `loss` output (NaN if the
    /// program has none) as it was before the update.
    pub fn step(&mut self, data: &[Tensor]) -> Result<f64, RunError> {
        let exe = Arc::clone(&self.exe);
        let layout = exe.layout();
        exe.check_inputs(self.data_inputs.iter().map(|&i| &layout.inputs[i]), data)?;
        let mut slots = vec![std::ptr::null_mut(); layout.buffers.len() + 1];
        let mut fed = data.iter();
        for &i in &self.data_inputs {
            let tensor = fed.next().expect("checked: one tensor per data input");
            slots[layout.inputs[i].buffer] = tensor_ptr(tensor);
        }
        for (i, storage) in self.resident.iter_mut().enumerate() {
            if let Some(storage) = storage {
                slots[layout.inputs[i].buffer] = storage.as_mut_ptr();
            }
        }
        let arena_ptr = self.arena.as_mut_ptr();
        for (b, spec) in layout.buffers.iter().enumerate() {
            match spec.place {
                Place::Input(_) => {}
                Place::Constant(c) => slots[b] = exe.constant_ptr(c),
                Place::Arena { offset } => slots[b] = arena_ptr.wrapping_add(offset),
                Place::Output | Place::CopyBack { .. } => {
                    slots[b] = self.own[b]
                        .as_mut()
                        .expect("outputs have storage")
                        .as_mut_ptr()
                }
                Place::InPlace { input } => slots[b] = slots[layout.inputs[input].buffer],
            }
        }
        slots[layout.scratch_slot()] = arena_ptr.wrapping_add(layout.scratch_offset);
        exe.execute(Table { slots })?;

        let loss = self.loss.map_or(f64::NAN, |o| {
            self.output_tensor(data, o)
                .scalar_value()
                .unwrap_or(f64::NAN)
        });
        // Read every replacement before writing any, so that `new.a = b, new.b = a` swaps.
        let updates: Vec<(usize, Tensor)> = layout
            .outputs
            .iter()
            .enumerate()
            .filter_map(|(o, spec)| {
                let input = spec.aliases?;
                let in_place = layout.buffers[spec.buffer].place == Place::InPlace { input };
                (!in_place).then(|| (input, self.output_tensor(data, o)))
            })
            .collect();
        for (input, value) in updates {
            if let Some(storage) = &mut self.resident[input] {
                storage.write_tensor(&value);
            }
        }
        Ok(loss)
    }

    /// The current value of a resident input (a parameter or optimizer state), by name.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        let inputs = &self.exe.layout().inputs;
        let i = inputs.iter().position(|s| s.name == name)?;
        let storage = self.resident[i].as_ref()?;
        Some(storage.to_tensor(&inputs[i].ty))
    }

    /// Replaces the value of a resident input.
    pub fn set(&mut self, name: &str, value: &Tensor) -> Result<(), RunError> {
        let inputs = &self.exe.layout().inputs;
        let i = inputs
            .iter()
            .position(|s| s.name == name)
            .filter(|&i| self.resident[i].is_some())
            .ok_or_else(|| RunError::MissingInput(name.to_string()))?;
        if value.ty() != &inputs[i].ty {
            return Err(RunError::Input {
                name: name.to_string(),
                expected: inputs[i].ty.to_string(),
                got: value.ty().to_string(),
            });
        }
        if let Some(storage) = &mut self.resident[i] {
            storage.write_tensor(value);
        }
        Ok(())
    }

    /// The value of output `o` after the last step.
    fn output_tensor(&self, data: &[Tensor], o: usize) -> Tensor {
        let layout = self.exe.layout();
        let buffer = layout.outputs[o].buffer;
        let spec = &layout.buffers[buffer];
        match spec.place {
            Place::Input(i) => match &self.resident[i] {
                Some(storage) => storage.to_tensor(&spec.ty),
                None => {
                    let k = self.data_inputs.iter().position(|&d| d == i);
                    data[k.expect("a non-resident input is fed")].clone()
                }
            },
            Place::Constant(c) => layout.constants[c].clone(),
            Place::InPlace { input } => self.resident[input]
                .as_ref()
                .expect("an in-place output's input is resident")
                .to_tensor(&spec.ty),
            Place::Output | Place::CopyBack { .. } => self.own[buffer]
                .as_ref()
                .expect("outputs have storage")
                .to_tensor(&spec.ty),
            Place::Arena { .. } => unreachable!("outputs are never temporaries"),
        }
    }

    /// The value of the output `name` after the last step.
    pub fn output(&self, name: &str, data: &[Tensor]) -> Option<Tensor> {
        let o = self
            .exe
            .layout()
            .outputs
            .iter()
            .position(|s| s.name == name)?;
        Some(self.output_tensor(data, o))
    }

    pub fn executable(&self) -> &Executable {
        &self.exe
    }
}
