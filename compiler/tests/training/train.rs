//! Training end to end: the `kiln::nn` trainer on the shipped and synthetic data sets, checkpoints that load back to
//! the same predictions, and `kiln train` / `kiln predict` with their error cases.
//!
//! Configurations are cut down (fewer epochs) so the whole file runs in seconds in the test profile; the thresholds
//! are what those configurations reach with margin, not what the defaults reach (README has those numbers).

use crate::support::kiln_cli::kiln;
use crate::support::vulkan;
use kiln::data;
use kiln::ir::{Builder, TensorType};
use kiln::nn::{
    self, BackendKind, Checkpoint, Interpreter, Linear, Loss, ModelKind, ModelSpec, Module, ReLU,
    Sequential, TrainConfig, Trainer, TwoLayerNet,
};
use kiln::{Adam, Optimizer};
use std::path::{Path, PathBuf};

fn adam(lr: f64) -> Optimizer {
    Optimizer::Adam(Adam {
        lr,
        ..Default::default()
    })
}

/// A fresh directory for one test.
pub(super) fn workdir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("train")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn digits_mlp_reaches_90_percent_and_its_checkpoint_predicts_the_same() {
    let data = data::load("digits").unwrap();
    let spec = ModelSpec::new(ModelKind::Mlp, 64, None, 10, None, Loss::CrossEntropy).unwrap();
    let model = spec.build();
    let config = TrainConfig {
        epochs: 4,
        ..TrainConfig::new(adam(3e-3))
    };
    let mut trainer = Trainer::new(&*model, &data, config, &Interpreter).unwrap();
    let history = trainer.fit(|_| {}).unwrap();
    assert_eq!(history.len(), 4);
    let last = history.last().unwrap();
    assert!(last.test_acc >= 0.90, "test accuracy {}", last.test_acc);
    assert!(history[3].train_loss < history[0].train_loss);
    let in_memory = trainer.evaluate(&data.test).unwrap();
    assert_eq!(in_memory.accuracy, last.test_acc);

    let path = workdir("digits").join(nn::CHECKPOINT_FILE);
    let checkpoint = Checkpoint {
        spec: spec.clone(),
        dataset: "digits".into(),
        params: trainer.parameters().unwrap(),
    };
    nn::save_checkpoint(&path, &checkpoint).unwrap();
    let loaded = nn::load_checkpoint(&path).unwrap();
    assert_eq!(loaded, checkpoint, "the safetensors round trip is exact");
    let rebuilt = loaded.spec.build();
    let reloaded = nn::evaluate(
        &*rebuilt,
        loaded.spec.loss,
        &loaded.params,
        &data.test,
        &Interpreter,
    )
    .unwrap();
    assert_eq!(reloaded, in_memory, "same predictions, loss and accuracy");
}

#[test]
fn xor_with_two_layer_net_reaches_100_percent() {
    let data = data::load("xor").unwrap();
    let model = TwoLayerNet::new(2, 20, 2);
    let config = TrainConfig {
        epochs: 10,
        batch_size: 16,
        ..TrainConfig::new(adam(1e-2))
    };
    let mut trainer = Trainer::new(&model, &data, config, &Interpreter).unwrap();
    let history = trainer.fit(|_| {}).unwrap();
    assert_eq!(history.last().unwrap().test_acc, 1.0, "{history:#?}");
}

#[test]
fn xor_regression_with_one_output_and_mse_as_in_the_course() {
    // TwoLayerNet(2, 20, 1) with an MSE loss against the 0/1 label; predicts `out > 0.5`.
    let data = data::load("xor").unwrap();
    let model = TwoLayerNet::new(2, 20, 1);
    let config = TrainConfig {
        epochs: 20,
        batch_size: 16,
        loss: Loss::Mse,
        ..TrainConfig::new(adam(1e-2))
    };
    let mut trainer = Trainer::new(&model, &data, config, &Interpreter).unwrap();
    let history = trainer.fit(|_| {}).unwrap();
    assert_eq!(history.last().unwrap().test_acc, 1.0, "{history:#?}");
}

#[test]
fn moons_with_the_mlp_reaches_95_percent() {
    let data = data::load("moons").unwrap();
    let spec = ModelSpec::new(ModelKind::Mlp, 2, None, 2, None, Loss::CrossEntropy).unwrap();
    let model = spec.build();
    let config = TrainConfig {
        epochs: 10,
        ..TrainConfig::new(adam(1e-2))
    };
    let mut trainer = Trainer::new(&*model, &data, config, &Interpreter).unwrap();
    let history = trainer.fit(|_| {}).unwrap();
    let acc = history.last().unwrap().test_acc;
    assert!(acc >= 0.95, "test accuracy {acc}");
}

