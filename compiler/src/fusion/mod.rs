//! Fusion: partitions a graph into kernels and lowers it to the kernel IR ([`crate::kernel`]).
//!
//! # Cost model
//!
//! 1. **Elementwise chains are one loop nest.** Any chain or tree of elementwise ops, broadcasts and reshapes whose
//!    values are used by one kernel only is computed inside that kernel, element by element, without buffers.
//! 2. **Reductions fuse with their producers and consumers.** A reduction joins the kernel of its (single) consumer;
//!    its elementwise producers join it. The kernel's parallel space is the consumer's leading dims that the
//!    reductions depend on, and the rest of each row is written by a sequential `for`: row softmax, log-softmax and
//!    softmax cross-entropy are each one kernel (`max`, then `sum exp`, then the write; a mean over rows nests the
//!    row reductions inside the outer sum). A reduction that would be recomputed for points it doesn't depend on
//!    (a column sum inside a row-parallel kernel) is materialized instead, and so is one its reader would see through
//!    overlapping `windows` (a max pool under the next convolution's window matrix: recomputed per window).
//! 3. **Matmul keeps its own kernel with an elementwise epilogue.** A matmul whose users are all elementwise ops of
//!    one pure-elementwise kernel of its shape becomes that kernel's core: bias add, activation and the backward's
//!    `select(x > 0, g, 0)` run on the accumulator before the store. Operands are read through strided views, so
//!    a transpose, slice or broadcast of a buffer feeding a matmul costs nothing; other operands are materialized.
//!    A matmul read only through a transpose of its last two dims by such a kernel (the weight gradient `dWᵀ` in
//!    the update `W - lr·transpose(dWᵀ)`) is its core too: the kernel computes `(AB)ᵀ = BᵀAᵀ`, the operands swapped
//!    and read transposed, so the update is the gradient matmul's epilogue.
//! 4. **Cheap ops are recomputed, expensive ones never duplicated.** Broadcasts, reshapes, transposes, slices,
//!    windows, iota and splat constants are *inline*: recomputed inside every consumer (they are index arithmetic).
//!    Reductions, matmuls, concats and pads (a guarded load per element: stored once, then read through affine views
//!    by the window matrix of a convolution) are computed by exactly one kernel, and so is every elementwise op but those of rule 5;
//!    a value used by two kernels, a graph output and a matmul operand is materialized once in a buffer. Within one
//!    kernel, an elementwise value used by two stages (softmax's `exp(x - max)` in the sum and in the write) is
//!    recomputed in each stage; [`lower`]'s kernel-IR pass [`crate::kernel::materialize`] then computes it once
//!    where the write's row can hold it.
//! 5. **Short elementwise chains are recomputed rather than round-tripped through memory.** An elementwise value
//!    that several kernels read is inline (recomputed by each) when its expression, down to values stored anyway
//!    (inputs, outputs, reductions, values other kernels already read, a matmul's epilogue value that a reduction
//!    reads, such as the logits under a row max), has at most 8 elementwise ops, no matmul, and reads at most one tensor of its own size (the rest are broadcast per-row values or labels). Each reader
//!    then loads no more than it would load of the stored value, and the store is saved: cross-entropy's
//!    backward recomputes `exp(x - max)` from the logits and the row max, and the one-hot mask from the labels.
//! 6. **Several outputs per kernel.** An elementwise value or a reduction that several kernels read is written by
//!    the first of them (in execution order) when it has that kernel's shape: a forward matmul stores the ReLU mask
//!    the backward reads, and a row kernel stores the row max beside the row's sum of exponentials, so a training
//!    step's softmax cross-entropy is three kernels (row max and sum of exp, the scalar loss, the backward).
//! 7. **A kernel without loop nests holds at most [`MAX_KERNEL_NODES`] nodes.** Once it has that many, the next
//!    elementwise node that would join it (as a member or an extra output) is stored by a kernel of its own, which
//!    the full kernel reads, so a long chain becomes kernels of [`MAX_KERNEL_NODES`] ops. One kernel per chain would
//!    be one native function or shader as long as the chain, and their compilers are superlinear in its length: for
//!    a 100,000-add chain, 4.4 s of Cranelift with 560 MB at peak and 18 s for lavapipe to build the shader, against
//!    2.1 s and 160 MB as kernels of 1024 adds (test profile, a loaded 2-core machine). Normal kernels have tens of
//!    nodes, so the rule only cuts generated chains; each cut costs one store and one load per element for 1024
//!    ops. The split changes no value: such a kernel computes each member at its root's points with the same scalar
//!    ops, and a stored value reloads exactly.
//!    A `mul` is not the one stored until the kernel has twice [`MAX_KERNEL_NODES`] members, so a product stays
//!    beside the `add` or `sub` that the CPU contracts it into (an `fma`, which rounds once); a chain of products
//!    alone is still cut, at twice the length. A kernel with a `reduce` or a `for` nest (a reduction, a concat) is left whole,
//!    however long: a reduction whose body loads a value instead of computing it may be summed in another order
//!    (the CPU picks f32x4 lanes or one accumulator from the body), and a division in a `for` by a value computed
//!    outside it may become a multiplication by the reciprocal, where a kernel of its own divides.
//!
//! 8. **A kernel binds at most as many buffers as the device allows** (Vulkan only: [`lower_with_buffer_cap`], from
//!    `kiln::compile_vulkan`, with `maxPerStageDescriptorStorageBuffers`; the CPU has no such limit and takes [`lower`]).
//!    A fused kernel that reads and writes more distinct buffers than the cap is cut: one of its members is
//!    materialized — the one whose cut frees the most bindings (the buffers its expression reads, and its own
//!    output when it is an extra output of rule 6) while still fitting in a kernel of its own, so a 40-input sum under a cap of 32 becomes a 31-input partial sum and a kernel
//!    adding the other 9 to it — and fusion runs again, until every kernel fits. A single primitive never needs a
//!    cut, except a `concat` of more operands than the cap (every other op has at most 3 operands and 1 result);
//!    a kernel that no cut brings under the cap is left as is, and the SPIR-V backend rejects it with an error
//!    naming the kernel and the limit.
//!
//! 9. **An `all_reduce` is a kernel of its own, alone** (SPEC §3.12): nothing joins it and it joins nothing, so its
//!    kernel is a copy of its operand (views folded in) into its result buffer, which the CPU executable then reduces
//!    in place across the processes, a host step between kernels, as a matmul's GEMM is a library call.
//!
//! Movement ops that aren't affine views (a concat, a reshape of a view whose strides don't compose) get their own
//! kernel or a materialization: a concat is a kernel of its own, one `for` per operand; a non-affine reshape
//! materializes its operand. Lowering discovers those cases; [`partition`] and [`lower`] then re-partition with the
//! offending node materialized, until lowering succeeds (each round materializes one more node, so this ends).
//!
//! Preserves: every output's value, up to the float tolerance of SPEC.md (reductions keep their row-major order).
//! Requires: a verified graph.

