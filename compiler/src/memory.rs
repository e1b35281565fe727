//! Memory planning: where every buffer of a [`KernelProgram`] lives during a run.
//!
//! - **Temporaries share one arena.** A temp is live from the kernel that writes it to the last kernel that reads it
//!   (inclusive). Temps are placed largest first, each at the best-fitting gap (the smallest one that holds it) among
//!   the temps already placed whose lifetimes overlap its own; offsets and sizes are multiples of [`ALIGNMENT`]. So
//!   two temps that are live at the same time never overlap, and `peak_bytes <= sum_of_temps_bytes`.
//! - **Aliased outputs are written in place** (an updated parameter or optimizer state into its input's buffer) when
//!   that is safe: one kernel writes the output, no later kernel reads the input, and the writer reads the input only
//!   at the element it is storing, in the same block, before the store. Otherwise the output gets its own buffer and
//!   the runtime copies it over the input after the run.
//! - Inputs and constants are the caller's and the program's; other outputs get their own allocation (they are
//!   handed back).
//!
//! Also here: the memory-traffic estimate of a program (bytes read and written by its kernels, each buffer counted
//! once per kernel that touches it) and of the one-kernel-per-primitive baseline.
//!
//! Requires: a program from `crate::fusion::lower` (each buffer written by one kernel).

use crate::kernel::{Block, BufferId, BufferKind, Inst, Kernel, KernelProgram, ScalarOp};
use kiln_ir::{DType, Graph, Op};
use std::fmt::Write;

/// Alignment of every arena offset and size, in bytes (a cache line; enough for any SIMD width).
pub const ALIGNMENT: usize = 64;

/// Where one buffer lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BufferPlacement {
    /// The caller's tensor.
    Input,
    /// Baked into the program.
    Constant,
    /// `[offset, offset + size)` of the arena, in bytes.
    Arena { offset: usize, size: usize },
    /// Its own allocation, handed back to the caller.
    Output,
    /// An aliased output written directly into the storage of `input`.
    InPlace { input: BufferId },
    /// An aliased output in its own allocation, copied over `input` after the run.
    CopyBack { input: BufferId },
}

/// The kernels during which a buffer is live, inclusive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Lifetime {
    pub first: usize,
    pub last: usize,
}

