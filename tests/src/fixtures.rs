//! Small builder-made graphs that tests across the workspace pin down (text and DOT snapshots, interpreter checks).

use kiln_ir::{BinaryOp, Builder, CmpDir, DType, Graph, TensorType, UnaryOp};

/// Logistic regression on 4 samples of 2 features with PyTorch's `binary_cross_entropy`, plus a decayed weight that
/// replaces `w` and a step counter that replaces `step` (an aliased param and an aliased state).
pub fn logreg_bce() -> Graph {
    let build = || -> Result<Graph, kiln_ir::IrError> {
        let mut b = Builder::new("logreg");
        let x = b.data("x", TensorType::f32(&[4, 2]))?;
        let y = b.data("y", TensorType::f32(&[4, 1]))?;
        let w = b.param("w", TensorType::f32(&[1, 2]))?;
        let bias = b.param("b", TensorType::f32(&[1]))?;
        let step = b.state("step", TensorType::scalar(DType::F32))?;
        let logits = b.linear(x, w, Some(bias))?;
        b.name(logits, "logits")?;
        let p = b.sigmoid(logits)?;
        b.name(p, "p")?;
        let loss = b.bce_loss(p, y)?;
        b.name(loss, "loss")?;
        let decayed = b.mul_scalar(w, 0.75)?;
        let next_step = b.add_scalar(step, 1.0)?;
        b.output("loss", loss)?;
        b.output("p", p)?;
        b.output_aliasing("w.new", decayed, "w")?;
        b.output_aliasing("step.new", next_step, "step")?;
        Ok(b.finish())
    };
    build().expect("logreg_bce fixture builds")
}

/// One node of every primitive op (each unary and binary op, each comparison direction) over small shapes; the
/// int-only binary ops on an i32 `iota`.
pub fn every_op() -> Graph {
    let build = || -> Result<Graph, kiln_ir::IrError> {
        let mut b = Builder::new("every_op");
        let x = b.data("x", TensorType::f32(&[2, 3]))?;
        let w = b.param("w", TensorType::f32(&[3, 2]))?;
        let s = b.state("s", TensorType::scalar(DType::F64))?;
        let c = b.literal(TensorType::f32(&[3]), vec![1.0, -0.5, 1e-5_f32 as f64])?;
        let half = b.full(TensorType::f32(&[2, 3]), 0.5)?;
        let i = b.iota(TensorType::i32(&[2, 3]), 1)?;
        let fi = b.cast(i, DType::F32)?;
        for u in UnaryOp::ALL {
            b.unary(u, x)?;
        }
        for op in BinaryOp::ALL.into_iter().filter(|op| !op.int_only()) {
            b.binary(op, x, fi)?;
        }
        let mut last_cmp = x;
        for dir in CmpDir::ALL {
            last_cmp = b.compare(dir, x, half)?;
        }
        let sel = b.select(last_cmp, x, fi)?;
        let sum = b.reduce_sum(sel, &[1], false)?;
        let max = b.reduce_max(x, &[0], true)?;
        b.reshape(x, &[3, 2])?;
        b.transpose(x, &[1, 0])?;
        let wide = b.broadcast(c, &[2, 3])?;
        b.slice(x, &[0, 1], &[2, 3])?;
        let cat = b.concat(&[x, wide], 0)?;
        let mm = b.matmul(x, w)?;
        b.name(mm, "mm")?;
        let s_next = b.add_scalar(s, 1.0)?;
        // The int-only ops last, so that adding them appended to the snapshots.
        for op in BinaryOp::ALL.into_iter().filter(|op| op.int_only()) {
            b.binary(op, i, i)?;
        }
        b.output("sum", sum)?;
        b.output("max", max)?;
        b.output("cat", cat)?;
        b.output("mm", mm)?;
        b.output_aliasing("s.new", s_next, "s")?;
        Ok(b.finish())
    };
    build().expect("every_op fixture builds")
}
