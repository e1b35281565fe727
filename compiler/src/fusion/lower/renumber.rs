//! Renumbering a lowered kernel's values and variables in printing order.

use crate::kernel::{Block, IndexExpr, Inst, Kernel, Loop, ScalarOp, ValueId, Var};
use std::collections::HashMap;

/// Numbers values and variables in the order they appear in the printed kernel (values are created out of order:
/// a reduce's body before the reduce, hoisted values late).
pub(super) fn renumber(kernel: &mut Kernel) {
    #[derive(Default)]
    struct Maps {
        values: HashMap<ValueId, ValueId>,
        vars: HashMap<Var, Var>,
    }
    impl Maps {
        fn value(&mut self, v: &mut ValueId) {
            let n = self.values.len() as u32;
            *v = *self.values.entry(*v).or_insert(ValueId(n));
        }
        fn var(&mut self, v: &mut Var) {
            let n = self.vars.len() as u32;
            *v = *self.vars.entry(*v).or_insert(Var(n));
        }
        fn index(&mut self, e: &mut IndexExpr) {
            for (v, _) in &mut e.terms {
                self.var(v);
            }
            e.terms.sort();
        }
        fn loops(&mut self, loops: &mut [Loop]) {
            for l in loops {
                self.var(&mut l.var);
            }
        }
        fn block(&mut self, block: &mut Block) {
            for inst in &mut block.insts {
                match inst {
                    Inst::Let { id, op, .. } => {
                        match op {
                            ScalarOp::Load { index, .. } | ScalarOp::Index(index) => {
                                self.index(index)
                            }
                            ScalarOp::LoadOr { dims, .. } => {
                                for d in dims {
                                    for (v, _) in &mut d.terms {
                                        self.var(v);
                                    }
                                    d.terms.sort();
                                }
                            }
                            ScalarOp::LoadAt { index, at, .. } => {
                                self.index(index);
                                self.value(at);
                            }
                            ScalarOp::Const { .. } | ScalarOp::MatmulAcc => {}
                            ScalarOp::Unary(_, x) | ScalarOp::Cast(x) => self.value(x),
                            ScalarOp::Binary(_, x, y) | ScalarOp::Compare(_, x, y) => {
                                self.value(x);
                                self.value(y);
                            }
                            ScalarOp::Select(c, x, y) => {
                                self.value(c);
                                self.value(x);
                                self.value(y);
                            }
                        }
                        self.value(id);
                    }
                    Inst::Reduce {
                        id,
                        loops,
                        body,
                        value,
                        ..
                    } => {
                        self.value(id);
                        self.loops(loops);
                        self.block(body);
                        self.value(value);
                    }
                    Inst::For { loops, body } => {
                        self.loops(loops);
                        self.block(body);
                    }
                    Inst::Store { index, value, .. } => {
                        self.index(index);
                        self.value(value);
                    }
                }
            }
        }
    }
    let mut maps = Maps::default();
    match kernel {
        Kernel::Loop(k) => {
            maps.loops(&mut k.parallel);
            maps.block(&mut k.body);
        }
        Kernel::Matmul(m) => {
            maps.loops(&mut m.parallel);
            maps.block(&mut m.epilogue);
        }
        Kernel::Collective(c) => {
            maps.loops(&mut c.copy.parallel);
            maps.block(&mut c.copy.body);
        }
    }
}
