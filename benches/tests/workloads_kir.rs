//! `benches/workloads/*.kir`: W1–W4 as text graphs, for `kiln bench FILE` on machines with only the `kiln` binary
//! (`scripts/gpu-check.sh --bundle`). Each file must be exactly what the graph builders of `kiln_benches` print, so
//! the GPU numbers are for the workloads the criterion benches measure.
//!
//! After changing a builder, regenerate with `KILN_UPDATE_WORKLOADS=1 cargo test -p kiln-benches --test
//! workloads_kir`, and review the diff.

use kiln::ir::text;
use kiln::{Graph, IrError};
use kiln_benches::{matmul_graph, softmax_graph, w1_graph, w4_step, W1_LEN, W2_SHAPE};
use std::path::Path;

/// The sizes of `benches/benches/workloads.rs`'s `W3_SIZES` (a bench target's constant, not importable here).
const W3_SIZES: [(usize, usize, usize); 2] = [(1024, 1024, 1024), (256, 784, 256)];

fn workloads() -> Result<Vec<(String, Graph)>, IrError> {
    let mut out = vec![
        ("w1".to_string(), w1_graph(W1_LEN)?),
        ("w2".to_string(), softmax_graph(W2_SHAPE[0], W2_SHAPE[1])?),
    ];
    for (m, k, n) in W3_SIZES {
        out.push((format!("w3_{m}x{k}x{n}"), matmul_graph(m, k, n)?));
    }
    // W4 is the whole SGD step (forward, backward, update), as `kiln bench` takes it at `--stage input`.
    out.push(("w4".to_string(), w4_step()?));
    Ok(out)
}

#[test]
fn workload_files_are_the_builders_graphs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
    let update = std::env::var("KILN_UPDATE_WORKLOADS").is_ok_and(|v| v == "1");
    let mut expected_names = Vec::new();
    for (name, graph) in workloads().unwrap() {
        let printed = text::print(&graph);
        // The printed text parses back to the same graph.
        let reparsed = text::parse(&printed).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            text::print(&reparsed),
            printed,
            "{name}: print/parse round trip"
        );
        let path = dir.join(format!("{name}.kir"));
        if update {
            std::fs::write(&path, &printed).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with KILN_UPDATE_WORKLOADS=1)",
                path.display()
            )
        });
        assert!(
            committed == printed,
            "{} differs from the builder's graph; regenerate with KILN_UPDATE_WORKLOADS=1",
            path.display()
        );
        expected_names.push(format!("{name}.kir"));
    }
    // No stale file lingers.
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".kir"))
        .collect();
    present.sort();
    expected_names.sort();
    assert_eq!(present, expected_names);
}
