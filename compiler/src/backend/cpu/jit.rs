//! A small JIT harness over `cranelift-jit`: build CLIF functions for the host, finalize them, call them.
//!
//! [`JitModule`] owns one `cranelift_jit::JITModule` configured for the host ISA (`opt_level=speed`; the CLIF
//! verifier runs in debug builds only) and frees its executable memory when dropped. Two ways in:
//! - [`JitModule::compile_function`] + [`JitModule::finalize`] + [`JitModule::get`]: any function, built by a
//!   closure on a `FunctionBuilder`; the caller gets a raw code pointer and is responsible for calling it right.
//! - [`JitModule::compile_map`] + [`JitModule::run_map`]: an elementwise kernel `out[i] = body(in_0[i], ...)` whose
//!   loop (f32x4 / f64x2 vectors, then a scalar tail) the harness writes itself, so running it is a safe call on
//!   slices.
//!
//! Kernels may call the runtime's wide math routines ([`kiln_runtime::wide`]): a module registers the symbols of
//! the process's level (`kiln_wide_exp`, ...) when the host has FMA and AVX2 or AVX-512, and
//! [`JitModule::wide_routine`] declares one for a function to call.
//!
//! Every `unsafe` of the CPU backend lives in this module.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use cranelift_codegen::ir::{
    condcodes::IntCC, types, AbiParam, Block, Function, Inst, InstBuilder, MemFlagsData, Signature,
    Type, UserFuncName, Value,
};
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module, ModuleError};

use super::math::MathEmitter;
use crate::backend::BackendError;
use kiln_runtime::wide::{Func as WideFunc, Isa as WideIsa, Routines};

/// Tells one [`JitModule`] from another, so a [`MapKernel`] is only ever run by the module that compiled it.
static NEXT_MODULE_TAG: AtomicU64 = AtomicU64::new(0);

/// A JIT module for the host: compiles CLIF functions to executable memory, which is freed on drop.
pub struct JitModule {
    /// `Some` until `drop` hands it to `free_memory`.
    module: Option<JITModule>,
    ctx: Context,
    builder_ctx: FunctionBuilderContext,
    /// Every function defined here, by id: its name and whether `finalize` has made it callable.
    defined: HashMap<FuncId, Defined>,
    tag: u64,
    /// The wide routines kernels may call (see [`JitModule::wide`]); those the host can use, whose symbols are
    /// registered; the ones declared so far.
    wide: Option<&'static Routines>,
    wide_available: Option<&'static Routines>,
    wide_imports: HashMap<WideFunc, FuncId>,
}

struct Defined {
    name: String,
    finalized: bool,
}

