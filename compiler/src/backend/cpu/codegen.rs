//! Kernel IR → CLIF: every kernel becomes one native function
//! `extern "C" fn(table: *const *mut u8, start: u64, end: u64)` that runs points `[start, end)` of the kernel's
//! flattened parallel space (row-major over its parallel loops), so the runtime can cut that range into chunks for
//! its threads. `table[b]` is the base of buffer `b`; `table[buffers.len()]` is the matmul scratch, where the
//! runtime's GEMM leaves the products a matmul epilogue reads as `matmul.acc` (dense, in point order).
//!
//! # Shape of the code
//!
//! ```text
//! entry(table, start, end):  base_b = table[b] for every buffer the kernel touches
//!                            row = start / E;  j0 = start % E          (E: extent of the innermost parallel loop)
//!                            brif start < end, row(row, j0), exit
//!                            outer loop variables of that row (div/mod, once)
//! row:                       jend = min(E, end - row·E)
//!                            [wide(j): 16 points, four f32x4 copies of the body, while j + 16 <= jend]
//!                            [vector(j): 4 points with f32x4 while j + 4 <= jend]
//! scalar(j):                 body at (outer.., j);  j += 1;  brif j < jend, scalar(j), next
//! next:                      brif (row + 1)·E < end, advance, exit
//! advance:                   step the outer variables like an odometer (+1, wrap and carry); jump row(row + 1, 0)
//! ```
//!
//! Loops are bottom-tested (`brif cond, body, exit`), as Cranelift's loop-invariant code motion wants them. A
//! `reduce` or `for` becomes a nest of such loops over its static extents (none at all when an extent is 0: a
//! reduction over no points is then the constant SPEC gives, `+0` / `-inf` / `i32::MIN`); a reduction's accumulator
//! starts at the identity (`-0.0` for float sums, which is exact: `-0.0 + x == x` bit for bit over at least one
//! point, `-inf` / `i32::MIN` for max) and folds in row-major order, as the interpreter does (except a vectorized f32
//! or f64 sum, below).
//!
//! # Scalar semantics
//!
//! Exactly the op table's (`kiln_ir::op::elementwise`, which the kernel interpreter runs): f32 in f32; `max`/`min` are Cranelift's `fmax`/`fmin`, which
//! propagate NaN and order `-0 < +0`; i32 wraps, `x / 0 == 0` and `i32::MIN / -1 == i32::MIN`; casts saturate
//! float → i32 with NaN → 0 (`fcvt_to_sint_sat`) and a float is `true` when it is not `0.0` (NaN included); bool is
//! one byte 0/1. `exp`, `log`, `tanh`, `logistic` and float `pow` are the CLIF math library's (`super::math`, inline,
//! within a few ulp of the interpreter's libm; the same code for a scalar and a vector lane). Every op is lowered by
//! one emitter for scalars and vectors alike ([`ops`]), and every reduction folds with one step ([`fold`]).
//!
//! One exception, where the host has FMA (cranelift-native's flags; never emitted without, where Cranelift would call
//! libm): an f32/f64 `add` or `sub` with an operand that is a `mul` of the same block is contracted into one `fma`
//! (`x·y + c`, `c + x·y`, `x·y - c` = `fma(x, y, -c)`, `c - x·y` = `fma(-x, y, c)`; the first operand when both are
//! products). The product is not rounded, so the result can differ from the interpreter's by the rounding of
//! `x·y`: half an ulp of the product, absolutely (more than that relative to the result only where `x·y` and `c`
//! cancel). The scalar and the vector code contract the same instructions ([`contractions`]), so results stay
//! independent of which loop ran a point and of the thread count.
//! # Vectors
//!
//! A kernel whose body is f32/bool code (no `for`, `index` or i32/f64 values; `reduce`s of f32 over other loops
//! with straight-line bodies) and whose loads and stores all move by 1 or 0 elements with the innermost parallel
//! variable gets an f32x4 loop before the scalar one ([`vector`]): stride-1 accesses become vector loads and stores,
//! stride-0 loads are splats, and a reduction (a column sum `Σ_i b[cols·i + j]`) keeps a lane per parallel point,
//! each folding in the scalar order. Without a reduction it runs 16 points (four independent copies of the body) at
//! a time, then 4 at a time (with one, 4 at a time), then the scalar loop takes the rest. The loops compute
//! every point with the same operations, so a point's result doesn't depend on which loop ran it, and outputs are
//! bit-identical for any chunking and thread count.
//!
//! With [`crate::Options::wide_math`] (on by default; `KILN_WIDE_STRIPS=0` turns it off), on a host with FMA and AVX2 or
//! AVX-512, the elementwise f32x4 loop of a kernel whose cost is its f32 transcendentals (W1's `logistic` and
//! `tanh`, GELU's `erf`, in a loop kernel or a matmul epilogue) first runs strips of up to 512 points ([`strips`]): the
//! transcendentals' arguments into stack slots, a call of the runtime's wide routine per transcendental (8 or 16
//! lanes), then the body with their values from the slots. The routines give the CLIF math library's bits, so the
//! outputs don't change.
//!
//! Inside other kernels, a `reduce` (f32 sum or max) or `for` whose body is straight-line f32/bool code (plus i32
//! `index`, constants and their `add`/`sub` compared into masks: a causal mask, lane `l` holding the index at `k + l`),
//! with loads that move by 1 or 0 elements and stores that move by 1 with the nest's innermost loop `k`, runs `k` 4
//! points at a time ([`vector::nested_plan`]; 16 at a time while they fit, four copies of the body), then the rest one at a time.
//! A `for` computes every point with the same operations either way. A reduction keeps four f32x4 accumulators (a
//! lane per `k mod 16`, 16 points per iteration while they fit, then 4) and a scalar one for the points left, and
//! combines them in a fixed order ([`fold`]): the same for every output element and thread count, but a sum is
//! reassociated relative to the interpreter's left-to-right fold (max is exact). A max folds its vectors with one
//! `maxps` each (`fmax` is nine instructions on x86) and a mask of the NaNs it saw, and runs the nest again with
//! `fmax` where that could differ: when a value was NaN or the result is a zero (whose sign `maxps` may get wrong).
//!
//! A `reduce` of f64 or i32 whose body is loads (moving by 1 or 0 with `k`), constants and `add sub mul max min neg
//! abs` of its dtype runs `k` an f64x2 / i32x4 vector at a time into one vector accumulator, then the rest one at a
//! time, combined in a fixed order ([`fold`]: the same loops with one accumulator): i32 sums wrap, so they and every
//! max equal the interpreter's fold exactly (an f64 max as an f32 max, with `maxpd`); f64 sums are reassociated as
//! f32 sums are.
//!
//! In a `for` nest, an f32 division by a value from outside its body (softmax's `exp(x - m) / s`) becomes a
//! multiplication by `1/s`, computed once per run of the nest, where that is safe ([`Emitter::for_loops`](nest): `s` is 0,
//! ±inf, NaN or of magnitude in `[2^-126, 2^126]`; otherwise the nest divides, behind one branch). `x·(1/s)` differs
//! from the correctly rounded `x/s` by at most 1 ulp (`1/s` is rounded once, relative error ≤ 2^-24, which moves the
//! product by less than an ulp before it is rounded); the special values give what dividing gives. Scalar and vector
//! code do the same, so results stay independent of the thread count.
//!
//! Requires: a kernel that [`crate::kernel::verify`] accepts (every program `fusion::lower` produces, bounds proved); [`compile_program`] verifies each kernel first.

