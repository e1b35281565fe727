//! A compiled program: native kernels, the layout of their buffers, and the input/output signature.
//!
//! Kernels address buffers through a **buffer table**: slot `b` holds the base pointer of buffer `b` of the program,
//! and one extra slot past the last buffer (`Layout::scratch_slot`) the matmul scratch, where a matmul kernel's
//! product lands before its epilogue reads it. A run fills the table from the caller's tensors (inputs are read in
//! place, never written), the program's constants, a per-run arena (temporaries and scratch) and fresh output
//! buffers, then runs the kernels in order on the executable's thread pool ([`crate::pool`]: `threads - 1` workers,
//! started on the first run that splits a kernel, parked between runs, joined when the executable is dropped).
//!
//! Running an [`Executable`] from several threads at once is safe: each run takes its own arena (from a pool of
//! arenas, so steady-state runs don't allocate one) and its own outputs; constants and code are shared read-only. One
//! run at a time uses the workers; a run that finds them busy runs on its own thread alone, with the same results.
//!
//! The kernels themselves ([`Step`]) and the buffer table are in [`crate::step`], which this module and
//! [`crate::pool`] both use; this module uses the pool, never the other way round.

use crate::buffer::{tensor_ptr, HostBuffer};
use crate::gemm::Gemm;
use crate::pool::{self, Pool, Split};
use crate::step::{Step, Table};
use crate::RunError;
use kiln_ir::{Collective, CollectiveBuffer, DType, Role, SingleProcess, Tensor, TensorType};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

/// Where one buffer of the program lives during a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Place {
    /// The caller's tensor for input `i` (read in place).
    Input(usize),
    /// Constant `c` of [`Layout::constants`].
    Constant(usize),
    /// `[offset, offset + size)` of the per-run arena.
    Arena { offset: usize },
    /// Its own allocation, handed back.
    Output,
    /// An output that replaces input `i`, written directly into that input's storage.
    InPlace { input: usize },
    /// An output that replaces input `i`, written to its own allocation (a session copies it over the input after
    /// each step).
    CopyBack { input: usize },
}

#[derive(Clone, PartialEq, Debug)]
pub struct BufferSpec {
    pub name: String,
    pub ty: TensorType,
    pub place: Place,
}

#[derive(Clone, PartialEq, Debug)]
pub struct InputSpec {
    pub name: String,
    pub ty: TensorType,
    pub role: Role,
    pub buffer: usize,
}

#[derive(Clone, PartialEq, Debug)]
pub struct OutputSpec {
    pub name: String,
    pub buffer: usize,
    /// The input this output replaces after each training step.
    pub aliases: Option<usize>,
}

/// Every buffer of a program and where it lives, and the program's signature.
#[derive(Clone, PartialEq, Debug)]
pub struct Layout {
    pub name: String,
    pub buffers: Vec<BufferSpec>,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
    /// The values of the constant buffers.
    pub constants: Vec<Tensor>,
    /// Bytes of the per-run arena (temporaries and, at `scratch_offset`, the matmul scratch).
    pub arena_bytes: usize,
    pub scratch_offset: usize,
}

impl Layout {
    /// The table slot of the matmul scratch.
    pub fn scratch_slot(&self) -> usize {
        self.buffers.len()
    }
}

/// A compiled program, ready to run. `Send + Sync`: share it (e.g. in an `Arc`) and run it from any thread.
pub struct Executable {
    layout: Layout,
    steps: Arc<[Step]>,
    /// Owns the native code of the steps; dropped (and the code freed) with the executable.
    _code: Box<dyn Send + Sync>,
    arenas: Mutex<Vec<HostBuffer>>,
    threads: usize,
    min_chunk: u64,
    epilogue_in_tiles: bool,
    /// The workers, once a run has needed them; locked by the run that uses them.
    pool: Mutex<Option<Pool>>,
    compile_time: Duration,
    /// The processes `all_reduce` steps reduce across ([`SingleProcess`] until [`Executable::set_group`]).
    group: Arc<dyn Collective>,
}

impl std::fmt::Debug for Executable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executable")
            .field("name", &self.layout.name)
            .field("kernels", &self.steps.len())
            .field("threads", &self.threads)
            .finish()
    }
}