mod lower;

use crate::kernel::KernelProgram;
use kiln_ir::{verify, BinaryOp, Graph, IrError, Literal, NodeId, Op, OpClass};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Where a graph node's value lives after fusion.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Placement {
    /// No output depends on it; not lowered.
    Dead,
    /// A program input buffer.
    Input,
    /// A dense constant buffer.
    Constant,
    /// Recomputed inside every kernel that uses it (views, iota, splat constants, cheap elementwise chains).
    Inline,
    /// Computed by kernel `k` (materialized in a buffer iff it is that kernel's root).
    Kernel(usize),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KernelKind {
    Loop,
    Matmul,
    /// An `all_reduce`, alone: a copy, then the host-side reduction across processes (rule 9).
    Collective,
}

/// One kernel of a partition: the nodes it computes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KernelGroup {
    pub kind: KernelKind,
    /// The kernel's last value, which defines its iteration space (kernels run in ascending root order).
    pub root: NodeId,
    /// The members written to buffers: the root first, then values of the root's shape that other kernels also
    /// read (e.g. a ReLU mask kept for the backward pass, a row max). Every other member is used only inside the
    /// kernel.
    pub stored: Vec<NodeId>,
    /// For a matmul kernel: the matmul whose epilogue the other members form.
    pub core: Option<NodeId>,
    /// The epilogue reads the core's result through a transpose of its last two dims (a weight gradient `dWᵀ`
    /// feeding the update of `W`): the kernel computes `(AB)ᵀ = BᵀAᵀ` in the root's orientation.
    pub core_transposed: bool,
    /// Every node computed by the kernel, root included, ascending.
    pub nodes: Vec<NodeId>,
}

