//! The kernel-IR verifier: what every consumer of a [`KernelProgram`] may rely on. Run after `fusion::lower` and
//! every kernel-IR pass, and by both backends before they emit anything, so a backend never meets a program it would
//! have to re-check.
//!
//! It checks, per kernel: every value defined once, before use and in scope; each scalar op typed by the op table
//! (`kiln_ir::op`): operand dtypes equal where the op needs it, the op defined on them (no i32 `pow`, no `exp` of an
//! i32, no arithmetic on bools, no ordering comparison of bools), the `let`'s dtype the op's result; loads, stores and
//! matmul operands on existing buffers of the right dtype, stores never to inputs or constants; and every load and
//! store inside its buffer for every value of the loop variables. So generated code never reads or writes outside a
//! buffer, whatever program it gets. Per program: the inputs and outputs name existing buffers of the right kinds.
//!
//! An access is exempt from the bounds proof exactly when it never runs: when a loop around it (a parallel loop, or
//! a `reduce` or `for` it is nested in) has extent 0, which code generation turns into no code at all (an empty
//! parallel range, a loop nest it does not emit). Such code still has to be well formed. A loop variable is in scope
//! only inside its loop: code generation leaves a variable one past its extent after the loop, so an index that
//! used it there would reach past the bounds this proves.

use super::{Block, BufferKind, IndexExpr, Inst, Kernel, KernelProgram, ScalarOp, Var};
use kiln_ir::DType;
use std::collections::HashMap;

/// Why a program is not valid kernel IR: the kernel (or `program`) and what is wrong. Always a compiler bug when it
/// comes from fusion; a hand-built program can be anything.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("kernel `{kernel}`: invalid kernel IR: {problem}")]
pub struct VerifyError {
    pub kernel: String,
    pub problem: String,
}

/// The dtype of every value of a checked kernel, by `ValueId` index.
pub type ValueTypes = Vec<Option<DType>>;

/// Verifies a whole program; on success, the value types of each kernel (in kernel order).
pub fn verify(program: &KernelProgram) -> Result<Vec<ValueTypes>, VerifyError> {
    let invalid = |problem: String| VerifyError {
        kernel: program.name.clone(),
        problem,
    };
    for input in &program.inputs {
        match program.buffers.get(input.buffer.index()).map(|b| &b.kind) {
            Some(BufferKind::Input) => {}
            _ => {
                return Err(invalid(format!(
                    "input `{}` names {}, which is not an input buffer",
                    input.name, input.buffer
                )))
            }
        }
    }
    for output in &program.outputs {
        if output.buffer.index() >= program.buffers.len() {
            return Err(invalid(format!(
                "output `{}` names {}, which does not exist",
                output.name, output.buffer
            )));
        }
    }
    for buffer in &program.buffers {
        if let BufferKind::Constant(value) = &buffer.kind {
            if value.values().len() != 1 && value.values().len() != buffer.ty.numel() {
                return Err(invalid(format!(
                    "constant `{}` has {} values for {}",
                    buffer.name,
                    value.values().len(),
                    buffer.ty
                )));
            }
        }
    }
    program
        .kernels
        .iter()
        .map(|k| verify_kernel(program, k))
        .collect()
}