impl Executable {
    /// Assembles an executable.
    ///
    /// # Safety
    /// `code` must keep every `KernelFn` of `steps` callable for as long as it lives, and each of them must access
    /// only elements of the table's buffers that exist under `layout` (element indices below each buffer's element
    /// count, of its dtype; the scratch slot below `arena_bytes - scratch_offset` bytes), must not write
    /// inputs or constants (except through an `InPlace` output, reading each element before writing it), and must
    /// produce results for its points `[start, end)` that do not depend on other points of the same kernel.
    /// The matmul views are checked here.
    pub unsafe fn new(
        layout: Layout,
        steps: Vec<Step>,
        code: Box<dyn Send + Sync>,
        threads: usize,
        compile_time: Duration,
    ) -> Result<Executable, RunError> {
        for step in &steps {
            match step {
                Step::Matmul { name, gemm, .. } => check_gemm(&layout, name, gemm)?,
                Step::Collective {
                    name,
                    slot,
                    dtype,
                    len,
                    ..
                } => check_collective(&layout, name, *slot, *dtype, *len)?,
                Step::Loop { .. } => {}
            }
        }
        Ok(Executable {
            layout,
            steps: steps.into(),
            _code: code,
            arenas: Mutex::new(Vec::new()),
            threads: threads.max(1),
            min_chunk: pool::MIN_CHUNK,
            epilogue_in_tiles: false,
            pool: Mutex::new(None),
            compile_time,
            group: Arc::new(SingleProcess),
        })
    }

    /// Makes this executable one rank of `group`: its `all_reduce` steps reduce across the group's processes, each
    /// of which must run the same program.
    pub fn set_group(&mut self, group: Arc<dyn Collective>) {
        self.group = group;
    }

    /// The process group of the `all_reduce` steps.
    pub fn group(&self) -> &Arc<dyn Collective> {
        &self.group
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn name(&self) -> &str {
        &self.layout.name
    }

    /// The kernels, in execution order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// How long compiling took (graph passes, fusion, code generation).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The same code with another thread count (the old workers are joined; new ones start on the next run that
    /// needs them).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
        *self.pool.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether a matmul's epilogue runs on each tile of the product right after the tile's GEMM, while it is in
    /// cache (`true`), or in one pass over all points after the whole product (`false`, the default). Results don't
    /// depend on it; the benches measure both. On the quiet 2-core VM the pass was 2–7 % faster on W4 in five
    /// in-process comparisons, and within ±6 % either way on W5 (the tiles call the epilogue once per tile row, on
    /// short ranges) — so it is the default.
    pub fn set_epilogue_in_tiles(&mut self, in_tiles: bool) {
        self.epilogue_in_tiles = in_tiles;
    }

    pub fn epilogue_in_tiles(&self) -> bool {
        self.epilogue_in_tiles
    }

    /// How a run splits the steps.
    fn split(&self) -> Split {
        Split {
            threads: self.threads,
            min_chunk: self.min_chunk,
            epilogue_in_tiles: self.epilogue_in_tiles,
        }
    }

    /// The least work a thread takes at once, in the units of a step's per-point `cost` (default
    /// [`pool::MIN_CHUNK`]; a chunk is at least one point). Results don't depend on it; tests set it to 1 so that
    /// chunks of single points start anywhere in a row.
    pub fn set_min_chunk(&mut self, points: u64) {
        self.min_chunk = points.max(1);
    }

    /// Checks `inputs` against the signature: count, then each input's dtype and shape, naming the input.
    pub(crate) fn check_inputs<'t>(
        &self,
        specs: impl ExactSizeIterator<Item = &'t InputSpec>,
        inputs: &[Tensor],
    ) -> Result<(), RunError> {
        if specs.len() != inputs.len() {
            return Err(RunError::InputCount {
                program: self.layout.name.clone(),
                expected: specs.len(),
                got: inputs.len(),
            });
        }
        for (spec, tensor) in specs.zip(inputs) {
            if tensor.ty() != &spec.ty {
                return Err(RunError::Input {
                    name: spec.name.clone(),
                    expected: spec.ty.to_string(),
                    got: tensor.ty().to_string(),
                });
            }
        }
        Ok(())
    }

