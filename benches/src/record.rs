//! The figures a bench hands to `scripts/bench_table.py`: with `KILN_BENCH_RECORD=FILE` set, each [`record`] call
//! appends one JSON line `{"key": "...", "value": ...}` to FILE (a bench run without it records nothing). The script
//! runs the peers, then the benches, then the peers again, and builds the same-run table from these lines and the
//! peers' JSON, so the keys are its vocabulary: `W1.fused_ms`, `W4.compile_ms`, ….

use std::io::Write;

/// The environment variable naming the file the records go to.
pub const RECORD_VAR: &str = "KILN_BENCH_RECORD";

/// Appends `key = value` to the record file, if one is named. `key` is a plain ASCII name (no quotes or
/// backslashes); a NaN or infinite value is recorded as `null`. A failed write is reported on stderr and otherwise
/// ignored: the bench's own output still stands.
pub fn record(key: &str, value: f64) {
    let Some(path) = std::env::var_os(RECORD_VAR) else {
        return;
    };
    debug_assert!(!key.contains(['"', '\\']), "record keys are plain names");
    let value = if value.is_finite() {
        format!("{value:e}")
    } else {
        "null".to_string()
    };
    let line = format!("{{\"key\": \"{key}\", \"value\": {value}}}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("cannot record {key} in {}: {e}", path.to_string_lossy());
    }
}
