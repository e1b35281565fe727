//! The embedding API's compiler entry: a graph in, an [`Executable`] out.
//!
//! `compile` runs the whole pipeline — graph passes (unless turned off), fusion, memory planning, native code
//! generation for every kernel — and reports how long it took ([`Executable::compile_time`]). A [`CompileCache`]
//! keeps executables by a hash of the graph's text and the options, so compiling the same graph twice costs a hash.
//! [`compile_vulkan`] shares the front half ([`kernel_program`]: passes and fusion) and emits SPIR-V instead.

use crate::backend::cpu::assemble::assemble;
use crate::backend::spirv::{self, Device, VulkanExecutable};
use crate::backend::BackendError;
use crate::kernel::KernelProgram;
use kiln_ir::{Graph, IrError, Role};
use kiln_runtime::{Executable, RunError};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The runtime's view of a compiled program's kernels ([`Executable::steps`]) and of how a matmul's result is cut
/// into tiles, for callers that inspect an executable.
pub use kiln_runtime::{Step, Tiling};

/// What can go wrong compiling or running a graph.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Run(#[from] RunError),
    /// The SPIR-V backend or the Vulkan runtime refused the program.
    #[error(transparent)]
    Vulkan(#[from] spirv::Error),
}

/// Where compiled code runs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Target {
    /// Native code for the host through Cranelift.
    #[default]
    Cpu,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Options {
    /// Run the graph passes (simplify, constant folding, CSE, DCE) before fusion.
    pub optimize: bool,
    /// Threads a run splits each kernel across (at least 1): the calling thread and `threads - 1` workers that the
    /// executable starts on its first split run and joins when dropped. Nothing else starts threads (each GEMM tile
    /// is a single-threaded call), and results are bit-identical for any value.
    pub threads: usize,
    pub target: Target,
    /// Fuse ops into kernels (the cost model of [`crate::fusion`]). Off, every op is a kernel of its own: the
    /// baseline the benchmarks measure fusion against.
    pub fuse: bool,
}

impl Default for Options {
    /// Optimized and fused, on every available core, for the CPU.
    fn default() -> Options {
        Options {
            optimize: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            target: Target::Cpu,
            fuse: true,
        }
    }
}

/// The kernel program every backend compiles: the graph passes (when `optimize`), then fusion (or one kernel per
/// primitive when `!fuse`, the benches' baseline). The passes keep the
/// graph's inputs and outputs, so the program takes and returns what `graph` does.
pub fn kernel_program(graph: &Graph, options: &Options) -> Result<KernelProgram, Error> {
    kernel_program_within(graph, options, None)
}

/// [`kernel_program`] with fusion's buffer cap (rule 7 of [`crate::fusion`]): no fused kernel binds more than
/// `max_buffers` distinct buffers. `None`: no cap (the CPU).
fn kernel_program_within(
    graph: &Graph,
    options: &Options,
    max_buffers: Option<usize>,
) -> Result<KernelProgram, Error> {
    let optimized;
    let graph = if options.optimize {
        optimized = crate::passes::optimize(graph)?;
        &optimized
    } else {
        graph
    };
    Ok(match (options.fuse, max_buffers) {
        (true, Some(cap)) => crate::fusion::lower_with_buffer_cap(graph, cap)?,
        (true, None) => crate::fusion::lower(graph)?,
        // One kernel per primitive binds at most 4 buffers, except a wide concat (the backend rejects it).
        (false, _) => crate::fusion::lower_unfused(graph)?,
    })
}

/// The kernel program a Vulkan device with these shader options runs: [`kernel_program`], with fusion cutting any
/// kernel that would bind more storage buffers than `spirv_options.limits` allow.
pub fn vulkan_program(
    graph: &Graph,
    options: &Options,
    spirv_options: &spirv::Options,
) -> Result<KernelProgram, Error> {
    let cap = spirv_options.limits.max_storage_buffers as usize;
    kernel_program_within(graph, options, Some(cap))
}

