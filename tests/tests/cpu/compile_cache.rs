//! `kiln::CompileCache`: the same graph and options give back the same executable without compiling again; a graph
//! that differs in anything (a constant, a shape, the options) gets its own, and the results of each are its own
//! graph's (checked against the interpreter).

use kiln::ir::{interp, Builder, DType, Graph, Tensor, TensorType};
use kiln::{CompileCache, Options};
use kiln_tests::differential::{first_mismatch, random_inputs, Tolerance};
use std::sync::Arc;

/// CPU vs interpreter, as in `cpu_backend.rs`.
const TOL: Tolerance = Tolerance {
    atol: 1e-5,
    rtol: 1e-4,
};

/// `tanh(x · scale + 1)` on `[rows, 8]`.
fn graph(scale: f64, rows: usize) -> Graph {
    let mut b = Builder::new("cached");
    let x = b.data("x", TensorType::f32(&[rows, 8])).unwrap();
    let s = b.scalar(scale, DType::F32).unwrap();
    let xs = b.mul(x, s).unwrap();
    let one = b.scalar(1.0, DType::F32).unwrap();
    let h = b.add(xs, one).unwrap();
    let y = b.tanh(h).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

fn options(threads: usize) -> Options {
    Options {
        threads,
        ..Options::default()
    }
}

/// Runs `exe` on seeded inputs and checks it against the interpreter on `graph`.
fn check_against_interpreter(graph: &Graph, exe: &kiln::Executable) {
    let inputs: Vec<Tensor> = random_inputs(graph, 7);
    let expected = interp::run(graph, &inputs).unwrap();
    let actual = exe.run(&inputs).unwrap();
    if let Some(m) = first_mismatch(graph, &expected, &actual, TOL, "cached cpu") {
        panic!("{m}");
    }
}

#[test]
fn the_same_graph_is_compiled_once() {
    let cache = CompileCache::new();
    assert!(cache.is_empty());
    let first = cache.get_or_compile(&graph(0.5, 4), &options(1)).unwrap();
    // Built again from scratch: equal text, so the same executable.
    let second = cache.get_or_compile(&graph(0.5, 4), &options(1)).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(cache.len(), 1);
    check_against_interpreter(&graph(0.5, 4), &second);
}

#[test]
fn any_difference_gets_its_own_executable() {
    let cache = CompileCache::new();
    let base = cache.get_or_compile(&graph(0.5, 4), &options(1)).unwrap();
    let other_constant = cache.get_or_compile(&graph(0.25, 4), &options(1)).unwrap();
    let other_shape = cache.get_or_compile(&graph(0.5, 5), &options(1)).unwrap();
    let other_threads = cache.get_or_compile(&graph(0.5, 4), &options(2)).unwrap();
    let unfused = Options {
        fuse: false,
        ..options(1)
    };
    let other_fusion = cache.get_or_compile(&graph(0.5, 4), &unfused).unwrap();
    let all = [
        &base,
        &other_constant,
        &other_shape,
        &other_threads,
        &other_fusion,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(!Arc::ptr_eq(a, b), "two different keys share an executable");
        }
    }
    assert_eq!(cache.len(), 5);
    // Each computes its own graph: a stale hit on the constant would fail here.
    check_against_interpreter(&graph(0.5, 4), &base);
    check_against_interpreter(&graph(0.25, 4), &other_constant);
    check_against_interpreter(&graph(0.5, 5), &other_shape);
    assert_eq!(other_threads.threads(), 2);
    check_against_interpreter(&graph(0.5, 4), &other_fusion);

    cache.clear();
    assert!(cache.is_empty());
    // Executables handed out before `clear` still run.
    check_against_interpreter(&graph(0.5, 4), &base);
}

#[test]
fn concurrent_requests_share_one_executable() {
    let cache = CompileCache::new();
    let exes: Vec<Arc<kiln::Executable>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| cache.get_or_compile(&graph(0.5, 64), &options(1)).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(cache.len(), 1);
    for exe in &exes[1..] {
        assert!(Arc::ptr_eq(&exes[0], exe));
    }
    check_against_interpreter(&graph(0.5, 64), &exes[0]);
}
