//! Strip-mined loops: the f32x4 loop of an elementwise kernel, or of a `for` nest (a row softmax's
//! `y[k] = exp(x[k] - m)`), whose cost is its transcendentals runs them through the runtime's wide routines
//! ([`kiln_runtime::wide`], 8 or 16 lanes where Cranelift emits 4).
//!
//! A strip is up to [`MAX_STRIP`] consecutive points of the innermost parallel loop, or of the nest's innermost loop
//! (the row cut into equal strips). For each strip the kernel
//! 1. evaluates the arguments of its stripped transcendentals (the lets they depend on, nothing else: no stores) an
//!    f32x4 at a time and stores them to one stack slot per transcendental,
//! 2. calls each one's wide routine on its slot, in place,
//! 3. evaluates the whole body an f32x4 at a time with the transcendentals' values loaded from the slots (the
//!    arguments' lets are emitted again; Cranelift drops those only the transcendentals used).
//!
//! Then the usual loops (16 points, 4 points, one point) take the points left over. Preserves: every
//! output bit for bit, for any strip boundaries and thread count, because the wide routines give the CLIF math
//! library's FMA bits lane for lane (`compiler/tests/cpu/cpu_wide.rs`) and strips are only used where the emitter has
//! FMA ([`super::super::jit::JitModule::wide`]). The slots are in the kernel function's own frame, so every thread
//! (every call) has its own.
//!
//! Which transcendentals: f32 `exp`, `log`, `tanh`, `logistic`, `erf`, `sin` and `cos` of the kernel's top-level
//! body (or the nest's body) whose argument does not depend on another stripped one (that one stays inline), when the estimated cost of
//! the stripped ones is at least half the body's ([`plan`]): with one f32x4 transcendental at about 20 other
//! instructions' cost (`benches/README.md`, `--bench wide`: 1.2–2.5 ns per element against about 0.1 for a load or
//! an add), that is any kernel with a transcendental and fewer than 20 other instructions per transcendental.

use super::Emitter;
use crate::backend::cpu::jit::JitModule;
use crate::backend::BackendError;
use crate::kernel::verify::ValueTypes;
use crate::kernel::{Block, BufferId, IndexExpr, Inst, Kernel, Loop, ScalarOp, ValueId, Var};
use cranelift_codegen::ir::{
    condcodes::IntCC, types, Block as ClifBlock, ExtFuncData, ExternalName, FuncRef, InstBuilder,
    MemFlagsData, Signature, StackSlotData, StackSlotKind, Type, UserExternalName, Value,
};
use cranelift_frontend::FunctionBuilder;
use cranelift_module::FuncId;
use kiln_ir::{BinaryOp, DType, UnaryOp};
use kiln_runtime::wide::Func as WideFunc;
use std::collections::{HashMap, HashSet};

/// The most points per strip: 2 KiB of f32 per stripped transcendental, in L1 with the strip's inputs and outputs.
const MAX_STRIP: usize = 512;
/// The fewest: below, the call and the second pass cost more than the wider lanes save.
const MIN_STRIP: usize = 64;
/// Points per iteration of a pass over a strip: four f32x4 copies of the body, as the unstripped loop runs.
const PASS_STEP: i64 = 16;
/// The estimated cost of one transcendental in other instructions (see the module doc).
const TRANSCENDENTAL_COST: usize = 20;

/// The strips of a kernel: which transcendentals its wide routines compute and what their arguments need.
#[derive(Clone, Debug)]
pub(crate) struct StripPlan {
    pub ops: Vec<Stripped>,
    /// Points per strip: a multiple of [`PASS_STEP`], the innermost loop's extent cut into equal strips of at most
    /// [`MAX_STRIP`] (a row of 600 points is two strips of 288 and 24 points for the f32x4 loops).
    len: i64,
    /// The top-level lets the stripped arguments depend on, in body order (pass 1).
    cone: Block,
    /// Pass 3: the body's stores and the lets they need, the stripped values aside; empty where every store is a
    /// [`Direct`] one.
    rest: Block,
}

