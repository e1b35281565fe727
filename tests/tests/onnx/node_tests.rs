//! ONNX's backend node tests (`tests/fixtures/onnx/node/`, copied by `scripts/onnx-fixtures.sh` for the ops the
//! importer supports): each model is imported, run on its `test_data_set_0` inputs on the reference interpreter,
//! the CPU backend and Vulkan (when there is a device), and compared with ONNX's expected outputs at ONNX's runner
//! tolerances (rtol 1e-3, atol 1e-7).
//!
//! Every test passes on every backend or is in [`EXPECTED_FAILURES`] with the reason; a listed test that passes
//! fails this test too, so the list stays exact. `KILN_ONNX_NODE_DIR=DIR` runs the tests of another directory
//! (e.g. all of the pip package's) without checking the list, and `KILN_ONNX_SUMMARY=FILE.csv` writes each test's
//! outcome.

use kiln::ir::{Graph, Tensor};
use kiln::onnx::proto::{tensor_proto::DataType, TensorProto};
use kiln::onnx::{ImportError, ImportOptions};
use kiln_tests::differential::Tolerance;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// ONNX's `onnx.backend.test.runner` defaults.
const TOLERANCE: Tolerance = Tolerance {
    atol: 1e-7,
    rtol: 1e-3,
};

/// Node tests whose ops are all supported but that use a form the importer refuses (with
/// `ImportError::Unsupported`), and why.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    (
        "test_training_dropout",
        "Dropout training_mode = true: ONNX's random mask is not reproducible",
    ),
    (
        "test_training_dropout_default",
        "Dropout training_mode = true: ONNX's random mask is not reproducible",
    ),
    (
        "test_training_dropout_default_mask",
        "Dropout training_mode = true: ONNX's random mask is not reproducible",
    ),
    (
        "test_training_dropout_mask",
        "Dropout training_mode = true: ONNX's random mask is not reproducible",
    ),
];

/// How one node test ended.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// `bound`: inputs that must be static were bound to their test values at import (see [`import`]).
    Pass { vulkan: bool, bound: bool },
    /// Did not import (an `Unsupported` op form, a dtype Kiln lacks, an i64 out of i32, ...).
    Import(String),
    /// Imported, but the data files could not be read or do not fit the graph.
    Data(String),
    /// A backend failed or disagreed with ONNX's outputs.
    Mismatch {
        backend: &'static str,
        message: String,
    },
}

impl Outcome {
    fn class(&self) -> String {
        match self {
            Outcome::Pass { vulkan, bound } => format!(
                "pass (interpreter, cpu{}){}",
                if *vulkan { ", vulkan" } else { "" },
                if *bound {
                    " with static operands bound at import"
                } else {
                    ""
                }
            ),
            Outcome::Import(m) if m.contains("is not supported by the importer") => {
                "unsupported".into()
            }
            Outcome::Import(_) => "import error".into(),
            Outcome::Data(_) => "data error".into(),
            Outcome::Mismatch { backend, .. } => format!("mismatch on {backend}"),
        }
    }

    fn detail(&self) -> &str {
        match self {
            Outcome::Pass { .. } => "",
            Outcome::Import(m) | Outcome::Data(m) | Outcome::Mismatch { message: m, .. } => m,
        }
    }
}

fn fixture_dir() -> PathBuf {
    match std::env::var_os("KILN_ONNX_NODE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/onnx/node"),
    }
}