/// The CPU backend (compiled kernels, resident `Session`) trains like the interpreter: per-epoch metrics agree within
/// f32 round-off (rtol 1e-3 on losses after 3 epochs of Adam; accuracies within one test image).
#[test]
fn cpu_backend_trains_like_the_interpreter() {
    let cpu = BackendKind::Cpu.create().unwrap();
    assert_trains_like_the_interpreter(&*cpu);
}

/// The Vulkan backend (SPIR-V shaders; parameters and optimizer state resident on the device in a `VulkanSession`)
/// trains like the interpreter, on the same terms as the CPU backend (about 0.5 s on lavapipe). Without a Vulkan
/// device it prints why and returns, unless `KILN_REQUIRE_VULKAN=1`.
#[test]
fn vulkan_backend_trains_like_the_interpreter() {
    let Some(vulkan) = vulkan::or_skip(BackendKind::Vulkan.create()) else {
        return;
    };
    assert_trains_like_the_interpreter(&*vulkan);
}

/// Trains the MLP 64-128-10 with Adam on the digits for 3 epochs on `backend` and on the interpreter: losses agree
/// within rtol 1e-3 and test accuracies within one image, every epoch.
fn assert_trains_like_the_interpreter(backend: &dyn nn::Backend) {
    let epochs = 3;
    let data = data::load("digits").unwrap();
    let spec = ModelSpec::new(ModelKind::Mlp, 64, None, 10, None, Loss::CrossEntropy).unwrap();
    let model = spec.build();
    let run = |backend: &dyn nn::Backend| {
        let config = TrainConfig {
            epochs,
            ..TrainConfig::new(adam(3e-3))
        };
        let mut trainer = Trainer::new(&*model, &data, config, backend).unwrap();
        trainer.fit(|_| {}).unwrap()
    };
    let name = backend.name();
    let (interp, other) = (run(&Interpreter), run(backend));
    assert_eq!(other.len(), epochs);
    for (a, b) in interp.iter().zip(&other) {
        for (what, x, y) in [
            ("train_loss", a.train_loss, b.train_loss),
            ("test_loss", a.test_loss, b.test_loss),
        ] {
            assert!(
                (x - y).abs() <= 1e-3 * x.abs(),
                "epoch {}: {what} {x} (interp) vs {y} ({name})",
                a.epoch
            );
        }
        assert!(
            (a.test_acc - b.test_acc).abs() <= 1.0 / 360.0 + 1e-12,
            "epoch {}: accuracy {} (interp) vs {} ({name})",
            a.epoch,
            a.test_acc,
            b.test_acc
        );
    }
}

#[test]
fn training_is_deterministic_per_seed() {
    let data = data::load("moons").unwrap();
    let model = TwoLayerNet::new(2, 8, 2);
    let run = |seed| {
        let config = TrainConfig {
            epochs: 2,
            seed,
            ..TrainConfig::new(adam(1e-2))
        };
        let mut trainer = Trainer::new(&model, &data, config, &Interpreter).unwrap();
        trainer.fit(|_| {}).unwrap();
        trainer.parameters().unwrap()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn fit_reports_every_batch_and_epoch() {
    let data = data::load("xor").unwrap();
    let model = TwoLayerNet::new(2, 4, 2);
    let config = TrainConfig {
        epochs: 2,
        batch_size: 64,
        ..TrainConfig::new(adam(1e-2))
    };
    let mut trainer = Trainer::new(&model, &data, config, &Interpreter).unwrap();
    let (mut batches, mut epochs) = (0, 0);
    trainer
        .fit(|event| match event {
            nn::Event::Batch {
                batches: per_epoch, ..
            } => {
                // 400 rows in batches of 64: 6 full batches, the last 16 rows dropped.
                assert_eq!(per_epoch, 6);
                batches += 1;
            }
            nn::Event::Epoch(_) => epochs += 1,
        })
        .unwrap();
    assert_eq!((batches, epochs), (12, 2));
}

#[test]
fn linear_init_is_pytorch_uniform_and_seeded() {
    let model = Sequential::new()
        .append(Linear::new("l0", 16, 8))
        .append(ReLU)
        .append(Linear::new("l1", 8, 3));
    let names: Vec<String> = model.parameters().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["l0.weight", "l0.bias", "l1.weight", "l1.bias"]);
    let params = nn::init_parameters(&model, 0).unwrap();
    for ((name, tensor), fan_in) in params.iter().zip([16.0f32, 16.0, 8.0, 8.0]) {
        let bound = 1.0 / fan_in.sqrt();
        let values = tensor.as_f32().unwrap();
        assert!(values.iter().all(|v| v.abs() <= bound), "{name}");
        // Spread over the interval, not collapsed to a point.
        let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.5 * bound, "{name}");
    }
    assert_eq!(params, nn::init_parameters(&model, 0).unwrap());
    assert_ne!(params, nn::init_parameters(&model, 1).unwrap());
}

