//! Shared helpers for the integration tests.

pub mod graph_gen;