impl StripPlan {
    /// Points per strip.
    pub(super) fn len(&self) -> i64 {
        self.len
    }
}

/// One transcendental computed by a wide routine.
#[derive(Clone, Debug)]
pub(crate) struct Stripped {
    /// The value it defines, its argument and its routine.
    id: ValueId,
    arg: ValueId,
    pub func: WideFunc,
    /// Where the routine writes its results when it writes them straight into the output; `None`: into its slot.
    direct: Option<Direct>,
    /// Where the routine reads its arguments when it reads them straight from an input; `None`: from its slot.
    source: Option<Source>,
}

/// `len` consecutive f32 of a buffer from the strip's first point: `buffer[index]` at `v0`, where the index moves by
/// one with the strip's variable. Where a routine reads its arguments ([`Source`]) or writes its results.
#[derive(Clone, Debug)]
struct Row {
    buffer: BufferId,
    index: IndexExpr,
}

/// A stripped argument the routine reads from memory itself: `row - shift`. The routine's `src[i] - shift` is the
/// kernel's own `fsub` (`x + s` is `x - (-s)`, the same IEEE operation; no shift: `x - 0 = x`, `-0` included), so the
/// bits are the ones pass 1 would have given. Only where the routines' reads can't see another routine's writes: one
/// stripped transcendental, or none written straight into an output (an output may take an input's place,
/// [`crate::memory`]).
#[derive(Clone, Debug)]
struct Source {
    row: Row,
    /// A value from outside the body, and whether it is negated (for an `add`).
    shift: Option<(ValueId, bool)>,
}

/// A stripped value's one store, made by its wide routine into the row. Sound because the body loads nothing from
/// the row's buffer and does nothing else after the routines (no pass 3); an input the output is written in place
/// of ([`crate::memory`]) is read only at the stored point: by pass 1, which reads the whole strip before any call,
/// or by the one routine itself ([`Source`]: then `src == dst`, and a routine reads each chunk before writing it).
type Direct = Row;

/// The wide routine of a unary op, if it has one (every transcendental of the op table's cost model does).
fn wide_func(op: UnaryOp) -> Option<WideFunc> {
    Some(match op {
        UnaryOp::Exp => WideFunc::Exp,
        UnaryOp::Log => WideFunc::Log,
        UnaryOp::Tanh => WideFunc::Tanh,
        UnaryOp::Logistic => WideFunc::Logistic,
        UnaryOp::Erf => WideFunc::Erf,
        UnaryOp::Sin => WideFunc::Sin,
        UnaryOp::Cos => WideFunc::Cos,
        UnaryOp::Neg
        | UnaryOp::Sqrt
        | UnaryOp::Recip
        | UnaryOp::Abs
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Trunc => {
            debug_assert_ne!(op.cost(), kiln_ir::op::Cost::Transcendental);
            return None;
        }
    })
}

/// The strips of an elementwise kernel that the f32x4 loop runs without a reduction (`vector::plan` with
/// `reduces == false`), or `None` where it has no transcendental worth a call (see the module doc).
pub(crate) fn plan(kernel: &Kernel, types: &ValueTypes) -> Option<StripPlan> {
    let innermost = kernel.parallel().iter().rev().find(|l| l.extent > 1)?;
    block_plan(kernel.body(), innermost, types)
}

