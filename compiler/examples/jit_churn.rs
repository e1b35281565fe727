//! 10,000 compile/drop cycles of a small graph, printing the resident set every 1,000: it must stay flat, because
//! dropping an `Executable` frees its JIT code. `cargo run --release -p kiln --example jit_churn`.

use kiln::ir::{Builder, Tensor, TensorType};

fn resident_kib() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), kiln::Error> {
    let mut b = Builder::new("small");
    let x = b.data("x", TensorType::f32(&[4, 8]))?;
    let y = b.exp(x)?;
    let s = b.sum_all(y)?;
    b.output("s", s)?;
    let graph = b.finish();
    let inputs = [Tensor::from_f32(
        &[4, 8],
        (0..32).map(|i| i as f32 / 32.0).collect(),
    )?];
    let options = kiln::Options {
        threads: 1,
        ..kiln::Options::default()
    };
    let started = std::time::Instant::now();
    for cycle in 1..=10_000 {
        let exe = kiln::compile(&graph, &options)?;
        exe.run(&inputs)?;
        if cycle % 1000 == 0 {
            println!(
                "{cycle:>6} cycles  {:>8.1} s  resident {} KiB",
                started.elapsed().as_secs_f64(),
                resident_kib().map_or("?".to_string(), |k| k.to_string())
            );
        }
    }
    Ok(())
}
