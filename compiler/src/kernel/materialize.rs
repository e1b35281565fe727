//! Materialize a reduction's value in the output row, so it is computed once (a row softmax's `exp`).
//!
//! Fusion writes a row softmax as one kernel whose point computes `exp(x - max)` twice per element: once in the
//! `reduce.sum` and again in the `for` that writes the row (cost-model rule 4 recomputes rather than stores). On the
//! CPU that `exp` is the dominant cost. When the `for` stores into a row of a buffer that can hold the values, this
//! pass stores them there first and reads them back:
//!
//! ```text
//! %2 = reduce.sum (i2<N) { ..; %5 = exp %4 } yield %5      for (i2<N) { ..; %5 = exp %4; store b1[idx(i2)] = %5 }
//! for (i3<N) {                                        ==>  %2 = reduce.sum (i4<N) { %10 = load b1[idx(i4)] } yield %10
//!   ..; %8 = exp %7; %9 = div %8, %2                       for (i3<N) {
//!   store b1[idx(i3)] = %9                                   %8 = load b1[idx(i3)]; %9 = div %8, %2
//! }                                                          store b1[idx(i3)] = %9
//!                                                          }
//! ```
//!
//! The materializing `for` takes the reduction's loops and body as they were; the reduction gets fresh loop
//! variables and a load; in the writing `for`, every value with the reduction's expression becomes a load, and what
//! only fed it is dropped.
//!
//! # When
//!
//! In the top-level block of a loop kernel, a `reduce` R and a later `for` F over the same extents, and a store
//! `store b[idx] = ..` in F's body, such that:
//!
//! 1. **F recomputes R's value**: a `let` of F's body has the expression of R's yield, modulo the loop variables
//!    (position by position), down to loads, constants, `index` and values from outside both nests. The expression
//!    has a transcendental op (`exp log tanh logistic pow`): a store and two loads per element must buy more than
//!    they cost. Both bodies are straight-line (lets, and stores in F); R's body loads no buffer the kernel writes,
//!    so both nests see the same values. The value is defined before the store in F's body.
//! 2. **b can hold the row**: b has the value's dtype, is a temp or an output (never an input, a constant or an
//!    output aliasing an input, which `crate::memory` may write in place of the input), and this store is the
//!    kernel's only store to b and no instruction of the kernel loads b. So between the materializing `for` and F's
//!    store, each element holds exactly the materialized value, and no one else looks.
//! 3. **The row is dense and small**: `idx` moves row-major over F's loops (stride 1 for the innermost, then the
//!    product of the inner extents), so each point of F's nest has an element of its own (the same affine index for
//!    all three nests, with R's or the fresh variables substituted), the row is `N` contiguous elements, and
//!    `N × element size <= ` [`MAX_ROW_BYTES`] (32 KiB). The row is written once and read twice more right after,
//!    while it is in the L1 data cache (32–48 KiB on current x86-64 and Arm cores), so the extra passes are cheap
//!    beside a polynomial `exp` per element. A longer row would be evicted between the passes and pay the memory
//!    traffic of an extra read and write.
//! 4. **Every backend keeps its summation order**: the value is f32, R's body computes only f32 and bool values
//!    without `index`, and its loads move by 0 or 1 elements with R's innermost loop. The rewritten reduction loads
//!    a dense row, so a backend that chooses how to sum from the shape of the body (the CPU runs such a sum in f32x4
//!    lanes, and would start doing so for f64 or `index` bodies the rewrite simplifies) chooses as it did before.
//!
//! Each rewrite makes b read in its kernel, so a buffer is materialized at most once; only the first matching
//! reduction of a `for` is rewritten (a second one, or a reduction after the materialization, still recomputes).
//!
//! Preserves: every program output bit for bit, on the kernel interpreter and every backend: each element of the
//! row is computed by the same operations from the same inputs, the reduction folds the same values in the same
//! order, and F combines each with the same other operands before the final store, which is the last one to the
//! element. Requires: a program that satisfies the kernel IR contract ([`super`]). Leaves a program in which a
//! kernel may load an element it stored earlier at the same parallel point (the contract allows exactly that).