/// `input_*.pb` or `output_*.pb` of a data set, in index order, decoded as `TensorProto`s.
pub(super) fn read_protos(dir: &Path, prefix: &str) -> Result<Vec<TensorProto>, String> {
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let stem = path.file_stem()?.to_str()?;
            let index = stem.strip_prefix(prefix)?.parse().ok()?;
            Some((index, path))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|(_, path)| {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            kiln::onnx::decode_tensor_proto(&bytes).map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

pub(super) fn to_tensors<'a>(
    protos: impl IntoIterator<Item = &'a TensorProto>,
) -> Result<Vec<Tensor>, String> {
    protos
        .into_iter()
        .map(|t| kiln::onnx::tensor_from_proto(t).map_err(|e| e.to_string()))
        .collect()
}

/// Imports the model; while an operand that must be static is a graph input (node tests feed axes, shapes, pads,
/// scales, fill values and flags as inputs), imports again with that input bound to its test value, and says which
/// were bound. An operand computed from inputs binds every integer, bool and scalar input at once.
fn import(bytes: &[u8], inputs: &[TensorProto]) -> Result<(Graph, Vec<String>), String> {
    let mut options = ImportOptions::default();
    loop {
        let e = match kiln::onnx::import(bytes, &options) {
            Ok(g) => return Ok((g, options.input_values.keys().cloned().collect())),
            Err(e @ ImportError::Node { .. })
                if e.to_string().contains("must be known at import") =>
            {
                e
            }
            Err(e) => return Err(e.to_string()),
        };
        let message = e.to_string();
        let named = message
            .split_once("(input `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name);
        let input = inputs
            .iter()
            .find(|t| Some(t.name()) == named && !options.input_values.contains_key(t.name()));
        match input {
            Some(t) => {
                options.input_values.insert(t.name().to_string(), t.clone());
            }
            None => {
                let before = options.input_values.len();
                for t in inputs {
                    let static_kind = [DataType::Int64, DataType::Int32, DataType::Bool]
                        .iter()
                        .any(|&d| d as i32 == t.data_type());
                    if static_kind || t.dims.is_empty() {
                        options.input_values.insert(t.name().to_string(), t.clone());
                    }
                }
                if options.input_values.len() == before {
                    return Err(message);
                }
            }
        }
    }
}

/// The first output not within [`TOLERANCE`] of ONNX's (integers and bools exactly; NaN matches NaN).
fn compare(graph: &Graph, want: &[Tensor], got: &[Tensor]) -> Result<(), String> {
    if want.len() != got.len() {
        return Err(format!("{} outputs, expected {}", got.len(), want.len()));
    }
    for ((o, w), g) in graph.outputs().iter().zip(want).zip(got) {
        if w.ty() != g.ty() {
            return Err(format!(
                "output {} is {}, expected {}",
                o.name,
                g.ty(),
                w.ty()
            ));
        }
        let (wv, gv) = (w.to_f64_vec(), g.to_f64_vec());
        let exact = !w.dtype().is_float();
        for (i, (&a, &b)) in gv.iter().zip(&wv).enumerate() {
            let ok = if exact { a == b } else { TOLERANCE.close(a, b) };
            if !ok {
                return Err(format!("output {} element {i}: {a}, expected {b}", o.name));
            }
        }
    }
    Ok(())
}

fn run_test(dir: &Path) -> Outcome {
    let bytes = match std::fs::read(dir.join("model.onnx")) {
        Ok(b) => b,
        Err(e) => return Outcome::Data(e.to_string()),
    };
    let data = dir.join("test_data_set_0");
    let (inputs, want) = match (read_protos(&data, "input_"), read_protos(&data, "output_")) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => return Outcome::Data(e),
    };
    let (graph, bound) = match import(&bytes, &inputs) {
        Ok(g) => g,
        Err(e) => return Outcome::Import(e.lines().next().unwrap_or("").to_string()),
    };
    let fed = inputs
        .iter()
        .filter(|t| !bound.iter().any(|b| b == t.name()));
    let (inputs, want) = match (to_tensors(fed), to_tensors(&want)) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => return Outcome::Data(e),
    };
    if inputs.len() != graph.inputs().count() {
        return Outcome::Data(format!(
            "{} inputs for {} graph inputs",
            inputs.len(),
            graph.inputs().count()
        ));
    }
    for (info, t) in graph.inputs().zip(&inputs) {
        if info.ty != t.ty() {
            return Outcome::Data(format!(
                "input {} is {}, the data {}",
                info.name,
                info.ty,
                t.ty()
            ));
        }
    }
    let bound = !bound.is_empty();
    let mut vulkan = false;
    for backend in Backend::ALL {
        let Some(got) = run_on(backend, &graph, &inputs) else {
            continue;
        };
        if let Err(message) = got.and_then(|got| compare(&graph, &want, &got)) {
            return Outcome::Mismatch {
                backend: backend.name(),
                message,
            };
        }
        vulkan |= matches!(backend, Backend::Vulkan);
    }
    Outcome::Pass { vulkan, bound }
}

