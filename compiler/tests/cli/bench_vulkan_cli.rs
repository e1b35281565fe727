//! `kiln bench --backend vulkan`, end to end on the preferred device (lavapipe in CI): a matmul and a row softmax,
//! and a training step. Without a device the tests check the error and return, unless `KILN_REQUIRE_VULKAN=1`.

use crate::support::kiln_cli::kiln;
use crate::support::vulkan::vulkan_available;
use std::path::PathBuf;

/// A matmul with a bias epilogue (tiled on a GPU), then a row softmax of 300 columns, then a scalar sum.
const MATMUL_SOFTMAX: &str = "\
graph small {
  %x = input{role=data} : f32[20,32]
  %w = input{role=param} : f32[32,300]
  %b = input{role=param} : f32[20,300]
  %h = matmul %x, %w : f32[20,300]
  %z = add %h, %b : f32[20,300]
  %m = reduce_max{axes=[1], keep_dims=true} %z : f32[20,1]
  %mb = broadcast{shape=[20,300]} %m : f32[20,300]
  %s = sub %z, %mb : f32[20,300]
  %e = exp %s : f32[20,300]
  %sum = reduce_sum{axes=[1], keep_dims=true} %e : f32[20,1]
  %sb = broadcast{shape=[20,300]} %sum : f32[20,300]
  %p = div %e, %sb : f32[20,300]
  %l = reduce_sum{axes=[0,1], keep_dims=false} %p : f32[]
  output p = %p
  output loss = %l
}
";

fn graph_file(test: &str) -> PathBuf {
    crate::support::kiln_cli::graph_file("bench_vulkan_cli", test, MATMUL_SOFTMAX)
}

#[test]
fn bench_on_vulkan_prints_compile_time_each_dispatch_and_the_total() {
    let file = graph_file("input");
    let args = [
        "bench",
        file.to_str().unwrap(),
        "--backend",
        "vulkan",
        "--iters",
        "3",
        "--warmup",
        "1",
    ];
    if !vulkan_available() {
        let run = kiln(&args);
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert!(run.stderr.contains("--backend vulkan"), "{}", run.stderr);
        return;
    }
    let out = kiln(&args).ok();
    assert!(
        out.contains("graph small:") && out.contains(" kernels on "),
        "{out}"
    );
    assert!(
        out.contains("compile:") && out.contains("SPIR-V") && out.contains("pipelines"),
        "{out}"
    );
    let best = kiln::backend::spirv::devices().unwrap().remove(0);
    if best.timestamp_bits > 0 {
        // The matmul has a FLOP rate, the softmax and the sum byte rates. The dispatch column shows the plan: on a
        // GPU the tiled matmul (16x16 blocks of 256 invocations: ceil(300/16) x ceil(20/16)); on a CPU device
        // (lavapipe) one invocation per output element (6,000 / 64 = 94 groups).
        let matmul = if best.kind == kiln::backend::spirv::DeviceKind::Cpu {
            "94x1x1*64"
        } else {
            "19x2x1*256"
        };
        assert!(out.contains(matmul) && out.contains("GFLOP/s"), "{out}");
        assert!(out.contains("GB/s"), "{out}");
        assert!(out.contains("sum of dispatches (device)"), "{out}");
    } else {
        assert!(out.contains("no timestamp support"), "{out}");
    }
    assert!(out.contains("total:") && out.contains("runs/s"), "{out}");
}

#[test]
fn bench_on_vulkan_times_a_training_step_and_rejects_threads() {
    if !vulkan_available() {
        return;
    }
    let file = graph_file("train");
    let f = file.to_str().unwrap();
    let out = kiln(&[
        "bench",
        f,
        "--backend",
        "vulkan",
        "--stage",
        "train",
        "--of",
        "loss",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--iters",
        "2",
    ])
    .ok();
    assert!(out.contains("total:"), "{out}");
    let err = kiln(&["bench", f, "--backend", "vulkan", "--threads", "2"]).user_error();
    assert!(
        err.contains("--threads applies to the CPU backend"),
        "{err}"
    );
}