use super::{
    Block, BufferId, BufferKind, IndexExpr, Inst, Kernel, KernelProgram, LoopKernel, ScalarOp,
    ValueId, Var,
};
use kiln_ir::op::Cost;
use kiln_ir::{BinaryOp, CmpDir, DType, UnaryOp};
use std::collections::{HashMap, HashSet};

/// The largest row (elements × element size, in bytes) this pass materializes: within an L1 data cache.
pub const MAX_ROW_BYTES: usize = 32 * 1024;

/// Rewrites every kernel of `program` where the conditions of the module doc hold. Returns whether anything changed.
pub fn run(program: &mut KernelProgram) -> bool {
    let mut changed = false;
    for k in 0..program.kernels.len() {
        let Kernel::Loop(kernel) = &program.kernels[k] else {
            continue;
        };
        let mut kernel = kernel.clone();
        let mut any = false;
        while let Some(site) = find(program, &kernel) {
            apply(&mut kernel, site);
            any = true;
        }
        if any {
            program.kernels[k] = Kernel::Loop(kernel);
            changed = true;
        }
    }
    changed
}

/// One rewrite: the positions of R and F in the kernel's top-level block, the buffer and index of F's store (in
/// F's variables), and the positions in F's body of the lets that recompute R's value.
struct Site {
    reduce: usize,
    write: usize,
    buffer: BufferId,
    index: IndexExpr,
    recomputed: Vec<usize>,
}

fn find(program: &KernelProgram, kernel: &LoopKernel) -> Option<Site> {
    let insts = &kernel.body.insts;
    let (stores, loads) = buffer_uses(&kernel.body);
    for (r, reduce) in insts.iter().enumerate() {
        let Inst::Reduce {
            loops: r_loops,
            body: r_body,
            value,
            ..
        } = reduce
        else {
            continue;
        };
        let r_vars: Vec<Var> = r_loops.iter().map(|l| l.var).collect();
        if !reduction_qualifies(r_body, *value, &r_vars, &stores) {
            continue;
        }
        let mut exprs = Exprs::default();
        let r_numbers = exprs.number(r_body, &r_vars);
        let wanted = r_numbers[value];
        if !exprs.has_transcendental(wanted) {
            continue;
        }
        for (f, write) in insts.iter().enumerate().skip(r + 1) {
            let Inst::For {
                loops: f_loops,
                body: f_body,
            } = write
            else {
                continue;
            };
            let same_extents = f_loops.len() == r_loops.len()
                && f_loops
                    .iter()
                    .zip(r_loops)
                    .all(|(a, b)| a.extent == b.extent);
            let straight = f_body
                .insts
                .iter()
                .all(|i| matches!(i, Inst::Let { .. } | Inst::Store { .. }));
            if !same_extents || !straight {
                continue;
            }
            let f_vars: Vec<Var> = f_loops.iter().map(|l| l.var).collect();
            let f_numbers = exprs.number(f_body, &f_vars);
            let recomputed: Vec<usize> = f_body
                .insts
                .iter()
                .enumerate()
                .filter_map(|(p, i)| match i {
                    Inst::Let { id, .. } if f_numbers[id] == wanted => Some(p),
                    _ => None,
                })
                .collect();
            let Some(&last_recomputed) = recomputed.last() else {
                continue;
            };
            let dtype = DType::F32;
            let extents: Vec<usize> = f_loops.iter().map(|l| l.extent).collect();
            let store = f_body.insts.iter().enumerate().find_map(|(p, i)| match i {
                Inst::Store { buffer, index, .. }
                    if p > last_recomputed
                        && holds_row(program, *buffer, dtype, &stores, &loads)
                        && dense_row(index, &f_vars, &extents, dtype) =>
                {
                    Some((*buffer, index.clone()))
                }
                _ => None,
            });
            if let Some((buffer, index)) = store {
                return Some(Site {
                    reduce: r,
                    write: f,
                    buffer,
                    index,
                    recomputed,
                });
            }
        }
    }
    None
}

