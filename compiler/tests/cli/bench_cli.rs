//! `kiln bench`, end to end: a tiny graph and a training step, a few iterations each.

use crate::support::kiln_cli::kiln;
use std::path::PathBuf;

/// A matmul with a bias and ReLU epilogue, then a row softmax: two kernels of different kinds.
const MATMUL_SOFTMAX: &str = "\
graph small {
  %x = input{role=data} : f32[8,16]
  %w = input{role=param} : f32[16,4]
  %b = input{role=param} : f32[8,4]
  %h = matmul %x, %w : f32[8,4]
  %z = add %h, %b : f32[8,4]
  %m = reduce_max{axes=[1], keep_dims=true} %z : f32[8,1]
  %mb = broadcast{shape=[8,4]} %m : f32[8,4]
  %s = sub %z, %mb : f32[8,4]
  %e = exp %s : f32[8,4]
  %sum = reduce_sum{axes=[1], keep_dims=true} %e : f32[8,1]
  %sb = broadcast{shape=[8,4]} %sum : f32[8,4]
  %p = div %e, %sb : f32[8,4]
  %l = reduce_sum{axes=[0,1], keep_dims=false} %p : f32[]
  output p = %p
  output loss = %l
}
";

fn graph_file(test: &str) -> PathBuf {
    crate::support::kiln_cli::graph_file("bench_cli", test, MATMUL_SOFTMAX)
}

#[test]
fn bench_prints_compile_time_each_kernel_and_the_total() {
    let file = graph_file("input");
    let run = kiln(&[
        "bench",
        file.to_str().unwrap(),
        "--backend",
        "cpu",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
    ]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let out = &run.stdout;
    assert!(out.contains("graph small:"), "{out}");
    assert!(out.contains("compile:") && out.contains(" ms"), "{out}");
    assert!(
        out.contains("GFLOP/s"),
        "the matmul kernel has a FLOP rate:\n{out}"
    );
    assert!(
        out.contains("GB/s"),
        "the loop kernels have a byte rate:\n{out}"
    );
    assert!(out.contains("sum of kernels"), "{out}");
    assert!(out.contains("total:") && out.contains("runs/s"), "{out}");
}

#[test]
fn bench_times_a_training_step() {
    let file = graph_file("train");
    let run = kiln(&[
        "bench",
        file.to_str().unwrap(),
        "--stage",
        "train",
        "--of",
        "loss",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--seed",
        "3",
        "--iters",
        "2",
    ]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(run.stdout.contains("total:"), "{}", run.stdout);
}

#[test]
fn bench_rejects_zero_iterations_and_lowered_stages() {
    let file = graph_file("errors");
    for args in [&["--iters", "0"][..], &["--stage", "kernels"][..]] {
        let mut all = vec!["bench", file.to_str().unwrap()];
        all.extend_from_slice(args);
        let run = kiln(&all);
        assert_eq!(run.code, 1, "{args:?}: stdout:\n{}", run.stdout);
        assert!(run.stderr.contains("error:"), "{}", run.stderr);
    }
}

/// The ISA line names the wide routines' level, and a `KILN_WIDE_ISA` that names no level is reported there (the
/// benchmark still runs, on the inline CLIF math), as is a level the strips don't use (`scalar`).
#[test]
fn bench_reports_the_wide_routines_level_or_why_there_is_none() {
    let file = graph_file("wide_isa");
    for (isa, want) in [
        ("avx1024", "wide math: unknown wide-routine ISA `avx1024`"),
        ("scalar", "wide math: scalar (unused: "),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["bench", file.to_str().unwrap(), "--iters", "1"])
            .env("KILN_WIDE_ISA", isa)
            .env("KILN_WIDE_STRIPS", "1")
            .output()
            .expect("kiln runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{isa}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(want), "{isa}:\n{stdout}");
    }
}
