//! Symbolic evaluation: [`Emitter::emit`] gives the SSA value of a node at affine coordinates, walking the expression
//! on an explicit stack ([`Step`]s): elementwise members combine their operands' values, views map the coordinates
//! ([`super::views`]), reductions open a `reduce` nest over fresh variables, a value materialized elsewhere is a
//! `load`; values are memoized per `(node, coords)` in the block where they are placed.

use super::{internal, Emitter, Frame, LowerError, ReduceRecord, Result};
use crate::fusion::Placement;
use crate::kernel::{Block, IndexExpr, Inst, Loop, ReduceKind, ScalarOp, ValueId, Var};
use kiln_ir::op::Scalar;
use kiln_ir::{BinaryOp, CmpDir, NodeId, Op, UnaryOp};

/// One step of [`Emitter::emit`]'s walk, on its explicit stack.
enum Step {
    /// Push the value of a node at some coordinates (memoized, or computed by the steps [`Emitter::start`] pushes).
    Value(NodeId, Vec<IndexExpr>),
    /// The node's operand values are on top of the value stack, operand 0 deepest: replace them by the node's value.
    Combine(NodeId, Vec<IndexExpr>, Combine),
    /// A reduction's body is emitted and its value is on top: close the body's block and append the `reduce`.
    CloseReduce(Box<OpenReduce>),
    /// The value on top is also this view's value at these coordinates: memoize it.
    Alias(NodeId, Vec<IndexExpr>),
}

/// The scalar op an elementwise node makes of its operands' values.
#[derive(Clone, Copy)]
enum Combine {
    Unary(UnaryOp),
    Cast,
    Binary(BinaryOp),
    Compare(CmpDir),
    Select,
    /// A `gather` along the axis, once its index's value is computed.
    Gather(usize),
}

/// A `reduce` whose body is being emitted into `frames[level + 1]`.
struct OpenReduce {
    node: NodeId,
    coords: Vec<IndexExpr>,
    level: usize,
    kind: ReduceKind,
    loops: Vec<Loop>,
    /// The blocks deeper than `level` on the path before the body's, restored when it closes.
    hidden: Vec<Frame>,
}