#[test]
fn activation_modules_keep_the_shape_and_softmax_rows_sum_to_one() {
    let layers: Vec<Box<dyn Module>> = vec![
        Box::new(nn::ReLU),
        Box::new(nn::LeakyReLU(0.1)),
        Box::new(nn::Softplus),
        Box::new(nn::Heaviside),
        Box::new(nn::Sigmoid),
        Box::new(nn::Tanh),
        Box::new(nn::Softmax::default()),
    ];
    for layer in &layers {
        let mut b = Builder::new("act");
        let x = b.data("x", TensorType::f32(&[2, 3])).unwrap();
        let y = layer.forward(&mut b, x).unwrap();
        assert_eq!(b.ty(y), &TensorType::f32(&[2, 3]));
        assert!(layer.parameters().is_empty());
    }
    let mut b = Builder::new("softmax");
    let x = b.data("x", TensorType::f32(&[2, 3])).unwrap();
    let y = nn::Softmax::default().forward(&mut b, x).unwrap();
    b.output("y", y).unwrap();
    let x = kiln::Tensor::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.0, 5.0]).unwrap();
    let y = kiln::ir::interp::run(&b.finish(), &[x]).unwrap();
    for row in y[0].as_f32().unwrap().chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}

#[test]
fn mismatched_model_and_data_are_config_errors() {
    let data = data::load("digits").unwrap();
    let wrong_width = TwoLayerNet::new(64, 8, 3);
    let config = TrainConfig::new(adam(1e-3));
    let err = Trainer::new(&wrong_width, &data, config, &Interpreter)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("3 output(s) but the data has 10 classes"),
        "{err}"
    );
    let too_big = TrainConfig {
        batch_size: 2000,
        ..config
    };
    let model = TwoLayerNet::new(64, 8, 10);
    let err = Trainer::new(&model, &data, too_big, &Interpreter)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "batch size 2000 does not fit the 1437 training rows of digits"
    );
}

// ---- the `kiln` binary ----

/// Asserts a user error (exit 1, one `error: ...` message, no panic) and returns stderr.
fn user_error(args: &[&str]) -> String {
    let o = kiln(args);
    assert_eq!(
        o.code, 1,
        "{args:?}: expected exit 1\nstdout:\n{}\nstderr:\n{}",
        o.stdout, o.stderr
    );
    assert!(o.stderr.starts_with("error"), "{args:?}: {}", o.stderr);
    o.stderr
}

