//! JIT memory and worker threads are freed: dropping an executable frees its code and joins its thread pool. Run in
//! a process of its own (`kiln_tests::alone`), so that no other test allocates or starts threads while the resident
//! set and the thread count are measured.

use kiln::ir::{Builder, TensorType};
use kiln::Options;
use kiln_tests::alone;
use kiln_tests::fd::{random_tensor, rng};

/// A number from a line of `/proc/self/status` (`VmRSS:` in KiB, `Threads:`).
fn status(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn resident_kib() -> Option<usize> {
    status("VmRSS:")
}

/// Dropping an executable frees its code and joins its workers: 10,000 compile/run/drop cycles of a small graph on 2
/// threads (every run splits a kernel, so each executable starts a worker) don't grow the resident set by more than
/// 8 MiB — a leak of even one 4 KiB code page per executable would be 40 MB — and leave the process with as many
/// threads as before. (About 30 s on the 2-core CI machine; `cargo run --release -p kiln --example jit_churn` prints
/// the resident set every 1,000 cycles.)
#[test]
fn compile_drop_cycles_do_not_leak() {
    if !alone::in_own_process(module_path!(), "compile_drop_cycles_do_not_leak") {
        return;
    }
    let mut b = Builder::new("small");
    let x = b.data("x", TensorType::f32(&[4, 8])).unwrap();
    let y = b.exp(x).unwrap();
    let s = b.sum_all(y).unwrap();
    b.output("s", s).unwrap();
    b.output("y", y).unwrap();
    let graph = b.finish();
    let inputs = [random_tensor(&TensorType::f32(&[4, 8]), &mut rng(0))];
    let opts = Options {
        threads: 2,
        ..Options::default()
    };
    let cycle = || {
        let mut exe = kiln::compile(&graph, &opts).unwrap();
        // Chunks of one point: the 32-point kernel is split, so the run wakes a worker.
        exe.set_min_chunk(1);
        exe.run(&inputs).unwrap();
    };
    for _ in 0..100 {
        cycle();
    }
    let Some(before) = resident_kib() else {
        eprintln!("no /proc/self/status: resident-set and thread checks skipped");
        return;
    };
    let threads_before = status("Threads:").unwrap();
    for _ in 0..10_000 {
        cycle();
    }
    let after = resident_kib().unwrap();
    assert_eq!(
        status("Threads:").unwrap(),
        threads_before,
        "dropped executables left threads behind"
    );
    let mut exe = kiln::compile(&graph, &opts).unwrap();
    exe.set_min_chunk(1);
    exe.run(&inputs).unwrap();
    assert_eq!(
        status("Threads:").unwrap(),
        threads_before + 1,
        "a 2-thread executable holds one worker while it lives"
    );
    drop(exe);
    assert!(
        after < before + 8 * 1024,
        "resident set grew from {before} KiB to {after} KiB"
    );
}