impl Emitter<'_> {
    fn lookup(&self, key: &(NodeId, Vec<IndexExpr>)) -> Option<ValueId> {
        self.frames
            .iter()
            .rev()
            .find_map(|f| f.memo.get(key).copied())
    }

    /// Records `v` as the value of `node` at `coords`, in the block where `v` is placed.
    fn memoize(&mut self, node: NodeId, coords: Vec<IndexExpr>, v: ValueId) {
        let level = self.value_level[v.index()];
        self.frames[level].memo.insert((node, coords), v);
    }

    /// The value of `node` at `coords`, emitted into the current kernel.
    ///
    /// A walk down the operands, depth first, operand 0's whole expression before operand 1's: the order of the
    /// instructions (and of the variables and values created) is that of the recursive definition. It runs on an
    /// explicit stack of [`Step`]s, not the thread's: a fused chain is as deep as the graph, and a million-op chain
    /// recursing once per op would overflow any thread's stack.
    pub(super) fn emit(&mut self, node: NodeId, coords: &[IndexExpr]) -> Result<ValueId> {
        let mut steps = vec![Step::Value(node, coords.to_vec())];
        let mut values: Vec<ValueId> = Vec::new();
        while let Some(step) = steps.pop() {
            match step {
                Step::Value(node, coords) => {
                    let key = (node, coords);
                    match self.lookup(&key) {
                        Some(v) => values.push(v),
                        None => self.start(key.0, key.1, &mut steps, &mut values)?,
                    }
                }
                Step::Combine(node, coords, combine) => {
                    let mut pop = || {
                        values
                            .pop()
                            .ok_or_else(|| internal("operand missing".into()))
                    };
                    let op = match combine {
                        Combine::Unary(u) => ScalarOp::Unary(u, pop()?),
                        Combine::Cast => ScalarOp::Cast(pop()?),
                        Combine::Binary(b) => {
                            let r = pop()?;
                            ScalarOp::Binary(b, pop()?, r)
                        }
                        Combine::Compare(d) => {
                            let r = pop()?;
                            ScalarOp::Compare(d, pop()?, r)
                        }
                        Combine::Select => {
                            let (b, a) = (pop()?, pop()?);
                            ScalarOp::Select(pop()?, a, b)
                        }
                        Combine::Gather(axis) => {
                            let at = pop()?;
                            self.gather(node, &coords, axis, at)?
                        }
                    };
                    let v = self.let_(self.graph.ty(node).dtype, op);
                    self.memoize(node, coords, v);
                    values.push(v);
                }
                Step::CloseReduce(reduce) => {
                    let value = values
                        .pop()
                        .ok_or_else(|| internal("reduction body without a value".into()))?;
                    let OpenReduce {
                        node,
                        coords,
                        level,
                        kind,
                        loops,
                        hidden,
                    } = *reduce;
                    let frame = self.frames.pop().expect("opened by `open_reduce`");
                    self.frames.extend(hidden);
                    let id = self.new_value(level);
                    self.frames[level].insts.push(Inst::Reduce {
                        id,
                        dtype: self.graph.ty(node).dtype,
                        kind,
                        loops,
                        body: Block { insts: frame.insts },
                        value,
                    });
                    self.memoize(node, coords, id);
                    values.push(id);
                }
                Step::Alias(node, coords) => {
                    let v = *values
                        .last()
                        .ok_or_else(|| internal("view without a value".into()))?;
                    self.memoize(node, coords, v);
                }
            }
        }
        match values[..] {
            [v] => Ok(v),
            _ => Err(internal(format!("{} values left for one", values.len()))),
        }
    }

    /// Starts on `node` at `coords`, which has no value yet: emits it if it needs no operand's value (pushing the
    /// value onto `values`), else pushes the steps that compute its operands and then combine them.
    fn start(
        &mut self,
        node: NodeId,
        coords: Vec<IndexExpr>,
        steps: &mut Vec<Step>,
        values: &mut Vec<ValueId>,
    ) -> Result<()> {
        let graph = self.graph;
        let n = graph.node(node);
        let dtype = n.ty.dtype;
        if let Some(buffer) = self.outside_buffer(node) {
            let index = self.linear(&coords, n.ty.dims());
            let v = self.let_(dtype, ScalarOp::Load { buffer, index });
            self.memoize(node, coords, v);
            values.push(v);
            return Ok(());
        }
        match self.part.placement[node.index()] {
            Placement::Inline => {}
            Placement::Kernel(k) if k == self.kernel => {}
            p => {
                return Err(internal(format!(
                    "node %{} ({}) is {p:?} without a buffer but used by kernel {}",
                    graph.label(node),
                    n.op.mnemonic(),
                    self.kernel
                )))
            }
        }
        let combine = match &n.op {
            Op::Unary(u) => Some(Combine::Unary(*u)),
            Op::Cast { .. } => Some(Combine::Cast),
            Op::Binary(b) => Some(Combine::Binary(*b)),
            Op::Compare(d) => Some(Combine::Compare(*d)),
            Op::Select => Some(Combine::Select),
            Op::Input { .. }
            | Op::Gather { .. }
            | Op::Constant { .. }
            | Op::Iota { .. }
            | Op::ReduceSum { .. }
            | Op::ReduceMax { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Matmul
            | Op::Pad { .. }
            | Op::Windows { .. }
            | Op::OverlapAdd { .. }
            | Op::AllReduce { .. } => None,
        };
        if let Op::Gather { axis } = n.op {
            // Only the index is a value computed here; `x` is read from its buffer by `gather`.
            steps.push(Step::Combine(node, coords.clone(), Combine::Gather(axis)));
            steps.push(Step::Value(n.operands[1], coords));
            return Ok(());
        }
        if let Some(combine) = combine {
            // Popped in reverse: operand 0 is computed first, as the recursive definition does.
            steps.push(Step::Combine(node, coords.clone(), combine));
            for &operand in n.operands.iter().rev() {
                steps.push(Step::Value(operand, coords.clone()));
            }
            return Ok(());
        }
        let v = match &n.op {
            Op::Input { .. } => return Err(internal("an input without a buffer".into())),
            Op::Constant { value, .. } => match value.as_splat() {
                Some(c) => self.let_(dtype, ScalarOp::constant(c)),
                None => return Err(LowerError::Materialize(node)),
            },
            Op::Iota { axis, .. } => self.let_(dtype, ScalarOp::Index(coords[*axis].clone())),
            Op::Unary(_)
            | Op::Cast { .. }
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Gather { .. } => return Err(internal("elementwise op not combined".into())),
            Op::ReduceSum { axes, keep_dims } | Op::ReduceMax { axes, keep_dims } => {
                let kind = if matches!(n.op, Op::ReduceSum { .. }) {
                    ReduceKind::Sum
                } else {
                    ReduceKind::Max
                };
                match self.empty_reduce(node, kind, axes) {
                    Some(identity) => identity,
                    None => return self.open_reduce(node, kind, axes, *keep_dims, coords, steps),
                }
            }
            Op::Pad { low, value, .. } => self.pad(node, &coords, low, value.get(0))?,
            Op::OverlapAdd {
                stride, dilation, ..
            } => self.overlap_add(node, &coords, stride, dilation)?,
            Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Windows { .. } => {
                match self.view_operand(node, &coords) {
                    // A view's value is its operand's at the mapped coordinates.
                    Some(Some((operand, c))) => {
                        steps.push(Step::Alias(node, coords));
                        steps.push(Step::Value(operand, c));
                        return Ok(());
                    }
                    _ => {
                        let operand = n.operands[0];
                        let Some(buffer) = self.outside_buffer(operand) else {
                            return Err(LowerError::Materialize(operand));
                        };
                        let index = self.linear(&coords, n.ty.dims());
                        self.let_(dtype, ScalarOp::Load { buffer, index })
                    }
                }
            }
            Op::Concat { .. } => return Err(LowerError::Materialize(node)),
            // The kernel's own all_reduce (the only place it is computed): a copy of its operand; the reduction
            // across processes is the runtime's, after the kernel.
            Op::AllReduce { .. } => {
                steps.push(Step::Alias(node, coords.clone()));
                steps.push(Step::Value(n.operands[0], coords));
                return Ok(());
            }
            Op::Matmul => {
                if self.core == Some(node) && coords == self.core_coords {
                    self.let_(dtype, ScalarOp::MatmulAcc)
                } else {
                    return Err(LowerError::Materialize(node));
                }
            }
        };
        self.memoize(node, coords, v);
        values.push(v);
        Ok(())
    }

    /// Records a reduction opened at `level` whose value depends on the variables of `kept` (its result's
    /// coordinates), for [`Emitter::split_point`] and [`Emitter::check_redundancy`].
    pub(super) fn record_reduce(&mut self, node: NodeId, level: usize, kept: &[IndexExpr]) {
        let mut deps: Vec<Var> = kept
            .iter()
            .flat_map(|c| c.terms.iter().map(|t| t.0))
            .collect();
        deps.sort();
        deps.dedup();
        let mut enclosing: Vec<Var> = self
            .parallel
            .iter()
            .filter(|l| l.extent > 1)
            .map(|l| l.var)
            .collect();
        for f in &self.frames[1..=level] {
            enclosing.extend(
                f.loop_vars
                    .iter()
                    .filter(|v| self.var_extent[v.0 as usize] > 1),
            );
        }
        self.reduces.push(ReduceRecord {
            node,
            level,
            deps,
            enclosing,
        });
    }

    /// A reduction whose groups are empty (a reduced dim of extent 0) is its identity (SPEC §3.7): a constant, and no
    /// loop. A loop of no trips would still leave the operand's loads behind: their indices drop the variable of
    /// extent 0, so they would be hoisted out of the loop and read an empty buffer at every point.
    fn empty_reduce(&mut self, node: NodeId, kind: ReduceKind, axes: &[usize]) -> Option<ValueId> {
        let n = self.graph.node(node);
        let from = self.graph.ty(n.operands[0]).dims();
        if !axes.iter().any(|&d| from[d] == 0) {
            return None;
        }
        let dtype = n.ty.dtype;
        let identity = match kind {
            ReduceKind::Sum => Scalar::zero(dtype),
            ReduceKind::Max => Scalar::lowest(dtype),
        };
        Some(self.let_(dtype, ScalarOp::constant(identity.to_f64())))
    }

    /// Opens a `reduce` over fresh variables for the reduced axes, placed at the level of the kept coordinates: a
    /// new block for its body, and the steps that emit the body and then close it ([`Step::CloseReduce`]).
    fn open_reduce(
        &mut self,
        node: NodeId,
        kind: ReduceKind,
        axes: &[usize],
        keep_dims: bool,
        coords: Vec<IndexExpr>,
        steps: &mut Vec<Step>,
    ) -> Result<()> {
        let n = self.graph.node(node);
        let operand = n.operands[0];
        let from = self.graph.ty(operand).dims().to_vec();
        let kept: Vec<IndexExpr> = if keep_dims {
            (0..from.len())
                .filter(|d| !axes.contains(d))
                .map(|d| coords[d].clone())
                .collect()
        } else {
            coords.clone()
        };
        let level = kept.iter().map(|c| self.expr_level(c)).max().unwrap_or(0);
        let mut loops = Vec::new();
        let mut operand_coords = Vec::with_capacity(from.len());
        let mut kept_iter = kept.iter();
        for (d, &extent) in from.iter().enumerate() {
            if !axes.contains(&d) {
                operand_coords.push(
                    kept_iter
                        .next()
                        .expect("one kept coordinate per kept dim")
                        .clone(),
                );
            } else if extent == 1 {
                operand_coords.push(Self::constant(0));
            } else {
                let var = self.new_var(extent, level + 1);
                loops.push(Loop { var, extent });
                operand_coords.push(self.var_expr(var));
            }
        }
        self.record_reduce(node, level, &kept);
        // The body's block at `level + 1`, hiding deeper blocks of the current path (as `nested` does) until
        // `Step::CloseReduce` restores them.
        let hidden = self.frames.split_off(level + 1);
        self.frames.push(Frame {
            loop_vars: loops.iter().map(|l| l.var).collect(),
            ..Frame::default()
        });
        steps.push(Step::CloseReduce(Box::new(OpenReduce {
            node,
            coords,
            level,
            kind,
            loops,
            hidden,
        })));
        steps.push(Step::Value(operand, operand_coords));
        Ok(())
    }
}