#[test]
fn kiln_train_writes_a_checkpoint_metrics_and_plot_that_predict_reads() {
    let dir = workdir("cli_train");
    let out = dir.join("run");
    let o = kiln(&["train", "--epochs", "3", "--out", out.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout
            .starts_with("training mlp 64-128-10 relu on digits"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("epoch  train_loss  test_loss  test_acc  seconds"),
        "{}",
        o.stdout
    );
    // The progress bar is hidden when stderr is not a terminal.
    assert_eq!(o.stderr, "");

    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], nn::report::CSV_HEADER);
    assert_eq!(lines.len(), 4, "{csv}");
    let last: Vec<&str> = lines[3].split(',').collect();
    let test_acc: f64 = last[4].parse().unwrap();
    assert!(test_acc >= 0.9, "{csv}");
    let svg = std::fs::read_to_string(out.join("metrics.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("test accuracy"));

    let o = kiln(&["predict", "--checkpoint", out.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let expected = format!("test_acc   {:.2}%", 100.0 * test_acc);
    assert!(
        o.stdout.contains(&expected),
        "{} vs\n{}",
        expected,
        o.stdout
    );
}

#[test]
fn kiln_train_on_the_2d_sets() {
    let dir = workdir("cli_2d");
    for (dataset, model, reached) in [("xor", "twolayer", "100.00%"), ("spirals", "logreg", "")] {
        let out = dir.join(dataset);
        let args = [
            "train",
            "--dataset",
            dataset,
            "--model",
            model,
            "--epochs",
            "5",
            "--out",
            out.to_str().unwrap(),
        ];
        let o = kiln(&args);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(
            o.stdout.contains(&format!("test accuracy {reached}")),
            "{}",
            o.stdout
        );
    }
}

#[test]
fn kiln_train_and_predict_errors() {
    let dir = workdir("cli_errors");
    let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["train".into(), "--model".into(), "resnet".into()],
            "invalid value 'resnet'",
        ),
        (
            vec!["train".into(), "--dataset".into(), "mnist".into()],
            "invalid value 'mnist'",
        ),
        (
            vec!["train".into(), "--lr".into(), "-1".into()],
            "--lr must be a positive finite number",
        ),
        (
            vec!["train".into(), "--lr".into(), "nan".into()],
            "--lr must be a positive finite number",
        ),
        (
            vec!["train".into(), "--epochs".into(), "0".into()],
            "--epochs must be at least 1",
        ),
        (
            vec!["train".into(), "--batch-size".into(), "0".into()],
            "--batch-size must be at least 1",
        ),
        (
            vec!["train".into(), "--batch-size".into(), "5000".into()],
            "does not fit the 1437 training rows",
        ),
        (
            vec![
                "train".into(),
                "--model".into(),
                "logreg".into(),
                "--hidden".into(),
                "8".into(),
            ],
            "logreg has no hidden",
        ),
        (
            vec![
                "train".into(),
                "--model".into(),
                "twolayer".into(),
                "--activation".into(),
                "tanh".into(),
            ],
            "TwoLayerNet",
        ),
        (
            vec!["train".into(), "--momentum".into(), "0.9".into()],
            "--momentum applies to --optimizer sgd",
        ),
        (
            vec!["predict".into(), "--checkpoint".into(), d("missing")],
            "cannot read",
        ),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = user_error(&args);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    // Corrupt, truncated and foreign files, and a checkpoint for other data.
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, "not a checkpoint").unwrap();
    let stderr = user_error(&["predict", "--checkpoint", garbage.to_str().unwrap()]);
    assert!(stderr.contains("not a valid safetensors file"), "{stderr}");

    let good = dir.join("good");
    assert_eq!(
        kiln(&[
            "train",
            "--dataset",
            "xor",
            "--epochs",
            "1",
            "--out",
            good.to_str().unwrap()
        ])
        .code,
        0
    );
    let bytes = std::fs::read(good.join(nn::CHECKPOINT_FILE)).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let stderr = user_error(&["predict", "--checkpoint", truncated.to_str().unwrap()]);
    assert!(stderr.contains("not a valid safetensors file"), "{stderr}");

    let foreign = dir.join("foreign.safetensors");
    let w = [0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &w).unwrap();
    std::fs::write(
        &foreign,
        safetensors::serialize([("w", view)], None).unwrap(),
    )
    .unwrap();
    let stderr = user_error(&["predict", "--checkpoint", foreign.to_str().unwrap()]);
    assert!(
        stderr.contains("no `format` entry in the metadata"),
        "{stderr}"
    );

    let stderr = user_error(&[
        "predict",
        "--checkpoint",
        good.to_str().unwrap(),
        "--dataset",
        "digits",
    ]);
    assert!(
        stderr.contains("takes 2 features, but digits has 64"),
        "{stderr}"
    );
    let stderr = user_error(&[
        "predict",
        "--checkpoint",
        good.to_str().unwrap(),
        "--dataset",
        "spirals",
    ]);
    assert!(
        stderr.contains("2 output(s) but the data has 3 classes"),
        "{stderr}"
    );
}

/// `kiln train --backend vulkan` and `kiln predict --backend vulkan` on a small configuration: the checkpoint
/// predicts the same on Vulkan as on the interpreter. Without a device both are user errors naming Vulkan (a failure
/// under `KILN_REQUIRE_VULKAN=1`).
#[test]
fn kiln_train_and_predict_on_vulkan() {
    let dir = workdir("cli_vulkan");
    let out = dir.join("run");
    let out = out.to_str().unwrap();
    let args = [
        "train",
        "--backend",
        "vulkan",
        "--dataset",
        "xor",
        "--model",
        "twolayer",
        "--epochs",
        "3",
        "--out",
        out,
    ];
    let o = kiln(&args);
    if o.code != 0 && vulkan::required() {
        panic!(
            "KILN_REQUIRE_VULKAN=1 but kiln train --backend vulkan failed:\n{}",
            o.stderr
        );
    }
    if o.code != 0 {
        let stderr = user_error(&args);
        assert!(stderr.contains("Vulkan"), "{stderr}");
        eprintln!("skipped: no Vulkan device ({})", stderr.trim_end());
        return;
    }
    assert!(o.stdout.contains("vulkan backend"), "{}", o.stdout);
    let predict = |backend: &str| {
        let o = kiln(&["predict", "--checkpoint", out, "--backend", backend]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        o.stdout
            .lines()
            .find(|l| l.starts_with("test_acc"))
            .unwrap()
            .to_string()
    };
    assert_eq!(predict("vulkan"), predict("interp"));
}