impl JitModule {
    /// A module for the host ISA (with the host's SIMD features, e.g. AVX and FMA, detected by `cranelift-native`).
    pub fn new() -> Result<Self, BackendError> {
        let host = |e: &dyn std::fmt::Display| BackendError::Host(e.to_string());
        let mut flags = settings::builder();
        let verifier = if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        };
        for (name, value) in [
            ("opt_level", "speed"),
            ("enable_verifier", verifier),
            // cranelift-jit needs absolute relocations: the code may land anywhere in the address space.
            ("use_colocated_libcalls", "false"),
            ("is_pic", "false"),
        ] {
            flags.set(name, value).map_err(|e| host(&e))?;
        }
        let isa = cranelift_native::builder()
            .map_err(|e| host(&e))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| host(&e))?;
        let wide_available = usable_wide_routines(isa.as_ref());
        let wide = wide_available.filter(|_| wide_strips_by_default());
        let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
        if let Some(routines) = wide_available {
            for func in WideFunc::ALL {
                builder.symbol(wide_symbol(func), routines.strip_fn(func) as *const u8);
            }
        }
        let module = JITModule::new(builder);
        Ok(JitModule {
            wide,
            wide_available,
            wide_imports: HashMap::new(),
            ctx: module.make_context(),
            module: Some(module),
            builder_ctx: FunctionBuilderContext::new(),
            defined: HashMap::new(),
            tag: NEXT_MODULE_TAG.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn module(&self) -> &JITModule {
        self.module
            .as_ref()
            .expect("the JIT module lives until drop")
    }

    fn module_mut(&mut self) -> &mut JITModule {
        self.module
            .as_mut()
            .expect("the JIT module lives until drop")
    }

    /// The target: its pointer type, calling convention and ISA flags.
    pub fn isa(&self) -> &dyn TargetIsa {
        self.module().isa()
    }

    /// The math library configured for this target (FMA where the host has it).
    pub fn math(&self) -> MathEmitter {
        MathEmitter::for_isa(self.isa())
    }

    /// The runtime's wide math routines that kernels compiled here may call: `Some` when the host has FMA (the
    /// routines reproduce the math library's FMA code only) and the process's level
    /// ([`kiln_runtime::wide::routines`]) is AVX2 or AVX-512, unless `KILN_WIDE_STRIPS` is `0`.
    pub fn wide(&self) -> Option<&'static Routines> {
        self.wide
    }

    /// Turns the wide routines on or off for the kernels compiled from now on, whatever `KILN_WIDE_STRIPS` says
    /// (on only where the host can use them): for tests and benchmarks that compare the two.
    pub fn set_wide(&mut self, on: bool) {
        self.wide = self.wide_available.filter(|_| on);
    }

    /// The wide routine of `func`, declared as an import (`extern "C" fn(src: *const f32, dst: *mut f32, n: usize)`,
    /// symbol `kiln_wide_<name>`) for functions of this module to call; `None` without [`Self::wide`].
    pub fn wide_routine(&mut self, func: WideFunc) -> Result<Option<FuncId>, BackendError> {
        if self.wide.is_none() {
            return Ok(None);
        }
        if let Some(&id) = self.wide_imports.get(&func) {
            return Ok(Some(id));
        }
        let ptr = self.isa().pointer_type();
        let mut sig = self.make_signature();
        sig.params.extend(wide_params(ptr));
        let name = wide_symbol(func);
        let id = self
            .module_mut()
            .declare_function(name, Linkage::Import, &sig)
            .map_err(|e| compile_error(name, e))?;
        self.wide_imports.insert(func, id);
        Ok(Some(id))
    }

    /// An empty signature in the host's default calling convention (which is `extern "C"`).
    pub fn make_signature(&self) -> Signature {
        self.module().make_signature()
    }

    /// Compiles one function. `build` gets a builder on an empty function with `signature`; it creates the blocks
    /// and instructions (the harness seals all blocks and finalizes the builder afterwards). The function becomes
    /// callable after the next [`finalize`](Self::finalize).
    pub fn compile_function(
        &mut self,
        name: &str,
        signature: Signature,
        build: impl FnOnce(&mut FunctionBuilder<'_>),
    ) -> Result<FuncId, BackendError> {
        let id = self.start_function(name, signature)?;
        self.build_body(build);
        self.define(id, name)
    }

    /// Makes every function compiled so far callable (resolves relocations, marks the code executable).
    pub fn finalize(&mut self) -> Result<(), BackendError> {
        self.module_mut()
            .finalize_definitions()
            .map_err(|e| compile_error("<finalize>", e))?;
        self.defined.values_mut().for_each(|f| f.finalized = true);
        Ok(())
    }

    /// The entry point of a finalized function. The pointer is valid while `self` lives; calling it is `unsafe`
    /// and must match the signature it was compiled with.
    pub fn get(&self, id: FuncId) -> Result<*const u8, BackendError> {
        match self.defined.get(&id) {
            Some(f) if f.finalized => Ok(self.module().get_finalized_function(id)),
            Some(f) => Err(BackendError::NotFinalized(f.name.clone())),
            None => Err(BackendError::NotFinalized(format!("{id}"))),
        }
    }

    /// Compiles the elementwise kernel `out[i] = body(in_0[i], .., in_{arity-1}[i])` for `i < n`, with the signature
    /// `extern "C" fn(inputs: *const *const T, out: *mut T, n: usize)`. `body` is called twice: once on vectors
    /// (`f32x4` / `f64x2`) for the main loop and once on scalars for the tail, so it must be generic over the lane
    /// count (every [`MathEmitter`] function is). It may only compute: an instruction with effects (load, store,
    /// call, trap) is rejected with [`BackendError::ImpureBody`].
    pub fn compile_map<T: MapElement>(
        &mut self,
        name: &str,
        arity: usize,
        body: impl Fn(&mut FunctionBuilder<'_>, &[Value]) -> Value,
    ) -> Result<MapKernel<T>, BackendError> {
        let ptr = self.isa().pointer_type();
        let mut signature = self.make_signature();
        signature
            .params
            .extend([AbiParam::new(ptr), AbiParam::new(ptr), AbiParam::new(ptr)]);
        let id = self.start_function(name, signature)?;
        let harness_insts = self.build_body(|b| emit_map_loop::<T>(b, ptr, arity, &body));
        if let Err(e) = check_pure_body(&self.ctx.func, &harness_insts, name) {
            self.ctx.clear();
            return Err(e);
        }
        let id = self.define(id, name)?;
        Ok(MapKernel {
            id,
            module: self.tag,
            arity,
            name: name.to_owned(),
            elem: PhantomData,
        })
    }

    /// Runs a finalized map kernel on equal-length slices: `out[i] = body(inputs[0][i], ..)`.
    pub fn run_map<T: MapElement>(
        &self,
        kernel: &MapKernel<T>,
        inputs: &[&[T]],
        out: &mut [T],
    ) -> Result<(), BackendError> {
        let bad_call = |problem: String| BackendError::BadCall {
            name: kernel.name.clone(),
            problem,
        };
        if kernel.module != self.tag {
            return Err(bad_call("it was compiled by another JitModule".to_owned()));
        }
        if inputs.len() != kernel.arity {
            return Err(bad_call(format!(
                "it takes {} inputs, got {}",
                kernel.arity,
                inputs.len()
            )));
        }
        if let Some(input) = inputs.iter().find(|input| input.len() != out.len()) {
            return Err(bad_call(format!(
                "an input has {} elements, the output {}",
                input.len(),
                out.len()
            )));
        }
        let code = self.get(kernel.id)?;
        let input_ptrs: Vec<*const T> = inputs.iter().map(|input| input.as_ptr()).collect();
        // SAFETY: `code` is the finalized entry of a function this module compiled with `compile_map` (the tag
        // check above), whose signature is `extern "C" fn(*const *const T, *mut T, usize)` in the host's default
        // calling convention (`make_signature`), with `T`'s CLIF type fixed by `MapKernel<T>`. The module is
        // borrowed, so the code stays mapped for the whole call.
        let kernel_fn: unsafe extern "C" fn(*const *const T, *mut T, usize) =
            unsafe { std::mem::transmute(code) };
        // SAFETY: the kernel reads `input_ptrs[0..arity]`, then elements `0..n` of each input and writes elements
        // `0..n` of `out`, nothing else: the harness wrote every memory access of the function, and
        // `check_pure_body` rejected any the body added. There are `arity` input pointers, every input has
        // `n = out.len()` elements, and `out` is an exclusive borrow, so it aliases no input.
        unsafe { kernel_fn(input_ptrs.as_ptr(), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Declares `name` and clears the function context for a new body with `signature`.
    fn start_function(&mut self, name: &str, signature: Signature) -> Result<FuncId, BackendError> {
        let id = self
            .module_mut()
            .declare_function(name, Linkage::Export, &signature)
            .map_err(|e| compile_error(name, e))?;
        self.ctx.func.signature = signature;
        self.ctx.func.name = UserFuncName::user(0, id.as_u32());
        Ok(id)
    }

    fn build_body<R>(&mut self, build: impl FnOnce(&mut FunctionBuilder<'_>) -> R) -> R {
        let frontend_config = self.isa().frontend_config();
        let mut builder = FunctionBuilder::new(&mut self.ctx.func, &mut self.builder_ctx);
        let result = build(&mut builder);
        builder.seal_all_blocks();
        builder.finalize(frontend_config);
        result
    }

    /// Compiles the function in the context to machine code and clears the context.
    fn define(&mut self, id: FuncId, name: &str) -> Result<FuncId, BackendError> {
        let module = self
            .module
            .as_mut()
            .expect("the JIT module lives until drop");
        let result = module.define_function(id, &mut self.ctx);
        module.clear_context(&mut self.ctx);
        result.map_err(|e| compile_error(name, e))?;
        self.defined.insert(
            id,
            Defined {
                name: name.to_owned(),
                finalized: false,
            },
        );
        Ok(id)
    }
}

impl Drop for JitModule {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: no code of this module can be running: `run_map` borrows the module for the whole call, and
            // raw pointers from `get` are documented as valid only while the module lives.
            unsafe { module.free_memory() };
        }
    }
}

/// Whether kernels call the wide routines unless told otherwise: yes, unless the environment variable
/// `KILN_WIDE_STRIPS` is `0` (the whole test suite passes either way, bit for bit where it compares bits).
pub fn wide_strips_by_default() -> bool {
    std::env::var("KILN_WIDE_STRIPS").as_deref() != Ok("0")
}

/// The parameters of every wide routine, `(src, dst, n, shift)`: [`kiln_runtime::wide::StripFn`]'s.
pub(crate) fn wide_params(ptr: Type) -> [AbiParam; 4] {
    [
        AbiParam::new(ptr),
        AbiParam::new(ptr),
        AbiParam::new(ptr),
        AbiParam::new(types::F32),
    ]
}

/// The symbol JIT code calls the wide routine of `func` by.
pub fn wide_symbol(func: WideFunc) -> &'static str {
    match func {
        WideFunc::Exp => "kiln_wide_exp",
        WideFunc::Log => "kiln_wide_log",
        WideFunc::Tanh => "kiln_wide_tanh",
        WideFunc::Logistic => "kiln_wide_logistic",
        WideFunc::Erf => "kiln_wide_erf",
        WideFunc::Sin => "kiln_wide_sin",
        WideFunc::Cos => "kiln_wide_cos",
    }
}

/// The process's wide routines, if JIT code for `isa` can use them: the host has FMA, which the routines' bits
/// assume, and they are AVX2 or AVX-512 (the scalar level is no faster than the inline CLIF code).
fn usable_wide_routines(isa: &dyn TargetIsa) -> Option<&'static Routines> {
    let routines = kiln_runtime::wide::routines().ok()?;
    (isa.has_native_fma() && routines.isa() != WideIsa::Scalar).then_some(routines)
}

fn compile_error(name: &str, source: ModuleError) -> BackendError {
    BackendError::Compile {
        name: name.to_owned(),
        source: Box::new(source),
    }
}

/// An element type map kernels run on, with its scalar and vector CLIF types.
pub trait MapElement: Copy + sealed::Sealed {
    /// The scalar type, for the tail loop.
    const SCALAR: Type;
    /// The widest vector the x86-64 backend takes (128 bits), for the main loop.
    const VECTOR: Type;
}

impl MapElement for f32 {
    const SCALAR: Type = types::F32;
    const VECTOR: Type = types::F32X4;
}

impl MapElement for f64 {
    const SCALAR: Type = types::F64;
    const VECTOR: Type = types::F64X2;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A compiled elementwise kernel on `T`; run it with [`JitModule::run_map`] on the module that compiled it.
#[derive(Debug)]
pub struct MapKernel<T> {
    id: FuncId,
    module: u64,
    arity: usize,
    name: String,
    elem: PhantomData<fn() -> T>,
}

impl<T> MapKernel<T> {
    /// The function's id in its module, for [`JitModule::get`].
    pub fn id(&self) -> FuncId {
        self.id
    }
}

/// Emits the map kernel's loops and returns the memory instructions it emitted itself:
///
/// ```text
/// entry(ins, out, n):  p_k = ins[k];  nvec = n & -LANES;  brif nvec, vector(0), tail_check(0)
/// vector(i):           out[i..i+LANES] = body(p_k[i..i+LANES]);  i += LANES;  brif i < nvec, vector(i), tail_check(i)
/// tail_check(i):       brif i < n, scalar(i), exit
/// scalar(i):           out[i] = body(p_k[i]);  i += 1;  brif i < n, scalar(i), exit
/// ```
///
/// The loops are bottom-tested so that Cranelift hoists the body's constant splats out of them.
fn emit_map_loop<T: MapElement>(
    b: &mut FunctionBuilder<'_>,
    ptr: Type,
    arity: usize,
    body: &dyn Fn(&mut FunctionBuilder<'_>, &[Value]) -> Value,
) -> Vec<Inst> {
    let lanes = i64::from(T::VECTOR.lane_count());
    let mut harness_insts = Vec::new();

    let entry = b.create_block();
    let vector = b.create_block();
    let tail_check = b.create_block();
    let scalar = b.create_block();
    let exit = b.create_block();
    for block in [vector, tail_check, scalar, exit] {
        b.append_block_param(block, ptr);
    }
    b.append_block_params_for_function_params(entry);

    b.switch_to_block(entry);
    let &[ins, out, n] = b.block_params(entry) else {
        unreachable!("the map signature has three parameters")
    };
    let mut inputs = Vec::with_capacity(arity);
    for k in 0..arity {
        let offset =
            i32::try_from(k * ptr.bytes() as usize).expect("a map kernel has a handful of inputs");
        let input = b.ins().load(ptr, MemFlagsData::trusted(), ins, offset);
        harness_insts.push(defining_inst(b, input));
        inputs.push(input);
    }
    let nvec = b.ins().band_imm_s(n, -lanes);
    let zero = b.ins().iconst(ptr, 0);
    b.ins()
        .brif(nvec, vector, &[zero.into()], tail_check, &[zero.into()]);

    let mut step = MapStep {
        inputs: &inputs,
        out,
        body,
        harness_insts: &mut harness_insts,
    };
    step.emit(b, vector, T::VECTOR, nvec, tail_check);

    b.switch_to_block(tail_check);
    let i = b.block_params(tail_check)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, i, n);
    b.ins().brif(more, scalar, &[i.into()], exit, &[i.into()]);

    step.emit(b, scalar, T::SCALAR, n, exit);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    harness_insts
}

/// One loop of a map kernel: the block `block(i)` computing elements `i..i+lanes(ty)`.
struct MapStep<'a> {
    inputs: &'a [Value],
    out: Value,
    body: &'a dyn Fn(&mut FunctionBuilder<'_>, &[Value]) -> Value,
    harness_insts: &'a mut Vec<Inst>,
}

impl MapStep<'_> {
    /// `block(i): out[i..] = body(inputs[i..]); i += lanes; brif i < bound, block(i), done(i)`.
    fn emit(
        &mut self,
        b: &mut FunctionBuilder<'_>,
        block: Block,
        ty: Type,
        bound: Value,
        done: Block,
    ) {
        b.switch_to_block(block);
        let i = b.block_params(block)[0];
        let offset = b.ins().imul_imm_s(i, i64::from(ty.lane_type().bytes()));
        let flags = MemFlagsData::new().with_notrap();
        let mut args = Vec::with_capacity(self.inputs.len());
        for &input in self.inputs {
            let addr = b.ins().iadd(input, offset);
            let arg = b.ins().load(ty, flags, addr, 0);
            self.harness_insts.push(defining_inst(b, arg));
            args.push(arg);
        }
        let result = (self.body)(b, &args);
        let addr = b.ins().iadd(self.out, offset);
        self.harness_insts
            .push(b.ins().store(flags, result, addr, 0));
        let next = b.ins().iadd_imm_s(i, i64::from(ty.lane_count()));
        let more = b.ins().icmp(IntCC::UnsignedLessThan, next, bound);
        b.ins()
            .brif(more, block, &[next.into()], done, &[next.into()]);
    }
}

fn defining_inst(b: &FunctionBuilder<'_>, v: Value) -> Inst {
    b.func.dfg.value_def(v).unwrap_inst()
}

/// Rejects any instruction with effects that the harness did not emit itself.
fn check_pure_body(
    func: &Function,
    harness_insts: &[Inst],
    name: &str,
) -> Result<(), BackendError> {
    for block in func.layout.blocks() {
        for inst in func.layout.block_insts(block) {
            let opcode = func.dfg.insts[inst].opcode();
            let effects = opcode.can_load()
                || opcode.can_store()
                || opcode.is_call()
                || opcode.can_trap()
                || opcode.other_side_effects();
            if effects && !harness_insts.contains(&inst) {
                return Err(BackendError::ImpureBody {
                    name: name.to_owned(),
                    opcode: opcode.to_string(),
                });
            }
        }
    }
    Ok(())
}