mod contract;
mod fold;
mod nest;
mod ops;
mod strips;
mod vector;

use self::contract::{contractions, Contraction};
use super::jit::{wide_symbol, JitModule};
use super::math::MathEmitter;
use crate::backend::BackendError;
use crate::kernel::verify::{verify_kernel, ValueTypes};
use crate::kernel::{
    Block, BufferId, GuardedDim, IndexExpr, Inst, Kernel, KernelProgram, Loop, ValueId, Var,
};
use cranelift_codegen::ir::{
    condcodes::IntCC, types, AbiParam, FuncRef, Function, InstBuilder, MemFlagsData, Signature,
    Type, UserFuncName, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_module::FuncId;
use kiln_ir::DType;
use kiln_runtime::wide::Func as WideFunc;
use std::collections::HashMap;

/// A scalar reduction's nest of at most this many points is unrolled ([`Emitter::reduce_nest`]): 3×3 windows.
const UNROLL_POINTS: usize = 9;
/// … when its body, copied once per point, stays under this many instructions.
const UNROLL_INSTS: usize = 256;

/// How a kernel was compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCode {
    /// The function, once the module is finalized (`None`: nothing to run, e.g. a matmul written straight to its
    /// destination).
    pub func: Option<FuncId>,
    /// Whether its parallel loop has an f32x4 loop (a nested `reduce` or `for` may have one either way).
    pub vectorized: bool,
}