/// Condition 1 (straight-line, reads nothing the kernel writes) and 4 (f32, no `index`, loads of stride 0 or 1).
fn reduction_qualifies(
    body: &Block,
    value: ValueId,
    vars: &[Var],
    stores: &HashMap<BufferId, usize>,
) -> bool {
    let innermost = vars.last().copied();
    let mut defines_value = false;
    for inst in &body.insts {
        let Inst::Let { id, dtype, op } = inst else {
            return false;
        };
        if !matches!(dtype, DType::F32 | DType::Bool) {
            return false;
        }
        match op {
            ScalarOp::Load { buffer, index } => {
                let stride = innermost.map_or(0, |k| index.stride_of(k));
                if stores.contains_key(buffer) || stride > 1 {
                    return false;
                }
            }
            ScalarOp::LoadOr { .. }
            | ScalarOp::LoadAt { .. }
            | ScalarOp::Index(_)
            | ScalarOp::MatmulAcc => return false,
            ScalarOp::Const { .. }
            | ScalarOp::Unary(..)
            | ScalarOp::Cast(_)
            | ScalarOp::Binary(..)
            | ScalarOp::Compare(..)
            | ScalarOp::Select(..) => {}
        }
        if *id == value {
            defines_value = *dtype == DType::F32;
        }
    }
    defines_value
}

/// Condition 2: `buffer` can hold the row.
fn holds_row(
    program: &KernelProgram,
    buffer: BufferId,
    dtype: DType,
    stores: &HashMap<BufferId, usize>,
    loads: &HashSet<BufferId>,
) -> bool {
    let b = &program.buffers[buffer.index()];
    let aliased = program
        .outputs
        .iter()
        .any(|o| o.buffer == buffer && o.aliases.is_some());
    matches!(b.kind, BufferKind::Temp | BufferKind::Output)
        && !aliased
        && b.ty.dtype == dtype
        && stores.get(&buffer) == Some(&1)
        && !loads.contains(&buffer)
}

/// Condition 3: `index` walks the nest's points row-major over consecutive elements, and the row fits.
fn dense_row(index: &IndexExpr, vars: &[Var], extents: &[usize], dtype: DType) -> bool {
    let n: usize = extents.iter().product();
    if n == 0 || n.saturating_mul(dtype.size_bytes()) > MAX_ROW_BYTES {
        return false;
    }
    let mut expected = 1;
    for (v, &extent) in vars.iter().zip(extents).rev() {
        // A loop of extent 1 may have no term (its stride is irrelevant).
        let stride = index.stride_of(*v);
        if stride != expected && !(extent == 1 && stride == 0) {
            return false;
        }
        expected *= extent;
    }
    true
}

/// How many stores each buffer has in `body`, and which buffers it loads.
fn buffer_uses(body: &Block) -> (HashMap<BufferId, usize>, HashSet<BufferId>) {
    let (mut stores, mut loads) = (HashMap::new(), HashSet::new());
    body.visit(&mut |inst| match inst {
        Inst::Store { buffer, .. } => *stores.entry(*buffer).or_insert(0) += 1,
        Inst::Let { .. } => {
            if let Some(buffer) = inst.loaded_buffer() {
                loads.insert(buffer);
            }
        }
        Inst::Reduce { .. } | Inst::For { .. } => {}
    });
    (stores, loads)
}

