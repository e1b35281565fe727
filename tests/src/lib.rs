//! Shared helpers for the integration tests.

pub mod alone;
pub mod differential;
pub mod fd;
pub mod fixtures;
pub mod golden;
pub mod golden_nets;
pub mod graph_gen;
pub mod vulkan;
