pub mod assemble;
pub mod codegen;
pub mod jit;
pub mod math;
