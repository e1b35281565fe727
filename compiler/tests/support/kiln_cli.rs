//! Running the `kiln` binary from the CLI tests (`tests/cli.rs`, `tests/bench_cli.rs`, `tests/train.rs`): its exit
//! code and both streams.

use std::process::Command;

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "expected success; stderr:\n{}", self.stderr);
        self.stdout
    }

    /// Asserts a user error (exit 1 with an `error` message, not a panic's 101) and returns stderr.
    pub fn user_error(self) -> String {
        assert_eq!(
            self.code, 1,
            "expected exit 1; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains("error"),
            "no error message:\n{}",
            self.stderr
        );
        self.stderr
    }
}

/// Runs `kiln ARGS...` (the binary cargo built for these tests).
pub fn kiln<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("the kiln binary runs");
    Outcome {
        code: output.status.code().expect("kiln exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Writes `text` to `<target tmp>/<binary>/<test>/small.kir` and returns the path: each test of each CLI test binary
/// gets its own graph file, so tests running in parallel never share one.
pub fn graph_file(binary: &str, test: &str, text: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(binary)
        .join(test);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("small.kir");
    std::fs::write(&path, text).unwrap();
    path
}
