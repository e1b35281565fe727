//! Lowering a partition to the kernel IR.
//!
//! Each kernel is emitted by evaluating its root *symbolically*: `emit(node, coords)` returns the SSA value of
//! `node` at the element whose coordinates are the affine expressions `coords` of the kernel's loop variables.
//! Elementwise members combine their operands at the same coordinates, views map the coordinates (broadcast: 0 on
//! stretched dims, transpose: permuted, slice: shifted, reshape: re-split where still affine), reductions open a
//! `reduce` loop nest over fresh variables, and any value materialized elsewhere is a `load`. Every instruction is
//! placed in the outermost block where its variables are bound (loop-invariant hoisting), and values are memoized per
//! `(node, coords)` and per instruction, so a row's `max` is computed once per row and reused by every stage.
//!
//! `emit` ([`eval`]) walks the expression on an explicit stack, not the thread's: a fused chain, or a chain of views, is as deep
//! as the graph. `renumber` recurses once per nested block, fewer than 64 (see [`crate::kernel`]).

mod eval;
mod guarded;
mod renumber;
mod views;

use super::{KernelKind, Partition, Placement};
use crate::kernel::{
    Block, Buffer, BufferId, BufferKind, CollectiveKernel, IndexExpr, Inst, Kernel, KernelProgram,
    Loop, LoopKernel, MatmulKernel, ProgramInput, ProgramOutput, ScalarOp, ValueId, Var,
};
use kiln_ir::{DType, Graph, IrError, NodeId, Op};
use renumber::renumber;
use std::collections::HashMap;

pub(super) enum LowerError {
    /// Lowering needs this node in a buffer: re-partition with it materialized.
    Materialize(NodeId),
    Ir(IrError),
}

type Result<T> = std::result::Result<T, LowerError>;

fn internal(message: String) -> LowerError {
    LowerError::Ir(IrError::Invalid(format!("fusion: {message}")))
}

pub(super) fn lower_partition(graph: &Graph, part: &Partition) -> Result<KernelProgram> {
    let mut buffers = Vec::new();
    let mut buffer_of: Vec<Option<BufferId>> = vec![None; graph.len()];
    let push = |buffers: &mut Vec<Buffer>, b: Buffer| {
        buffers.push(b);
        BufferId(buffers.len() as u32 - 1)
    };
    let mut inputs = Vec::new();
    for input in graph.inputs() {
        let id = push(
            &mut buffers,
            Buffer {
                name: input.name.to_string(),
                ty: input.ty.clone(),
                kind: BufferKind::Input,
            },
        );
        buffer_of[input.id.index()] = Some(id);
        inputs.push(ProgramInput {
            name: input.name.to_string(),
            buffer: id,
        });
    }
    for id in graph.ids() {
        if let (Placement::Constant, Op::Constant { value, .. }) =
            (part.placement[id.index()], &graph.node(id).op)
        {
            buffer_of[id.index()] = Some(push(
                &mut buffers,
                Buffer {
                    name: graph.label(id),
                    ty: graph.ty(id).clone(),
                    kind: BufferKind::Constant(value.clone()),
                },
            ));
        }
    }
    for node in part.stored() {
        let output = graph.outputs().iter().find(|o| o.value == node);
        buffer_of[node.index()] = Some(push(
            &mut buffers,
            Buffer {
                name: output.map_or_else(|| graph.label(node), |o| o.name.clone()),
                ty: graph.ty(node).clone(),
                kind: if output.is_some() {
                    BufferKind::Output
                } else {
                    BufferKind::Temp
                },
            },
        ));
    }
    let mut outputs = Vec::new();
    for o in graph.outputs() {
        let buffer = buffer_of[o.value.index()]
            .ok_or_else(|| internal(format!("output `{}` has no buffer", o.name)))?;
        outputs.push(ProgramOutput {
            name: o.name.clone(),
            buffer,
            aliases: o.aliases.clone(),
        });
    }
    let mut kernels = Vec::new();
    for k in 0..part.kernels.len() {
        let mut kernel = lower_kernel(graph, part, &buffer_of, k)?;
        renumber(&mut kernel);
        kernels.push(kernel);
    }
    Ok(KernelProgram {
        name: graph.name.clone(),
        buffers,
        kernels,
        inputs,
        outputs,
    })
}

