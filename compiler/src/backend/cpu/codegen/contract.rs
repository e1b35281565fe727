//! Floating-point contraction: which `add`/`sub` of a kernel become one `fma` (see the parent module's doc), planned
//! once per kernel ([`contractions`]) and followed alike by the scalar and the vector code, so every point gets the
//! same bits.

use super::Emitter;
use crate::kernel::verify::ValueTypes;
use crate::kernel::{Block, Inst, ScalarOp, ValueId};
use cranelift_codegen::ir::{InstBuilder, Value};
use kiln_ir::{BinaryOp, DType};
use std::collections::HashMap;

/// An f32/f64 `add` or `sub` whose operand is a product of the same block, computed as `fma(±a, b, ±c)`: rounded
/// once instead of twice. The scalar and the vector code both follow this plan, so every point gets the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Contraction {
    pub(super) a: ValueId,
    pub(super) b: ValueId,
    pub(super) c: ValueId,
    /// `c - a·b` = `fma(-a, b, c)`.
    pub(super) negate_product: bool,
    /// `a·b - c` = `fma(a, b, -c)`.
    pub(super) negate_c: bool,
}

/// Which float `add`/`sub` of `block` (and of the blocks nested in it) become an `fma`: `x·y + c`, `c + x·y`,
/// `x·y - c`, `c - x·y` where the product `x·y` is a `mul` of the same block (so its operands are at hand in the
/// vector code too); when both operands are products, the first one. Never `p ± p` of one product `p` (SPEC §1):
/// `fma(a, b, -p)` is `p`'s rounding error, not the 0 that `p - p` is.
pub(super) fn contractions(
    block: &Block,
    types: &ValueTypes,
    plan: &mut HashMap<usize, Contraction>,
) {
    let is_float = |id: ValueId| matches!(types[id.index()], Some(DType::F32 | DType::F64));
    let mut products: HashMap<usize, (ValueId, ValueId)> = HashMap::new();
    for inst in &block.insts {
        match inst {
            Inst::Let {
                id,
                op: ScalarOp::Binary(op, x, y),
                ..
            } if is_float(*id) => {
                let product = |v: &ValueId| products.get(&v.index()).copied();
                let contraction = match (op, product(x), product(y)) {
                    (BinaryOp::Mul, _, _) => {
                        products.insert(id.index(), (*x, *y));
                        None
                    }
                    _ if x == y => None,
                    (BinaryOp::Add, Some((a, b)), _) => Some((a, b, *y, false, false)),
                    (BinaryOp::Add, None, Some((a, b))) => Some((a, b, *x, false, false)),
                    (BinaryOp::Sub, Some((a, b)), _) => Some((a, b, *y, false, true)),
                    (BinaryOp::Sub, None, Some((a, b))) => Some((a, b, *x, true, false)),
                    (BinaryOp::Add | BinaryOp::Sub, None, None)
                    | (BinaryOp::Div | BinaryOp::Max | BinaryOp::Min | BinaryOp::Pow, _, _) => None,
                    // Int-only: never reached on float values.
                    (
                        BinaryOp::And
                        | BinaryOp::Or
                        | BinaryOp::Xor
                        | BinaryOp::Shl
                        | BinaryOp::Shr
                        | BinaryOp::MulHi,
                        _,
                        _,
                    ) => None,
                };
                if let Some((a, b, c, negate_product, negate_c)) = contraction {
                    plan.insert(
                        id.index(),
                        Contraction {
                            a,
                            b,
                            c,
                            negate_product,
                            negate_c,
                        },
                    );
                }
            }
            Inst::Reduce { body, .. } | Inst::For { body, .. } => contractions(body, types, plan),
            Inst::Let { .. } | Inst::Store { .. } => {}
        }
    }
}

impl Emitter<'_, '_> {
    /// `fma(±a, b, ±c)` of a [`Contraction`] (scalar or vector: `value` gives the operands).
    pub(super) fn contracted(&mut self, c: Contraction, value: impl Fn(ValueId) -> Value) -> Value {
        let (a, b, addend) = (value(c.a), value(c.b), value(c.c));
        self.fma(c, a, b, addend)
    }

    /// `fma(±a, b, ±c)` of the operands' values.
    pub(super) fn fma(
        &mut self,
        c: Contraction,
        mut a: Value,
        b: Value,
        mut addend: Value,
    ) -> Value {
        if c.negate_product {
            a = self.b.ins().fneg(a);
        }
        if c.negate_c {
            addend = self.b.ins().fneg(addend);
        }
        self.b.ins().fma(a, b, addend)
    }
}
