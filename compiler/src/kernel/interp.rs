//! The kernel IR interpreter: executes a [`KernelProgram`] directly, naively and obviously, one scalar at a time.
//!
//! Its results must equal the graph interpreter's (`kiln_ir::interp::run`) up to the float tolerance of SPEC.md; the
//! fusion tests check exactly that. It is also the reference the CPU and GPU backends are compared against.

use super::{Block, BufferKind, Inst, Kernel, KernelProgram, Loop, ReduceKind, ScalarOp};
use kiln_ir::op::Scalar;
use kiln_ir::{BinaryOp, DType, IrError, Tensor, TensorType};

/// Runs `program` on `inputs` (in program input order) and returns its outputs (in output order).
pub fn run(program: &KernelProgram, inputs: &[Tensor]) -> Result<Vec<Tensor>, IrError> {
    if inputs.len() != program.inputs.len() {
        return Err(IrError::Invalid(format!(
            "program `{}` takes {} input(s), got {}",
            program.name,
            program.inputs.len(),
            inputs.len()
        )));
    }
    let mut buffers: Vec<Vec<Scalar>> = program
        .buffers
        .iter()
        .map(|b| match &b.kind {
            BufferKind::Constant(lit) => (0..b.ty.numel())
                .map(|i| Scalar::from_f64(lit.get(i), b.ty.dtype))
                .collect(),
            _ => vec![Scalar::zero(b.ty.dtype); b.ty.numel()],
        })
        .collect();
    for (input, tensor) in program.inputs.iter().zip(inputs) {
        let ty = &program.buffers[input.buffer.index()].ty;
        if tensor.ty() != ty {
            return Err(IrError::Invalid(format!(
                "input `{}` must be {ty}, got {}",
                input.name,
                tensor.ty()
            )));
        }
        buffers[input.buffer.index()] = (0..tensor.numel())
            .map(|i| Scalar::from_f64(tensor.data().get_f64(i), ty.dtype))
            .collect();
    }
    for kernel in &program.kernels {
        Exec::new(kernel, &mut buffers).run(kernel)?;
    }
    program
        .outputs
        .iter()
        .map(|o| {
            let ty = program.buffers[o.buffer.index()].ty.clone();
            to_tensor(ty, &buffers[o.buffer.index()])
        })
        .collect()
}

fn to_tensor(ty: TensorType, values: &[Scalar]) -> Result<Tensor, IrError> {
    let wide: Vec<f64> = values.iter().map(|s| s.to_f64()).collect();
    Tensor::from_f64_values(ty, &wide)
}

/// The state of one kernel's execution.
struct Exec<'a> {
    name: String,
    buffers: &'a mut [Vec<Scalar>],
    vars: Vec<usize>,
    values: Vec<Scalar>,
    matmul_acc: Scalar,
}