/// The strips of `body`, run by `strip_loop` (the innermost parallel loop, or a `for` nest's innermost loop), or
/// `None`.
fn block_plan(body: &Block, strip_loop: &Loop, types: &ValueTypes) -> Option<StripPlan> {
    let extent = strip_loop.extent;
    // The operands of every top-level let, by value index.
    let mut operands: HashMap<usize, Vec<ValueId>> = HashMap::new();
    let mut ops = Vec::new();
    let mut stripped: HashSet<usize> = HashSet::new();
    for inst in &body.insts {
        let Inst::Let { id, dtype, op } = inst else {
            continue;
        };
        operands.insert(id.index(), op.operands());
        let ScalarOp::Unary(unary, arg) = op else {
            continue;
        };
        let (Some(func), DType::F32) = (wide_func(*unary), dtype) else {
            continue;
        };
        let needs = dependencies(*arg, &operands);
        if needs.iter().any(|v| stripped.contains(v)) {
            continue; // stays inline: its argument needs another strip's result
        }
        debug_assert_eq!(types[arg.index()], Some(DType::F32));
        stripped.insert(id.index());
        ops.push(Stripped {
            id: *id,
            arg: *arg,
            func,
            direct: None,
            source: None,
        });
    }
    let others = body.insts.len() - ops.len();
    if ops.is_empty() || TRANSCENDENTAL_COST * ops.len() < others {
        return None;
    }
    let step = PASS_STEP as usize;
    let len = extent / extent.div_ceil(MAX_STRIP) / step * step;
    if len < MIN_STRIP {
        return None;
    }
    let rest = match direct_stores(body, &ops, strip_loop.var) {
        Some(direct) => {
            for (op, direct) in ops.iter_mut().zip(direct) {
                op.direct = direct;
            }
            Block { insts: Vec::new() }
        }
        None => pass_three(body, &ops),
    };
    let writes_outputs = ops.iter().any(|op| op.direct.is_some());
    if ops.len() == 1 || !writes_outputs {
        for op in &mut ops {
            op.source = source(body, op.arg, strip_loop.var);
        }
    }
    // Pass 1 computes only the arguments no routine reads itself.
    let cone: HashSet<usize> = ops
        .iter()
        .filter(|op| op.source.is_none())
        .flat_map(|op| dependencies(op.arg, &operands))
        .collect();
    let cone = Block {
        insts: body
            .insts
            .iter()
            .filter(|inst| matches!(inst, Inst::Let { id, .. } if cone.contains(&id.index())))
            .cloned()
            .collect(),
    };
    Some(StripPlan {
        ops,
        len: len as i64,
        cone,
        rest,
    })
}

/// The [`Source`] of a stripped argument `arg` of `body`, if the routine can read it itself.
fn source(body: &Block, arg: ValueId, var: Var) -> Option<Source> {
    let mut lets: HashMap<usize, ScalarOp> = HashMap::new();
    let mut defined: HashSet<usize> = HashSet::new();
    body.visit(&mut |inst| match inst {
        Inst::Let { id, op, .. } => {
            lets.insert(id.index(), op.clone());
            defined.insert(id.index());
        }
        Inst::Reduce { id, .. } => {
            defined.insert(id.index());
        }
        Inst::For { .. } | Inst::Store { .. } => {}
    });
    let outside = |v: &ValueId| !defined.contains(&v.index());
    let (load, shift) = match lets.get(&arg.index())? {
        ScalarOp::Load { .. } => (arg, None),
        ScalarOp::Binary(BinaryOp::Sub, x, s) if outside(s) => (*x, Some((*s, false))),
        ScalarOp::Binary(BinaryOp::Add, x, s) | ScalarOp::Binary(BinaryOp::Add, s, x)
            if outside(s) =>
        {
            (*x, Some((*s, true)))
        }
        _ => return None,
    };
    match lets.get(&load.index())? {
        ScalarOp::Load { buffer, index } if index.stride_of(var) == 1 => Some(Source {
            row: Row {
                buffer: *buffer,
                index: index.clone(),
            },
            shift,
        }),
        _ => None,
    }
}

/// Per stripped op, its [`Direct`] store, where every instruction of `body` is a let or a store of a stripped value
/// (each stored once, to an index that moves by one with `var`) and no let loads a stored buffer; otherwise `None`.
fn direct_stores(body: &Block, ops: &[Stripped], var: Var) -> Option<Vec<Option<Direct>>> {
    let mut direct: Vec<Option<Direct>> = vec![None; ops.len()];
    for inst in &body.insts {
        match inst {
            Inst::Let { .. } => {}
            Inst::Store {
                buffer,
                index,
                value,
            } => {
                let op = ops.iter().position(|op| op.id == *value)?;
                if direct[op].is_some() || index.stride_of(var) != 1 {
                    return None;
                }
                direct[op] = Some(Row {
                    buffer: *buffer,
                    index: index.clone(),
                });
            }
            Inst::Reduce { .. } | Inst::For { .. } => return None,
        }
    }
    let stored: HashSet<BufferId> = direct.iter().flatten().map(|d| d.buffer).collect();
    let loads_stored = body
        .insts
        .iter()
        .any(|inst| inst.loaded_buffer().is_some_and(|b| stored.contains(&b)));
    (!stored.is_empty() && !loads_stored).then_some(direct)
}

