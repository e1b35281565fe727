//! Running the `kiln` binary from the CLI tests (`cli::cli`, `cli::bench_cli`, `cli::bad_inputs`, `cli::deep_cli`,
//! `cli::output_files`, `training::train`): its exit code and both streams, and a small graph they share.

use std::process::Command;

/// Linear regression with a mean-squared-error loss: small enough to train in three steps.
pub const LINREG: &str = "\
# y ≈ x wᵀ
graph linreg {
  %x = input{role=data} : f32[8,3]
  %w = input{role=param} : f32[1,3]
  %y = input{role=data} : f32[8,1]
  %3 = transpose{perm=[1,0]} %w : f32[3,1]
  %pred = matmul %x, %3 : f32[8,1]
  %err = sub %pred, %y : f32[8,1]
  %sq = mul %err, %err : f32[8,1]
  %sum = reduce_sum{axes=[0,1], keep_dims=false} %sq : f32[]
  %scale = constant{value=0.125} : f32[]
  %loss = mul %sum, %scale : f32[]
  output pred = %pred
  output loss = %loss
}
";

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

/// Writes `text` to `<target tmp>/<binary>/<test>/small.kir` and returns the path: each test of each CLI test module
/// (`binary`: the module's name) gets its own graph file, so tests running in parallel never share one.
pub fn graph_file(binary: &str, test: &str, text: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(binary)
        .join(test);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("small.kir");
    std::fs::write(&path, text).unwrap();
    path
}