fn apply(kernel: &mut LoopKernel, site: Site) {
    let (mut next_var, mut next_value) = (0, 0);
    for l in &kernel.parallel {
        next_var = next_var.max(l.var.0 + 1);
    }
    kernel.body.visit(&mut |inst| match inst {
        Inst::Let { id, .. } => next_value = next_value.max(id.0 + 1),
        Inst::Reduce { id, loops, .. } => {
            next_value = next_value.max(id.0 + 1);
            for l in loops {
                next_var = next_var.max(l.var.0 + 1);
            }
        }
        Inst::For { loops, .. } => {
            for l in loops {
                next_var = next_var.max(l.var.0 + 1);
            }
        }
        Inst::Store { .. } => {}
    });
    let f_vars: Vec<Var> = match &kernel.body.insts[site.write] {
        Inst::For { loops, .. } => loops.iter().map(|l| l.var).collect(),
        _ => unreachable!("a site's write is a `for`"),
    };

    // F: the recomputed values become loads of the row; what only fed them is dropped.
    if let Inst::For { body, .. } = &mut kernel.body.insts[site.write] {
        for &p in &site.recomputed {
            if let Inst::Let { op, .. } = &mut body.insts[p] {
                *op = ScalarOp::Load {
                    buffer: site.buffer,
                    index: site.index.clone(),
                };
            }
        }
        drop_dead_lets(body);
    }

    // R: its loops and body move to the materializing `for`; it folds the row, loaded with fresh variables.
    let Inst::Reduce {
        id,
        dtype,
        kind,
        loops,
        body,
        value,
    } = kernel.body.insts[site.reduce].clone()
    else {
        unreachable!("a site's reduce is a `reduce`");
    };
    let r_vars: Vec<Var> = loops.iter().map(|l| l.var).collect();
    let mut materialize = body;
    materialize.insts.push(Inst::Store {
        buffer: site.buffer,
        index: substitute(&site.index, &f_vars, &r_vars),
        value,
    });
    let fresh_loops: Vec<super::Loop> = loops
        .iter()
        .enumerate()
        .map(|(i, l)| super::Loop {
            var: Var(next_var + i as u32),
            extent: l.extent,
        })
        .collect();
    let fresh_vars: Vec<Var> = fresh_loops.iter().map(|l| l.var).collect();
    let loaded = ValueId(next_value);
    kernel.body.insts[site.reduce] = Inst::Reduce {
        id,
        dtype,
        kind,
        loops: fresh_loops,
        body: Block {
            insts: vec![Inst::Let {
                id: loaded,
                dtype,
                op: ScalarOp::Load {
                    buffer: site.buffer,
                    index: substitute(&site.index, &f_vars, &fresh_vars),
                },
            }],
        },
        value: loaded,
    };
    kernel.body.insts.insert(
        site.reduce,
        Inst::For {
            loops,
            body: materialize,
        },
    );
}

/// `index` with `from[p]` replaced by `to[p]`, terms sorted by variable again.
fn substitute(index: &IndexExpr, from: &[Var], to: &[Var]) -> IndexExpr {
    let mut terms: Vec<(Var, usize)> = index
        .terms
        .iter()
        .map(|&(v, s)| match from.iter().position(|&f| f == v) {
            Some(p) => (to[p], s),
            None => (v, s),
        })
        .collect();
    terms.sort();
    IndexExpr {
        offset: index.offset,
        terms,
    }
}

/// Removes the lets of a straight-line block whose values nothing after them uses (scalar ops and loads are pure).
fn drop_dead_lets(block: &mut Block) {
    let mut used: HashSet<ValueId> = HashSet::new();
    let mut keep = vec![true; block.insts.len()];
    for (p, inst) in block.insts.iter().enumerate().rev() {
        match inst {
            Inst::Let { id, op, .. } => {
                if used.contains(id) {
                    used.extend(op.operands());
                } else {
                    keep[p] = false;
                }
            }
            Inst::Store { value, .. } => {
                used.insert(*value);
            }
            Inst::Reduce { .. } | Inst::For { .. } => unreachable!("a straight-line block"),
        }
    }
    let mut p = 0;
    block.insts.retain(|_| {
        p += 1;
        keep[p - 1]
    });
}

/// A variable of an index, as the expression sees it: the `p`-th loop of the nest, or one from outside the nest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Axis {
    Nest(usize),
    Outer(Var),
}

/// An index with the nest's variables replaced by their positions, terms sorted.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Affine {
    offset: usize,
    terms: Vec<(Axis, usize)>,
}

/// One node of an expression; operands are numbers of earlier nodes (hash-consed, so equal expressions, of either
/// nest, get equal numbers).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Expr {
    Load(BufferId, Affine),
    Const(u64, DType),
    Index(Affine, DType),
    /// A value defined outside the nest (the same value in both nests: both are in the same block).
    Outer(ValueId),
    Unary(UnaryOp, usize, DType),
    Cast(usize, DType),
    Binary(BinaryOp, usize, usize, DType),
    Compare(CmpDir, usize, usize),
    Select(usize, usize, usize, DType),
    /// Never equal to anything else (`matmul.acc`).
    Opaque(ValueId),
}