/// Pass 3's block: `body` without the stripped lets and without the lets that no store needs once the stripped
/// values are given (an argument's lets); `body` itself where it holds a nested loop.
fn pass_three(body: &Block, ops: &[Stripped]) -> Block {
    let nested = body
        .insts
        .iter()
        .any(|inst| matches!(inst, Inst::Reduce { .. } | Inst::For { .. }));
    if nested {
        return body.clone();
    }
    let stripped: HashSet<usize> = ops.iter().map(|op| op.id.index()).collect();
    let mut live: HashSet<usize> = HashSet::new();
    for inst in body.insts.iter().rev() {
        match inst {
            Inst::Store { value, .. } => {
                live.insert(value.index());
            }
            // A contracted `add` (an `fma`) uses its product's operands: those are live through the product.
            Inst::Let { id, op, .. }
                if live.contains(&id.index()) && !stripped.contains(&id.index()) =>
            {
                live.extend(op.operands().iter().map(|v| v.index()));
            }
            Inst::Let { .. } | Inst::Reduce { .. } | Inst::For { .. } => {}
        }
    }
    let insts = body
        .insts
        .iter()
        .filter(|inst| match inst {
            Inst::Let { id, .. } => live.contains(&id.index()) && !stripped.contains(&id.index()),
            Inst::Store { .. } => true,
            Inst::Reduce { .. } | Inst::For { .. } => {
                unreachable!("no nested loop (checked above)")
            }
        })
        .cloned()
        .collect();
    Block { insts }
}

/// `value` and every top-level let it depends on (by index); values from elsewhere have no operands here.
fn dependencies(value: ValueId, operands: &HashMap<usize, Vec<ValueId>>) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        if seen.insert(v.index()) {
            stack.extend(operands.get(&v.index()).into_iter().flatten().copied());
        }
    }
    seen
}

/// A kernel's top-level strips and the imports of the wide routines its strips call.
pub(super) type WideCalls = (Option<StripPlan>, Vec<(WideFunc, FuncId)>);

/// The strips of `kernel`'s elementwise loop (if any) and the imports of the wide routines that it and the kernel's
/// `for` nests call ([`nest_plan`]), where the module calls wide routines (see [`JitModule::wide`]); `None` where
/// nothing calls one.
pub(super) fn wide_imports(
    jit: &mut JitModule,
    kernel: &Kernel,
    types: &ValueTypes,
    vectorize: Option<&super::vector::Plan>,
) -> Result<Option<WideCalls>, BackendError> {
    if jit.wide().is_none() || !jit.math().has_fma() {
        return Ok(None);
    }
    // The top-level strips live in the elementwise f32x4 loop, which a kernel with a reduction doesn't have.
    let elementwise = vectorize.is_some_and(|p| !p.reduces);
    let top = if elementwise {
        plan(kernel, types)
    } else {
        None
    };
    let mut funcs: Vec<WideFunc> = top
        .iter()
        .flat_map(|p| p.ops.iter().map(|op| op.func))
        .collect();
    kernel.body().visit(&mut |inst| {
        if let Inst::For { loops, body } = inst {
            if let Some(nest) = nest_plan(loops, body, types) {
                funcs.extend(nest.ops.iter().map(|op| op.func));
            }
        }
    });
    let mut imports = Vec::new();
    for func in funcs {
        if imports.iter().any(|(f, _)| *f == func) {
            continue;
        }
        let id = jit
            .wide_routine(func)?
            .expect("the module calls wide routines (checked above)");
        imports.push((func, id));
    }
    Ok((!imports.is_empty()).then_some((top, imports)))
}