fn lower_kernel(
    graph: &Graph,
    part: &Partition,
    buffer_of: &[Option<BufferId>],
    k: usize,
) -> Result<Kernel> {
    let group = &part.kernels[k];
    let root = group.root;
    let name = graph.label(root);
    let new = || Emitter::new(graph, part, buffer_of, k);
    match group.kind {
        KernelKind::Matmul => new().matmul(name),
        KernelKind::Collective => {
            // Every dim parallel: a copy has no reductions to keep in a row.
            let Op::AllReduce { op, .. } = graph.node(root).op else {
                return Err(internal(format!("kernel `{name}` is no all_reduce")));
            };
            let buffer = buffer_of[root.index()]
                .ok_or_else(|| internal(format!("all_reduce `{name}` has no buffer")))?;
            let mut e = new();
            e.root_loop(graph.ty(root).rank())?;
            match e.finish_loop(name) {
                Kernel::Loop(copy) => Ok(Kernel::Collective(CollectiveKernel { op, copy, buffer })),
                other => Ok(other),
            }
        }
        KernelKind::Loop if matches!(graph.node(root).op, Op::Concat { .. }) => {
            let mut e = new();
            e.concat()?;
            e.check_redundancy()?;
            Ok(e.finish_loop(name))
        }
        KernelKind::Loop => {
            // Try every dim of the root parallel, then keep parallel only the leading dims that the reductions
            // depend on; the rest of each row becomes a sequential `for`.
            let rank = graph.ty(root).rank();
            let mut e = new();
            e.root_loop(rank)?;
            let split = e.split_point(rank);
            if split != rank {
                e = new();
                e.root_loop(split)?;
            }
            e.check_redundancy()?;
            Ok(e.finish_loop(name))
        }
    }
}

/// A block under construction.
#[derive(Default)]
struct Frame {
    insts: Vec<Inst>,
    /// `(node, coords)` → value, for values placed in this block.
    memo: HashMap<(NodeId, Vec<IndexExpr>), ValueId>,
    /// Instruction → value, for value numbering.
    cse: HashMap<(ScalarOp, DType), ValueId>,
    /// The variables bound by the loop owning this block.
    loop_vars: Vec<Var>,
}

/// A reduction emitted into the kernel: the variables its value depends on, and those of the loops around it.
struct ReduceRecord {
    node: NodeId,
    level: usize,
    deps: Vec<Var>,
    enclosing: Vec<Var>,
}

struct Emitter<'a> {
    graph: &'a Graph,
    part: &'a Partition,
    buffer_of: &'a [Option<BufferId>],
    kernel: usize,
    root: NodeId,
    /// Values stored besides the root, at the root's coordinates.
    extra_roots: Vec<NodeId>,
    core: Option<NodeId>,
    core_coords: Vec<IndexExpr>,
    var_extent: Vec<usize>,
    var_level: Vec<usize>,
    value_level: Vec<usize>,
    /// `frames[l]` is the block at nesting level `l` on the current path; level 0 is the kernel body.
    frames: Vec<Frame>,
    parallel: Vec<Loop>,
    reduces: Vec<ReduceRecord>,
}