#[derive(Default)]
struct Exprs {
    nodes: Vec<Expr>,
    numbers: HashMap<Expr, usize>,
}

impl Exprs {
    fn intern(&mut self, e: Expr) -> usize {
        if let Some(&n) = self.numbers.get(&e) {
            return n;
        }
        self.nodes.push(e.clone());
        self.numbers.insert(e, self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// The expression number of every let of a straight-line nest body over `vars`.
    fn number(&mut self, body: &Block, vars: &[Var]) -> HashMap<ValueId, usize> {
        let mut numbers: HashMap<ValueId, usize> = HashMap::new();
        let affine = |index: &IndexExpr| {
            let mut terms: Vec<(Axis, usize)> = index
                .terms
                .iter()
                .map(|&(v, s)| match vars.iter().position(|&x| x == v) {
                    Some(p) => (Axis::Nest(p), s),
                    None => (Axis::Outer(v), s),
                })
                .collect();
            terms.sort();
            Affine {
                offset: index.offset,
                terms,
            }
        };
        for inst in &body.insts {
            let Inst::Let { id, dtype, op } = inst else {
                continue;
            };
            let operand = |exprs: &mut Exprs, v: &ValueId| match numbers.get(v) {
                Some(&n) => n,
                None => exprs.intern(Expr::Outer(*v)),
            };
            let e = match op {
                ScalarOp::Load { buffer, index } => Expr::Load(*buffer, affine(index)),
                ScalarOp::Const { bits } => Expr::Const(*bits, *dtype),
                ScalarOp::Index(index) => Expr::Index(affine(index), *dtype),
                // A guarded load is left alone: opaque, so never merged with another.
                ScalarOp::LoadOr { .. } | ScalarOp::LoadAt { .. } | ScalarOp::MatmulAcc => {
                    Expr::Opaque(*id)
                }
                ScalarOp::Unary(u, x) => Expr::Unary(*u, operand(self, x), *dtype),
                ScalarOp::Cast(x) => Expr::Cast(operand(self, x), *dtype),
                ScalarOp::Binary(b, x, y) => {
                    let (x, y) = (operand(self, x), operand(self, y));
                    Expr::Binary(*b, x, y, *dtype)
                }
                ScalarOp::Compare(d, x, y) => {
                    let (x, y) = (operand(self, x), operand(self, y));
                    Expr::Compare(*d, x, y)
                }
                ScalarOp::Select(c, x, y) => {
                    let (c, x, y) = (operand(self, c), operand(self, x), operand(self, y));
                    Expr::Select(c, x, y, *dtype)
                }
            };
            let n = self.intern(e);
            numbers.insert(*id, n);
        }
        numbers
    }

    /// Whether expression `n` computes a transcendental op (the op table's [`Cost::Transcendental`]: a polynomial on
    /// every backend).
    ///
    /// One pass over the nodes up to `n`, not a recursive walk: operands are interned before their users, so each
    /// node's answer is known when it is reached. (A recursive walk visits a shared operand once per path to it,
    /// exponentially many in `x + x` chains, and goes as deep as the body is long.)
    fn has_transcendental(&self, n: usize) -> bool {
        let mut has = Vec::with_capacity(n + 1);
        for e in &self.nodes[..=n] {
            let h = match e {
                Expr::Unary(u, ..) if u.cost() == Cost::Transcendental => true,
                Expr::Binary(b, ..) if b.cost() == Cost::Transcendental => true,
                Expr::Load(..)
                | Expr::Const(..)
                | Expr::Index(..)
                | Expr::Outer(_)
                | Expr::Opaque(_) => false,
                Expr::Unary(_, x, _) | Expr::Cast(x, _) => has[*x],
                Expr::Binary(_, x, y, _) | Expr::Compare(_, x, y) => has[*x] || has[*y],
                Expr::Select(c, x, y, _) => has[*c] || has[*x] || has[*y],
            };
            has.push(h);
        }
        has[n]
    }
}