/// Which node goes into which kernel. Kernels are in execution order (ascending root).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Partition {
    pub placement: Vec<Placement>,
    pub kernels: Vec<KernelGroup>,
}

impl Partition {
    /// The nodes that kernels materialize in buffers.
    pub fn stored(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.kernels.iter().flat_map(|k| k.stored.iter().copied())
    }

    /// `--stage fused`: each kernel with its root and member nodes (label and op).
    pub fn print(&self, graph: &Graph) -> String {
        let count = |p: Placement| self.placement.iter().filter(|&&q| q == p).count();
        let members: usize = self.kernels.iter().map(|k| k.nodes.len()).sum();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "fused {}: {} nodes: {} in {} kernels, {} inline, {} inputs, {} constants, {} dead",
            graph.name,
            graph.len(),
            members,
            self.kernels.len(),
            count(Placement::Inline),
            count(Placement::Input),
            count(Placement::Constant),
            count(Placement::Dead),
        );
        for (i, k) in self.kernels.iter().enumerate() {
            let kind = match k.kind {
                KernelKind::Loop => "loop",
                KernelKind::Matmul => "matmul",
                KernelKind::Collective => "all_reduce",
            };
            let stored: Vec<String> = k.stored.iter().map(|&n| graph.label(n)).collect();
            let transposed = match k.core {
                Some(core) if k.core_transposed => format!(" (computes {}ᵀ)", graph.label(core)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "k{i} {kind} {}: {} writes {}{transposed}",
                graph.label(k.root),
                graph.ty(k.root),
                stored.join(", ")
            );
            let nodes: Vec<String> = k
                .nodes
                .iter()
                .map(|&n| format!("{}={}", graph.label(n), graph.node(n).op.mnemonic()))
                .collect();
            for line in wrap(&nodes, 100) {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }

    /// Group index per node for `kiln_ir::dot::DotOptions`: kernel `k` is group `k`; inputs, constants, inline and
    /// dead nodes share a last group named `unfused`.
    pub fn dot_groups(&self, graph: &Graph) -> (Vec<usize>, Vec<String>) {
        let other = self.kernels.len();
        let groups = self
            .placement
            .iter()
            .map(|p| match p {
                Placement::Kernel(k) => *k,
                _ => other,
            })
            .collect();
        let mut names: Vec<String> = self
            .kernels
            .iter()
            .enumerate()
            .map(|(i, k)| format!("k{i} {}", graph.label(k.root)))
            .collect();
        names.push("unfused".to_string());
        (groups, names)
    }
}

fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for item in items {
        let line = lines.last_mut().expect("starts non-empty");
        if !line.is_empty() && line.len() + item.len() + 1 > width {
            lines.push(item.clone());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(item);
        }
    }
    lines
}

/// Partitions `graph` into kernels (the partition that [`lower`] uses).
pub fn partition(graph: &Graph) -> Partition {
    fixpoint(graph).0
}

/// Partitions `graph`, lowers it to the kernel IR and runs the kernel-IR passes on it
/// ([`crate::kernel::materialize`]).
///
/// The kernel-IR passes run here, not in `crate::kernel_program`, because this is the one function that every
/// consumer of a fused program calls: both backends (through `kernel_program`), the CLI's `dump` and `bench`, and
/// the differential tests, so what is printed and tested is what runs.
pub fn lower(graph: &Graph) -> Result<KernelProgram, IrError> {
    let mut program = lower_without_kernel_passes(graph)?;
    kernel_passes(&mut program)?;
    Ok(program)
}

/// The kernel-IR passes, with [`crate::kernel::verify`] before and after each: a pass may rely on a valid program
/// and must leave one.
fn kernel_passes(program: &mut KernelProgram) -> Result<(), IrError> {
    let check = |program: &KernelProgram| {
        crate::kernel::verify(program)
            .map(|_| ())
            .map_err(|e| IrError::Invalid(format!("fusion produced {e}")))
    };
    check(program)?;
    crate::kernel::materialize::run(program);
    check(program)
}

/// [`lower`] for a device on which one kernel binds at most `max_buffers` distinct buffers (rule 8 of the module
/// doc): kernels over the cap are cut by materializing members, until every kernel fits or no cut helps (the
/// backend then rejects the kernel that is still over). With a cap no kernel reaches, the program is [`lower`]'s.
pub fn lower_with_buffer_cap(graph: &Graph, max_buffers: usize) -> Result<KernelProgram, IrError> {
    verify(graph)?;
    let mut cuts = BTreeSet::new();
    loop {
        let (partition, program) = fixpoint_from(graph, cuts.clone());
        let mut program = program?;
        kernel_passes(&mut program)?;
        let over = program
            .kernels
            .iter()
            .position(|k| buffers_touched(k) > max_buffers);
        let Some(k) = over else {
            return Ok(program);
        };
        match cut_point(graph, &partition, k, max_buffers, &cuts) {
            Some(node) => {
                cuts.insert(node);
            }
            None => return Ok(program),
        }
    }
}

/// The distinct buffers a kernel reads or writes: what it binds on a GPU.
fn buffers_touched(kernel: &crate::kernel::Kernel) -> usize {
    let mut all = kernel.reads();
    for w in kernel.writes() {
        if !all.contains(&w) {
            all.push(w);
        }
    }
    all.len()
}

/// The member of kernel `k` to materialize so that it binds fewer buffers (rule 8): of the members other than the
/// root not yet cut whose cut frees at least 2 bindings (the buffers its expression reads, and its own output when it
/// is stored), the heaviest that still fits in a kernel of its own (`reads + 1 ≤ max_buffers`), or, if none fits,
/// the lightest (a later round cuts it further). `None` when no cut can help.
fn cut_point(
    graph: &Graph,
    part: &Partition,
    k: usize,
    max_buffers: usize,
    cuts: &BTreeSet<NodeId>,
) -> Option<NodeId> {
    let group = &part.kernels[k];
    // The buffers member `n`'s value is computed from, through members and inline nodes.
    let sources = |n: NodeId| {
        let mut found = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut stack: Vec<NodeId> = graph.node(n).operands.to_vec();
        while let Some(o) = stack.pop() {
            if !seen.insert(o) {
                continue;
            }
            match part.placement[o.index()] {
                Placement::Inline => stack.extend(graph.node(o).operands.iter().copied()),
                Placement::Kernel(j) if j == k && !group.stored.contains(&o) => {
                    stack.extend(graph.node(o).operands.iter().copied())
                }
                Placement::Input | Placement::Constant | Placement::Kernel(_) => {
                    found.insert(o);
                }
                Placement::Dead => {}
            }
        }
        found.len()
    };
    // A member's weight is the bindings a cut takes out of kernel `k`: the buffers it reads, plus its own output
    // when it is stored (an extra output of rule 6, such as one of a chain of graph outputs).
    let candidates: Vec<(usize, usize, NodeId)> = group
        .nodes
        .iter()
        .filter(|&&n| n != group.root && !cuts.contains(&n))
        .map(|&n| {
            let reads = sources(n);
            (reads + usize::from(group.stored.contains(&n)), reads, n)
        })
        .filter(|&(weight, _, _)| weight >= 2)
        .collect();
    let fitting = candidates
        .iter()
        .filter(|&&(_, reads, _)| reads < max_buffers)
        // The heaviest; the first node among equals.
        .min_by_key(|&&(weight, _, n)| (std::cmp::Reverse(weight), n));
    fitting
        .or_else(|| candidates.iter().min_by_key(|&&(weight, _, n)| (weight, n)))
        .map(|&(_, _, n)| n)
}

/// [`lower`] without the kernel-IR passes: fusion's own program, what the tests compare those passes against.
pub fn lower_without_kernel_passes(graph: &Graph) -> Result<KernelProgram, IrError> {
    verify(graph)?;
    fixpoint(graph).1
}

/// Lowers `graph` without fusion: every computed value gets a kernel of its own (views and splat constants stay
/// inline, as index arithmetic), so each primitive op reads its operands from memory and writes its result back.
/// The baseline that measures what fusion saves.
pub fn lower_unfused(graph: &Graph) -> Result<KernelProgram, IrError> {
    verify(graph)?;
    let live = graph.live();
    let computed = graph.ids().filter(|&id| {
        let op = &graph.node(id).op;
        live[id.index()]
            && !matches!(op, Op::Input { .. } | Op::Constant { .. })
            && !is_inline_op(op)
    });
    fixpoint_from(graph, computed.collect()).1
}

/// Partition, try to lower, materialize what lowering asks for, repeat. Returns the last partition tried.
fn fixpoint(graph: &Graph) -> (Partition, Result<KernelProgram, IrError>) {
    fixpoint_from(graph, BTreeSet::new())
}

/// [`fixpoint`] starting with the nodes of `forced` materialized.
fn fixpoint_from(
    graph: &Graph,
    mut forced: BTreeSet<NodeId>,
) -> (Partition, Result<KernelProgram, IrError>) {
    loop {
        let partition = partition_with(graph, &forced);
        let result = match lower::lower_partition(graph, &partition) {
            Ok(program) => Ok(program),
            Err(lower::LowerError::Materialize(node)) if !forced.contains(&node) => {
                forced.insert(node);
                continue;
            }
            Err(lower::LowerError::Materialize(node)) => Err(IrError::Invalid(format!(
                "fusion: node %{} ({}) is materialized but still can't be lowered",
                graph.label(node),
                graph.node(node).op.mnemonic()
            ))),
            Err(lower::LowerError::Ir(e)) => Err(e),
        };
        return (partition, result);
    }
}

/// Ops that are index arithmetic: recomputed in each consumer rather than materialized.
fn is_inline_op(op: &Op) -> bool {
    match op {
        // A dense constant is a buffer; only a splat is one value.
        Op::Constant { value, .. } => matches!(value, Literal::Splat(_)),
        op => op.kind().inline(),
    }
}

struct Building {
    kind: KernelKind,
    root: NodeId,
    stored: Vec<NodeId>,
    core: Option<NodeId>,
    core_transposed: bool,
    nodes: Vec<NodeId>,
    /// Only elementwise members so far (a matmul may still become the core).
    pure_elementwise: bool,
    /// The kernel has a `reduce` or a `for` nest (a reduction is a member, or the root is a concat): rule 7 leaves
    /// it whole.
    nests: bool,
}

/// At most this many nodes per kernel without loop nests (rule 7 of the module doc).
pub const MAX_KERNEL_NODES: usize = 1024;

/// Whether kernel `g` takes no more members like `op` (rule 7): it has no `reduce` or `for` nest and
/// [`MAX_KERNEL_NODES`] members, and `op` is elementwise but not a `mul` (which the CPU may contract with its user
/// into an `fma`) — unless the kernel has twice that many, so a chain of products alone is cut too.
fn full(g: &Building, op: &Op) -> bool {
    let is_mul = matches!(op, Op::Binary(BinaryOp::Mul));
    let limit = if is_mul {
        2 * MAX_KERNEL_NODES
    } else {
        MAX_KERNEL_NODES
    };
    g.nodes.len() >= limit && !g.nests && op.class() == OpClass::Elementwise
}

/// The greedy partition, consumers first: a computed node joins the kernel of its users when they are all in one
/// kernel and the cost model allows it; otherwise it roots a new kernel. `forced` nodes are always materialized.
fn partition_with(graph: &Graph, forced: &BTreeSet<NodeId>) -> Partition {
    let live = graph.live();
    let users = graph.users();
    let mut is_output = vec![false; graph.len()];
    for o in graph.outputs() {
        is_output[o.value.index()] = true;
    }
    let mut placement: Vec<Placement> = graph
        .ids()
        .map(|id| {
            let node = graph.node(id);
            if !live[id.index()] {
                return Placement::Dead;
            }
            match &node.op {
                Op::Input { .. } => Placement::Input,
                Op::Constant {
                    value: Literal::Dense(_),
                    ..
                } => Placement::Constant,
                // The op table says which ops are recomputed where used (`OpKind::inline`); the rest are placed in
                // kernels below.
                op => {
                    if is_inline_op(op) && !is_output[id.index()] && !forced.contains(&id) {
                        Placement::Inline
                    } else {
                        Placement::Kernel(usize::MAX)
                    }
                }
            }
        })
        .collect();

    let mut groups: Vec<Building> = Vec::new();
    for id in (0..graph.len() as u32).rev().map(NodeId) {
        if placement[id.index()] != Placement::Kernel(usize::MAX) {
            continue;
        }
        let node = graph.node(id);
        let (kernels, matmul_kernels) = effective_users(graph, &users, &live, &placement, id);
        let matmul_operand = !matmul_kernels.is_empty();
        // Recompute: a cheap elementwise value read by several kernels is computed again in each of them.
        if kernels.len() > 1
            && node.op.class() == OpClass::Elementwise
            && !matmul_operand
            && !is_output[id.index()]
            && !forced.contains(&id)
            && cheap_to_recompute(graph, &users, &live, &placement, &is_output, forced, id)
        {
            placement[id.index()] = Placement::Inline;
            continue;
        }
        let mut joined = None;
        let mut core_transposed = false;
        let single = (kernels.len() == 1).then(|| *kernels.iter().next().expect("one"));
        if let (Some(k), false, false, false) = (
            single,
            matmul_operand,
            is_output[id.index()],
            forced.contains(&id),
        ) {
            let g = &groups[k];
            let ok = match node.op.class() {
                // Nothing joins an all-reduce's kernel (rule 9).
                _ if g.kind == KernelKind::Collective => false,
                OpClass::Elementwise | OpClass::Source => true,
                // A concat, or a forced view: always a kernel of its own.
                OpClass::Movement => false,
                OpClass::Reduction => {
                    g.kind == KernelKind::Loop
                        && !read_through_overlapping_windows(graph, &users, &live, &placement, id)
                }
                OpClass::Contraction if g.kind == KernelKind::Loop && g.pure_elementwise => {
                    match epilogue_orientation(graph, &users, &live, &placement, id, k, g.root) {
                        Some(transposed) => {
                            core_transposed = transposed;
                            true
                        }
                        None => false,
                    }
                }
                OpClass::Contraction | OpClass::Collective => false,
            };
            if ok && !full(g, &node.op) {
                joined = Some(k);
            }
        }
        // Multi-output: an elementwise value or a reduction that several kernels read is written by the first of them
        // (in execution order) when it has that kernel's shape, instead of getting a kernel of its own (a row max
        // stored beside the row's sum of exponentials).
        let mut extra_root = None;
        let class = node.op.class();
        let multi_output_class = matches!(class, OpClass::Elementwise | OpClass::Reduction);
        if joined.is_none() && multi_output_class && !forced.contains(&id) {
            if let Some(&first) = kernels.iter().min_by_key(|&&k| groups[k].root) {
                let g = &groups[first];
                let ok = graph.ty(g.root).shape == node.ty.shape
                    && !full(g, &node.op)
                    && !matches!(graph.node(g.root).op, Op::Concat { .. })
                    && !matmul_kernels.contains(&first)
                    && g.kind != KernelKind::Collective
                    && (class == OpClass::Elementwise || g.kind == KernelKind::Loop);
                if ok {
                    extra_root = Some(first);
                }
            }
        }
        if let Some(k) = extra_root {
            let g = &mut groups[k];
            g.nodes.push(id);
            g.stored.push(id);
            g.pure_elementwise &= class == OpClass::Elementwise;
            g.nests |= class == OpClass::Reduction;
            placement[id.index()] = Placement::Kernel(k);
            continue;
        }
        match joined {
            Some(k) => {
                let g = &mut groups[k];
                g.nodes.push(id);
                match node.op.class() {
                    OpClass::Contraction => {
                        g.kind = KernelKind::Matmul;
                        g.core = Some(id);
                        g.core_transposed = core_transposed;
                        g.pure_elementwise = false;
                    }
                    OpClass::Elementwise | OpClass::Source => {}
                    OpClass::Reduction => {
                        g.pure_elementwise = false;
                        g.nests = true;
                    }
                    // (An all_reduce never joins: `ok` is false for it.)
                    OpClass::Movement | OpClass::Collective => g.pure_elementwise = false,
                }
                placement[id.index()] = Placement::Kernel(k);
            }
            None => {
                let is_matmul = node.op.class() == OpClass::Contraction;
                groups.push(Building {
                    kind: match node.op.class() {
                        OpClass::Contraction => KernelKind::Matmul,
                        OpClass::Collective => KernelKind::Collective,
                        OpClass::Elementwise
                        | OpClass::Source
                        | OpClass::Reduction
                        | OpClass::Movement => KernelKind::Loop,
                    },
                    root: id,
                    stored: vec![id],
                    core: is_matmul.then_some(id),
                    core_transposed: false,
                    nodes: vec![id],
                    pure_elementwise: node.op.class() == OpClass::Elementwise,
                    nests: matches!(node.op, Op::Concat { .. })
                        || node.op.class() == OpClass::Reduction,
                });
                placement[id.index()] = Placement::Kernel(groups.len() - 1);
            }
        }
    }

    // Execution order: ascending root. This order is topological: every member is an ancestor of its kernel's root,
    // a member's users are all in its kernel unless it is stored, and a stored value other than the root went to the
    // user kernel with the smallest root; so a kernel reads only values stored by kernels with smaller roots.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&k| groups[k].root);
    let mut new_index = vec![0; groups.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    for p in &mut placement {
        if let Placement::Kernel(k) = p {
            *k = new_index[*k];
        }
    }
    let kernels = order
        .into_iter()
        .map(|k| {
            let g = &groups[k];
            let mut nodes = g.nodes.clone();
            nodes.sort();
            KernelGroup {
                kind: g.kind,
                root: g.root,
                stored: g.stored.clone(),
                core: g.core,
                core_transposed: g.core_transposed,
                nodes,
            }
        })
        .collect();
    Partition { placement, kernels }
}

/// The kernels that use `id`'s value, looking through inline nodes, and those among them where it (or an inline view
/// of it) is a matmul operand.
fn effective_users(
    graph: &Graph,
    users: &[Vec<NodeId>],
    live: &[bool],
    placement: &[Placement],
    id: NodeId,
) -> (BTreeSet<usize>, BTreeSet<usize>) {
    let mut kernels = BTreeSet::new();
    let mut matmul_kernels = BTreeSet::new();
    for (_, u) in uses_through_inline(users, live, placement, id) {
        if let Placement::Kernel(k) = placement[u.index()] {
            kernels.insert(k);
            if let Op::Matmul = &graph.node(u).op {
                matmul_kernels.insert(k);
            }
        }
    }
    (kernels, matmul_kernels)
}

/// Every use `(value, user)` of `id` and of the inline nodes computed from it (which are recomputed in their
/// users' kernels, so `id` is read wherever they are), live users only.
fn uses_through_inline(
    users: &[Vec<NodeId>],
    live: &[bool],
    placement: &[Placement],
    id: NodeId,
) -> Vec<(NodeId, NodeId)> {
    let mut uses = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        for &u in &users[n.index()] {
            if !live[u.index()] {
                continue;
            }
            uses.push((n, u));
            if placement[u.index()] == Placement::Inline {
                stack.push(u);
            }
        }
    }
    uses
}

/// Whether a kernel would read `id` through a `windows` view whose windows overlap (more window elements than input
/// elements), such as a convolution's window matrix over a max pool's output. Joining that kernel would recompute
/// the reduction once per window holding each element (25× for a 5×5 convolution, each time reloading its whole
/// window): a LeNet's first pool, recomputed inside the second convolution's window matrix, took 90 % of its CPU
/// time. Such a reduction is stored by a kernel of its own, and the window matrix reads it.
fn read_through_overlapping_windows(
    graph: &Graph,
    users: &[Vec<NodeId>],
    live: &[bool],
    placement: &[Placement],
    id: NodeId,
) -> bool {
    uses_through_inline(users, live, placement, id)
        .into_iter()
        .any(|(n, u)| {
            placement[u.index()] == Placement::Inline
                && matches!(graph.node(u).op, Op::Windows { .. })
                && graph.node(u).ty.numel() > graph.node(n).ty.numel()
        })
}

/// At most this many elementwise ops are recomputed per element of a value that several kernels read.
const MAX_RECOMPUTED_OPS: usize = 8;

/// Whether `id`, an elementwise value read by several kernels, is cheaper to recompute in each of them than to store
/// once and load in each (rule 5 of the module doc). Its expression is followed down to values that are stored
/// whatever happens to `id` (inputs, constants, outputs, reductions, concats, values other kernels already read):
/// it must have at most [`MAX_RECOMPUTED_OPS`] elementwise ops, no matmul (whose epilogue would have to move out of
/// its kernel; a matmul epilogue that a reduction reads is stored anyway, and read), and read at most one tensor with as many elements as `id` (the others are broadcast: per-row values,
/// labels), so that each reader loads no more than it would load of `id`.
fn cheap_to_recompute(
    graph: &Graph,
    users: &[Vec<NodeId>],
    live: &[bool],
    placement: &[Placement],
    is_output: &[bool],
    forced: &BTreeSet<NodeId>,
    id: NodeId,
) -> bool {
    let numel = graph.ty(id).numel();
    let stored_anyway = |n: NodeId| {
        if is_output[n.index()] || forced.contains(&n) {
            return true;
        }
        // Users already placed (the members of `id`'s expression aren't yet).
        let (mut kernels, matmul_kernels) = effective_users(graph, users, live, placement, n);
        kernels.remove(&usize::MAX);
        kernels.len() > 1 || !matmul_kernels.is_empty()
    };
    // A matmul's epilogue value that a reduction also reads (the logits under a row max) is stored by the matmul's
    // kernel whatever happens to `id`: the reduction's kernel reads it, and so does every kernel `id` is recomputed
    // in, and it can't be recomputed itself. Reading it is then a load, not a moved epilogue.
    let stored_epilogue = |n: NodeId| {
        let node = graph.node(n);
        let below_matmul = node
            .operands
            .iter()
            .any(|&o| graph.node(o).op.class() == OpClass::Contraction);
        let reduced = users[n.index()]
            .iter()
            .any(|&u| live[u.index()] && graph.node(u).op.class() == OpClass::Reduction);
        below_matmul && reduced
    };
    let mut seen = BTreeSet::new();
    let (mut ops, mut full_reads) = (0, 0);
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        let node = graph.node(n);
        let recurse = match (node.op.class(), placement[n.index()]) {
            (_, Placement::Inline) => true,
            (OpClass::Elementwise, _) if n != id && stored_epilogue(n) => false,
            (OpClass::Elementwise, _) if n == id || !stored_anyway(n) => {
                ops += 1;
                true
            }
            (OpClass::Contraction, _) if !stored_anyway(n) => return false,
            // Stored by one kernel, read here.
            _ => false,
        };
        if recurse {
            stack.extend(node.operands.iter().copied());
        } else if graph.ty(n).numel() >= numel {
            full_reads += 1;
        }
        if ops > MAX_RECOMPUTED_OPS || full_reads > 1 {
            return false;
        }
    }
    true
}