/// The signature of every kernel function: `(table, start, end)`.
pub fn kernel_signature(base: Signature, ptr: Type) -> Signature {
    let mut sig = base;
    sig.params.clear();
    sig.returns.clear();
    sig.params.extend([
        AbiParam::new(ptr),
        AbiParam::new(types::I64),
        AbiParam::new(types::I64),
    ]);
    sig
}

/// Compiles kernel `index` of `program` into `jit` (call [`JitModule::finalize`] before running it).
pub fn compile_kernel(
    jit: &mut JitModule,
    program: &KernelProgram,
    index: usize,
) -> Result<KernelCode, BackendError> {
    let kernel = &program.kernels[index];
    let types = verify_kernel(program, kernel)?;
    let ptr = jit.isa().pointer_type();
    let sig = kernel_signature(jit.make_signature(), ptr);
    let vectorize = vector::plan(program, kernel, &types);
    let math = jit.math();
    let wide = strips::wide_imports(jit, kernel, &types, vectorize.as_ref())?;
    let name = format!("k{index}_{}", sanitize(kernel.name()));
    let mut built = Ok(());
    let func = jit.compile_function(&name, sig, |b| {
        built = build(
            b,
            program,
            kernel,
            &types,
            vectorize.as_ref(),
            Host { ptr, math, wide },
        )
    });
    // The emitter's error first: it explains a function that is then incomplete (its zero stand-ins).
    built?;
    let func = func?;
    Ok(KernelCode {
        func: Some(func),
        vectorized: vectorize.is_some(),
    })
}

/// The CLIF text of kernel `index`, as built (before Cranelift optimizes it). The math library uses `fma` where the
/// host has it, as compiled code does.
pub fn clif_text(program: &KernelProgram, index: usize) -> Result<String, BackendError> {
    let mut jit = JitModule::new()?;
    let (func, callees) = kernel_function(&mut jit, program, index)?;
    Ok(format!(
        "; kernel k{index} {}\n{}{}",
        program.kernels[index].name(),
        strips::callee_legend(&callees, "fn"),
        func.display()
    ))
}

/// Kernel `index` as the host's machine code: the CLIF of [`clif_text`] after Cranelift's optimizations, register
/// allocation and instruction selection for this machine's ISA flags, in Cranelift's disassembly (calls to the
/// runtime appear as relocations).
pub fn asm_text(program: &KernelProgram, index: usize) -> Result<String, BackendError> {
    let mut jit = JitModule::new()?;
    let (func, callees) = kernel_function(&mut jit, program, index)?;
    let name = program.kernels[index].name();
    let mut ctx = cranelift_codegen::Context::for_function(func);
    ctx.set_disasm(true);
    let compiled = ctx
        .compile(jit.isa(), &mut Default::default())
        .map_err(|e| BackendError::Compile {
            name: format!("k{index} {name}"),
            source: Box::new(cranelift_module::ModuleError::Compilation(e.inner)),
        })?;
    let code = compiled.vcode.clone().unwrap_or_default();
    Ok(format!(
        "; kernel k{index} {name}: {} bytes of machine code\n{}{code}",
        compiled.code_info().total_size,
        strips::callee_legend(&callees, "userextname")
    ))
}