    /// Runs the program on `inputs` (in input order) and returns its outputs (in output order).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
        self.run_with(inputs, |table| self.execute(table))
    }

    /// Runs the program like [`Executable::run`], one kernel at a time, and returns the outputs and each kernel's
    /// wall time, in step order (for `kiln bench`). Each kernel still splits across the threads; a kernel that
    /// follows an idle gap may include waking them.
    pub fn run_profiled(
        &self,
        inputs: &[Tensor],
    ) -> Result<(Vec<Tensor>, Vec<Duration>), RunError> {
        let mut times = Vec::with_capacity(self.steps.len());
        let outputs = self.run_with(inputs, |table| {
            for s in 0..self.steps.len() {
                let started = Instant::now();
                self.execute_range(s..s + 1, table.clone())?;
                times.push(started.elapsed());
            }
            Ok(())
        })?;
        Ok((outputs, times))
    }

    /// Fills a run's buffer table from `inputs`, runs `execute` on it and collects the outputs.
    fn run_with(
        &self,
        inputs: &[Tensor],
        execute: impl FnOnce(Table) -> Result<(), RunError>,
    ) -> Result<Vec<Tensor>, RunError> {
        self.check_inputs(self.layout.inputs.iter(), inputs)?;
        let mut arena = self.take_arena();
        let mut own: Vec<Option<HostBuffer>> = vec![None; self.layout.buffers.len()];
        for (b, spec) in self.layout.buffers.iter().enumerate() {
            own[b] = match spec.place {
                Place::Output | Place::CopyBack { .. } => {
                    Some(HostBuffer::zeroed(spec.ty.size_bytes()))
                }
                // A plain run never changes its inputs: the in-place output starts as a copy of the input.
                Place::InPlace { input } => Some(HostBuffer::from_tensor(&inputs[input])),
                _ => None,
            };
        }
        let mut slots = vec![std::ptr::null_mut(); self.layout.buffers.len() + 1];
        let arena_ptr = arena.as_mut_ptr();
        for (b, spec) in self.layout.buffers.iter().enumerate() {
            slots[b] = match (&mut own[b], spec.place) {
                (Some(buffer), _) => buffer.as_mut_ptr(),
                (None, Place::Input(i)) => tensor_ptr(&inputs[i]),
                (None, Place::Constant(c)) => self.constant_ptr(c),
                (None, Place::Arena { offset }) => arena_ptr.wrapping_add(offset),
                (None, _) => unreachable!("every output place has its own buffer"),
            };
        }
        // An input replaced in place is read from the copy its output starts as.
        for (b, spec) in self.layout.buffers.iter().enumerate() {
            if let Place::InPlace { input } = spec.place {
                slots[self.layout.inputs[input].buffer] = slots[b];
            }
        }
        slots[self.layout.scratch_slot()] = arena_ptr.wrapping_add(self.layout.scratch_offset);
        let executed = execute(Table { slots });
        if let Err(e) = executed {
            self.return_arena(arena);
            return Err(e);
        }
        let outputs = self
            .layout
            .outputs
            .iter()
            .map(|o| {
                let spec = &self.layout.buffers[o.buffer];
                match (&own[o.buffer], spec.place) {
                    (Some(buffer), _) => buffer.to_tensor(&spec.ty),
                    (None, Place::Input(i)) => inputs[i].clone(),
                    (None, Place::Constant(c)) => self.layout.constants[c].clone(),
                    (None, _) => unreachable!("outputs are never temporaries"),
                }
            })
            .collect();
        self.return_arena(arena);
        Ok(outputs)
    }

    pub(crate) fn constant_ptr(&self, c: usize) -> *mut u8 {
        // Constants are never written (the contract of `new`); the pointer is only read through.
        tensor_ptr(&self.layout.constants[c])
    }

    pub(crate) fn take_arena(&self) -> HostBuffer {
        let pooled = self.arenas.lock().map(|mut a| a.pop()).unwrap_or(None);
        pooled.unwrap_or_else(|| HostBuffer::zeroed(self.layout.arena_bytes))
    }

    pub(crate) fn return_arena(&self, arena: HostBuffer) {
        if let Ok(mut arenas) = self.arenas.lock() {
            arenas.push(arena);
        }
    }

    /// Runs every step on the buffers of `table`.
    pub(crate) fn execute(&self, table: Table) -> Result<(), RunError> {
        self.execute_range(0..self.steps.len(), table)
    }

    /// Runs `steps[range]` on the buffers of `table`, the kernels between collectives as one batch each, and each
    /// `all_reduce` on this thread once its copy is complete (SPEC §3.12).
    fn execute_range(&self, range: std::ops::Range<usize>, table: Table) -> Result<(), RunError> {
        let mut start = range.start;
        for s in range.clone() {
            let Step::Collective {
                name,
                op,
                slot,
                dtype,
                len,
                ..
            } = &self.steps[s]
            else {
                continue;
            };
            self.execute_kernels(start..s + 1, table.clone());
            start = s + 1;
            let ptr = table.slots[*slot];
            let buffer = match dtype {
                // SAFETY: `slot` is the collective kernel's result buffer of `len` elements of `dtype` under the
                // layout (`Executable::new` checked both), the run's table points it at a live, aligned buffer, and
                // no kernel runs while this thread holds the slice: the copy above is complete and the next step
                // starts after the reduction.
                DType::F32 => CollectiveBuffer::F32(unsafe {
                    std::slice::from_raw_parts_mut(ptr.cast::<f32>(), *len)
                }),
                // SAFETY: as for f32.
                DType::F64 => CollectiveBuffer::F64(unsafe {
                    std::slice::from_raw_parts_mut(ptr.cast::<f64>(), *len)
                }),
                DType::I32 | DType::Bool => {
                    return Err(RunError::BadKernel {
                        kernel: name.clone(),
                        problem: format!("all_reduce of {dtype}"),
                    })
                }
            };
            self.group.all_reduce(buffer, *op, name)?;
        }
        self.execute_kernels(start..range.end, table);
        Ok(())
    }

    /// Runs `steps[range]` (no reductions across processes) on the buffers of `table`: on the pool when a step is
    /// worth splitting and the pool is free, else on this thread alone (same pieces, same results).
    fn execute_kernels(&self, range: std::ops::Range<usize>, table: Table) {
        if range.is_empty() {
            return;
        }
        let split = self.split();
        if split.threads > 1 && self.steps[range.clone()].iter().any(|s| split.shared(s)) {
            let guard = match self.pool.try_lock() {
                Ok(guard) => Some(guard),
                // A run that panicked left no job behind (the pool clears it before unwinding).
                Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(mut guard) = guard {
                let pool = guard.get_or_insert_with(|| Pool::new(split.threads));
                return pool.run(&self.steps, range, table, split);
            }
        }
        pool::run_alone(&self.steps, range, &table, split);
    }
}