/// Whether the matmul `id` can be the core of kernel `k` (rooted at `root`), and in which orientation: `Some(false)`
/// when its users are elementwise members of `k` of the root's type, `Some(true)` when they are all inline
/// transposes of its last two dims of the root's type whose users are elementwise members of `k`.
fn epilogue_orientation(
    graph: &Graph,
    users: &[Vec<NodeId>],
    live: &[bool],
    placement: &[Placement],
    id: NodeId,
    k: usize,
    root: NodeId,
) -> Option<bool> {
    let live_users = |n: NodeId| users[n.index()].iter().filter(|u| live[u.index()]);
    let in_epilogue = |u: NodeId| {
        graph.node(u).op.class() == OpClass::Elementwise
            && placement[u.index()] == Placement::Kernel(k)
    };
    if graph.ty(root) == graph.ty(id) && live_users(id).all(|&u| in_epilogue(u)) {
        return Some(false);
    }
    let rank = graph.ty(id).rank();
    let swaps_last_two = |perm: &[usize]| {
        perm.iter().enumerate().all(|(d, &p)| match d {
            _ if d + 2 < rank => p == d,
            _ if d + 2 == rank => p == rank - 1,
            _ => p == rank - 2,
        })
    };
    let transposed = live_users(id).all(|&t| {
        matches!(&graph.node(t).op, Op::Transpose { perm } if swaps_last_two(perm))
            && placement[t.index()] == Placement::Inline
            && graph.ty(t) == graph.ty(root)
            && live_users(t).all(|&u| in_epilogue(u))
    });
    transposed.then_some(true)
}
