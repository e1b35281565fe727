//! The bad-input table: sizes, counts and optimizer settings that once panicked, aborted on an allocation or were
//! silently accepted, each of which must now be a user error. Every row asserts exit code 1, an `error: ...` message
//! that names the file, node or flag at fault, and no panic.

use kiln::nn::{self, Loss, ModelKind, ModelSpec};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::kiln_cli::LINREG;

/// A 4 TB input: within the IR's 2^40 elements, far beyond any machine.
const HUGE: &str = "\
graph huge {
  %big = input{role=data} : f32[1000000000000]
  %y = exp %big : f32[1000000000000]
  output y = %y
}
";

/// 4 MB of broadcast output from a 4 kB input: small per tensor, too big for `KILN_MEMORY_LIMIT=1000000`.
const WIDE: &str = "\
graph wide {
  %row = input{role=data} : f32[1,1000]
  %b = broadcast{shape=[1000,1000]} %row : f32[1000,1000]
  %y = exp %b : f32[1000,1000]
  output y = %y
}
";

struct Case {
    args: Vec<String>,
    /// An environment variable to set for the run.
    env: Option<(&'static str, &'static str)>,
    /// What the message must name: the file, node or flag at fault.
    names: String,
}

fn workdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad_inputs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A checkpoint whose metadata names the data set `mnist`, which kiln does not have.
fn checkpoint_for_unknown_data(path: &Path) {
    let spec = ModelSpec::new(ModelKind::Logreg, 2, None, 2, None, Loss::CrossEntropy).unwrap();
    let params = nn::init_parameters(&*spec.build(), 0).unwrap();
    let checkpoint = nn::Checkpoint {
        spec,
        dataset: "mnist".into(),
        params,
    };
    nn::save_checkpoint(path, &checkpoint).unwrap();
}

#[test]
fn every_bad_input_is_a_user_error_naming_what_is_wrong() {
    let dir = workdir();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let linreg = write("linreg.kir", LINREG);
    let huge = write("huge.kir", HUGE);
    let wide = write("wide.kir", WIDE);
    let unknown_data = dir.join("mnist.safetensors");
    checkpoint_for_unknown_data(&unknown_data);
    let unknown_data = unknown_data.to_str().unwrap().to_string();
    let out = dir.join("out").to_str().unwrap().to_string();

    let case = |args: &str, names: &str| Case {
        args: args.split_whitespace().map(String::from).collect(),
        env: None,
        names: names.to_string(),
    };
    let train_step = format!("run {linreg} --stage train");
    let max = u64::MAX;
    let mut cases = vec![
        // Sizes: tensors over the per-tensor limit, for every command that allocates them.
        case(&format!("run {huge}"), "node %big of graph huge"),
        case(&format!("run {huge} --backend cpu"), "node %big"),
        case(&format!("bench {huge}"), "node %big of graph huge"),
        case(&format!("bench {huge} --backend vulkan"), "node %big"),
        // Counts that size an allocation or a loop.
        case(&format!("train --epochs {max} --out {out}"), "--epochs"),
        case(&format!("train --epochs 0 --out {out}"), "--epochs"),
        case(&format!("train --batch-size 0 --out {out}"), "--batch-size"),
        case(
            &format!("train --batch-size 1000000 --out {out}"),
            "--batch-size 1000000 does not fit the 1437 training rows",
        ),
        case(&format!("{train_step} --steps 1000000000000"), "--steps"),
        case(&format!("{train_step} --steps {max}"), "--steps"),
        case(
            &format!("run {linreg} --backend cpu --threads {max}"),
            "--threads",
        ),
        case(
            &format!("run {linreg} --backend cpu --threads 0"),
            "--threads",
        ),
        case(&format!("bench {linreg} --iters {max}"), "--iters"),
        case(&format!("bench {linreg} --iters 0"), "--iters"),
        case(&format!("bench {linreg} --warmup {max}"), "--warmup"),
        case(&format!("bench {linreg} --threads 1000000"), "--threads"),
        case(&format!("train --hidden 100000000 --out {out}"), "--hidden"),
        case(
            &format!("train --hidden 1000000000000 --backend interp --out {out}"),
            "--hidden",
        ),
        // Optimizer settings, the same rules for run, dump and train.
        case(&format!("{train_step} --lr=-1"), "--lr"),
        case(&format!("{train_step} --lr 0"), "--lr"),
        case(&format!("{train_step} --lr nan"), "--lr"),
        case(&format!("{train_step} --lr inf"), "--lr"),
        case(&format!("{train_step} --momentum 5"), "--momentum"),
        case(&format!("{train_step} --momentum=-0.5"), "--momentum"),
        case(&format!("{train_step} --nesterov"), "--nesterov"),
        case(&format!("{train_step} --weight-decay=-1"), "--weight-decay"),
        case(&format!("{train_step} --optimizer adam --eps=-1"), "--eps"),
        case(&format!("{train_step} --optimizer adam --eps 0"), "--eps"),
        case(
            &format!("{train_step} --optimizer adam --beta1 1"),
            "--beta1",
        ),
        case(
            &format!("{train_step} --optimizer adamw --beta2 2"),
            "--beta2",
        ),
        case(
            &format!("dump {linreg} --stage train --optimizer adam --beta2 2"),
            "--beta2",
        ),
        case(&format!("dump {linreg} --stage train --lr=-1"), "--lr"),
        case(
            &format!("dump {linreg} --stage optimized --optimizer sgd --momentum 1"),
            "--momentum",
        ),
        case(
            &format!("bench {linreg} --stage train --optimizer adam --beta1=-0.1"),
            "--beta1",
        ),
        case(&format!("train --lr=-1 --out {out}"), "--lr"),
        case(
            &format!("train --optimizer sgd --momentum 5 --out {out}"),
            "--momentum",
        ),
        // A data set named by a checkpoint, not by the user.
        case(
            &format!("predict --checkpoint {unknown_data}"),
            &unknown_data,
        ),
    ];
    // The sum of a graph's buffers against the memory available (here capped by KILN_MEMORY_LIMIT).
    for args in [
        format!("run {wide}"),
        format!("run {wide} --backend cpu"),
        format!("bench {wide}"),
    ] {
        cases.push(Case {
            env: Some(("KILN_MEMORY_LIMIT", "1000000")),
            ..case(&args, "graph wide needs")
        });
    }
    cases.push(Case {
        env: Some(("KILN_MEMORY_LIMIT", "1000")),
        ..case(
            &format!("train --dataset xor --epochs 1 --out {out}"),
            "KILN_MEMORY_LIMIT",
        )
    });

    let mut failures = Vec::new();
    for case in &cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command.args(&case.args).env_remove("KILN_MEMORY_LIMIT");
        if let Some((key, value)) = case.env {
            command.env(key, value);
        }
        let output = command.output().expect("the kiln binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let ok = output.status.code() == Some(1)
            && stderr.starts_with("error: ")
            && stderr.contains(&case.names)
            && !stderr.contains("panicked");
        if !ok {
            failures.push(format!(
                "kiln {} (env {:?}): exit {:?}, expected 1 and a message naming `{}`; stderr:\n{stderr}",
                case.args.join(" "),
                case.env,
                output.status.code(),
                case.names
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
