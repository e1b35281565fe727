//! JIT memory is freed: dropping an executable frees its code. In a test binary of its own, so that no other test
//! allocates while the resident set is measured.

use kiln::ir::{Builder, TensorType};
use kiln::Options;
use kiln_tests::fd::{random_tensor, rng};

fn resident_kib() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Dropping an executable frees its code: 1,000 compile/drop cycles of a small graph don't grow the resident set by
/// more than a slack (the 10,000-cycle version is `cargo run --release --example jit_churn`).
#[test]
fn compile_drop_cycles_do_not_leak() {
    let mut b = Builder::new("small");
    let x = b.data("x", TensorType::f32(&[4, 8])).unwrap();
    let y = b.exp(x).unwrap();
    let s = b.sum_all(y).unwrap();
    b.output("s", s).unwrap();
    let graph = b.finish();
    let inputs = [random_tensor(&TensorType::f32(&[4, 8]), &mut rng(0))];
    let opts = Options {
        threads: 1,
        ..Options::default()
    };
    let cycle = || {
        let exe = kiln::compile(&graph, &opts).unwrap();
        exe.run(&inputs).unwrap();
    };
    for _ in 0..100 {
        cycle();
    }
    let Some(before) = resident_kib() else {
        eprintln!("no /proc/self/status: resident-set check skipped");
        return;
    };
    for _ in 0..1000 {
        cycle();
    }
    let after = resident_kib().unwrap();
    assert!(
        after < before + 8 * 1024,
        "resident set grew from {before} KiB to {after} KiB"
    );
}
