pub mod jit;
pub mod math;
