//! `kiln import`: the summary, the `.kir` file it writes (which `kiln check` accepts), `kiln run` on a `.onnx`
//! path, and the errors for a file that is not ONNX; `kiln export` and `kiln train --onnx`, whose models import back.

use crate::support::kiln_cli::kiln;
use std::path::{Path, PathBuf};

/// One of ONNX's node tests committed under `tests/fixtures/onnx/node/`: `Y = 0.25·Aᵀ·Bᵀ + 0.35·C`.
fn gemm_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/onnx/node/test_gemm_all_attributes/model.onnx")
}

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("import_cli")
        .join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn import_prints_a_summary_and_writes_a_kir_file_that_checks() {
    let out = scratch("summary").join("gemm.kir");
    let stdout = kiln(&[
        "import".as_ref(),
        gemm_model().as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .ok();
    let expected_head = "opset 13 (producer backend-test)\ninput a: f32[4,3]\ninput b: f32[5,4]\ninput c: f32[1,5]\n\
                         output y: f32[3,5]\nparameters: 0\nops: Gemm x1\nwrote ";
    assert!(stdout.starts_with(expected_head), "{stdout}");
    let checked = kiln(&["check".as_ref(), out.as_os_str()]).ok();
    assert!(
        checked.starts_with("ok: graph test_gemm_all_attributes"),
        "{checked}"
    );
    // `kiln check` and `kiln run` also take the model itself.
    kiln(&["check".as_ref(), gemm_model().as_os_str()]).ok();
    let run = kiln(&[
        "run".as_ref(),
        gemm_model().as_os_str(),
        "--seed".as_ref(),
        "1".as_ref(),
    ])
    .ok();
    assert!(run.contains("y"), "{run}");
}

#[test]
fn import_of_a_file_that_is_not_onnx_is_a_user_error() {
    let bad = scratch("not_onnx").join("bad.onnx");
    std::fs::write(&bad, b"\xff\xff\xff\xff not protobuf").unwrap();
    let stderr = kiln(&["import".as_ref(), bad.as_os_str()]).user_error();
    assert!(stderr.contains("not a valid ONNX model"), "{stderr}");
    let stderr = kiln(&["import", "model.onnx", "--shape", "batch"]).user_error();
    assert!(stderr.contains("--shape `batch`"), "{stderr}");
}

#[test]
fn run_dump_and_bench_take_shape_for_an_onnx_model_and_refuse_it_for_a_kir_graph() {
    // The model's fixed shapes, restated, are accepted; a shape that contradicts them is an error naming the input.
    let ok = kiln(&[
        "dump".as_ref(),
        gemm_model().as_os_str(),
        "--shape".as_ref(),
        "a=4,3".as_ref(),
    ])
    .ok();
    assert!(ok.contains("f32[4,3]"), "{ok}");
    let stderr = kiln(&[
        "run".as_ref(),
        gemm_model().as_os_str(),
        "--shape".as_ref(),
        "a=2,3".as_ref(),
    ])
    .user_error();
    assert!(stderr.contains("input `a`"), "{stderr}");
    let kir = scratch("shape_on_kir").join("gemm.kir");
    kiln(&[
        "import".as_ref(),
        gemm_model().as_os_str(),
        "-o".as_ref(),
        kir.as_os_str(),
    ])
    .ok();
    let stderr = kiln(&[
        "bench".as_ref(),
        kir.as_os_str(),
        "--shape".as_ref(),
        "a=4,3".as_ref(),
    ])
    .user_error();
    assert!(
        stderr.contains("--shape applies to .onnx models"),
        "{stderr}"
    );
}

/// The whole-model MLP fixture (64-128-10, Gemm/Relu/Gemm, a symbolic batch dim `N`).
fn mlp_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx/models/mlp/model.onnx")
}

#[test]
fn a_trainable_import_with_a_loss_fine_tunes_through_kiln_run() {
    let dir = scratch("fine_tune");
    let kir = dir.join("mlp.kir");
    let stdout = kiln(&[
        "import".as_ref(),
        mlp_model().as_os_str(),
        "-o".as_ref(),
        kir.as_os_str(),
        "--shape".as_ref(),
        "N=8".as_ref(),
        "--trainable".as_ref(),
        "--loss".as_ref(),
        "cross_entropy".as_ref(),
    ])
    .ok();
    assert!(
        stdout.contains("against input `target`: i32[8]"),
        "{stdout}"
    );
    assert!(stdout.contains("wrote 4 parameters to"), "{stdout}");
    let params = dir.join("mlp.params");
    // `kiln dump --stage grad` shows the backward graph of the appended loss.
    let grad = kiln(&[
        "dump".as_ref(),
        kir.as_os_str(),
        "--stage".as_ref(),
        "grad".as_ref(),
    ])
    .ok();
    assert!(grad.contains("grad."), "{grad}");
    // Started from the model's weights (--input-dir), five Adam steps on one batch lower the loss.
    let run = kiln(&[
        "run".as_ref(),
        kir.as_os_str(),
        "--input-dir".as_ref(),
        params.as_os_str(),
        "--stage".as_ref(),
        "train".as_ref(),
        "--optimizer".as_ref(),
        "adam".as_ref(),
        "--steps".as_ref(),
        "5".as_ref(),
        "--backend".as_ref(),
        "cpu".as_ref(),
    ])
    .ok();
    let losses: Vec<f64> = run
        .lines()
        .filter_map(|l| l.strip_prefix("step "))
        .map(|l| l.split_whitespace().last().unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 5, "{run}");
    assert!(losses[4] < losses[0], "{run}");
    // A loss on an output the model lacks, and an input directory that gives nothing, are errors.
    let stderr = kiln(&[
        "import".as_ref(),
        mlp_model().as_os_str(),
        "--shape".as_ref(),
        "N=8".as_ref(),
        "--loss".as_ref(),
        "mse".as_ref(),
        "--of".as_ref(),
        "probs".as_ref(),
    ])
    .user_error();
    assert!(stderr.contains("has no output `probs`"), "{stderr}");
    let stderr = kiln(&[
        "run".as_ref(),
        kir.as_os_str(),
        "--input-dir".as_ref(),
        dir.join("nothing_here").as_os_str(),
    ])
    .user_error();
    assert!(stderr.contains("is not a directory"), "{stderr}");
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples")
}

/// `kiln export` writes a model that imports back (`kiln check` on it), with `--input` values as initializers.
#[test]
fn export_writes_an_onnx_model_that_imports_back() {
    let dir = scratch("export");
    let model = dir.join("twolayer.onnx");
    let kir = examples_dir().join("twolayer.kir");
    let stdout = kiln(&[
        "export".as_ref(),
        kir.as_os_str(),
        "-o".as_ref(),
        model.as_os_str(),
    ])
    .ok();
    assert!(
        stdout.starts_with(&format!("wrote {}: ", model.display())) && stdout.contains("opset 18"),
        "{stdout}"
    );
    let checked = kiln(&["check".as_ref(), model.as_os_str()]).ok();
    assert!(checked.starts_with("ok: graph twolayer"), "{checked}");

    // A parameter's value becomes an initializer: the imported graph has one input fewer.
    let graph = kiln::ir::text::parse(&std::fs::read_to_string(&kir).unwrap()).unwrap();
    let param = graph
        .inputs()
        .find(|i| i.role == kiln::Role::Param)
        .expect("twolayer has params");
    let npy = dir.join("param.npy");
    let dims: Vec<u64> = param.ty.dims().iter().map(|&d| d as u64).collect();
    super::cli::write_npy(&npy, &dims, &vec![0.0f32; param.ty.numel()]);
    let with_value = dir.join("with_value.onnx");
    let arg = format!("{}={}", param.name, npy.display());
    kiln(&[
        "export".as_ref(),
        kir.as_os_str(),
        "-o".as_ref(),
        with_value.as_os_str(),
        "--input".as_ref(),
        arg.as_ref(),
    ])
    .ok();
    let imported =
        kiln::onnx::import(&std::fs::read(&with_value).unwrap(), &Default::default()).unwrap();
    assert_eq!(imported.inputs().count() + 1, graph.inputs().count());
    assert!(imported.input(param.name).is_none());

    let stderr = kiln(&[
        "export".as_ref(),
        kir.as_os_str(),
        "--input".as_ref(),
        "nope=x.npy".as_ref(),
    ])
    .user_error();
    assert!(stderr.contains("nope"), "{stderr}");
}

/// `kiln train --onnx` writes the trained inference graph, which imports with no inputs but `x`.
#[test]
fn train_with_onnx_writes_the_inference_graph_with_its_weights() {
    let dir = scratch("train_onnx");
    let model = dir.join("model.onnx");
    let run = dir.join("run");
    let stdout = kiln(&[
        "train".as_ref(),
        "--dataset".as_ref(),
        "xor".as_ref(),
        "--model".as_ref(),
        "twolayer".as_ref(),
        "--epochs".as_ref(),
        "2".as_ref(),
        "--batch-size".as_ref(),
        "8".as_ref(),
        "--out".as_ref(),
        run.as_os_str(),
        "--onnx".as_ref(),
        model.as_os_str(),
    ])
    .ok();
    assert!(
        stdout.contains(&format!("wrote {}: ", model.display())),
        "{stdout}"
    );
    let graph = kiln::onnx::import(&std::fs::read(&model).unwrap(), &Default::default()).unwrap();
    let inputs: Vec<String> = graph
        .inputs()
        .map(|i| format!("{} {}", i.name, i.ty))
        .collect();
    assert_eq!(inputs, ["x f32[8,2]"]);
    assert_eq!(graph.outputs()[0].name, "out");
}
