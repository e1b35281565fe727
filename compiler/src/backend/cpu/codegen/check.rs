//! What code generation requires of a kernel, checked before any CLIF is built: every value defined before use and
//! in scope, operand dtypes as the scalar ops take them, and every load and store inside its buffer for every value
//! of the loop variables. So the generated code never reads or writes outside a buffer, whatever program it gets.
//!
//! An access is exempt from the bounds proof exactly when it never runs: when a loop around it (a parallel loop, or
//! a `reduce` or `for` it is nested in) has extent 0, which code generation turns into no code at all (an empty
//! parallel range, a loop nest it does not emit). Such code still has to be well formed. A loop variable is in scope
//! only inside its loop: code generation leaves a variable one past its extent after the loop, so an index that
//! used it there would reach past the bounds this proves.

use crate::backend::BackendError;
use crate::kernel::{Block, BufferKind, IndexExpr, Inst, Kernel, KernelProgram, ScalarOp, Var};
use kiln_ir::{CmpDir, DType};
use std::collections::HashMap;

/// The dtype of every value of a checked kernel, by `ValueId` index.
pub(super) type ValueTypes = Vec<Option<DType>>;

pub(super) fn check_kernel(
    program: &KernelProgram,
    kernel: &Kernel,
) -> Result<ValueTypes, BackendError> {
    let mut c = Checker {
        program,
        kernel,
        extents: HashMap::new(),
        types: Vec::new(),
        scopes: vec![Vec::new()],
        never_runs: kernel.parallel().iter().any(|l| l.extent == 0),
    };
    for l in kernel.parallel() {
        c.extents.insert(l.var, l.extent);
    }
    if let Kernel::Matmul(m) = kernel {
        if m.parallel.len() < 2 {
            return Err(c.error("a matmul needs at least the m and n loops".into()));
        }
        if !matches!(m.dtype, DType::F32 | DType::F64 | DType::I32) {
            return Err(c.error(format!("matmul of {} is not supported", m.dtype)));
        }
        for view in [&m.a, &m.b] {
            if view.buffer.index() >= program.buffers.len() {
                return Err(c.error(format!("operand {} does not exist", view.buffer)));
            }
            if program.buffers[view.buffer.index()].ty.dtype != m.dtype {
                return Err(c.error(format!("operand {} is not {}", view.buffer, m.dtype)));
            }
        }
    }
    c.block(kernel.body())?;
    Ok(c.types)
}

struct Checker<'a> {
    program: &'a KernelProgram,
    kernel: &'a Kernel,
    extents: HashMap<Var, usize>,
    types: ValueTypes,
    /// The values defined in each enclosing block, innermost last.
    scopes: Vec<Vec<usize>>,
    /// Whether a loop around the instruction being checked has no trips (so it never runs).
    never_runs: bool,
}