/// Builds kernel `index`'s function (before Cranelift optimizes it), with the symbols of the routines it calls in
/// the order of their external names.
fn kernel_function(
    jit: &mut JitModule,
    program: &KernelProgram,
    index: usize,
) -> Result<(Function, Vec<&'static str>), BackendError> {
    let kernel = &program.kernels[index];
    let types = verify_kernel(program, kernel)?;
    let ptr = jit.isa().pointer_type();
    let sig = kernel_signature(jit.make_signature(), ptr);
    let mut func = Function::with_name_signature(UserFuncName::testcase(format!("k{index}")), sig);
    let mut ctx = FunctionBuilderContext::new();
    let vectorize = vector::plan(program, kernel, &types);
    let wide = strips::wide_imports(jit, kernel, &types, vectorize.as_ref())?;
    let callees = wide
        .iter()
        .flat_map(|(_, imports)| imports.iter().map(|(f, _)| wide_symbol(*f)))
        .collect();
    let mut b = FunctionBuilder::new(&mut func, &mut ctx);
    let built = build(
        &mut b,
        program,
        kernel,
        &types,
        vectorize.as_ref(),
        Host {
            ptr,
            math: jit.math(),
            wide,
        },
    );
    b.seal_all_blocks();
    b.finalize(jit.isa().frontend_config());
    built.map(|()| (func, callees))
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The CLIF scalar type of a dtype (bool is a byte holding 0 or 1).
pub(crate) fn clif_type(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 => types::I32,
        DType::Bool => types::I8,
    }
}

/// What code is generated for.
#[derive(Clone)]
struct Host {
    ptr: Type,
    math: MathEmitter,
    /// The kernel's strips and the wide routines they call, declared in the module ([`strips`]).
    wide: Option<strips::WideCalls>,
}

/// Builds the whole function (see the module doc for its shape). An error names an op the emitter has no code for
/// (internal: [`crate::kernel::verify`] and the vector plans exclude them); the function is then complete but not meaningful.
fn build(
    b: &mut FunctionBuilder<'_>,
    program: &KernelProgram,
    kernel: &Kernel,
    types: &ValueTypes,
    vectorize: Option<&vector::Plan>,
    host: Host,
) -> Result<(), BackendError> {
    let Host { ptr, math, wide } = host;
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let &[table, start, end] = b.block_params(entry) else {
        unreachable!("the kernel signature has three parameters")
    };
    let mut e = Emitter::new(b, program, kernel, types, ptr, table, math);
    if let Some((strips, imports)) = wide {
        for (func, id) in imports {
            let callee = strips::import_function(e.b, id, ptr);
            e.wide_callees.insert(func, callee);
        }
        e.strips = strips;
    }
    let exit = e.b.create_block();
    let parallel = kernel.parallel();
    // Loops of extent 1 don't change the flattened point index; their variable is 0 throughout.
    let active: Vec<Loop> = parallel.iter().filter(|l| l.extent > 1).copied().collect();
    for l in parallel.iter().filter(|l| l.extent == 1) {
        let zero = e.b.ins().iconst(ptr, 0);
        e.set_var(l.var, zero);
    }
    if parallel.iter().any(|l| l.extent == 0) {
        e.b.ins().jump(exit, &[]);
    } else if active.is_empty() {
        let body = e.b.create_block();
        let any = e.b.ins().icmp(IntCC::UnsignedLessThan, start, end);
        e.b.ins().brif(any, body, &[], exit, &[]);
        e.b.switch_to_block(body);
        e.block(kernel.body());
        e.b.ins().jump(exit, &[]);
    } else {
        e.parallel_loops(&active, start, end, exit, vectorize);
    }
    e.b.switch_to_block(exit);
    e.b.ins().return_(&[]);
    match e.unlowered {
        Some(unlowered) => Err(unlowered.into_error(kernel.name())),
        None => Ok(()),
    }
}