impl<'a> Emitter<'a> {
    fn new(
        graph: &'a Graph,
        part: &'a Partition,
        buffer_of: &'a [Option<BufferId>],
        kernel: usize,
    ) -> Emitter<'a> {
        let group = &part.kernels[kernel];
        Emitter {
            graph,
            part,
            buffer_of,
            kernel,
            root: group.root,
            extra_roots: group.stored[1..].to_vec(),
            core: group.core,
            core_coords: Vec::new(),
            var_extent: Vec::new(),
            var_level: Vec::new(),
            value_level: Vec::new(),
            frames: vec![Frame::default()],
            parallel: Vec::new(),
            reduces: Vec::new(),
        }
    }

    // ---- variables and affine expressions ----

    fn new_var(&mut self, extent: usize, level: usize) -> Var {
        self.var_extent.push(extent);
        self.var_level.push(level);
        Var(self.var_extent.len() as u32 - 1)
    }

    fn expr_level(&self, e: &IndexExpr) -> usize {
        e.terms
            .iter()
            .map(|(v, _)| self.var_level[v.0 as usize])
            .max()
            .unwrap_or(0)
    }

    // ---- instructions ----

    /// Appends `%n: dtype = op` to the outermost block where its operands are defined (or reuses an equal value).
    fn let_(&mut self, dtype: DType, op: ScalarOp) -> ValueId {
        let vl = |v: &ValueId| self.value_level[v.index()];
        let level = match &op {
            ScalarOp::Load { index, .. } | ScalarOp::Index(index) => self.expr_level(index),
            ScalarOp::LoadOr { dims, .. } => dims
                .iter()
                .flat_map(|d| &d.terms)
                .map(|(v, _)| self.var_level[v.0 as usize])
                .max()
                .unwrap_or(0),
            ScalarOp::LoadAt { index, at, .. } => self.expr_level(index).max(vl(at)),
            ScalarOp::Const { .. } | ScalarOp::MatmulAcc => 0,
            ScalarOp::Unary(_, x) | ScalarOp::Cast(x) => vl(x),
            ScalarOp::Binary(_, x, y) | ScalarOp::Compare(_, x, y) => vl(x).max(vl(y)),
            ScalarOp::Select(c, x, y) => vl(c).max(vl(x)).max(vl(y)),
        };
        let key = (op, dtype);
        if let Some(&v) = self.frames[level].cse.get(&key) {
            return v;
        }
        let id = self.new_value(level);
        self.frames[level].insts.push(Inst::Let {
            id,
            dtype,
            op: key.0.clone(),
        });
        self.frames[level].cse.insert(key, id);
        id
    }

    fn new_value(&mut self, level: usize) -> ValueId {
        self.value_level.push(level);
        ValueId(self.value_level.len() as u32 - 1)
    }

    fn store(&mut self, node: NodeId, coords: &[IndexExpr], value: ValueId) -> Result<()> {
        let buffer = self.buffer_of[node.index()]
            .ok_or_else(|| internal(format!("root {node} has no buffer")))?;
        let index = self.linear(coords, self.graph.ty(node).dims());
        let level = self.expr_level(&index).max(self.value_level[value.index()]);
        let level = level.max(self.frames.len() - 1);
        self.frames[level].insts.push(Inst::Store {
            buffer,
            index,
            value,
        });
        Ok(())
    }

    /// Runs `f` in a new block at `level`, bound to `loop_vars`, hiding deeper blocks of the current path.
    fn nested<T>(
        &mut self,
        level: usize,
        loop_vars: Vec<Var>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<(T, Block)> {
        let hidden = self.frames.split_off(level);
        self.frames.push(Frame {
            loop_vars,
            ..Frame::default()
        });
        let result = f(self);
        let frame = self.frames.pop().expect("pushed above");
        self.frames.extend(hidden);
        Ok((result?, Block { insts: frame.insts }))
    }

    // ---- kernels ----

    fn finish_loop(mut self, name: String) -> Kernel {
        let body = Block {
            insts: std::mem::take(&mut self.frames[0].insts),
        };
        Kernel::Loop(LoopKernel {
            name,
            parallel: self.parallel,
            body,
        })
    }

    fn parallel_vars(&mut self, dims: &[usize]) -> Vec<Var> {
        dims.iter()
            .map(|&extent| {
                let var = self.new_var(extent, 0);
                self.parallel.push(Loop { var, extent });
                var
            })
            .collect()
    }

    /// A loop root: `dims[..split]` parallel, the rest a `for` around the store.
    fn root_loop(&mut self, split: usize) -> Result<()> {
        let root = self.root;
        let dims = self.graph.ty(root).dims().to_vec();
        let vars = self.parallel_vars(&dims[..split]);
        let mut coords: Vec<IndexExpr> = vars.iter().map(|&v| self.var_expr(v)).collect();
        let mut loops = Vec::new();
        for &extent in &dims[split..] {
            if extent == 1 {
                coords.push(Self::constant(0));
            } else {
                let var = self.new_var(extent, 1);
                loops.push(Loop { var, extent });
                coords.push(self.var_expr(var));
            }
        }
        self.write_row(root, root, coords.clone(), coords, loops)
    }

    /// Stores `value_node` at `value_coords` into `root`'s buffer at `store_coords`, inside a `for (loops)` (at
    /// level 1) if there are loops.
    fn write_row(
        &mut self,
        root: NodeId,
        value_node: NodeId,
        value_coords: Vec<IndexExpr>,
        store_coords: Vec<IndexExpr>,
        loops: Vec<Loop>,
    ) -> Result<()> {
        if loops.is_empty() {
            return self.store_all(root, value_node, &value_coords, &store_coords);
        }
        if loops.iter().any(|l| l.extent == 0) {
            // Rows of no elements (a concat's empty operand, a row over a 0-sized dim): nothing to store, and no
            // load may be emitted, since one whose index drops the variable of extent 0 would be hoisted out of the
            // loop and read at every parallel point.
            return Ok(());
        }
        let vars = loops.iter().map(|l| l.var).collect();
        let ((), body) = self.nested(1, vars, |e| {
            e.store_all(root, value_node, &value_coords, &store_coords)
        })?;
        self.frames[0].insts.push(Inst::For { loops, body });
        Ok(())
    }

    /// Stores `value_node` at `value_coords` into `root`'s buffer, and every extra root at the same coordinates.
    fn store_all(
        &mut self,
        root: NodeId,
        value_node: NodeId,
        value_coords: &[IndexExpr],
        store_coords: &[IndexExpr],
    ) -> Result<()> {
        let v = self.emit(value_node, value_coords)?;
        self.store(root, store_coords, v)?;
        for extra in self.extra_roots.clone() {
            let v = self.emit(extra, value_coords)?;
            self.store(extra, store_coords, v)?;
        }
        Ok(())
    }

    /// How many leading root dims to keep parallel: up to the last one a top-level reduction depends on (all of them
    /// if there is no reduction).
    fn split_point(&self, rank: usize) -> usize {
        let top: Vec<&ReduceRecord> = self.reduces.iter().filter(|r| r.level == 0).collect();
        if top.is_empty() {
            return rank;
        }
        top.iter()
            .flat_map(|r| r.deps.iter())
            .filter_map(|v| self.parallel.iter().position(|l| l.var == *v))
            .map(|p| p + 1)
            .max()
            .unwrap_or(0)
    }

    /// A reduction that doesn't depend on every loop around it would be recomputed for nothing: materialize it.
    fn check_redundancy(&self) -> Result<()> {
        for r in &self.reduces {
            if r.enclosing.iter().any(|v| !r.deps.contains(v)) {
                return Err(LowerError::Materialize(r.node));
            }
        }
        Ok(())
    }

    /// A concat: the leading dims before `axis` parallel, then one `for` per operand writing its slab.
    fn concat(&mut self) -> Result<()> {
        let root = self.root;
        let Op::Concat { axis } = self.graph.node(root).op else {
            return Err(internal("concat kernel without a concat".into()));
        };
        let dims = self.graph.ty(root).dims().to_vec();
        let vars = self.parallel_vars(&dims[..axis]);
        let outer: Vec<IndexExpr> = vars.iter().map(|&v| self.var_expr(v)).collect();
        let mut offset = 0;
        for operand in self.graph.node(root).operands.clone() {
            let odims = self.graph.ty(operand).dims().to_vec();
            let mut coords = outer.clone();
            let mut loops = Vec::new();
            for &extent in &odims[axis..] {
                if extent == 1 {
                    coords.push(Self::constant(0));
                } else {
                    let var = self.new_var(extent, 1);
                    loops.push(Loop { var, extent });
                    coords.push(self.var_expr(var));
                }
            }
            let mut store_coords = coords.clone();
            store_coords[axis].offset += offset;
            self.write_row(root, operand, coords, store_coords, loops)?;
            offset += odims[axis];
        }
        Ok(())
    }

    fn matmul(mut self, name: String) -> Result<Kernel> {
        let core = self
            .core
            .ok_or_else(|| internal("matmul kernel without a matmul".into()))?;
        let node = self.graph.node(core);
        let (a, b) = (node.operands[0], node.operands[1]);
        let transposed = self.part.kernels[self.kernel].core_transposed;
        // The kernel iterates the root's shape: the core's, or its transpose.
        let dims = self.graph.ty(self.root).dims().to_vec();
        let rank = dims.len();
        let k = self.graph.ty(a).dims()[rank - 1];
        let vars = self.parallel_vars(&dims);
        let coords: Vec<IndexExpr> = vars.iter().map(|&v| self.var_expr(v)).collect();
        let l = self.new_var(k, 0);
        let (batch, i, j) = (&vars[..rank - 2], vars[rank - 2], vars[rank - 1]);
        let (a_view, b_view) = if transposed {
            // (AB)ᵀ[i, j] = Σ_l Bᵀ[i, l] Aᵀ[l, j] = Σ_l B[l, i] A[j, l]: the operands swap, read transposed.
            self.core_coords = coords.clone();
            let n = self.core_coords.len();
            self.core_coords.swap(n - 2, n - 1);
            (
                self.matrix_view(b, batch, (l, i), i, l)?,
                self.matrix_view(a, batch, (j, l), l, j)?,
            )
        } else {
            self.core_coords = coords.clone();
            (
                self.matrix_view(a, batch, (i, l), i, l)?,
                self.matrix_view(b, batch, (l, j), l, j)?,
            )
        };
        self.store_all(self.root, self.root, &coords, &coords)?;
        Ok(Kernel::Matmul(MatmulKernel {
            name,
            parallel: self.parallel,
            k,
            dtype: node.ty.dtype,
            a: a_view,
            b: b_view,
            epilogue: Block {
                insts: std::mem::take(&mut self.frames[0].insts),
            },
        }))
    }
}