/// The strips of a `for` nest that the vector loops run ([`super::vector::nested_plan`]), along its innermost loop.
pub(super) fn nest_plan(loops: &[Loop], body: &Block, types: &ValueTypes) -> Option<StripPlan> {
    super::vector::nested_plan(loops, body, None, types)?;
    block_plan(body, loops.last()?, types)
}

/// A reference in the function under construction to the wide routine `id` of the module:
/// `extern "C" fn(src: ptr, dst: ptr, n: ptr, shift: f32)` (what `cranelift_module`'s `declare_func_in_func` builds, without the
/// module, which `JitModule::compile_function` holds).
pub(super) fn import_function(b: &mut FunctionBuilder<'_>, id: FuncId, ptr: Type) -> FuncRef {
    let mut sig = Signature::new(b.func.signature.call_conv);
    sig.params
        .extend(crate::backend::cpu::jit::wide_params(ptr));
    let signature = b.import_signature(sig);
    let name = b.func.declare_imported_user_function(UserExternalName {
        namespace: 0,
        index: id.as_u32(),
    });
    b.import_function(ExtFuncData {
        name: ExternalName::user(name),
        signature,
        colocated: false,
        patchable: false,
    })
}

/// `; fn0 = kiln_wide_tanh, ..`: which runtime routine each external name of a dump is (`prefix`: `fn` in CLIF,
/// `userextname` in machine code), or nothing when the kernel calls none.
pub(super) fn callee_legend(callees: &[&str], prefix: &str) -> String {
    if callees.is_empty() {
        return String::new();
    }
    let names: Vec<String> = callees
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{prefix}{i} = {name}"))
        .collect();
    format!("; calls: {}\n", names.join(", "))
}

impl Emitter<'_, '_> {
    /// From the current block: `strip(j): passes 1-3 on [j, j + len); j += len; brif j + len <= jend,
    /// strip(j), done`, behind an entry check (see the module doc). `hoisted` are the loads that don't move with `j`.
    /// Leaves `j` at the first point no strip ran.
    pub(super) fn strip_loop(
        &mut self,
        strips: &StripPlan,
        j: Var,
        jend: Value,
        hoisted: &HashMap<usize, Value>,
        done: ClifBlock,
    ) {
        let len = strips.len;
        let strip_block = self.b.create_block();
        let j_now = self.get_var(j);
        let j_after = self.b.ins().iadd_imm_s(j_now, len);
        let fits = self
            .b
            .ins()
            .icmp(IntCC::UnsignedLessThanOrEqual, j_after, jend);
        self.b.ins().brif(fits, strip_block, &[], done, &[]);

        self.b.switch_to_block(strip_block);
        let j0 = self.get_var(j);
        self.strip(strips, j, j0, hoisted);
        self.next_if_fits(j, j0, len, jend, strip_block, done);
    }

