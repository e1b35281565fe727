//! The embedding API's compiler entry: a graph in, an [`Executable`] out.
//!
//! `compile` runs the whole pipeline — graph passes (unless turned off), fusion, memory planning, native code
//! generation for every kernel — and reports how long it took ([`Executable::compile_time`]). A [`CompileCache`]
//! keeps executables by a hash of the graph's text and the options, so compiling the same graph twice costs a hash.
//! [`compile_vulkan`] shares the front half ([`kernel_program`]: passes and fusion) and emits SPIR-V instead.

use crate::backend::cpu::assemble::assemble_with;
use crate::backend::spirv::{self, Device, VulkanExecutable};
use crate::backend::BackendError;
use crate::kernel::KernelProgram;
use crate::memory::BufferPlacement;
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
    /// Running the program would take more memory than the machine has available ([`check_memory`]).
    #[error(
        "graph {graph} needs {needed} bytes ({}) of memory to run, but only {available} bytes ({}) are available \
         ({origin})",
        human_bytes(*needed),
        human_bytes(*available)
    )]
    OutOfMemory {
        graph: String,
        needed: usize,
        available: usize,
        /// Where `available` comes from.
        origin: &'static str,
    },
}

/// `3.81 MiB`: bytes in the largest binary unit that keeps the number at 1 or more.
fn human_bytes(bytes: usize) -> String {
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in units {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if unit == "B" {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// Overrides the available memory (bytes): a cap for runs that must stay small, and how tests exercise
/// [`check_memory`] without a machine-sized graph.
pub const MEMORY_LIMIT_VAR: &str = "KILN_MEMORY_LIMIT";

/// The memory a run may use, in bytes, and where that number comes from: `KILN_MEMORY_LIMIT` when set, else
/// `MemAvailable` of `/proc/meminfo` (Linux; free memory plus what the kernel can reclaim). `None` when neither is
/// known (another OS), and then nothing is checked. A `KILN_MEMORY_LIMIT` that is not a byte count is taken as 0, so
/// every check fails and its message names the variable, rather than a typo silently turning the check off.
pub fn available_memory() -> Option<(usize, &'static str)> {
    if let Ok(limit) = std::env::var(MEMORY_LIMIT_VAR) {
        return Some(match limit.trim().parse() {
            Ok(bytes) => (bytes, "KILN_MEMORY_LIMIT"),
            Err(_) => (0, "KILN_MEMORY_LIMIT, which is not a whole number of bytes"),
        });
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_available(&meminfo).map(|bytes| (bytes, "MemAvailable in /proc/meminfo"))
}

/// `MemAvailable:   24198600 kB` → bytes.
fn meminfo_available(meminfo: &str) -> Option<usize> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: usize = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// Fails with [`Error::OutOfMemory`] when `needed` bytes exceed [`available_memory`]: a clear error instead of an
/// allocation failure, which aborts the process (or wakes the OOM killer) halfway through a run.
pub fn check_memory(graph: &str, needed: usize) -> Result<(), Error> {
    match available_memory() {
        Some((available, origin)) if needed > available => Err(Error::OutOfMemory {
            graph: graph.to_string(),
            needed,
            available,
            origin,
        }),
        _ => Ok(()),
    }
}

/// What a compiled program allocates besides its caller's inputs: the arena of temporaries, the constants and the
/// outputs that get their own allocation (saturating: a sum past `usize::MAX` is too big anyway).
fn planned_bytes(program: &KernelProgram, plan: &crate::memory::MemoryPlan) -> usize {
    program
        .buffers
        .iter()
        .zip(&plan.placements)
        .filter(|(_, place)| {
            matches!(
                place,
                BufferPlacement::Constant
                    | BufferPlacement::Output
                    | BufferPlacement::CopyBack { .. }
            )
        })
        .fold(plan.peak_bytes, |sum, (buffer, _)| {
            sum.saturating_add(buffer.ty.size_bytes())
        })
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
    /// Strip-mine the CPU's elementwise kernels whose cost is transcendentals, which then run in the runtime's wide
    /// routines (`kiln_runtime::wide`: AVX2 or AVX-512 where Cranelift emits f32x4;
    /// `backend::cpu::codegen::strips`). Only where the host has FMA and AVX2 or AVX-512; outputs are bit-identical
    /// either way. On by default; the environment variable `KILN_WIDE_STRIPS=0` turns it off.
    pub wide_math: bool,
}

impl Default for Options {
    /// Optimized and fused, on every available core, for the CPU.
    fn default() -> Options {
        Options {
            optimize: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            target: Target::Cpu,
            fuse: true,
            wide_math: crate::backend::cpu::jit::wide_strips_by_default(),
        }
    }
}

/// The kernel program every backend compiles: the graph passes (when `optimize`), then fusion (or one kernel per
/// primitive when `!fuse`, the benches' baseline). The passes keep the
/// graph's inputs and outputs, so the program takes and returns what `graph` does.
pub fn kernel_program(graph: &Graph, options: &Options) -> Result<KernelProgram, Error> {
    kernel_program_within(graph, options, None)
}

/// [`kernel_program`] with fusion's buffer cap (rule 8 of [`crate::fusion`]): no fused kernel binds more than
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
    // Before anything is allocated: constants are materialized by `assemble`, the arena by the first run.
    check_memory(&graph.name, planned_bytes(&program, &plan))?;
    let roles: Vec<Role> = graph.inputs().map(|i| i.role).collect();
    match options.target {
        Target::Cpu => Ok(assemble_with(
            &program,
            &plan,
            &roles,
            options.threads,
            options.wide_math,
            started,
        )?),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_available_reads_kib_as_bytes() {
        let meminfo = "MemTotal:       24684084 kB\nMemFree:        16536356 kB\nMemAvailable:   24198600 kB\n";
        assert_eq!(meminfo_available(meminfo), Some(24198600 * 1024));
        assert_eq!(meminfo_available("MemFree: 1 kB\n"), None);
        assert_eq!(meminfo_available("MemAvailable: lots\n"), None);
    }

    #[test]
    fn byte_counts_print_in_binary_units() {
        assert_eq!(human_bytes(1000), "1000 B");
        assert_eq!(human_bytes(4_000_000), "3.81 MiB");
        assert_eq!(human_bytes(1 << 32), "4.00 GiB");
    }
}