struct Emitter<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    program: &'a KernelProgram,
    kernel: &'a Kernel,
    types: &'a ValueTypes,
    ptr: Type,
    /// Base pointer of every buffer the kernel touches (loaded in the entry block), and of the scratch.
    bases: HashMap<BufferId, Value>,
    scratch: Option<Value>,
    vars: HashMap<Var, Variable>,
    values: Vec<Option<Value>>,
    math: MathEmitter,
    /// The first op [`ops`] had no lowering for (the kernel then fails to compile).
    unlowered: Option<ops::Unlowered>,
    /// The variable the f32x4 parallel loop being emitted runs 4 points of at a time (`None` elsewhere).
    lane_var: Option<Var>,
    /// Every loop variable's extent: a guard that holds at every point of its variables' ranges is not emitted.
    var_extents: HashMap<Var, usize>,
    /// The innermost variable of the `reduce` or `for` nest whose vector body is being emitted: its lanes hold 4
    /// consecutive points of it (`index` then adds 0..3 times its stride).
    nested_lane_var: Option<Var>,
    /// `1/s` of the divisors `s` that the `for` body being emitted multiplies by instead (see [`Self::for_loops`]),
    /// by `ValueId` index.
    reciprocals: HashMap<usize, Value>,
    /// The float `add`/`sub` values computed as one `fma` (empty without native FMA), by `ValueId` index.
    contract: HashMap<usize, Contraction>,
    /// The strips of the f32x4 loop ([`strips`]; `None`: no strips) and the wide routines they call.
    strips: Option<strips::StripPlan>,
    wide_callees: HashMap<WideFunc, FuncRef>,
    /// The strips of the `for` nest whose vector loops are being emitted ([`strips::nest_plan`]).
    nest_strips: Option<strips::StripPlan>,
}

/// Memory flags of element accesses: in bounds (checked) and naturally aligned.
fn elem_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

impl<'a, 'b> Emitter<'a, 'b> {
    fn new(
        b: &'a mut FunctionBuilder<'b>,
        program: &'a KernelProgram,
        kernel: &'a Kernel,
        types: &'a ValueTypes,
        ptr: Type,
        table: Value,
        math: MathEmitter,
    ) -> Self {
        let mut buffers = kernel.reads();
        for w in kernel.writes() {
            if !buffers.contains(&w) {
                buffers.push(w);
            }
        }
        let slot = |i: usize| i32::try_from(i * ptr.bytes() as usize).expect("table fits i32");
        let table_flags = MemFlagsData::trusted().with_readonly();
        let mut bases = HashMap::new();
        for buffer in buffers {
            let base = b.ins().load(ptr, table_flags, table, slot(buffer.index()));
            bases.insert(buffer, base);
        }
        let scratch = matches!(kernel, Kernel::Matmul(_)).then(|| {
            b.ins()
                .load(ptr, table_flags, table, slot(program.buffers.len()))
        });
        // Never without native FMA: Cranelift would call libm's `fma` instead.
        let mut contract = HashMap::new();
        if math.has_fma() {
            contractions(kernel.body(), types, &mut contract);
        }
        let mut var_extents: HashMap<Var, usize> = kernel
            .parallel()
            .iter()
            .map(|l| (l.var, l.extent))
            .collect();
        kernel.body().visit(&mut |inst| {
            if let Inst::Reduce { loops, .. } | Inst::For { loops, .. } = inst {
                var_extents.extend(loops.iter().map(|l| (l.var, l.extent)));
            }
        });
        Emitter {
            var_extents,
            b,
            program,
            kernel,
            types,
            ptr,
            bases,
            scratch,
            vars: HashMap::new(),
            values: vec![None; types.len()],
            math,
            unlowered: None,
            reciprocals: HashMap::new(),
            lane_var: None,
            nested_lane_var: None,
            contract,
            strips: None,
            wide_callees: HashMap::new(),
            nest_strips: None,
        }
    }

    fn var(&mut self, v: Var) -> Variable {
        if let Some(&var) = self.vars.get(&v) {
            return var;
        }
        let var = self.b.declare_var(self.ptr);
        self.vars.insert(v, var);
        var
    }

    fn set_var(&mut self, v: Var, value: Value) {
        let var = self.var(v);
        self.b.def_var(var, value);
    }

    fn get_var(&mut self, v: Var) -> Value {
        let var = self.var(v);
        self.b.use_var(var)
    }