    /// One strip `[v0, v0 + len)` of the loop over `v` (which it leaves at some point of the strip): passes 1-3 of
    /// the module doc on the planned body, whose lets that don't move with `v` are in `hoisted`.
    pub(super) fn strip(
        &mut self,
        strips: &StripPlan,
        v: Var,
        v0: Value,
        hoisted: &HashMap<usize, Value>,
    ) {
        let ptr = self.ptr;
        let len = strips.len;
        let bytes = u32::try_from(len * 4).expect("a strip's slot is small");
        // A slot for each routine that reads or writes one (64-byte aligned: whole cache lines).
        let slots: Vec<_> = strips
            .ops
            .iter()
            .map(|op| {
                (op.source.is_none() || op.direct.is_none()).then(|| {
                    let data = StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 6);
                    self.b.create_sized_stack_slot(data)
                })
            })
            .collect();
        let slot = |e: &mut Self, i: usize| {
            let slot = slots[i].expect("a routine that reads or writes its slot has one");
            e.b.ins().stack_addr(ptr, slot, 0)
        };
        let callees: Vec<FuncRef> = strips
            .ops
            .iter()
            .map(|op| self.wide_callees[&op.func])
            .collect();
        // 1. The arguments the routines don't read themselves, into the slots.
        if strips.ops.iter().any(|op| op.source.is_none()) {
            self.strip_pass(v, v0, len, &mut |e, offset| {
                let mut values = hoisted.clone();
                e.vector_block(&strips.cone, &mut values);
                for (i, op) in strips.ops.iter().enumerate() {
                    if op.source.is_none() {
                        let addr = slot(e, i);
                        let addr = e.b.ins().iadd(addr, offset);
                        e.b.ins()
                            .store(slot_flags(), values[&op.arg.index()], addr, 0);
                    }
                }
            });
        }
        // 2. The wide routines, `(src, dst, n, shift)`: from the slot or the input at `v0` (minus the shift), to the
        // slot or the output at `v0`. Sound: each reads `len` f32 of its own slot or of its input's points of the
        // loop from `v0` on (inside it), and writes `len` f32 of its slot (`src == dst` is allowed) or of its store's
        // points (as `src`, or not overlapping it: an output in an input's place is stored where it is read), and its
        // level's features are the host's (a `Routines` table exists only for such a level).
        for (i, (&callee, op)) in callees.iter().zip(&strips.ops).enumerate() {
            let (src, shift) = match &op.source {
                Some(source) => {
                    let src = self.row_start(v, v0, &source.row);
                    let shift = match source.shift {
                        Some((s, false)) => self.value(s),
                        Some((s, true)) => {
                            let s = self.value(s);
                            self.b.ins().fneg(s)
                        }
                        None => self.b.ins().f32const(0.0f32),
                    };
                    (src, shift)
                }
                None => (slot(self, i), self.b.ins().f32const(0.0f32)),
            };
            let dst = match &op.direct {
                Some(row) => self.row_start(v, v0, row),
                None if op.source.is_none() => src,
                None => slot(self, i),
            };
            let n = self.b.ins().iconst(ptr, len);
            self.b.ins().call(callee, &[src, dst, n, shift]);
        }
        if strips.rest.insts.is_empty() {
            return;
        }
        // 3. The rest of the body, with the transcendentals' values from the slots.
        self.strip_pass(v, v0, len, &mut |e, offset| {
            let mut values = hoisted.clone();
            for (i, op) in strips.ops.iter().enumerate() {
                let addr = slot(e, i);
                let addr = e.b.ins().iadd(addr, offset);
                let v = e.b.ins().load(types::F32X4, slot_flags(), addr, 0);
                values.insert(op.id.index(), v);
            }
            e.vector_block(&strips.rest, &mut values);
        });
    }

    /// The address of `row`'s element at the strip's first point `v0` (which leaves the loop over `v` there).
    fn row_start(&mut self, v: Var, v0: Value, row: &Row) -> Value {
        self.set_var(v, v0);
        self.address(row.buffer, &row.index)
    }

    /// `pass(i): for each of 4 copies: j = j0 + i + 4·copy; emit(byte offset of point j - j0 in a slot);
    /// i += 16; brif i < len, pass(i), after` — one pass over the strip from `j0`, continuing in `after`.
    fn strip_pass(&mut self, j: Var, j0: Value, len: i64, emit: &mut dyn FnMut(&mut Self, Value)) {
        let pass = self.b.create_block();
        let after = self.b.create_block();
        let i_var = self.b.declare_var(self.ptr);
        let zero = self.b.ins().iconst(self.ptr, 0);
        self.b.def_var(i_var, zero);
        self.b.ins().jump(pass, &[]);

        self.b.switch_to_block(pass);
        let i = self.b.use_var(i_var);
        for copy in 0..PASS_STEP / 4 {
            let point = self.b.ins().iadd_imm_s(i, 4 * copy);
            let jc = self.b.ins().iadd(j0, point);
            self.set_var(j, jc);
            let offset = self.b.ins().imul_imm_s(point, 4);
            emit(self, offset);
        }
        let i1 = self.b.ins().iadd_imm_s(i, PASS_STEP);
        self.b.def_var(i_var, i1);
        let more = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, i1, len);
        self.b.ins().brif(more, pass, &[], after, &[]);
        self.b.switch_to_block(after);
    }
}

/// The slots are the function's own, aligned, and every access is inside them.
fn slot_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}
