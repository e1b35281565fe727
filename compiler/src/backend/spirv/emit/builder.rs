//! SPIR-V plumbing: types, constants (and the hidden zeros of [`Options::hide_constant_zeros`]), single
//! instructions, variables, built-ins, structured control flow and shared memory. Nothing here knows about the
//! kernel IR beyond dtypes; the lowering modules build on these.
//!
//! [`Options::hide_constant_zeros`]: crate::backend::spirv::Options::hide_constant_zeros

use super::{element_stride, Binding, Emitter, Result};
use crate::kernel::BufferId;
use kiln_ir::DType;
use rspirv::dr::{InsertPoint, Instruction, Operand};
use rspirv::spirv::{
    BuiltIn, Capability, Decoration, FunctionControl, GlslStd450Op as GLOp, LoopControl, Op, Scope,
    SelectionControl, StorageClass, Word,
};

impl Emitter<'_> {
    // ---- types and constants ----

    /// The register type of a dtype.
    pub(super) fn ty(&mut self, dtype: DType) -> Word {
        match dtype {
            DType::F32 => self.t_f32,
            DType::I32 => self.t_i32,
            DType::Bool => self.t_bool,
            DType::F64 => match self.t_f64 {
                Some(t) => t,
                None => {
                    self.b.capability(Capability::Float64);
                    let t = self.b.type_float(64, None);
                    self.t_f64 = Some(t);
                    t
                }
            },
        }
    }

    /// The storage type of a dtype's elements (bool is a u32 word).
    pub(super) fn storage_ty(&mut self, dtype: DType) -> Word {
        match dtype {
            DType::Bool => self.t_u32,
            d => self.ty(d),
        }
    }

    pub(super) fn constant(&mut self, ty: Word, bits: u64) -> Word {
        if let Some(&c) = self.consts.get(&(ty, bits)) {
            return c;
        }
        let c = if ty == self.t_bool {
            if bits != 0 {
                self.b.constant_true(ty)
            } else {
                self.b.constant_false(ty)
            }
        } else if Some(ty) == self.t_f64 {
            self.b.constant_bit64(ty, bits)
        } else {
            self.b.constant_bit32(ty, bits as u32)
        };
        self.consts.insert((ty, bits), c);
        c
    }

    pub(super) fn u32_const(&mut self, v: u32) -> Word {
        self.constant(self.t_u32, v as u64)
    }

    /// A float constant of `dtype` (f32 or f64); a zero is hidden behind [`Self::opaque_zero`] under
    /// [`Options::hide_constant_zeros`].
    pub(super) fn float_const(&mut self, dtype: DType, v: f64) -> Word {
        let t = self.ty(dtype);
        if self.hide_zeros && v == 0.0 {
            return self.hidden_zero(dtype, v.is_sign_negative());
        }
        match dtype {
            DType::F64 => self.constant(t, v.to_bits()),
            _ => self.constant(t, (v as f32).to_bits() as u64),
        }
    }

    /// `NumWorkgroups.z >> 31`, computed once in the prelude: 0 in every dispatch (a z count is far below 2^31), but a
    /// run-time value to the device compiler.
    pub(super) fn opaque_zero(&mut self) -> Word {
        if let Some(z) = self.opaque_zero {
            return z;
        }
        let (u, v3) = (self.t_u32, self.b.type_vector(self.t_u32, 3));
        let var = self.global_var(v3, StorageClass::Input);
        self.b.decorate(
            var,
            Decoration::BuiltIn,
            [Operand::BuiltIn(BuiltIn::NumWorkgroups)],
        );
        self.interface.push(var);
        let shift = self.u32_const(31);
        let (groups, z, zero) = (self.b.id(), self.b.id(), self.b.id());
        self.prelude.extend([
            Instruction::new(Op::Load, Some(v3), Some(groups), vec![Operand::IdRef(var)]),
            Instruction::new(
                Op::CompositeExtract,
                Some(u),
                Some(z),
                vec![Operand::IdRef(groups), Operand::LiteralBit32(2)],
            ),
            Instruction::new(
                Op::ShiftRightLogical,
                Some(u),
                Some(zero),
                vec![Operand::IdRef(z), Operand::IdRef(shift)],
            ),
        ]);
        self.opaque_zero = Some(zero);
        zero
    }

    /// `±0` of `dtype` as the bits of a constant OR [`Self::opaque_zero`], made in the prelude.
    pub(super) fn hidden_zero(&mut self, dtype: DType, negative: bool) -> Word {
        let t = self.ty(dtype);
        let key = (t, negative as u64);
        if let Some(&z) = self.hidden_zeros.get(&key) {
            return z;
        }
        let opaque = self.opaque_zero();
        let u = self.t_u32;
        let sign = self.u32_const(if negative { 0x8000_0000 } else { 0 });
        let (high, value) = (self.b.id(), self.b.id());
        self.prelude.push(Instruction::new(
            Op::BitwiseOr,
            Some(u),
            Some(high),
            vec![Operand::IdRef(sign), Operand::IdRef(opaque)],
        ));
        let bits = if dtype == DType::F64 {
            // Low word, high word (with the sign).
            let (words_ty, words) = (self.b.type_vector(u, 2), self.b.id());
            self.prelude.push(Instruction::new(
                Op::CompositeConstruct,
                Some(words_ty),
                Some(words),
                vec![Operand::IdRef(opaque), Operand::IdRef(high)],
            ));
            words
        } else {
            high
        };
        self.prelude.push(Instruction::new(
            Op::Bitcast,
            Some(t),
            Some(value),
            vec![Operand::IdRef(bits)],
        ));
        self.hidden_zeros.insert(key, value);
        value
    }

    pub(super) fn i32_const(&mut self, v: i32) -> Word {
        self.constant(self.t_i32, v as u32 as u64)
    }

    /// A constant of `dtype` with value `v` (converted as `Scalar::from_f64` does).
    pub(super) fn typed_const(&mut self, dtype: DType, v: f64) -> Word {
        match dtype {
            DType::F32 | DType::F64 => self.float_const(dtype, v),
            DType::I32 => self.i32_const(v as i32),
            DType::Bool => self.constant(self.t_bool, (v != 0.0) as u64),
        }
    }

    // ---- instructions ----

    /// Appends `op` with result type `ty` and id operands `args`; returns the result id.
    pub(super) fn op(&mut self, op: Op, ty: Word, args: &[Word]) -> Result<Word> {
        let id = self.b.id();
        let inst = Instruction::new(
            op,
            Some(ty),
            Some(id),
            args.iter().map(|&a| Operand::IdRef(a)).collect(),
        );
        self.b
            .insert_into_block(InsertPoint::End, inst)
            .map_err(|e| self.build_err(e))?;
        Ok(id)
    }

    pub(super) fn glsl(&mut self, op: GLOp, ty: Word, args: &[Word]) -> Result<Word> {
        let set = self.glsl;
        self.b
            .ext_inst(
                ty,
                None,
                set,
                op as u32,
                args.iter().map(|&a| Operand::IdRef(a)),
            )
            .map_err(|e| self.build_err(e))
    }

    pub(super) fn select(&mut self, ty: Word, c: Word, a: Word, b: Word) -> Result<Word> {
        self.op(Op::Select, ty, &[c, a, b])
    }

    pub(super) fn bool_op(&mut self, op: Op, args: &[Word]) -> Result<Word> {
        self.op(op, self.t_bool, args)
    }

    /// `p(x) = Σ coefficients[i]·x^i` by Horner's rule, in `dtype` (f32 or f64; the coefficients rounded to it).
    pub(super) fn horner(&mut self, dtype: DType, x: Word, coefficients: &[f64]) -> Result<Word> {
        let ty = self.ty(dtype);
        let mut acc = self.float_const(dtype, coefficients[coefficients.len() - 1]);
        for &c in coefficients[..coefficients.len() - 1].iter().rev() {
            let m = self.op(Op::FMul, ty, &[acc, x])?;
            let c = self.float_const(dtype, c);
            acc = self.op(Op::FAdd, ty, &[m, c])?;
        }
        Ok(acc)
    }

    /// A function-local variable of type `ty` (declared in the entry block at the end).
    pub(super) fn function_var(&mut self, ty: Word) -> Word {
        let ptr = self.b.type_pointer(None, StorageClass::Function, ty);
        let id = self.b.id();
        self.function_vars.push(Instruction::new(
            Op::Variable,
            Some(ptr),
            Some(id),
            vec![Operand::StorageClass(StorageClass::Function)],
        ));
        id
    }

    pub(super) fn load_var(&mut self, ty: Word, var: Word) -> Result<Word> {
        self.b
            .load(ty, None, var, None, [])
            .map_err(|e| self.build_err(e))
    }

    pub(super) fn store_var(&mut self, var: Word, value: Word) -> Result<()> {
        self.b
            .store(var, value, None, [])
            .map_err(|e| self.build_err(e))
    }

    pub(super) fn label(&mut self, id: Word) -> Result<()> {
        self.b
            .begin_block(Some(id))
            .map(|_| ())
            .map_err(|e| self.build_err(e))
    }

    pub(super) fn branch(&mut self, to: Word) -> Result<()> {
        self.b.branch(to).map_err(|e| self.build_err(e))
    }

    // ---- module skeleton ----

    /// Declares the bindings, the invocation id and the entry point, and opens `main`'s entry block.
    pub(super) fn begin(&mut self, bindings: &[BufferId]) -> Result<()> {
        for (i, &buf) in bindings.iter().enumerate() {
            let dtype = self.program.buffers[buf.index()].ty.dtype;
            let elem = self.storage_ty(dtype);
            let st = match self.structs.get(&elem) {
                Some(&s) => s,
                None => {
                    let arr = self.b.type_runtime_array(elem);
                    let stride = element_stride(dtype);
                    self.b.decorate(
                        arr,
                        Decoration::ArrayStride,
                        [Operand::LiteralBit32(stride)],
                    );
                    let s = self.b.type_struct([arr]);
                    self.b.decorate(s, Decoration::Block, []);
                    self.b
                        .member_decorate(s, 0, Decoration::Offset, [Operand::LiteralBit32(0)]);
                    self.structs.insert(elem, s);
                    s
                }
            };
            let ptr = self.b.type_pointer(None, StorageClass::StorageBuffer, st);
            let var = self
                .b
                .variable(ptr, None, StorageClass::StorageBuffer, None);
            self.b
                .decorate(var, Decoration::DescriptorSet, [Operand::LiteralBit32(0)]);
            self.b
                .decorate(var, Decoration::Binding, [Operand::LiteralBit32(i as u32)]);
            self.b
                .name(var, self.program.buffers[buf.index()].name.clone());
            self.bindings.insert(buf, Binding { var, dtype });
        }
        let fn_ty = self.b.type_function(self.t_void, []);
        self.main = self
            .b
            .begin_function(self.t_void, None, FunctionControl::NONE, fn_ty)
            .map_err(|e| self.build_err(e))?;
        self.b.name(self.main, "main");
        self.b.begin_block(None).map_err(|e| self.build_err(e))?;
        Ok(())
    }

    /// A module-scope variable (declared among the globals whatever block is open).
    pub(super) fn global_var(&mut self, ty: Word, class: StorageClass) -> Word {
        let ptr = self.b.type_pointer(None, class, ty);
        let id = self.b.id();
        self.b
            .module_mut()
            .types_global_values
            .push(Instruction::new(
                Op::Variable,
                Some(ptr),
                Some(id),
                vec![Operand::StorageClass(class)],
            ));
        id
    }

    /// Declares the input built-in `builtin` of type `ty`, lists it in the entry point, and loads it.
    pub(super) fn builtin(&mut self, builtin: BuiltIn, ty: Word) -> Result<Word> {
        let var = self.global_var(ty, StorageClass::Input);
        self.b
            .decorate(var, Decoration::BuiltIn, [Operand::BuiltIn(builtin)]);
        self.interface.push(var);
        self.load_var(ty, var)
    }

    /// `x`, `y` and (if `want_z`) `z` of a `uvec3` built-in.
    pub(super) fn builtin_xyz(
        &mut self,
        builtin: BuiltIn,
        want_z: bool,
    ) -> Result<(Word, Word, Option<Word>)> {
        let v3 = self.b.type_vector(self.t_u32, 3);
        let v = self.builtin(builtin, v3)?;
        let mut component = |i: u32| {
            self.b
                .composite_extract(self.t_u32, None, v, [i])
                .map_err(|e| self.build_err(e))
        };
        let x = component(0)?;
        let y = component(1)?;
        let z = if want_z { Some(component(2)?) } else { None };
        Ok((x, y, z))
    }

    // ---- structured control flow ----

    /// `if cond { then }` as a structured selection.
    pub(super) fn if_then(
        &mut self,
        cond: Word,
        then: &mut dyn FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let (body, end) = (self.b.id(), self.b.id());
        self.b
            .selection_merge(end, SelectionControl::NONE)
            .map_err(|e| self.build_err(e))?;
        self.b
            .branch_conditional(cond, body, end, [])
            .map_err(|e| self.build_err(e))?;
        self.label(body)?;
        then(self)?;
        self.branch(end)?;
        self.label(end)
    }

    /// `for (i = start; i < bound; i = next(i)) body(i)` as a structured loop (u32 counter).
    pub(super) fn counted_loop(
        &mut self,
        start: Word,
        bound: Word,
        next: &dyn Fn(&mut Self, Word) -> Result<Word>,
        body: &mut dyn FnMut(&mut Self, Word) -> Result<()>,
    ) -> Result<()> {
        let counter = self.function_var(self.t_u32);
        self.store_var(counter, start)?;
        self.loop_on_counter(counter, &|_| bound, next, body)
    }

    /// The structured loop `while counter < bound() { body(counter); counter = next(counter) }` over an already
    /// initialised u32 function variable: the one shape behind [`Self::loops`] and [`Self::counted_loop`]. `bound` is
    /// evaluated in the condition block, after the counter is loaded, so that each caller's ids come out in the order
    /// they always had (the emitted SPIR-V is snapshot-tested).
    pub(super) fn loop_on_counter(
        &mut self,
        counter: Word,
        bound: &dyn Fn(&mut Self) -> Word,
        next: &dyn Fn(&mut Self, Word) -> Result<Word>,
        body: &mut dyn FnMut(&mut Self, Word) -> Result<()>,
    ) -> Result<()> {
        let (header, cond, body_label, cont, merge) = (
            self.b.id(),
            self.b.id(),
            self.b.id(),
            self.b.id(),
            self.b.id(),
        );
        self.branch(header)?;
        self.label(header)?;
        self.b
            .loop_merge(merge, cont, LoopControl::NONE, [])
            .map_err(|e| self.build_err(e))?;
        self.branch(cond)?;
        self.label(cond)?;
        let i = self.load_var(self.t_u32, counter)?;
        let bound = bound(self);
        let more = self.bool_op(Op::ULessThan, &[i, bound])?;
        self.b
            .branch_conditional(more, body_label, merge, [])
            .map_err(|e| self.build_err(e))?;
        self.label(body_label)?;
        body(self, i)?;
        self.branch(cont)?;
        self.label(cont)?;
        let n = next(self, i)?;
        self.store_var(counter, n)?;
        self.branch(header)?;
        self.label(merge)
    }

    // ---- shared memory ----

    /// The workgroup-storage array of `threads` elements of type `ty`.
    pub(super) fn shared_array(&mut self, ty: Word, threads: u32) -> Word {
        if let Some(&v) = self.shared.get(&ty) {
            return v;
        }
        let v = self.new_shared_array(ty, threads);
        self.shared.insert(ty, v);
        v
    }

    /// A fresh workgroup-storage array of `len` elements of type `ty`.
    pub(super) fn new_shared_array(&mut self, ty: Word, len: u32) -> Word {
        let bytes = if Some(ty) == self.t_f64 { 8 } else { 4 };
        self.shared_bytes += len as u64 * bytes;
        let len = self.u32_const(len);
        let arr = self.b.type_array(ty, len);
        self.global_var(arr, StorageClass::Workgroup)
    }

    pub(super) fn shared_ptr(&mut self, array: Word, ty: Word, index: Word) -> Result<Word> {
        let ptr = self.b.type_pointer(None, StorageClass::Workgroup, ty);
        self.b
            .access_chain(ptr, None, array, [index])
            .map_err(|e| self.build_err(e))
    }

    /// `OpControlBarrier(Workgroup, Workgroup, AcquireRelease | WorkgroupMemory)`: every invocation of the workgroup
    /// arrives, and the shared-memory writes before it are visible to the reads after it.
    pub(super) fn barrier(&mut self) -> Result<()> {
        let scope = self.u32_const(Scope::Workgroup as u32);
        let semantics = self.u32_const(0x8 | 0x100);
        self.b
            .control_barrier(scope, scope, semantics)
            .map_err(|e| self.build_err(e))
    }
}