    fn value(&self, id: ValueId) -> Value {
        self.values[id.index()].expect("checked: defined before use")
    }

    fn dtype(&self, id: ValueId) -> DType {
        self.types[id.index()].expect("checked: defined before use")
    }

    /// The parallel loops over `[start, end)`, rows of the innermost loop at a time (see the module doc).
    fn parallel_loops(
        &mut self,
        parallel: &[Loop],
        start: Value,
        end: Value,
        exit: cranelift_codegen::ir::Block,
        vectorize: Option<&vector::Plan>,
    ) {
        let (outer, inner) = parallel.split_at(parallel.len() - 1);
        let inner = inner[0];
        let extent = inner.extent as i64;
        let row_var = self.b.declare_var(types::I64);
        let j0_var = self.b.declare_var(types::I64);
        let row0 = self.b.ins().udiv_imm_u(start, extent);
        let j0 = self.b.ins().urem_imm_u(start, extent);
        self.b.def_var(row_var, row0);
        self.b.def_var(j0_var, j0);
        // The outer loop variables of the first row, by division; later rows step them like an odometer
        // (`advance`), which is what makes kernels with short rows (a 2-wide pooling tile) cheap per row.
        let mut rest = row0;
        for (k, l) in outer.iter().enumerate().rev() {
            // The outermost variable is what is left (the range ends within it).
            let v = if k == 0 {
                rest
            } else {
                let v = self.b.ins().urem_imm_u(rest, l.extent as i64);
                rest = self.b.ins().udiv_imm_u(rest, l.extent as i64);
                v
            };
            self.set_var(l.var, v);
        }
        let row_block = self.b.create_block();
        let scalar_check = self.b.create_block();
        let scalar_block = self.b.create_block();
        let next = self.b.create_block();
        let any = self.b.ins().icmp(IntCC::UnsignedLessThan, start, end);
        self.b.ins().brif(any, row_block, &[], exit, &[]);

        self.b.switch_to_block(row_block);
        let row = self.b.use_var(row_var);
        let row_base = self.b.ins().imul_imm_s(row, extent);
        let left = self.b.ins().isub(end, row_base);
        let e = self.b.ins().iconst(types::I64, extent);
        let jend = self.b.ins().umin(left, e);
        let j0 = self.b.use_var(j0_var);
        self.set_var(inner.var, j0);
        if let Some(plan) = vectorize {
            self.vector_loop(plan, jend, scalar_check);
        } else {
            self.b.ins().jump(scalar_check, &[]);
        }

        // Points left after the vector loop (all of them without one).
        self.b.switch_to_block(scalar_check);
        let j = self.get_var(inner.var);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, j, jend);
        self.b.ins().brif(more, scalar_block, &[], next, &[]);

