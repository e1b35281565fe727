//! Shared helpers for the integration tests.

pub mod fd;
pub mod golden;