/// Verifies one kernel of `program` (see the module doc); on success, the dtype of each of its values.
pub fn verify_kernel(program: &KernelProgram, kernel: &Kernel) -> Result<ValueTypes, VerifyError> {
    let mut c = Checker {
        program,
        kernel,
        extents: HashMap::new(),
        types: Vec::new(),
        defined_in: Vec::new(),
        open_blocks: vec![0],
        blocks: 1,
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
    /// The block each value is defined in (a serial number per block), by `ValueId` index.
    defined_in: Vec<u32>,
    /// The blocks enclosing the instruction being checked, innermost last: a value is in scope when its block is
    /// one of them. (A list of the values of each block would make every use a scan of a block that may hold
    /// millions of values.)
    open_blocks: Vec<u32>,
    /// Blocks numbered so far.
    blocks: u32,
    /// Whether a loop around the instruction being checked has no trips (so it never runs).
    never_runs: bool,
}

impl Checker<'_> {
    fn error(&self, problem: String) -> VerifyError {
        VerifyError {
            kernel: self.kernel.name().to_string(),
            problem,
        }
    }

    fn block(&mut self, block: &Block) -> Result<(), VerifyError> {
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
        loops: &[super::Loop],
        f: impl FnOnce(&mut Self) -> Result<T, VerifyError>,
    ) -> Result<T, VerifyError> {
        let saved_extents = self.extents.clone();
        let saved_never_runs = self.never_runs;
        for l in loops {
            self.extents.insert(l.var, l.extent);
        }
        self.never_runs |= loops.iter().any(|l| l.extent == 0);
        self.open_blocks.push(self.blocks);
        self.blocks += 1;
        let result = f(self);
        self.open_blocks.pop();
        self.extents = saved_extents;
        self.never_runs = saved_never_runs;
        result
    }

    fn define(&mut self, id: usize, dtype: DType) -> Result<(), VerifyError> {
        if self.types.len() <= id {
            self.types.resize(id + 1, None);
            self.defined_in.resize(id + 1, 0);
        }
        if self.types[id].is_some() {
            return Err(self.error(format!("%{id} is defined twice")));
        }
        self.types[id] = Some(dtype);
        self.defined_in[id] = *self
            .open_blocks
            .last()
            .expect("the body's block is never closed");
        Ok(())
    }

    /// The dtype of a value defined earlier in this block or an enclosing one.
    fn value(&self, id: usize) -> Result<DType, VerifyError> {
        let in_scope = |id: usize| self.open_blocks.contains(&self.defined_in[id]);
        match self.types.get(id).copied().flatten() {
            Some(t) if in_scope(id) => Ok(t),
            _ => Err(self.error(format!("%{id} is used where it is not defined"))),
        }
    }

    /// Checks `buffer[index]` is in bounds for every value of the variables; returns the buffer's dtype.
    fn access(&self, buffer: super::BufferId, index: &IndexExpr) -> Result<DType, VerifyError> {
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

    /// Checks a [`ScalarOp::LoadOr`]: every element its guards let through is in bounds, the buffer is not empty
    /// (a backend loads a clamped index before choosing the fill), and every coordinate and `step · extent` fit in an
    /// `i32` (the SPIR-V backend computes guards in 32 bits). Returns the buffer's dtype.
    fn guarded_access(
        &self,
        buffer: super::BufferId,
        dims: &[super::GuardedDim],
    ) -> Result<DType, VerifyError> {
        let b = self
            .program
            .buffers
            .get(buffer.index())
            .ok_or_else(|| self.error(format!("buffer {buffer} does not exist")))?;
        if b.ty.numel() == 0 {
            return Err(self.error(format!("guarded load of the empty buffer {buffer}")));
        }
        let mut reach = Some(0usize);
        for d in dims {
            let span = d.step.checked_mul(d.extent);
            if d.step == 0 || d.extent == 0 || span.is_none_or(|s| s > i32::MAX as usize) {
                return Err(self.error(format!("guarded dim {d} has a bad step or extent")));
            }
            // The coordinate's range over the variables' ranges: within i32 everywhere.
            let (mut lo, mut hi) = (d.offset as i128, d.offset as i128);
            for &(v, c) in &d.terms {
                let extent = *self
                    .extents
                    .get(&v)
                    .ok_or_else(|| self.error(format!("{v} is not bound by an enclosing loop")))?;
                let reach = extent.saturating_sub(1) as i128 * c as i128;
                if reach < 0 {
                    lo += reach;
                } else {
                    hi += reach;
                }
            }
            if lo < i32::MIN as i128 || hi > i32::MAX as i128 {
                return Err(self.error(format!("guarded dim {d} reaches past i32")));
            }
            reach = reach.and_then(|r| r.checked_add((d.extent - 1).checked_mul(d.stride)?));
        }
        if reach.is_none_or(|r| r >= b.ty.numel()) {
            return Err(self.error(format!(
                "guarded load of {buffer} reaches past the {} elements of `{}`",
                b.ty.numel(),
                b.name
            )));
        }
        Ok(b.ty.dtype)
    }

    /// The largest value of `index`; `None` when the instruction never runs (a loop around it has no trips), so
    /// the access never happens. Every variable must be bound by an enclosing loop either way.
    fn max_index(&self, index: &IndexExpr) -> Result<Option<usize>, VerifyError> {
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

    /// Types one scalar op by the op table: its operands must be ones it is defined on, its result the `let`'s.
    fn op(&self, op: &ScalarOp, dtype: DType) -> Result<(), VerifyError> {
        let same = |what: &str, t: DType| -> Result<(), VerifyError> {
            if t == dtype {
                Ok(())
            } else {
                Err(self.error(format!("{what} of {t} defined as {dtype}")))
            }
        };
        match op {
            ScalarOp::Load { buffer, index } => same("a load", self.access(*buffer, index)?),
            ScalarOp::LoadOr { buffer, dims, fill } => {
                same("a guarded load", self.guarded_access(*buffer, dims)?)?;
                let value = f64::from_bits(*fill);
                if !kiln_ir::op::representable(value, dtype) {
                    return Err(self.error(format!("fill {value} is not representable as {dtype}")));
                }
                Ok(())
            }
            ScalarOp::LoadAt {
                buffer,
                index,
                at,
                stride,
                extent,
            } => {
                if self.value(at.index())? != DType::I32 {
                    return Err(self.error(format!("load.at {buffer} by a non-i32 index {at}")));
                }
                if *extent == 0 {
                    return Err(self.error(format!("load.at {buffer} with extent 0")));
                }
                // The furthest element: `index`'s own furthest plus the last in-range position.
                let mut last = index.clone();
                last.offset = (extent - 1)
                    .checked_mul(*stride)
                    .and_then(|r| r.checked_add(index.offset))
                    .ok_or_else(|| self.error(format!("load.at {buffer}[{index}] overflows")))?;
                same("a load.at", self.access(*buffer, &last)?)
            }
            ScalarOp::Const { bits } => {
                let value = f64::from_bits(*bits);
                if !kiln_ir::op::representable(value, dtype) {
                    return Err(
                        self.error(format!("constant {value} is not representable as {dtype}"))
                    );
                }
                Ok(())
            }
            ScalarOp::Index(index) => {
                if !dtype.is_numeric() {
                    return Err(self.error(format!("an index converted to {dtype}")));
                }
                self.max_index(index).map(|_| ())
            }
            ScalarOp::MatmulAcc => match self.kernel {
                Kernel::Matmul(m) => same("the matmul accumulator", m.dtype),
                Kernel::Loop(_) | Kernel::Collective(_) => {
                    Err(self.error("matmul.acc outside a matmul".into()))
                }
            },
            ScalarOp::Unary(u, x) => {
                let t = self.value(x.index())?;
                let defined = match t {
                    DType::F32 | DType::F64 => true,
                    DType::I32 => !u.float_only(),
                    DType::Bool => false,
                };
                if !defined {
                    return Err(self.error(format!("{} of {t} (not defined on {t})", u.name())));
                }
                same(u.name(), t)
            }
            ScalarOp::Cast(x) => self.value(x.index()).map(|_| ()),
            ScalarOp::Binary(b, x, y) => {
                let (tx, ty) = (self.value(x.index())?, self.value(y.index())?);
                if tx != ty || !b.defined_on(tx) {
                    return Err(self.error(format!("{} of {tx} and {ty}", b.name())));
                }
                same(b.name(), tx)
            }
            ScalarOp::Compare(dir, x, y) => {
                let (tx, ty) = (self.value(x.index())?, self.value(y.index())?);
                let ordering_on_bool = tx == DType::Bool && dir.is_ordering();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Buffer, BufferId, Loop, LoopKernel, ProgramInput, ProgramOutput, ValueId};
    use kiln_ir::{BinaryOp, CmpDir, TensorType, UnaryOp};

    /// `out[i] = f(in[i])` over 4 elements of `dtype`, with the body's lets from `lets` (value 0 is the load).
    fn program(dtype: DType, out: DType, lets: Vec<(DType, ScalarOp)>) -> KernelProgram {
        let i = Var(0);
        let index = IndexExpr {
            offset: 0,
            terms: vec![(i, 1)],
        };
        let mut insts = vec![Inst::Let {
            id: ValueId(0),
            dtype,
            op: ScalarOp::Load {
                buffer: BufferId(0),
                index: index.clone(),
            },
        }];
        let last = lets.len() as u32;
        for (k, (dtype, op)) in lets.into_iter().enumerate() {
            insts.push(Inst::Let {
                id: ValueId(k as u32 + 1),
                dtype,
                op,
            });
        }
        insts.push(Inst::Store {
            buffer: BufferId(1),
            index,
            value: ValueId(last),
        });
        KernelProgram {
            name: "p".into(),
            buffers: vec![
                Buffer {
                    name: "x".into(),
                    ty: TensorType::new(dtype, [4]),
                    kind: BufferKind::Input,
                },
                Buffer {
                    name: "y".into(),
                    ty: TensorType::new(out, [4]),
                    kind: BufferKind::Output,
                },
            ],
            kernels: vec![Kernel::Loop(LoopKernel {
                name: "k0".into(),
                parallel: vec![Loop { var: i, extent: 4 }],
                body: Block { insts },
            })],
            inputs: vec![ProgramInput {
                name: "x".into(),
                buffer: BufferId(0),
            }],
            outputs: vec![ProgramOutput {
                name: "y".into(),
                buffer: BufferId(1),
                aliases: None,
            }],
        }
    }

    fn problem(p: &KernelProgram) -> String {
        let e = verify(p).expect_err("the program is invalid");
        assert_eq!(e.kernel, "k0");
        e.problem
    }

    #[test]
    fn valid_programs_pass_with_their_value_types() {
        let p = program(
            DType::F32,
            DType::F32,
            vec![(DType::F32, ScalarOp::Unary(UnaryOp::Erf, ValueId(0)))],
        );
        let types = verify(&p).unwrap();
        assert_eq!(types, vec![vec![Some(DType::F32), Some(DType::F32)]]);
    }

    #[test]
    fn ops_spec_forbids_are_rejected_naming_the_op() {
        let pow = ScalarOp::Binary(BinaryOp::Pow, ValueId(0), ValueId(0));
        let p = program(DType::I32, DType::I32, vec![(DType::I32, pow)]);
        assert_eq!(problem(&p), "pow of i32 and i32");
        for u in UnaryOp::ALL.into_iter().filter(|u| u.float_only()) {
            let p = program(
                DType::I32,
                DType::I32,
                vec![(DType::I32, ScalarOp::Unary(u, ValueId(0)))],
            );
            assert_eq!(
                problem(&p),
                format!("{} of i32 (not defined on i32)", u.name())
            );
        }
        for op in BinaryOp::ALL.into_iter().filter(|b| b.int_only()) {
            let bits = ScalarOp::Binary(op, ValueId(0), ValueId(0));
            let p = program(DType::F32, DType::F32, vec![(DType::F32, bits)]);
            assert_eq!(problem(&p), format!("{} of f32 and f32", op.name()));
        }
        let neg_bool = ScalarOp::Unary(UnaryOp::Neg, ValueId(0));
        let p = program(DType::Bool, DType::Bool, vec![(DType::Bool, neg_bool)]);
        assert!(problem(&p).starts_with("neg of bool"));
        let lt = ScalarOp::Compare(CmpDir::Lt, ValueId(0), ValueId(0));
        let p = program(DType::Bool, DType::Bool, vec![(DType::Bool, lt)]);
        assert_eq!(problem(&p), "compare.lt of bool and bool");
    }

    #[test]
    fn mistyped_lets_undefined_values_and_bad_accesses_are_rejected() {
        let exp = ScalarOp::Unary(UnaryOp::Exp, ValueId(0));
        let p = program(DType::F32, DType::F64, vec![(DType::F64, exp)]);
        assert_eq!(problem(&p), "exp of f32 defined as f64");

        let later = ScalarOp::Unary(UnaryOp::Neg, ValueId(5));
        let p = program(DType::F32, DType::F32, vec![(DType::F32, later)]);
        assert_eq!(problem(&p), "%5 is used where it is not defined");

        let mut p = program(DType::F32, DType::F32, vec![]);
        let Kernel::Loop(k) = &mut p.kernels[0] else {
            unreachable!()
        };
        k.parallel[0].extent = 5;
        assert!(problem(&p).contains("reaches past the 4 elements of `x`"));

        let mut p = program(DType::F32, DType::F32, vec![]);
        let Kernel::Loop(k) = &mut p.kernels[0] else {
            unreachable!()
        };
        if let Some(Inst::Store { buffer, .. }) = k.body.insts.last_mut() {
            *buffer = BufferId(0);
        }
        assert_eq!(problem(&p), "stores to read-only buffer b0");
    }

    #[test]
    fn constants_must_be_values_of_their_dtype() {
        let half = ScalarOp::constant(0.5);
        let p = program(DType::I32, DType::I32, vec![(DType::I32, half)]);
        assert_eq!(problem(&p), "constant 0.5 is not representable as i32");
    }
}