        self.b.switch_to_block(scalar_block);
        self.block(self.kernel.body());
        let j = self.get_var(inner.var);
        let j1 = self.b.ins().iadd_imm_s(j, 1);
        self.set_var(inner.var, j1);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, j1, jend);
        self.b.ins().brif(more, scalar_block, &[], next, &[]);

        self.b.switch_to_block(next);
        let row1 = self.b.ins().iadd_imm_s(row, 1);
        let next_base = self.b.ins().iadd_imm_s(row_base, extent);
        self.b.def_var(row_var, row1);
        let zero = self.b.ins().iconst(types::I64, 0);
        self.b.def_var(j0_var, zero);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, next_base, end);
        let advance = self.b.create_block();
        self.b.ins().brif(more, advance, &[], exit, &[]);
        self.b.switch_to_block(advance);
        self.advance_odometer(outer, row_block);
    }

    /// Steps the outer loop variables to the next row and jumps to `row_block`: the innermost one grows by 1; one
    /// that reaches its extent wraps to 0 and carries into the next outer one (the outermost never wraps: the range
    /// ends within it). Positioned in the block that decided there is a next row.
    fn advance_odometer(&mut self, outer: &[Loop], row_block: cranelift_codegen::ir::Block) {
        for (k, l) in outer.iter().enumerate().rev() {
            let v = self.get_var(l.var);
            let v1 = self.b.ins().iadd_imm_s(v, 1);
            if k == 0 {
                self.set_var(l.var, v1);
                break;
            }
            self.set_var(l.var, v1);
            let wraps = self.b.ins().icmp_imm_s(IntCC::Equal, v1, l.extent as i64);
            let carry = self.b.create_block();
            self.b.ins().brif(wraps, carry, &[], row_block, &[]);
            self.b.switch_to_block(carry);
            let zero = self.b.ins().iconst(types::I64, 0);
            self.set_var(l.var, zero);
        }
        self.b.ins().jump(row_block, &[]);
    }

    /// A nest of sequential loops around `body` (nothing when an extent is 0): bottom-tested, row-major.
    /// A reduction's nest: [`Self::loop_nest`], or, for a nest of at most [`UNROLL_POINTS`] points whose body is
    /// short, the body once per point with the loop variables constant, in the same row-major order (so the same
    /// fold, bit for bit). A 2×2 or 3×3 pooling window then costs its loads and folds, not two loops' counters and
    /// branches and the index arithmetic per point (which the constants fold away).
    fn reduce_nest(&mut self, loops: &[Loop], body_insts: usize, body: &mut dyn FnMut(&mut Self)) {
        let points = loops.iter().map(|l| l.extent).product::<usize>();
        if points == 0 || points > UNROLL_POINTS || points * body_insts > UNROLL_INSTS {
            return self.loop_nest(loops, body);
        }
        for point in 0..points {
            let mut rest = point;
            for l in loops.iter().rev() {
                let at = self.b.ins().iconst(self.ptr, (rest % l.extent) as i64);
                self.set_var(l.var, at);
                rest /= l.extent;
            }
            body(self);
        }
    }

    fn loop_nest(&mut self, loops: &[Loop], body: &mut dyn FnMut(&mut Self)) {
        if loops.iter().any(|l| l.extent == 0) {
            return;
        }
        let mut headers = Vec::with_capacity(loops.len());
        for l in loops {
            let zero = self.b.ins().iconst(self.ptr, 0);
            self.set_var(l.var, zero);
            if l.extent > 1 {
                let block = self.b.create_block();
                self.b.ins().jump(block, &[]);
                self.b.switch_to_block(block);
                headers.push((l, Some(block)));
            } else {
                headers.push((l, None));
            }
        }
        body(self);
        for (l, block) in headers.into_iter().rev() {
            let Some(block) = block else { continue };
            let after = self.b.create_block();
            let v = self.get_var(l.var);
            let v1 = self.b.ins().iadd_imm_s(v, 1);
            self.set_var(l.var, v1);
            let more = self
                .b
                .ins()
                .icmp_imm_s(IntCC::UnsignedLessThan, v1, l.extent as i64);
            self.b.ins().brif(more, block, &[], after, &[]);
            self.b.switch_to_block(after);
        }
    }

    fn block(&mut self, block: &Block) {
        for inst in &block.insts {
            match inst {
                Inst::Let { id, dtype, op } => {
                    let v = match self.contract.get(&id.index()) {
                        Some(&c) => {
                            let (a, b, addend) =
                                (self.value(c.a), self.value(c.b), self.value(c.c));
                            self.fma(c, a, b, addend)
                        }
                        None => {
                            let args: Vec<Value> =
                                op.operands().into_iter().map(|v| self.value(v)).collect();
                            self.lower(op, *dtype, ops::Shape::Scalar, &args)
                        }
                    };
                    self.values[id.index()] = Some(v);
                }
                Inst::Reduce {
                    id,
                    dtype,
                    kind,
                    loops,
                    body,
                    value,
                } => {
                    let result = self.reduce(*kind, *dtype, loops, body, *value);
                    self.values[id.index()] = Some(result);
                }
                Inst::For { loops, body } => self.for_loops(loops, body),
                Inst::Store {
                    buffer,
                    index,
                    value,
                } => {
                    let addr = self.address(*buffer, index);
                    let v = self.value(*value);
                    self.b.ins().store(elem_flags(), v, addr, 0);
                }
            }
        }
    }

    /// `offset + Σ stride·var`, as a pointer-sized integer.
    fn index(&mut self, index: &IndexExpr) -> Value {
        let mut sum = None;
        for &(v, stride) in &index.terms {
            let x = self.get_var(v);
            let term = if stride == 1 {
                x
            } else {
                self.b.ins().imul_imm_s(x, stride as i64)
            };
            sum = Some(match sum {
                None => term,
                Some(s) => self.b.ins().iadd(s, term),
            });
        }
        match sum {
            None => self.b.ins().iconst(self.ptr, index.offset as i64),
            Some(s) if index.offset == 0 => s,
            Some(s) => self.b.ins().iadd_imm_s(s, index.offset as i64),
        }
    }

    /// The element index of a guarded load and whether every guard holds. Where a guard fails, that dim's index is
    /// 0, so the (discarded) load stays inside the buffer: branch-free, and never out of bounds.
    fn guarded_index(&mut self, dims: &[GuardedDim]) -> (Value, Value) {
        let mut index = self.b.ins().iconst(self.ptr, 0);
        let mut ok = self.b.ins().iconst(types::I8, 1);
        let zero = self.b.ins().iconst(self.ptr, 0);
        for d in dims {
            let mut t = self.b.ins().iconst(self.ptr, d.offset);
            for &(v, c) in &d.terms {
                let x = self.get_var(v);
                let term = self.b.ins().imul_imm_s(x, c);
                t = self.b.ins().iadd(t, term);
            }
            // A dim whose every value is in range (the batch and channel dims of a padded read, a window's own
            // offsets) needs no check: on overlap_add's window loops, six guarded dims become two.
            if d.step == 1 && self.always_within(d) {
                let term = self.b.ins().imul_imm_s(t, d.stride as i64);
                index = self.b.ins().iadd(index, term);
                continue;
            }
            // `t < step·extent` as unsigned also rules out `t < 0`.
            let below = (d.step * d.extent) as i64;
            let mut holds = self.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, t, below);
            let q = if d.step == 1 {
                t
            } else {
                let q = self.b.ins().udiv_imm_u(t, d.step as i64);
                let back = self.b.ins().imul_imm_s(q, d.step as i64);
                let exact = self.b.ins().icmp(IntCC::Equal, back, t);
                holds = self.b.ins().band(holds, exact);
                q
            };
            let q = self.b.ins().select(holds, q, zero);
            let term = self.b.ins().imul_imm_s(q, d.stride as i64);
            index = self.b.ins().iadd(index, term);
            ok = self.b.ins().band(ok, holds);
        }
        (index, ok)
    }

    /// Whether `t = offset + Σ c·v` lies in `0..extent` for every value of its variables (each in `0..extent_v`).
    fn always_within(&self, d: &GuardedDim) -> bool {
        let (mut lo, mut hi) = (d.offset, d.offset);
        for &(v, c) in &d.terms {
            let Some(&n) = self.var_extents.get(&v) else {
                return false;
            };
            let span = c.saturating_mul(n.saturating_sub(1) as i64);
            if span < 0 {
                lo = lo.saturating_add(span);
            } else {
                hi = hi.saturating_add(span);
            }
        }
        lo >= 0 && hi < d.extent as i64
    }

    fn address(&mut self, buffer: BufferId, index: &IndexExpr) -> Value {
        let i = self.index(index);
        let size = self.program.buffers[buffer.index()].ty.dtype.size_bytes();
        self.element_address(self.bases[&buffer], i, size)
    }

    fn element_address(&mut self, base: Value, index: Value, size: usize) -> Value {
        let offset = if size == 1 {
            index
        } else {
            self.b.ins().imul_imm_s(index, size as i64)
        };
        self.b.ins().iadd(base, offset)
    }

    /// The flat point index of the current parallel point (where the matmul scratch holds its product).
    fn point_index(&self) -> IndexExpr {
        let mut stride = 1;
        let mut terms = Vec::new();
        for l in self.kernel.parallel().iter().rev() {
            terms.push((l.var, stride));
            stride *= l.extent;
        }
        terms.reverse();
        IndexExpr { offset: 0, terms }
    }
}