impl<'a> Exec<'a> {
    fn new(kernel: &Kernel, buffers: &'a mut [Vec<Scalar>]) -> Exec<'a> {
        let (mut vars, mut values) = (0usize, 0usize);
        for l in kernel.parallel() {
            vars = vars.max(l.var.0 as usize + 1);
        }
        kernel.body().visit(&mut |inst| match inst {
            Inst::Let { id, .. } => values = values.max(id.index() + 1),
            Inst::Reduce { id, loops, .. } => {
                values = values.max(id.index() + 1);
                for l in loops {
                    vars = vars.max(l.var.0 as usize + 1);
                }
            }
            Inst::For { loops, .. } => {
                for l in loops {
                    vars = vars.max(l.var.0 as usize + 1);
                }
            }
            Inst::Store { .. } => {}
        });
        Exec {
            name: kernel.name().to_string(),
            buffers,
            vars: vec![0; vars],
            values: vec![Scalar::Bool(false); values],
            matmul_acc: Scalar::Bool(false),
        }
    }

    fn run(&mut self, kernel: &Kernel) -> Result<(), IrError> {
        match kernel {
            Kernel::Loop(k) => self.each_point(&k.parallel, &mut |ex| ex.block(&k.body)),
            // One process: the copy is the whole of `all_reduce` (SPEC §3.12).
            Kernel::Collective(c) => {
                self.each_point(&c.copy.parallel, &mut |ex| ex.block(&c.copy.body))
            }
            Kernel::Matmul(m) => {
                let rank = m.parallel.len();
                let (dtype, k) = (m.dtype, m.k);
                self.each_point(&m.parallel, &mut |ex| {
                    let point: Vec<usize> = m
                        .parallel
                        .iter()
                        .map(|l| ex.vars[l.var.0 as usize])
                        .collect();
                    let (batch, i, j) = (&point[..rank - 2], point[rank - 2], point[rank - 1]);
                    let mut acc = Scalar::zero(dtype);
                    for l in 0..k {
                        let x = ex.load(m.a.buffer.index(), m.a.index(batch, i, l))?;
                        let y = ex.load(m.b.buffer.index(), m.b.index(batch, l, j))?;
                        let product = x
                            .binary(BinaryOp::Mul, y)
                            .ok_or_else(|| ex.mistyped("mul"))?;
                        acc = acc
                            .binary(BinaryOp::Add, product)
                            .ok_or_else(|| ex.mistyped("add"))?;
                    }
                    ex.matmul_acc = acc;
                    ex.block(&m.epilogue)
                })
            }
        }
    }

    /// Runs `f` at every point of `loops`, in row-major order.
    fn each_point(
        &mut self,
        loops: &[Loop],
        f: &mut dyn FnMut(&mut Exec<'a>) -> Result<(), IrError>,
    ) -> Result<(), IrError> {
        if loops.iter().any(|l| l.extent == 0) {
            return Ok(());
        }
        for l in loops {
            self.vars[l.var.0 as usize] = 0;
        }
        loop {
            f(self)?;
            let mut d = loops.len();
            loop {
                if d == 0 {
                    return Ok(());
                }
                d -= 1;
                let v = loops[d].var.0 as usize;
                self.vars[v] += 1;
                if self.vars[v] < loops[d].extent {
                    break;
                }
                self.vars[v] = 0;
            }
        }
    }

    /// An op applied to operands its typing rule excludes, which `kernel::verify` rejects before a program runs.
    fn mistyped(&self, op: &str) -> IrError {
        IrError::Invalid(format!(
            "kernel `{}`: `{op}` on operands of a type it is not defined on",
            self.name
        ))
    }

    fn load(&self, buffer: usize, index: usize) -> Result<Scalar, IrError> {
        self.buffers[buffer].get(index).copied().ok_or_else(|| {
            IrError::Invalid(format!(
                "kernel `{}`: load of b{buffer}[{index}] is out of bounds",
                self.name
            ))
        })
    }

    fn block(&mut self, block: &Block) -> Result<(), IrError> {
        for inst in &block.insts {
            match inst {
                Inst::Let { id, dtype, op } => {
                    let v = self.scalar(op, *dtype)?;
                    self.values[id.index()] = v;
                }
                Inst::Reduce {
                    id,
                    dtype,
                    kind,
                    loops,
                    body,
                    value,
                } => {
                    // Folded from the first element, as the graph interpreter does (so `-0.0` sums stay `-0.0`).
                    let mut acc: Option<Scalar> = None;
                    let op = match kind {
                        ReduceKind::Sum => BinaryOp::Add,
                        ReduceKind::Max => BinaryOp::Max,
                    };
                    self.each_point(loops, &mut |ex| {
                        ex.block(body)?;
                        let x = ex.values[value.index()];
                        acc = Some(match acc {
                            None => x,
                            Some(a) => a.binary(op, x).ok_or_else(|| ex.mistyped(op.name()))?,
                        });
                        Ok(())
                    })?;
                    let acc = acc.unwrap_or_else(|| match kind {
                        ReduceKind::Sum => Scalar::zero(*dtype),
                        ReduceKind::Max => Scalar::lowest(*dtype),
                    });
                    self.values[id.index()] = acc;
                }
                Inst::For { loops, body } => self.each_point(loops, &mut |ex| ex.block(body))?,
                Inst::Store {
                    buffer,
                    index,
                    value,
                } => {
                    let i = index.eval(&self.vars);
                    let v = self.values[value.index()];
                    let name = &self.name;
                    let slot = self.buffers[buffer.index()].get_mut(i).ok_or_else(|| {
                        IrError::Invalid(format!(
                            "kernel `{name}`: store to {buffer}[{i}] is out of bounds"
                        ))
                    })?;
                    *slot = v;
                }
            }
        }
        Ok(())
    }

    fn scalar(&self, op: &ScalarOp, dtype: DType) -> Result<Scalar, IrError> {
        let v = |id: &super::ValueId| self.values[id.index()];
        Ok(match op {
            ScalarOp::Load { buffer, index } => {
                self.load(buffer.index(), index.eval(&self.vars))?
            }
            ScalarOp::LoadOr { buffer, dims, fill } => {
                let mut index = Some(0);
                for d in dims {
                    index = index.and_then(|i| Some(i + d.eval(&self.vars)? * d.stride));
                }
                match index {
                    Some(i) => self.load(buffer.index(), i)?,
                    None => Scalar::from_f64(f64::from_bits(*fill), dtype),
                }
            }
            ScalarOp::LoadAt {
                buffer,
                index,
                at,
                stride,
                extent,
            } => match v(at) {
                Scalar::I32(i) => match usize::try_from(i).ok().filter(|i| i < extent) {
                    Some(i) => self.load(buffer.index(), index.eval(&self.vars) + i * stride)?,
                    None => Scalar::zero(dtype),
                },
                _ => return Err(self.mistyped("load.at")),
            },
            ScalarOp::Const { bits } => Scalar::from_f64(f64::from_bits(*bits), dtype),
            ScalarOp::Index(index) => Scalar::from_index(index.eval(&self.vars), dtype),
            ScalarOp::MatmulAcc => self.matmul_acc,
            ScalarOp::Unary(u, x) => v(x).unary(*u).ok_or_else(|| self.mistyped(u.name()))?,
            ScalarOp::Cast(x) => v(x).cast(dtype),
            ScalarOp::Binary(b, x, y) => v(x)
                .binary(*b, v(y))
                .ok_or_else(|| self.mistyped(b.name()))?,
            ScalarOp::Compare(d, x, y) => Scalar::Bool(
                v(x).compare(*d, v(y))
                    .ok_or_else(|| self.mistyped(d.name()))?,
            ),
            ScalarOp::Select(c, a, b) => {
                if v(c).as_bool() {
                    v(a)
                } else {
                    v(b)
                }
            }
        })
    }
}
