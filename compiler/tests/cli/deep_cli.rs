//! `kiln run` on the 20,000-op chain of issue #12, which used to overflow the main thread's stack (the fused
//! kernel's lowering recursed once per op) and abort.

use crate::support::kiln_cli::{graph_file, kiln};

/// `%1 = add %x, %x`, `%k = add %(k-1), %x` up to `%n`, on an `f32[4]` input.
fn add_chain_text(n: usize) -> String {
    let mut text = String::from("graph deep {\n  %x = input{role=data} : f32[4]\n");
    text.push_str("  %1 = add %x, %x : f32[4]\n");
    for k in 2..=n {
        text.push_str(&format!("  %{k} = add %{}, %x : f32[4]\n", k - 1));
    }
    text.push_str(&format!("  output y = %{n}\n}}\n"));
    text
}

#[test]
fn run_on_the_cpu_takes_a_20000_op_chain() {
    let file = graph_file("deep_cli", "run_cpu", &add_chain_text(20_000));
    let file = file.to_str().unwrap();
    let cpu = kiln(&["run", file, "--backend", "cpu", "--seed", "1"]).ok();
    let interp = kiln(&["run", file, "--backend", "interp", "--seed", "1"]).ok();
    assert!(cpu.lines().any(|l| l.starts_with("y ")), "{cpu}");
    // The same seeded input, the same printed summary of `y`.
    assert_eq!(cpu, interp);
}