impl Checker<'_> {
    fn error(&self, problem: String) -> BackendError {
        BackendError::BadCall {
            name: self.kernel.name().to_string(),
            problem,
        }
    }

    fn block(&mut self, block: &Block) -> Result<(), BackendError> {
        for inst in &block.insts {
            match inst {
                Inst::Let { id, dtype, op } => {
                    self.op(op, *dtype)?;
                    self.define(id.index(), *dtype)?;
                }
                Inst::Reduce {
                    id,
                    dtype,
                    loops,
                    body,
                    value,
                    ..
                } => {
                    if *dtype == DType::Bool {
                        return Err(self.error("a reduction of bool".into()));
                    }
                    let yielded = self.nest(loops, |c| {
                        c.block(body)?;
                        c.value(value.index())
                    })?;
                    if yielded != *dtype {
                        return Err(self.error(format!("a {dtype} reduction yields {yielded}")));
                    }
                    self.define(id.index(), *dtype)?;
                }
                Inst::For { loops, body } => self.nest(loops, |c| c.block(body))?,
                Inst::Store {
                    buffer,
                    index,
                    value,
                } => {
                    let ty = self.access(*buffer, index)?;
                    if matches!(
                        self.program.buffers[buffer.index()].kind,
                        BufferKind::Input | BufferKind::Constant(_)
                    ) {
                        return Err(self.error(format!("stores to read-only buffer {buffer}")));
                    }
                    let v = self.value(value.index())?;
                    if v != ty {
                        return Err(self.error(format!("stores {v} to {ty} buffer {buffer}")));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks `f` inside a nest of `loops`: their variables in scope (shadowing outer bindings of the same variable),
    /// a new block for values, and `never_runs` if one of them has no trips; restores all three after.
    fn nest<T>(
        &mut self,
        loops: &[crate::kernel::Loop],
        f: impl FnOnce(&mut Self) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let saved_extents = self.extents.clone();
        let saved_never_runs = self.never_runs;
        for l in loops {
            self.extents.insert(l.var, l.extent);
        }
        self.never_runs |= loops.iter().any(|l| l.extent == 0);
        self.scopes.push(Vec::new());
        let result = f(self);
        self.scopes.pop();
        self.extents = saved_extents;
        self.never_runs = saved_never_runs;
        result
    }

    fn define(&mut self, id: usize, dtype: DType) -> Result<(), BackendError> {
        if self.types.len() <= id {
            self.types.resize(id + 1, None);
        }
        if self.types[id].is_some() {
            return Err(self.error(format!("%{id} is defined twice")));
        }
        self.types[id] = Some(dtype);
        self.scopes
            .last_mut()
            .expect("the body's scope is never popped")
            .push(id);
        Ok(())
    }

    /// The dtype of a value defined earlier in this block or an enclosing one.
    fn value(&self, id: usize) -> Result<DType, BackendError> {
        let in_scope = self.scopes.iter().any(|s| s.contains(&id));
        match self.types.get(id).copied().flatten() {
            Some(t) if in_scope => Ok(t),
            _ => Err(self.error(format!("%{id} is used where it is not defined"))),
        }
    }

    /// Checks `buffer[index]` is in bounds for every value of the variables; returns the buffer's dtype.
    fn access(
        &self,
        buffer: crate::kernel::BufferId,
        index: &IndexExpr,
    ) -> Result<DType, BackendError> {
        let b = self
            .program
            .buffers
            .get(buffer.index())
            .ok_or_else(|| self.error(format!("buffer {buffer} does not exist")))?;
        let max = self.max_index(index)?;
        if max.is_some_and(|m| m >= b.ty.numel()) {
            return Err(self.error(format!(
                "{buffer}[{index}] reaches past the {} elements of `{}`",
                b.ty.numel(),
                b.name
            )));
        }
        Ok(b.ty.dtype)
    }

    /// The largest value of `index`; `None` when the instruction never runs (a loop around it has no trips), so
    /// the access never happens. Every variable must be bound by an enclosing loop either way.
    fn max_index(&self, index: &IndexExpr) -> Result<Option<usize>, BackendError> {
        let mut max = Some(index.offset);
        for &(v, stride) in &index.terms {
            let extent = *self
                .extents
                .get(&v)
                .ok_or_else(|| self.error(format!("{v} is not bound by an enclosing loop")))?;
            // `extent == 0` only where `never_runs` is set: the variable's own loop has no trips.
            max = max.and_then(|m| {
                let reach = extent.checked_sub(1)?.checked_mul(stride)?;
                m.checked_add(reach)
            });
            if max.is_none() && !self.never_runs {
                return Err(self.error(format!("index {index} overflows")));
            }
        }
        Ok(if self.never_runs { None } else { max })
    }

    fn op(&self, op: &ScalarOp, dtype: DType) -> Result<(), BackendError> {
        let same = |what: &str, t: DType| -> Result<(), BackendError> {
            if t == dtype {
                Ok(())
            } else {
                Err(self.error(format!("{what} of {t} defined as {dtype}")))
            }
        };
        match op {
            ScalarOp::Load { buffer, index } => same("a load", self.access(*buffer, index)?),
            ScalarOp::Const { .. } => Ok(()),
            ScalarOp::Index(index) => self.max_index(index).map(|_| ()),
            ScalarOp::MatmulAcc => match self.kernel {
                Kernel::Matmul(m) => same("the matmul accumulator", m.dtype),
                Kernel::Loop(_) => Err(self.error("matmul.acc outside a matmul".into())),
            },
            ScalarOp::Unary(_, x) => same("a unary op", self.value(x.index())?),
            ScalarOp::Cast(x) => self.value(x.index()).map(|_| ()),
            ScalarOp::Binary(b, x, y) => {
                let (tx, ty) = (self.value(x.index())?, self.value(y.index())?);
                if tx != ty || tx == DType::Bool {
                    return Err(self.error(format!("{} of {tx} and {ty}", b.name())));
                }
                same(b.name(), tx)
            }
            ScalarOp::Compare(dir, x, y) => {
                let (tx, ty) = (self.value(x.index())?, self.value(y.index())?);
                let ordering_on_bool = tx == DType::Bool && !matches!(dir, CmpDir::Eq | CmpDir::Ne);
                if tx != ty || ordering_on_bool {
                    return Err(self.error(format!("compare.{} of {tx} and {ty}", dir.name())));
                }
                same("a comparison", DType::Bool)
            }
            ScalarOp::Select(c, a, b) => {
                if self.value(c.index())? != DType::Bool {
                    return Err(self.error("a select on a non-bool condition".into()));
                }
                same("a select", self.value(a.index())?)?;
                same("a select", self.value(b.index())?)
            }
        }
    }
}
