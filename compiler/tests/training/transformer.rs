//! `kiln train --model transformer` and `kiln generate`: the main job's sort target (≥ 98 % of held-out sequences
//! sorted exactly by greedy decoding, on the CPU backend), the reverse task, a text model, the checkpoint round trip,
//! and clear errors for bad flags and files.

use super::train::workdir;
use crate::support::kiln_cli::kiln;
use kiln::ir::{Builder, DType, TensorType};
use kiln::nn::{Gpt, GptConfig, Module};

/// The percentage on the final summary line (`99.90% of 1000 held-out sequences sorted exactly ...`).
fn final_percent(stdout: &str, starts: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.contains(starts))
        .unwrap_or_else(|| panic!("no `{starts}` line in\n{stdout}"));
    line.split('%').next().unwrap().trim().parse().unwrap()
}

/// The main job with its defaults: 6 digits, width 64, 4 heads, 2 blocks, 2,500 AdamW steps of 32 sequences.
/// Measured 99.9 % after 1,500 steps (21 s, release build); the debug build runs the same JIT-compiled kernels.
#[test]
fn kiln_train_transformer_sorts_held_out_sequences() {
    let out = workdir("transformer_sort").join("run");
    let out = out.to_str().unwrap();
    let stdout = kiln(&[
        "train",
        "--model",
        "transformer",
        "--dataset",
        "sort",
        "--out",
        out,
    ])
    .ok();
    assert!(
        stdout.starts_with("training transformer (width 64, 4 heads, 2 blocks, context 12"),
        "{stdout}"
    );
    let sorted = final_percent(&stdout, "held-out sequences sorted exactly");
    assert!(sorted >= 98.0, "{stdout}");
    let csv = std::fs::read_to_string(format!("{out}/metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 11, "{csv}");
    // The checkpoint alone rebuilds the model: a greedy answer for a prompt.
    let answer = kiln(&["generate", "--checkpoint", out, "--prompt", "9 3 7 1 1 0"]).ok();
    assert_eq!(answer.trim(), "0 1 1 3 7 9");
}

#[test]
fn a_small_transformer_learns_to_reverse() {
    let out = workdir("transformer_reverse").join("run");
    let out = out.to_str().unwrap();
    let args = [
        "train",
        "--model",
        "transformer",
        "--dataset",
        "reverse",
        "--digits",
        "4",
        "--width",
        "32",
        "--heads",
        "2",
        "--steps",
        "400",
        "--out",
        out,
    ];
    let stdout = kiln(&args).ok();
    let reversed = final_percent(&stdout, "held-out sequences reversed exactly");
    assert!(reversed >= 90.0, "{stdout}");
    let answer = kiln(&["generate", "--checkpoint", out, "--prompt", "2,0,2,6"]).ok();
    assert_eq!(answer.trim(), "6 2 0 2");
    let e = kiln(&["generate", "--checkpoint", out, "--prompt", "123"]).user_error();
    assert!(
        e.contains("--prompt has 3 digits; the model reads exactly 4"),
        "{e}"
    );
}

#[test]
fn a_text_model_trains_and_samples() {
    let dir = workdir("transformer_text");
    let text = dir.join("tiny.txt");
    let line = "the quick brown fox jumps over the lazy dog. ";
    std::fs::write(&text, line.repeat(40)).unwrap();
    let out = dir.join("run");
    let (text, out) = (text.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "train",
        "--model",
        "transformer",
        "--text",
        text,
        "--context",
        "16",
        "--width",
        "32",
        "--heads",
        "2",
        "--blocks",
        "1",
        "--steps",
        "150",
        "--out",
        out,
    ];
    let stdout = kiln(&args).ok();
    assert!(stdout.contains("validation loss"), "{stdout}");
    let sample = kiln(&[
        "generate",
        "--checkpoint",
        out,
        "--prompt",
        "the quick",
        "--tokens",
        "30",
        "--seed",
        "3",
    ])
    .ok();
    assert!(
        sample.starts_with("the quick") && sample.trim_end().chars().count() == 39,
        "{sample}"
    );
    let e = kiln(&["generate", "--checkpoint", out, "--prompt", "QUICK"]).user_error();
    assert!(e.contains("'Q' is not in the model's vocabulary"), "{e}");
}

#[test]
fn bad_transformer_inputs_are_clear_errors() {
    let dir = workdir("transformer_errors");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--model", "transformer", "--steps", "1"];
        args.extend_from_slice(extra);
        kiln(&args).user_error()
    };
    let empty = write("empty.txt", b"");
    assert!(train(&["--text", &empty]).contains("the text is empty"));
    let short = write("short.txt", b"abcdef");
    let e = train(&["--text", &short, "--context", "8"]);
    assert!(e.contains("fewer than one context of 8"), "{e}");
    let bad = write("latin1.txt", b"caf\xe9 au lait");
    let e = train(&["--text", &bad]);
    assert!(e.contains("not UTF-8") && e.contains("offset 3"), "{e}");
    let e = train(&["--dataset", "sort", "--heads", "3"]);
    assert!(
        e.contains("--heads 3 does not divide the model width --width 64"),
        "{e}"
    );
    let e = train(&["--dataset", "digits"]);
    assert!(e.contains("sort or reverse"), "{e}");
    let e = kiln(&["train", "--model", "mlp", "--dataset", "sort"]).user_error();
    assert!(e.contains("--model transformer"), "{e}");
}

/// A sequence longer than the position table, or tokens that are not i32 [batch, sequence], is an error naming the
/// flag, not a panic.
#[test]
fn gpt_refuses_sequences_longer_than_its_context() {
    let gpt = Gpt::new(GptConfig::new(7, 4, 8, 2, 1));
    let mut b = Builder::new("too_long");
    let tokens = b
        .data("tokens", TensorType::new(DType::I32, [2, 5]))
        .unwrap();
    let e = gpt.forward(&mut b, tokens).unwrap_err().to_string();
    assert!(
        e.contains("5 tokens is longer than the position table's 4 rows (--context)"),
        "{e}"
    );
    let floats = b.data("x", TensorType::new(DType::F32, [2, 3])).unwrap();
    let e = gpt.forward(&mut b, floats).unwrap_err().to_string();
    assert!(e.contains("tokens must be i32 [batch, sequence]"), "{e}");
}

/// `training_step_clipped`: the gradient `(3, 4, 0)` (norm 5) is scaled by `max_norm / (5 + 1e-6)` under a clip of 0.5
/// and left alone under a clip of 100 (PyTorch's `clip_grad_norm_`, then plain SGD with lr 1).
#[test]
fn gradients_are_clipped_by_their_global_norm() {
    use kiln::ir::{interp, Tensor};
    let mut b = Builder::new("clip");
    let w = b.param("w", TensorType::new(DType::F64, [3])).unwrap();
    let c = b
        .literal(TensorType::new(DType::F64, [3]), vec![3.0, 4.0, 0.0])
        .unwrap();
    let wc = b.mul(w, c).unwrap();
    let loss = b.sum_all(wc).unwrap();
    b.output("loss", loss).unwrap();
    let model = b.finish();
    let sgd = kiln::Optimizer::Sgd(kiln::Sgd {
        lr: 1.0,
        ..Default::default()
    });
    let w0 = Tensor::from_f64(&[3], vec![1.0, 2.0, 3.0]).unwrap();
    for (clip, scale) in [(0.5, 0.5 / (5.0 + 1e-6)), (100.0, 1.0)] {
        let step = kiln::training_step_clipped(&model, "loss", &["w"], &sgd, Some(clip)).unwrap();
        let out = interp::run(&step, std::slice::from_ref(&w0)).unwrap();
        let new_w = out[1].as_f64().unwrap();
        let want = [1.0 - 3.0 * scale, 2.0 - 4.0 * scale, 3.0];
        for (a, b) in new_w.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "clip {clip}: {new_w:?} vs {want:?}");
        }
    }
    let e = kiln::training_step_clipped(&model, "loss", &["w"], &sgd, Some(0.0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gradient-norm clip of 0 is not a positive number"),
        "{e}"
    );
}
