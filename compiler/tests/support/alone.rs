//! Running a test alone in a process of its own, for the few that measure the whole process (its resident set, its
//! thread count) and so must not share it with the other tests of the one test binary.
//!
//! ```ignore
//! #[test]
//! fn compile_drop_cycles_do_not_leak() {
//!     if !crate::support::alone::in_own_process(module_path!(), "compile_drop_cycles_do_not_leak") {
//!         return; // it ran, and passed, in a child process
//!     }
//!     // ... the measurement, now the only test in this process
//! }
//! ```
//!
//! The child is this test binary again, asked for this one test (`--exact`, one test thread) with
//! [`CHILD_VAR`] set to its name; the parent fails with the child's output if the child fails or runs no test.
//! (A copy of `tests/src/alone.rs` in `kiln-tests`, which `kiln` can't depend on.)

use std::process::Command;

/// Set to the test's name in the child process.
pub const CHILD_VAR: &str = "KILN_TEST_ALONE";

/// The test's name as the test harness knows it: `module_path` (from `module_path!()`) without the crate's name,
/// then `name`.
pub fn test_name(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_, modules)) => format!("{modules}::{name}"),
        None => name.to_string(),
    }
}

/// `true` in the child process, where the caller then runs the test's body; otherwise runs the test in a child
/// process, panics with the child's output unless it passed, and returns `false`.
pub fn in_own_process(module_path: &str, name: &str) -> bool {
    let test = test_name(module_path, name);
    if std::env::var(CHILD_VAR).is_ok_and(|v| v == test) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([test.as_str(), "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_VAR, &test)
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "`{test}` alone in a child process: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    eprint!("{stderr}");
    false
}