/// An all-reduce's buffer must be a float buffer of exactly `len` elements written by its kernel (not an input or
/// constant, which kernels never write).
fn check_collective(
    layout: &Layout,
    name: &str,
    slot: usize,
    dtype: DType,
    len: usize,
) -> Result<(), RunError> {
    let ok = layout.buffers.get(slot).is_some_and(|b| {
        b.ty.dtype == dtype
            && dtype.is_float()
            && b.ty.numel() == len
            && !matches!(b.place, Place::Input(_) | Place::Constant(_))
    });
    if ok {
        Ok(())
    } else {
        Err(RunError::BadKernel {
            kernel: name.to_string(),
            problem: format!(
                "all_reduce's result is not a written {dtype} buffer of {len} elements"
            ),
        })
    }
}

/// Both operands of a matmul must lie inside their buffers, and the result inside its buffer or the scratch.
fn check_gemm(layout: &Layout, name: &str, gemm: &Gemm) -> Result<(), RunError> {
    let elems = |slot: usize| -> usize {
        if slot == layout.scratch_slot() {
            (layout.arena_bytes - layout.scratch_offset) / gemm.dtype.size_bytes()
        } else {
            layout.buffers[slot].ty.numel()
        }
    };
    let bad = |problem: String| RunError::BadKernel {
        kernel: name.to_string(),
        problem,
    };
    for (what, view, rows, cols) in [
        ("a", &gemm.a, gemm.m, gemm.k),
        ("b", &gemm.b, gemm.k, gemm.n),
    ] {
        if view.buffer >= layout.buffers.len() {
            return Err(bad(format!("operand {what} has no buffer")));
        }
        if let Some(max) = view.max_index(&gemm.batch, rows, cols) {
            if max >= elems(view.buffer) {
                return Err(bad(format!(
                    "operand {what} reaches element {max}, past its buffer"
                )));
            }
        }
    }
    let result = gemm.batch_count() * gemm.m * gemm.n;
    if gemm.out > layout.scratch_slot() || result > elems(gemm.out) {
        return Err(bad(format!(
            "the {result}-element product does not fit its destination"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `y[i] = 2·x[i]` for the points `[start, end)`; slot 0 holds `x`, slot 1 `y` (both f32).
    unsafe extern "C" fn double(table: *const *mut u8, start: u64, end: u64) {
        // SAFETY: the test's layout puts four f32 in each of slots 0 and 1, and runs points below 4.
        unsafe {
            let x = *table as *const f32;
            let y = *table.add(1) as *mut f32;
            for i in start as usize..end as usize {
                *y.add(i) = 2.0 * *x.add(i);
            }
        }
    }

    static THREADS_SEEN: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());

    /// Records the thread that runs each point and takes a while about it. `unsafe` only to be a `KernelFn`: it
    /// never reads the table.
    unsafe extern "C" fn record_thread(_: *const *mut u8, start: u64, end: u64) {
        for _ in start..end {
            THREADS_SEEN
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A split kernel runs on the caller and on the pool's worker.
    #[test]
    fn the_caller_and_the_worker_both_take_part() {
        let layout = Layout {
            name: "record".into(),
            buffers: vec![],
            inputs: vec![],
            outputs: vec![],
            constants: vec![],
            arena_bytes: 0,
            scratch_offset: 0,
        };
        let step = Step::Loop {
            name: "record".into(),
            points: 32,
            cost: 1,
            entry: record_thread,
        };
        // SAFETY: `record_thread` touches no buffer.
        let mut exe =
            unsafe { Executable::new(layout, vec![step], Box::new(()), 2, Duration::ZERO) }
                .unwrap();
        exe.set_min_chunk(1);
        exe.run(&[]).unwrap();
        let seen = THREADS_SEEN.lock().unwrap().clone();
        assert_eq!(seen.len(), 32, "every point ran once");
        let caller = std::thread::current().id();
        assert!(seen.contains(&caller), "the caller took part");
        assert!(seen.iter().any(|&t| t != caller), "a worker took part");
    }

    #[test]
    fn a_profiled_run_times_each_kernel_and_computes_the_same() {
        let ty = TensorType::f32(&[4]);
        let buffer = |name: &str, place| BufferSpec {
            name: name.into(),
            ty: ty.clone(),
            place,
        };
        let layout = Layout {
            name: "double".into(),
            buffers: vec![buffer("x", Place::Input(0)), buffer("y", Place::Output)],
            inputs: vec![InputSpec {
                name: "x".into(),
                ty: ty.clone(),
                role: Role::Data,
                buffer: 0,
            }],
            outputs: vec![OutputSpec {
                name: "y".into(),
                buffer: 1,
                aliases: None,
            }],
            constants: vec![],
            arena_bytes: 0,
            scratch_offset: 0,
        };
        let step = |name: &str| Step::Loop {
            name: name.into(),
            points: 4,
            cost: 1,
            entry: double,
        };
        // SAFETY: `double` is plain Rust code and touches elements 0..4 of slots 0 (read) and 1 (written) only.
        let mut exe = unsafe {
            Executable::new(
                layout,
                vec![step("first"), step("again")],
                Box::new(()),
                2,
                Duration::ZERO,
            )
        }
        .unwrap();
        // One-point chunks: both kernels are split between the leader and the worker.
        exe.set_min_chunk(1);
        let x = [Tensor::from_f32(&[4], vec![1.0, 2.0, 3.0, 4.0]).unwrap()];
        for _ in 0..100 {
            assert_eq!(
                exe.run(&x).unwrap()[0].as_f32().unwrap(),
                &[2.0, 4.0, 6.0, 8.0]
            );
        }
        let (outputs, times) = exe.run_profiled(&x).unwrap();
        assert_eq!(outputs, exe.run(&x).unwrap());
        assert_eq!(outputs[0].as_f32().unwrap(), &[2.0, 4.0, 6.0, 8.0]);
        assert_eq!(times.len(), 2, "one time per kernel");
    }
}
