//! Code generation from the kernel IR ([`crate::kernel`]): one module per target.

pub mod spirv;
