//! Every golden reference case (`tests/data/golden/`, an outside float64 autodiff system) run from the command line:
//! the case's model printed as `.kir`, every input given with `--input NAME=FILE.npy`, then `kiln run --stage grad`
//! and `kiln run --stage train --steps N` with the case's optimizer flags. Tolerances as in the golden README (f32):
//! losses rtol 1e-5; gradients and parameters atol 1e-6 + rtol 1e-4.

use kiln::ir::{text, DType};
use kiln::nn::{Activation, Loss};
use kiln::zoo;
use npyz::WriterBuilder;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/golden")
}

fn workdir(case: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("golden_cli")
        .join(case);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a golden tensor (`{"dtype", "shape", "data"}`) as an f32 or i32 `.npy` file.
fn write_tensor(path: &Path, json: &Json) {
    let shape: Vec<u64> = json["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap())
        .collect();
    let data = json["data"].as_array().unwrap();
    let mut bytes = Vec::new();
    if json["dtype"] == "i32" {
        let options = npyz::WriteOptions::<i32>::new()
            .default_dtype()
            .shape(&shape);
        let mut w = options.writer(&mut bytes).begin_nd().unwrap();
        w.extend(data.iter().map(|v| v.as_i64().unwrap() as i32))
            .unwrap();
        w.finish().unwrap();
    } else {
        let options = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape);
        let mut w = options.writer(&mut bytes).begin_nd().unwrap();
        w.extend(data.iter().map(|v| v.as_f64().unwrap() as f32))
            .unwrap();
        w.finish().unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

fn read_f64s(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = npyz::NpyFile::new(&bytes[..]).unwrap();
    match file.dtype() {
        npyz::DType::Plain(t) if t.size_field() == 8 => file.into_vec::<f64>().unwrap(),
        _ => file
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
    }
}

fn assert_close(what: &str, got: &[f64], expected: &Json, atol: f64) {
    let expected: Vec<f64> = expected["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(&expected).enumerate() {
        let allowed = atol + 1e-4 * b.abs();
        assert!(
            (a - b).abs() <= allowed,
            "{what}[{i}]: got {a:e}, expected {b:e}"
        );
    }
}

fn kiln(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The optimizer flags of a case's `trajectory.optimizer`.
fn optimizer_flags(opt: &Json) -> Vec<String> {
    let mut flags = vec![
        "--optimizer".to_string(),
        opt["name"].as_str().unwrap().to_string(),
    ];
    for (key, flag) in [
        ("lr", "--lr"),
        ("momentum", "--momentum"),
        ("weight_decay", "--weight-decay"),
        ("beta1", "--beta1"),
        ("beta2", "--beta2"),
        ("eps", "--eps"),
    ] {
        if let Some(v) = opt.get(key).and_then(Json::as_f64) {
            flags.extend([flag.to_string(), v.to_string()]);
        }
    }
    if opt.get("nesterov").and_then(Json::as_bool) == Some(true) {
        flags.push("--nesterov".into());
    }
    flags
}

#[test]
fn every_golden_case_runs_from_the_command_line() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "found {} golden cases", files.len());
    for file in files {
        let case: Json = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let name = case["name"].as_str().unwrap();
        let dir = workdir(name);
        let model = &case["model"];
        let layers: Vec<usize> = model["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let activation = Activation::from_name(model["activation"].as_str().unwrap()).unwrap();
        let loss = Loss::from_name(model["loss"].as_str().unwrap()).unwrap();
        let batch = case["inputs"]["x"]["shape"][0].as_u64().unwrap() as usize;
        let graph = zoo::mlp(name, &layers, batch, activation, loss, DType::F32).unwrap();
        let kir = dir.join(format!("{name}.kir"));
        std::fs::write(&kir, text::print(&graph)).unwrap();

        check_from_cli(name, &dir, &kir, &case, 1e-6, &[]);
    }
}

/// The golden GPT cases (`tests/data/golden/nets/gpt_*.json`) from the command line: the `kiln::nn::Gpt` graph with
/// its token cross-entropy printed as `.kir`, tokens, targets and params given as `.npy` files, then `kiln run
/// --stage grad` and `--stage train` with the case's Adam/AdamW flags. Tolerances as in that folder's README (f32);
/// `model.zero_grad_params` are left out of `params_after` (their gradient is round-off, which Adam magnifies).
#[test]
fn every_golden_gpt_case_runs_from_the_command_line() {
    use kiln::ir::{Builder, GeluApprox, TensorType};
    use kiln::nn::{Gpt, GptConfig, Module};
    let nets = golden_dir().join("nets");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&nets)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("gpt_") && name.ends_with(".json")
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "the golden GPT cases");
    for file in files {
        let case: Json = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let name = case["name"].as_str().unwrap();
        let dir = workdir(name);
        let m = &case["model"];
        let size = |key: &str| m[key].as_u64().unwrap() as usize;
        let config = GptConfig {
            vocab: size("vocab_size"),
            block_size: size("block_size"),
            d_model: size("d_model"),
            heads: size("n_heads"),
            blocks: size("n_blocks"),
            mlp_hidden: size("mlp_hidden"),
            gelu: if m["gelu"] == "tanh" {
                GeluApprox::Tanh
            } else {
                GeluApprox::None
            },
            ln_eps: m["ln_eps"].as_f64().unwrap(),
        };
        let (batch, t) = (size("batch"), size("seq_len"));
        let mut b = Builder::new(name);
        let tokens = b
            .data("tokens", TensorType::new(DType::I32, [batch, t]))
            .unwrap();
        let targets = b
            .data("targets", TensorType::new(DType::I32, [batch, t]))
            .unwrap();
        let logits = Gpt::new(config).forward(&mut b, tokens).unwrap();
        let loss = b.token_cross_entropy(logits, targets).unwrap();
        b.output("loss", loss).unwrap();
        let kir = dir.join(format!("{name}.kir"));
        std::fs::write(&kir, text::print(&b.finish())).unwrap();

        let skipped: Vec<&str> = m["zero_grad_params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // README: params_after within 1e-5 + 1e-4·|b|.
        check_from_cli(name, &dir, &kir, &case, 1e-5, &skipped);
    }
}

/// Runs the case's `.kir` (`kir`) from the command line with its inputs and params as `.npy` files: `--stage grad`
/// (loss rtol 1e-5; gradients 1e-6 + 1e-4·|b|) and `--stage train` with the case's optimizer flags (losses rtol
/// 1e-5; `params_after` within `after_atol` + 1e-4·|b|, but for the params in `skipped`).
fn check_from_cli(
    name: &str,
    dir: &Path,
    kir: &Path,
    case: &Json,
    after_atol: f64,
    skipped: &[&str],
) {
    let mut args = vec!["run".to_string(), kir.to_str().unwrap().to_string()];
    let tensors = case["inputs"]
        .as_object()
        .unwrap()
        .iter()
        .chain(case["params"].as_object().unwrap());
    for (input, tensor) in tensors {
        let path = dir.join(format!("in.{input}.npy"));
        write_tensor(&path, tensor);
        args.extend(["--input".to_string(), format!("{input}={}", path.display())]);
    }
    let grad_out = dir.join("grad");
    let mut grad_args = args.clone();
    grad_args.extend(["--stage", "grad", "--out", grad_out.to_str().unwrap()].map(String::from));
    kiln(&grad_args);
    let loss_value = read_f64s(&grad_out.join("loss.npy"))[0];
    let expected_loss = case["expected"]["loss"].as_f64().unwrap();
    assert!(
        (loss_value - expected_loss).abs() <= 1e-5 * expected_loss.abs(),
        "{name}: loss {loss_value}, expected {expected_loss}"
    );
    for (param, expected) in case["expected"]["grads"].as_object().unwrap() {
        let got = read_f64s(&grad_out.join(format!("grad.{param}.npy")));
        assert_close(&format!("{name} grad.{param}"), &got, expected, 1e-6);
    }
    let trajectory = &case["trajectory"];
    let steps = trajectory["steps"].as_u64().unwrap();
    let train_out = dir.join("train");
    let mut train_args = args;
    train_args.extend(
        [
            "--stage",
            "train",
            "--steps",
            &steps.to_string(),
            "--out",
            train_out.to_str().unwrap(),
        ]
        .map(String::from),
    );
    train_args.extend(optimizer_flags(&trajectory["optimizer"]));
    kiln(&train_args);
    let losses = read_f64s(&train_out.join("losses.npy"));
    let expected = trajectory["losses_before_each_step"].as_array().unwrap();
    assert_eq!(losses.len(), expected.len(), "{name}: number of losses");
    for (k, (a, b)) in losses.iter().zip(expected).enumerate() {
        let b = b.as_f64().unwrap();
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "{name} step {k}: loss {a}, expected {b}"
        );
    }
    for (param, expected) in trajectory["params_after"].as_object().unwrap() {
        if skipped.contains(&param.as_str()) {
            continue;
        }
        let got = read_f64s(&train_out.join(format!("{param}.npy")));
        assert_close(
            &format!("{name} {param} after {steps} steps"),
            &got,
            expected,
            after_atol,
        );
    }
}