/// Where an imported model runs: every test of this module runs on each.
#[derive(Clone, Copy, Debug)]
pub(super) enum Backend {
    Interpreter,
    Cpu,
    Vulkan,
}

impl Backend {
    pub(super) const ALL: [Backend; 3] = [Backend::Interpreter, Backend::Cpu, Backend::Vulkan];

    pub(super) fn name(self) -> &'static str {
        match self {
            Backend::Interpreter => "interpreter",
            Backend::Cpu => "cpu",
            Backend::Vulkan => "vulkan",
        }
    }
}

/// Runs `graph` on `backend` (the CPU with one thread); `None` for Vulkan without a device (which
/// `KILN_REQUIRE_VULKAN=1` turns into a failure), and every error as a message rather than a panic, so a caller can
/// say which backend failed.
pub(super) fn run_on(
    backend: Backend,
    graph: &Graph,
    inputs: &[Tensor],
) -> Option<Result<Vec<Tensor>, String>> {
    Some(match backend {
        Backend::Interpreter => kiln::ir::interp::run(graph, inputs).map_err(|e| e.to_string()),
        Backend::Cpu => {
            let options = kiln::Options {
                threads: 1,
                ..kiln::Options::default()
            };
            kiln::compile(graph, &options)
                .map_err(|e| e.to_string())
                .and_then(|exe| exe.run(inputs).map_err(|e| e.to_string()))
        }
        Backend::Vulkan => {
            let device = kiln_tests::vulkan::device()?;
            kiln::fusion::lower(graph)
                .map_err(|e| e.to_string())
                .and_then(|program| {
                    kiln::backend::spirv::compile(device, &program).map_err(|e| e.to_string())
                })
                .and_then(|exe| exe.run(inputs).map_err(|e| e.to_string()))
        }
    })
}

fn write_summary(path: &Path, outcomes: &BTreeMap<String, Outcome>) {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv = String::from("test,outcome,detail\n");
    for (name, outcome) in outcomes {
        csv.push_str(&format!(
            "{name},{},{}\n",
            quote(&outcome.class()),
            quote(outcome.detail())
        ));
    }
    std::fs::write(path, csv).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn onnx_node_tests_pass_or_fail_as_listed() {
    let dir = fixture_dir();
    let mut tests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/onnx-fixtures.sh)", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no node tests in {}", dir.display());
    let outcomes: BTreeMap<String, Outcome> = tests
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, run_test(p))
        })
        .collect();

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for outcome in outcomes.values() {
        *counts.entry(outcome.class()).or_default() += 1;
    }
    eprintln!("ONNX node tests in {}: {}", dir.display(), outcomes.len());
    for (class, n) in &counts {
        eprintln!("  {class}: {n}");
    }
    if let Some(path) = std::env::var_os("KILN_ONNX_SUMMARY") {
        write_summary(Path::new(&path), &outcomes);
    }
    if std::env::var_os("KILN_ONNX_NODE_DIR").is_some() {
        return;
    }
    let expected: BTreeMap<&str, &str> = EXPECTED_FAILURES.iter().copied().collect();
    let mut wrong = Vec::new();
    for (name, outcome) in &outcomes {
        let passed = matches!(outcome, Outcome::Pass { .. });
        match (passed, expected.get(name.as_str())) {
            (true, Some(_)) => {
                wrong.push(format!("{name}: passes; remove it from EXPECTED_FAILURES"))
            }
            (false, None) => {
                wrong.push(format!("{name}: {}: {}", outcome.class(), outcome.detail()))
            }
            (true, None) | (false, Some(_)) => {}
        }
    }
    for name in expected.keys() {
        if !outcomes.contains_key(*name) {
            wrong.push(format!(
                "{name}: listed in EXPECTED_FAILURES but not a fixture"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} node tests not as expected:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
