//! Writes the graphs that benches/README.md profiles with `kiln bench` as `.kir` files into a directory:
//!
//!     cargo run --release -p kiln-benches --example dump_graphs -- /tmp/graphs
//!     cargo run --release --bin kiln -- bench /tmp/graphs/w7_step.kir
//!
//! `w7_step.kir` (the W7 CNN's SGD step), `attention_T.kir` (causal `scaled_dot_product_attention` at B·H = 32,
//! d = 64, for T = 128, 256, 512) and `conv_bn_relu.kir` (W6's convolution with evaluation-mode batch norm and ReLU).

use kiln::ir::{Builder, ConvSpec, Graph, IrError, TensorType};
use std::path::Path;

fn attention(t: usize) -> Result<Graph, IrError> {
    let mut b = Builder::new("attention");
    let ty = TensorType::f32(&[8, 4, t, 64]);
    let q = b.data("q", ty.clone())?;
    let k = b.data("k", ty.clone())?;
    let v = b.data("v", ty)?;
    let y = b.scaled_dot_product_attention(q, k, v, true)?;
    b.output("y", y)?;
    Ok(b.finish())
}

fn conv_bn_relu() -> Result<Graph, IrError> {
    let mut b = Builder::new("conv_bn_relu");
    let x = b.data("x", TensorType::f32(&[16, 64, 32, 32]))?;
    let w = b.param("w", TensorType::f32(&[64, 64, 3, 3]))?;
    let channel = |b: &mut Builder, name: &str| b.param(name, TensorType::f32(&[64]));
    let bias = channel(&mut b, "b")?;
    let (gain, shift) = (channel(&mut b, "gain")?, channel(&mut b, "shift")?);
    let (mean, var) = (channel(&mut b, "mean")?, channel(&mut b, "var")?);
    let y = b.conv(x, w, Some(bias), &ConvSpec::new(2).padding(&[1, 1]))?;
    let y = b.batch_norm_eval(y, Some(gain), Some(shift), (mean, var), 1e-5)?;
    let y = b.relu(y)?;
    b.output("y", y)?;
    Ok(b.finish())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: dump_graphs DIR")?;
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let mut graphs = vec![
        ("w7_step".to_string(), kiln_benches::w7_step()?),
        ("conv_bn_relu".to_string(), conv_bn_relu()?),
    ];
    for t in [128, 256, 512] {
        graphs.push((format!("attention_{t}"), attention(t)?));
    }
    for (name, graph) in graphs {
        let path = dir.join(format!("{name}.kir"));
        std::fs::write(&path, kiln::ir::text::print(&graph))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
