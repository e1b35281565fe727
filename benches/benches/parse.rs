//! Parsing `.kir` text of 1,000,000 nodes, with every node named (`%n17`) and with index labels (`%17`).
//!
//! Labels are checked for uniqueness through `Graph`'s name index; before it, each new name scanned every node, so
//! the named case was quadratic (100,000 named nodes took 75 s against 0.3 s numbered). The two cases should now take
//! about the same time. Run with `cargo bench -p kiln-benches --bench parse`; numbers in `benches/README.md`.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use kiln::ir::text::parse;
use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

const NODES: usize = 1_000_000;

/// A chain of `nodes` nodes: one input, then `neg` of the previous node, labelled `%nK` if `named`, else `%K`.
fn chain(nodes: usize, named: bool) -> String {
    let label = |k: usize| {
        if named {
            format!("n{k}")
        } else {
            k.to_string()
        }
    };
    let mut text = String::from("graph chain {\n  %x = input{role=data} : f32[2]\n");
    let mut previous = "x".to_string();
    for k in 1..nodes {
        let this = label(k);
        writeln!(text, "  %{this} = neg %{previous} : f32[2]").unwrap();
        previous = this;
    }
    writeln!(text, "  output y = %{previous}\n}}").unwrap();
    text
}

fn parse_chains(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    // Each iteration takes about a second: a few samples suffice, taken one iteration at a time.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(NODES as u64));
    for (name, named) in [("1M nodes named", true), ("1M nodes numbered", false)] {
        let text = chain(NODES, named);
        group.bench_function(name, |b| {
            b.iter(|| {
                let graph = parse(black_box(&text)).expect("the chain parses");
                assert_eq!(graph.len(), NODES);
                graph
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse_chains);
criterion_main!(benches);
