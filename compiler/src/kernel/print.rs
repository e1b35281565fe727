//! The text form of the kernel IR (`kiln dump --stage kernels`): readable and deterministic.
//!
//! ```text
//! program softmax
//!   b0 x: f32[4,10] input
//!   b1 y: f32[4,10] output
//!   input x = b0
//!   output y = b1
//!
//! kernel k0.y loop parallel(i0<4)
//!   %0: f32 = reduce.max (i1<10) {
//!     %1: f32 = load b0[10*i0 + i1]
//!   } yield %1
//!   ...
//!   for (i3<10) {
//!     ...
//!     store b1[10*i0 + i3] = %9
//!   }
//! ```

use super::{Block, BufferKind, Inst, Kernel, KernelProgram, Loop, MatrixView, ScalarOp};
use kiln_ir::{DType, Literal};
use std::fmt::Write;

/// The whole program as text.
pub fn print(program: &KernelProgram) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "program {}", program.name);
    for (i, b) in program.buffers.iter().enumerate() {
        let extra = match &b.kind {
            BufferKind::Constant(Literal::Splat(v)) => format!(" splat {v}"),
            BufferKind::Constant(Literal::Dense(vs)) => format!(" dense ({} values)", vs.len()),
            _ => String::new(),
        };
        let _ = writeln!(out, "  b{i} {}: {} {}{extra}", b.name, b.ty, b.kind.name());
    }
    for input in &program.inputs {
        let _ = writeln!(out, "  input {} = {}", input.name, input.buffer);
    }
    for output in &program.outputs {
        let alias = match &output.aliases {
            Some(a) => format!(" (aliases {a})"),
            None => String::new(),
        };
        let _ = writeln!(out, "  output {} = {}{alias}", output.name, output.buffer);
    }
    for (k, kernel) in program.kernels.iter().enumerate() {
        out.push('\n');
        print_kernel(&mut out, k, kernel);
    }
    out
}

fn loops(ls: &[Loop]) -> String {
    let parts: Vec<String> = ls
        .iter()
        .map(|l| format!("{}<{}", l.var, l.extent))
        .collect();
    format!("({})", parts.join(", "))
}

fn view(v: &MatrixView) -> String {
    let batch: Vec<String> = v.batch_strides.iter().map(|s| s.to_string()).collect();
    format!(
        "{} offset {} batch strides [{}] row stride {} col stride {}",
        v.buffer,
        v.offset,
        batch.join(","),
        v.row_stride,
        v.col_stride
    )
}

fn print_kernel(out: &mut String, k: usize, kernel: &Kernel) {
    match kernel {
        Kernel::Loop(l) => {
            let _ = writeln!(
                out,
                "kernel k{k} {} loop parallel{}",
                l.name,
                loops(&l.parallel)
            );
            print_block(out, &l.body, 1);
        }
        Kernel::Matmul(m) => {
            let _ = writeln!(
                out,
                "kernel k{k} {} matmul {} parallel{} k={}",
                m.name,
                m.dtype,
                loops(&m.parallel),
                m.k
            );
            let _ = writeln!(out, "  a = {}", view(&m.a));
            let _ = writeln!(out, "  b = {}", view(&m.b));
            print_block(out, &m.epilogue, 1);
        }
        Kernel::Collective(c) => {
            let _ = writeln!(
                out,
                "kernel k{k} {} all_reduce{{op={}}} {} parallel{}",
                c.copy.name,
                c.op,
                c.buffer,
                loops(&c.copy.parallel)
            );
            print_block(out, &c.copy.body, 1);
        }
    }
}

fn print_block(out: &mut String, block: &Block, depth: usize) {
    let pad = "  ".repeat(depth);
    for inst in &block.insts {
        match inst {
            Inst::Let { id, dtype, op } => {
                let _ = writeln!(out, "{pad}{id}: {dtype} = {}", scalar_op(op, *dtype));
            }
            Inst::Reduce {
                id,
                dtype,
                kind,
                loops: ls,
                body,
                value,
            } => {
                let _ = writeln!(
                    out,
                    "{pad}{id}: {dtype} = reduce.{} {} {{",
                    kind.name(),
                    loops(ls)
                );
                print_block(out, body, depth + 1);
                let _ = writeln!(out, "{pad}}} yield {value}");
            }
            Inst::For { loops: ls, body } => {
                let _ = writeln!(out, "{pad}for {} {{", loops(ls));
                print_block(out, body, depth + 1);
                let _ = writeln!(out, "{pad}}}");
            }
            Inst::Store {
                buffer,
                index,
                value,
            } => {
                let _ = writeln!(out, "{pad}store {buffer}[{index}] = {value}");
            }
        }
    }
}

fn scalar_op(op: &ScalarOp, dtype: DType) -> String {
    match op {
        ScalarOp::Load { buffer, index } => format!("load {buffer}[{index}]"),
        ScalarOp::LoadOr { buffer, dims, fill } => {
            let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            let fill = scalar_op(&ScalarOp::Const { bits: *fill }, dtype);
            format!(
                "load.or {buffer}[{}] else {}",
                dims.join(", "),
                &fill["const ".len()..]
            )
        }
        ScalarOp::LoadAt {
            buffer,
            index,
            at,
            stride,
            extent,
        } => format!("load.at {buffer}[{index} + {stride}*{at}] if {at} in 0..{extent} else 0"),
        // In the dtype's own shortest form: an f32 constant 0.01 prints as 0.01, not as its f64 expansion.
        ScalarOp::Const { bits } => match dtype {
            DType::F32 => format!("const {}", f64::from_bits(*bits) as f32),
            _ => format!("const {}", f64::from_bits(*bits)),
        },
        ScalarOp::Index(index) => format!("index {index}"),
        ScalarOp::MatmulAcc => "matmul.acc".to_string(),
        ScalarOp::Unary(u, x) => format!("{} {x}", u.name()),
        ScalarOp::Cast(x) => format!("cast {x}"),
        ScalarOp::Binary(b, x, y) => format!("{} {x}, {y}", b.name()),
        ScalarOp::Compare(d, x, y) => format!("compare.{} {x}, {y}", d.name()),
        ScalarOp::Select(c, a, b) => format!("select {c}, {a}, {b}"),
    }
}
