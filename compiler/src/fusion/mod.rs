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
//!    (a column sum inside a row-parallel kernel) is materialized instead.
//! 3. **Matmul keeps its own kernel with an elementwise epilogue.** A matmul whose users are all elementwise ops of
//!    one pure-elementwise kernel of its shape becomes that kernel's core: bias add, activation and the backward's
//!    `select(x > 0, g, 0)` run on the accumulator before the store. Operands are read through strided views, so
//!    a transpose, slice or broadcast of a buffer feeding a matmul costs nothing; other operands are materialized.
//! 4. **Cheap ops are recomputed, expensive ones never duplicated.** Broadcasts, reshapes, transposes, slices, iota
//!    and splat constants are *inline*: recomputed inside every consumer (they are index arithmetic). Every other op
//!    (elementwise, reduction, matmul, concat) is computed by exactly one kernel; a value used by two kernels, a
//!    graph output and a matmul operand is materialized once in a buffer. Within one kernel, an elementwise value
//!    used by two stages (softmax's `exp(x - max)` in the sum and in the write) is recomputed in each stage.
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
use kiln_ir::{verify, Graph, IrError, Literal, NodeId, Op, OpClass};
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
    /// Recomputed inside every kernel that uses it (views, iota, splat constants).
    Inline,
    /// Computed by kernel `k` (materialized in a buffer iff it is that kernel's root).
    Kernel(usize),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KernelKind {
    Loop,
    Matmul,
}

/// One kernel of a partition: the nodes it computes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KernelGroup {
    pub kind: KernelKind,
    /// The kernel's last value, which defines its iteration space (kernels run in ascending root order).
    pub root: NodeId,
    /// The members written to buffers: the root first, then values of the root's shape that other kernels also
    /// read (e.g. a ReLU mask kept for the backward pass). Every other member is used only inside the kernel.
    pub stored: Vec<NodeId>,
    /// For a matmul kernel: the matmul whose epilogue the other members form.
    pub core: Option<NodeId>,
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
            };
            let stored: Vec<String> = k.stored.iter().map(|&n| graph.label(n)).collect();
            let _ = writeln!(
                out,
                "k{i} {kind} {}: {} writes {}",
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

/// Partitions `graph` and lowers it to the kernel IR.
pub fn lower(graph: &Graph) -> Result<KernelProgram, IrError> {
    verify(graph)?;
    fixpoint(graph).1
}

/// Partition, try to lower, materialize what lowering asks for, repeat. Returns the last partition tried.
fn fixpoint(graph: &Graph) -> (Partition, Result<KernelProgram, IrError>) {
    let mut forced = BTreeSet::new();
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
        Op::Constant { value, .. } => matches!(value, Literal::Splat(_)),
        Op::Iota { .. }
        | Op::Broadcast { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Slice { .. } => true,
        _ => false,
    }
}

struct Building {
    kind: KernelKind,
    root: NodeId,
    stored: Vec<NodeId>,
    core: Option<NodeId>,
    nodes: Vec<NodeId>,
    /// Only elementwise members so far (a matmul may still become the core).
    pure_elementwise: bool,
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
                op if is_inline_op(op) && !is_output[id.index()] && !forced.contains(&id) => {
                    Placement::Inline
                }
                // Decided below.
                _ => Placement::Kernel(usize::MAX),
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
        let mut joined = None;
        let single = (kernels.len() == 1).then(|| *kernels.iter().next().expect("one"));
        if let (Some(k), false, false, false) = (
            single,
            matmul_operand,
            is_output[id.index()],
            forced.contains(&id),
        ) {
            let g = &groups[k];
            let ok = match node.op.class() {
                OpClass::Elementwise | OpClass::Source => true,
                // A concat, or a forced view: always a kernel of its own.
                OpClass::Movement => false,
                OpClass::Reduction => g.kind == KernelKind::Loop,
                OpClass::Contraction => {
                    g.kind == KernelKind::Loop
                        && g.pure_elementwise
                        && graph.ty(g.root) == &node.ty
                        && users[id.index()]
                            .iter()
                            .filter(|u| live[u.index()])
                            .all(|&u| {
                                graph.node(u).op.class() == OpClass::Elementwise
                                    && placement[u.index()] == Placement::Kernel(k)
                            })
                }
            };
            if ok {
                joined = Some(k);
            }
        }
        // Multi-output: an elementwise value that several kernels read is written by the first of them (in execution
        // order) when it has that kernel's shape, instead of getting a kernel of its own.
        let mut extra_root = None;
        if let (None, OpClass::Elementwise, false) = (joined, node.op.class(), forced.contains(&id))
        {
            if let Some(&first) = kernels.iter().min_by_key(|&&k| groups[k].root) {
                let g = &groups[first];
                let ok = graph.ty(g.root).shape == node.ty.shape
                    && !matches!(graph.node(g.root).op, Op::Concat { .. })
                    && !matmul_kernels.contains(&first);
                if ok {
                    extra_root = Some(first);
                }
            }
        }
        if let Some(k) = extra_root {
            groups[k].nodes.push(id);
            groups[k].stored.push(id);
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
                        g.pure_elementwise = false;
                    }
                    OpClass::Elementwise | OpClass::Source => {}
                    _ => g.pure_elementwise = false,
                }
                placement[id.index()] = Placement::Kernel(k);
            }
            None => {
                let is_matmul = node.op.class() == OpClass::Contraction;
                groups.push(Building {
                    kind: if is_matmul {
                        KernelKind::Matmul
                    } else {
                        KernelKind::Loop
                    },
                    root: id,
                    stored: vec![id],
                    core: is_matmul.then_some(id),
                    nodes: vec![id],
                    pure_elementwise: node.op.class() == OpClass::Elementwise,
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
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        for &u in &users[n.index()] {
            if !live[u.index()] {
                continue;
            }
            if let (Op::Matmul, Placement::Kernel(k)) = (&graph.node(u).op, placement[u.index()]) {
                matmul_kernels.insert(k);
            }
            match placement[u.index()] {
                Placement::Inline => stack.push(u),
                Placement::Kernel(k) => {
                    kernels.insert(k);
                }
                _ => {}
            }
        }
    }
    (kernels, matmul_kernels)
}
