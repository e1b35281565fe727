//! A convolution with bias and ReLU, fused, at every stage: the kernel IR, the CPU's CLIF and the SPIR-V. Snapshots
//! are specs: review a diff as a change of what the compiler emits.
//!
//! `relu(conv3x3(x, W, pad 1) + b)` on `x: f32[2, 3, 6, 6]`, `W: f32[4, 3, 3, 3]` is four kernels:
//! 1. the padded input, one guarded load per element (`load.or`: the zero padding is a guard on the coordinates,
//!    never a read out of bounds);
//! 2. the window matrix (im2col): `cols[n, c, a, b, r, s] = xpad[n, c, r + a, s + b]`, a copy through affine
//!    indices (stride 1 along `s`, so the CPU's f32x4 plan takes it);
//! 3. the GEMM `W[4, 27] · cols[n][27, 36]` per image, reading `cols` in place (the reshape to a matrix is a view);
//! 4. bias and ReLU. Not yet the GEMM's epilogue: the product is `[N, 1, O, H·W]` and the ReLU acts on its reshape
//!    to `[N, O, H, W]`, and fusion makes a matmul the core only of a kernel of its own shape. (A known gap: one
//!    extra pass over the output.)

use kiln::backend::spirv;
use kiln::ir::{Builder, ConvSpec, Graph, TensorType};

fn conv_bias_relu() -> Graph {
    let mut b = Builder::new("conv_bias_relu");
    let x = b.data("x", TensorType::f32(&[2, 3, 6, 6])).unwrap();
    let w = b.param("w", TensorType::f32(&[4, 3, 3, 3])).unwrap();
    let bias = b.param("b", TensorType::f32(&[4])).unwrap();
    let y = b
        .conv(x, w, Some(bias), &ConvSpec::new(2).padding(&[1, 1]))
        .unwrap();
    let y = b.relu(y).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

fn program() -> kiln::kernel::KernelProgram {
    let optimized = kiln::optimize(&conv_bias_relu()).unwrap();
    kiln::fusion::lower(&optimized).unwrap()
}

#[test]
fn conv_bias_relu_kernels() {
    let program = program();
    assert_eq!(
        program.kernels.len(),
        4,
        "{}",
        kiln::kernel::print(&program)
    );
    insta::assert_snapshot!("conv_bias_relu__kernels", kiln::kernel::print(&program));
}

#[test]
fn conv_bias_relu_clif() {
    let program = program();
    let clif: Vec<String> = (0..program.kernels.len())
        .map(|k| kiln::backend::cpu::codegen::clif_text(&program, k).unwrap())
        .collect();
    insta::assert_snapshot!("conv_bias_relu__clif", clif.join("\n\n"));
}

#[test]
fn conv_bias_relu_spirv() {
    let program = program();
    let kernels = spirv::lower(&program).unwrap();
    kiln_tests::vulkan::validate(&kernels);
    let text: Vec<String> = kernels.iter().map(|k| k.disassemble()).collect();
    insta::assert_snapshot!("conv_bias_relu__spirv", text.join("\n\n"));
}
