//! `for` nests, and their divisions by a value from outside the body: a row softmax's `exp(x - m) / s` multiplies by
//! `1/s`, computed once per run of the nest, where that is within an ulp of dividing (see the parent module's doc).

use super::{strips, vector, Emitter};
use crate::kernel::verify::ValueTypes;
use crate::kernel::{Block, Inst, Loop, ScalarOp, ValueId};
use cranelift_codegen::ir::{condcodes::FloatCC, InstBuilder};
use kiln_ir::{BinaryOp, DType};
use std::collections::HashMap;

/// The f32 values that `block` (a `for` body, nested blocks not included) divides by and doesn't define.
fn invariant_divisors(block: &Block, types: &ValueTypes) -> Vec<ValueId> {
    let mut defined = Vec::new();
    let mut divisors = Vec::new();
    for inst in &block.insts {
        if let Inst::Let { id, op, .. } = inst {
            if let ScalarOp::Binary(BinaryOp::Div, _, y) = op {
                if types[id.index()] == Some(DType::F32)
                    && !defined.contains(&y.index())
                    && !divisors.contains(y)
                {
                    divisors.push(*y);
                }
            }
            defined.push(id.index());
        }
    }
    divisors
}

impl Emitter<'_, '_> {
    /// A `for` nest. Its f32 divisions by a value from outside the body (softmax's `exp(x - m) / s`) multiply by
    /// `1/s`, computed once, where that is within an ulp of dividing: behind one branch per run of the nest, taken
    /// when every such `s` is 0, ±inf, NaN or of magnitude in `[2^-126, 2^126]` (so `1/s` neither overflows nor
    /// loses bits as a subnormal); otherwise the nest divides.
    pub(super) fn for_loops(&mut self, loops: &[Loop], body: &Block) {
        let emit = |e: &mut Self| {
            if vector::nested_plan(loops, body, None, e.types).is_some() {
                if !e.wide_callees.is_empty() {
                    e.nest_strips = strips::nest_plan(loops, body, e.types);
                }
                e.vector_for(loops, body);
                e.nest_strips = None;
            } else {
                e.loop_nest(loops, &mut |e| e.block(body));
            }
        };
        let divisors = invariant_divisors(body, self.types);
        if divisors.is_empty() || loops.iter().any(|l| l.extent == 0) {
            return emit(self);
        }
        let mut any_unsafe = None;
        let mut reciprocals = HashMap::new();
        for &divisor in &divisors {
            let s = self.value(divisor);
            let one = self.b.ins().f32const(1.0f32);
            reciprocals.insert(divisor.index(), self.b.ins().fdiv(one, s));
            // Unsafe: 0 < |s| < 2^-126 or 2^126 < |s| < inf.
            let a = self.b.ins().fabs(s);
            let (min, max, inf) = (
                self.b.ins().f32const(f32::MIN_POSITIVE),
                self.b.ins().f32const(2f32.powi(126)),
                self.b.ins().f32const(f32::INFINITY),
            );
            let zero = self.b.ins().f32const(0.0f32);
            let tiny = self.b.ins().fcmp(FloatCC::LessThan, a, min);
            let nonzero = self.b.ins().fcmp(FloatCC::GreaterThan, a, zero);
            let tiny = self.b.ins().band(tiny, nonzero);
            let huge = self.b.ins().fcmp(FloatCC::GreaterThan, a, max);
            let finite = self.b.ins().fcmp(FloatCC::LessThan, a, inf);
            let huge = self.b.ins().band(huge, finite);
            let unsafe_ = self.b.ins().bor(tiny, huge);
            any_unsafe = Some(match any_unsafe {
                None => unsafe_,
                Some(u) => self.b.ins().bor(u, unsafe_),
            });
        }
        let any_unsafe = any_unsafe.expect("at least one divisor");
        let (multiply, divide, join) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().brif(any_unsafe, divide, &[], multiply, &[]);
        self.b.switch_to_block(multiply);
        self.reciprocals = reciprocals;
        emit(self);
        self.reciprocals.clear();
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(divide);
        emit(self);
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(join);
    }
}