/// Compiles `graph` for a Vulkan device: the same passes and fusion as [`compile`] (fusion kept within the device's
/// binding limit, [`vulkan_program`]), then one SPIR-V compute shader per kernel ([`crate::backend::spirv`]), with
/// the options and limits of the device ([`spirv::Options::for_device`]). `options.threads` and `options.target` do
/// not apply.
pub fn compile_vulkan(
    device: &Device,
    graph: &Graph,
    options: &Options,
) -> Result<VulkanExecutable, Error> {
    compile_vulkan_with(
        device,
        graph,
        options,
        &spirv::Options::for_device(device.info()),
    )
}

/// [`compile_vulkan`] with explicit shader options, e.g. limits lowered below the device's to test the small-limit
/// paths (anything the device itself lacks makes pipeline creation or the run fail).
pub fn compile_vulkan_with(
    device: &Device,
    graph: &Graph,
    options: &Options,
    spirv_options: &spirv::Options,
) -> Result<VulkanExecutable, Error> {
    let program = vulkan_program(graph, options, spirv_options)?;
    Ok(spirv::compile_with(device, &program, spirv_options)?)
}

/// Compiles `graph` to native code.
pub fn compile(graph: &Graph, options: &Options) -> Result<Executable, Error> {
    let started = Instant::now();
    let program = kernel_program(graph, options)?;
    let plan = crate::memory::plan(&program);
    let roles: Vec<Role> = graph.inputs().map(|i| i.role).collect();
    match options.target {
        Target::Cpu => Ok(assemble(&program, &plan, &roles, options.threads, started)?),
    }
}

/// Compiled executables by graph and options.
///
/// Entries are found by [`cache_key`] and then confirmed by comparing the graph's full text and the options, so a
/// 64-bit hash collision costs a compile, never a wrong executable. Two threads asking for the same new graph at once
/// may both compile it; the first to finish is kept and both get that one.
#[derive(Default)]
pub struct CompileCache {
    entries: Mutex<HashMap<u64, Vec<CacheEntry>>>,
}

struct CacheEntry {
    text: String,
    options: Options,
    executable: Arc<Executable>,
}

impl CompileCache {
    pub fn new() -> CompileCache {
        CompileCache::default()
    }

    /// The executable of `graph` under `options`, compiled on first use.
    pub fn get_or_compile(
        &self,
        graph: &Graph,
        options: &Options,
    ) -> Result<Arc<Executable>, Error> {
        let text = kiln_ir::text::print(graph);
        let key = key_of(&text, options);
        if let Some(exe) = Self::find(&self.lock(), key, &text, options) {
            return Ok(exe);
        }
        // Compile without holding the lock, so other graphs are served meanwhile.
        let exe = Arc::new(compile(graph, options)?);
        let mut entries = self.lock();
        if let Some(existing) = Self::find(&entries, key, &text, options) {
            return Ok(existing);
        }
        entries.entry(key).or_default().push(CacheEntry {
            text,
            options: options.clone(),
            executable: Arc::clone(&exe),
        });
        Ok(exe)
    }

    fn find(
        entries: &HashMap<u64, Vec<CacheEntry>>,
        key: u64,
        text: &str,
        options: &Options,
    ) -> Option<Arc<Executable>> {
        entries
            .get(&key)?
            .iter()
            .find(|e| e.text == text && e.options == *options)
            .map(|e| Arc::clone(&e.executable))
    }

    /// How many executables the cache holds.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every cached executable (those still held elsewhere live on until their last `Arc` goes).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<CacheEntry>>> {
        // A panic while holding the lock leaves the map intact (inserts are single calls).
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A hash of the graph's printed text (which determines it) and the options.
pub fn cache_key(graph: &Graph, options: &Options) -> u64 {
    key_of(&kiln_ir::text::print(graph), options)
}

fn key_of(text: &str, options: &Options) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    options.hash(&mut h);
    h.finish()
}