impl Lifetime {
    pub fn overlaps(&self, other: &Lifetime) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

#[derive(Clone, PartialEq, Debug)]
pub struct MemoryPlan {
    /// One per buffer of the program.
    pub placements: Vec<BufferPlacement>,
    /// One per buffer: from its writer to its last reader (`None` for buffers no kernel writes).
    pub lifetimes: Vec<Option<Lifetime>>,
    /// The arena size: the highest end of any temp.
    pub peak_bytes: usize,
    /// What the temps would take without reuse (aligned sizes).
    pub sum_of_temps_bytes: usize,
    /// Estimated bytes read and written by the kernels.
    pub traffic_bytes: usize,
}

fn align(bytes: usize) -> usize {
    bytes.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// Plans the memory of `program` with the host's element sizes.
pub fn plan(program: &KernelProgram) -> MemoryPlan {
    plan_for(program, DType::size_bytes)
}

/// Plans the memory of `program` for a backend whose elements of each dtype take `element_bytes` (the Vulkan
/// runtime stores a bool in 4 bytes, the host in 1): temps are sized and packed by that, so the arena's offsets and
/// peak are the backend's own. Traffic is always counted at the host's sizes.
pub fn plan_for(program: &KernelProgram, element_bytes: impl Fn(DType) -> usize) -> MemoryPlan {
    let n = program.buffers.len();
    let mut lifetimes: Vec<Option<Lifetime>> = vec![None; n];
    for (k, kernel) in program.kernels.iter().enumerate() {
        for b in kernel.writes() {
            lifetimes[b.index()] = Some(Lifetime { first: k, last: k });
        }
    }
    for (k, kernel) in program.kernels.iter().enumerate() {
        for b in kernel.reads() {
            if let Some(l) = &mut lifetimes[b.index()] {
                l.last = l.last.max(k);
            }
        }
    }

    let mut placements: Vec<BufferPlacement> = program
        .buffers
        .iter()
        .map(|b| match b.kind {
            BufferKind::Input => BufferPlacement::Input,
            BufferKind::Constant(_) => BufferPlacement::Constant,
            BufferKind::Output => BufferPlacement::Output,
            BufferKind::Temp => BufferPlacement::Arena { offset: 0, size: 0 },
        })
        .collect();
    for output in &program.outputs {
        let Some(input_name) = &output.aliases else {
            continue;
        };
        let Some(input) = program.inputs.iter().find(|i| &i.name == input_name) else {
            continue;
        };
        if program.buffers[output.buffer.index()].kind != BufferKind::Output {
            continue;
        }
        placements[output.buffer.index()] = if in_place_safe(program, output.buffer, input.buffer) {
            BufferPlacement::InPlace {
                input: input.buffer,
            }
        } else {
            BufferPlacement::CopyBack {
                input: input.buffer,
            }
        };
    }

    // Largest first, best fit among the placed temps that are live at the same time.
    let mut temps: Vec<usize> = (0..n)
        .filter(|&b| program.buffers[b].kind == BufferKind::Temp)
        .collect();
    let size = |b: usize| {
        let ty = &program.buffers[b].ty;
        align(ty.numel().saturating_mul(element_bytes(ty.dtype)))
    };
    temps.sort_by_key(|&b| (std::cmp::Reverse(size(b)), b));
    let mut placed: Vec<(usize, usize, Lifetime)> = Vec::new();
    let mut peak = 0;
    for &b in &temps {
        let bytes = size(b);
        let life = lifetimes[b].unwrap_or(Lifetime { first: 0, last: 0 });
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|(_, s, l)| *s > 0 && l.overlaps(&life))
            .map(|&(o, s, _)| (o, o + s))
            .collect();
        busy.sort();
        let mut best: Option<(usize, usize)> = None; // (gap size, offset)
        let mut cursor = 0;
        for &(start, end) in &busy {
            if start >= cursor + bytes {
                let gap = start - cursor;
                if best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let offset = best.map_or(cursor, |(_, o)| o);
        placements[b] = BufferPlacement::Arena {
            offset,
            size: bytes,
        };
        placed.push((offset, bytes, life));
        peak = peak.max(offset + bytes);
    }

    MemoryPlan {
        placements,
        lifetimes,
        peak_bytes: peak,
        sum_of_temps_bytes: temps.iter().map(|&b| size(b)).sum(),
        traffic_bytes: traffic_bytes(program),
    }
}

/// Whether `output` can be written into `input`'s storage (see the module doc).
fn in_place_safe(program: &KernelProgram, output: BufferId, input: BufferId) -> bool {
    let writers: Vec<usize> = (0..program.kernels.len())
        .filter(|&k| program.kernels[k].writes().contains(&output))
        .collect();
    let [writer] = writers[..] else { return false };
    let shared = program
        .outputs
        .iter()
        .filter(|o| o.buffer == output)
        .count()
        > 1;
    let read_later = program.kernels[writer + 1..]
        .iter()
        .any(|k| k.reads().contains(&input));
    if shared || read_later {
        return false;
    }
    let kernel = &program.kernels[writer];
    if let Kernel::Matmul(m) = kernel {
        if m.a.buffer == input || m.b.buffer == input {
            return false;
        }
    }
    reads_only_in_place(kernel.body(), output, input)
}

/// Whether the one store to `output` in `body` is preceded, in its own block, by every load of `input` in the
/// kernel, each at the store's index: then each point reads its element before overwriting it, and no point reads
/// another's.
fn reads_only_in_place(body: &Block, output: BufferId, input: BufferId) -> bool {
    let (mut stores, mut loads) = (0, 0);
    body.visit(&mut |i| match i {
        Inst::Store { buffer, .. } if *buffer == output => stores += 1,
        i if i.loaded_buffer() == Some(input) => loads += 1,
        _ => {}
    });
    if stores != 1 {
        return false;
    }
    fn find(block: &Block, output: BufferId) -> Option<(&Block, usize)> {
        block.insts.iter().enumerate().find_map(|(p, i)| match i {
            Inst::Store { buffer, .. } if *buffer == output => Some((block, p)),
            Inst::Reduce { body, .. } | Inst::For { body, .. } => find(body, output),
            _ => None,
        })
    }
    let Some((block, position)) = find(body, output) else {
        return false;
    };
    let Inst::Store { index, .. } = &block.insts[position] else {
        return false;
    };
    let in_place = block.insts[..position]
        .iter()
        .filter(|i| {
            matches!(i, Inst::Let { op: ScalarOp::Load { buffer, index: at }, .. } if *buffer == input && at == index)
        })
        .count();
    in_place == loads
}

/// Bytes read and written by the kernels: each buffer a kernel reads or writes counts its full size once for that
/// kernel (a buffer read twice by one kernel, or written and read back as a materialized softmax row is, is assumed
/// to stay in cache).
pub fn traffic_bytes(program: &KernelProgram) -> usize {
    let size = |b: BufferId| program.buffers[b.index()].ty.size_bytes();
    program
        .kernels
        .iter()
        .map(|k| {
            let touched: std::collections::BTreeSet<BufferId> =
                k.reads().into_iter().chain(k.writes()).collect();
            touched.into_iter().map(size).sum::<usize>()
        })
        .sum()
}

/// The same estimate for the one-kernel-per-primitive baseline: every live node but inputs and dense constants is
/// a kernel that reads each distinct operand in full and writes its result.
pub fn unfused_traffic_bytes(graph: &Graph) -> usize {
    let live = graph.live();
    graph
        .ids()
        .filter(|id| live[id.index()])
        .map(|id| {
            let node = graph.node(id);
            if matches!(node.op, Op::Input { .. }) {
                return 0;
            }
            if let Op::Constant {
                value: kiln_ir::Literal::Dense(_),
                ..
            } = node.op
            {
                return 0;
            }
            let mut operands = node.operands.to_vec();
            operands.sort();
            operands.dedup();
            node.ty.size_bytes()
                + operands
                    .iter()
                    .map(|&o| graph.ty(o).size_bytes())
                    .sum::<usize>()
        })
        .sum()
}

impl MemoryPlan {
    /// `--stage memory`: the arena, every temp's place and lifetime, the aliased outputs, the traffic.
    pub fn report(&self, program: &KernelProgram) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "memory {} (alignment {ALIGNMENT} bytes)", program.name);
        let _ = writeln!(
            out,
            "  arena peak {} bytes, sum of temps {} bytes, kernel traffic {} bytes",
            self.peak_bytes, self.sum_of_temps_bytes, self.traffic_bytes
        );
        for (b, buffer) in program.buffers.iter().enumerate() {
            let life = match self.lifetimes[b] {
                Some(l) => format!(" live k{}..k{}", l.first, l.last),
                None => String::new(),
            };
            let place = match self.placements[b] {
                BufferPlacement::Input => "input".to_string(),
                BufferPlacement::Constant => "constant".to_string(),
                BufferPlacement::Arena { offset, size } => {
                    format!("arena [{offset}, {})", offset + size)
                }
                BufferPlacement::Output => "output".to_string(),
                BufferPlacement::InPlace { input } => {
                    format!("in place of {}", program.buffers[input.index()].name)
                }
                BufferPlacement::CopyBack { input } => {
                    format!(
                        "own buffer, copied back to {}",
                        program.buffers[input.index()].name
                    )
                }
            };
            let _ = writeln!(out, "  b{b} {}: {} {place}{life}", buffer.name, buffer.ty);
        }
        out
    }
}
