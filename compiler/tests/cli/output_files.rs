//! What the `kiln` binary leaves on disk when things go wrong around it: a closed stdout or stderr (the work still
//! finishes and every file is written), a write that fails halfway (the previous file survives intact), and a
//! checkpoint whose bytes were damaged afterwards (an error naming it, not a quietly worse model).

use kiln::nn;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::support::kiln_cli::{kiln, LINREG};

fn workdir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("output_files")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `kiln ARGS` with its stdout a pipe whose reading end is closed before kiln prints anything (as `| head -1`
/// does once it has its line), and stderr too when `close_stderr` (as `2>&1 | head -1`). Returns the exit status
/// and whatever reached stderr.
fn kiln_with_closed_pipes(args: &[&str], close_stderr: bool) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the kiln binary runs");
    drop(child.stdout.take());
    if close_stderr {
        drop(child.stderr.take());
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The entries of `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read_npy_f64(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
}

#[test]
fn train_with_a_closed_stdout_still_writes_every_file() {
    let dir = workdir("train_closed_stdout");
    let out = dir.join("run");
    let args = [
        "train",
        "--dataset",
        "xor",
        "--model",
        "twolayer",
        "--epochs",
        "3",
        "--out",
        p(&out),
    ];
    let (status, stderr) = kiln_with_closed_pipes(&args, false);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "nothing to say about a closed stdout");
    let checkpoint = nn::load_checkpoint(&out.join(nn::CHECKPOINT_FILE)).unwrap();
    assert_eq!(checkpoint.dataset, "xor");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let svg = std::fs::read_to_string(out.join("metrics.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
}

#[test]
fn run_with_closed_stdout_and_stderr_still_trains_and_writes_the_npy_files() {
    let dir = workdir("run_closed_pipes");
    let file = dir.join("linreg.kir");
    std::fs::write(&file, LINREG).unwrap();
    for (backend, close_stderr) in [("interp", false), ("cpu", false), ("cpu", true)] {
        let out = dir.join(format!("{backend}-{close_stderr}"));
        let args = [
            "run",
            p(&file),
            "--backend",
            backend,
            "--stage",
            "train",
            "--steps",
            "4",
            "--lr",
            "0.05",
            "--out",
            p(&out),
        ];
        let (status, stderr) = kiln_with_closed_pipes(&args, close_stderr);
        let what = format!("--backend {backend}, stderr closed: {close_stderr}");
        assert_eq!(status.code(), Some(0), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        let losses = read_npy_f64(&out.join("losses.npy"));
        assert_eq!(losses.len(), 4, "{what}");
        assert!(losses.windows(2).all(|w| w[1] < w[0]), "{what}: {losses:?}");
        assert!(out.join("w.npy").is_file(), "{what}");
    }
}

/// `kiln train` under a file-size limit too small for its checkpoint: the save fails with a message naming the
/// file, the checkpoint of the previous run in the same directory is intact, and no temporary file is left over.
/// (`trap '' XFSZ` makes the oversized write fail with EFBIG instead of killing the process.)
#[test]
fn a_failed_checkpoint_write_keeps_the_previous_checkpoint() {
    let dir = workdir("failed_write");
    let out = dir.join("run");
    let train = |seed: &str| {
        vec![
            "train".to_string(),
            "--epochs".into(),
            "1".into(),
            "--seed".into(),
            seed.into(),
            "--out".into(),
            p(&out).into(),
        ]
    };
    kiln(&train("1")).ok();
    let checkpoint = out.join(nn::CHECKPOINT_FILE);
    let good = std::fs::read(&checkpoint).unwrap();
    // Digits' MLP has 9,610 parameters: ~38 kB, well over the limit of 20 blocks (10 or 20 kB by the shell).
    assert!(good.len() > 30_000, "{}", good.len());
    let before = listing(&out);

    let output = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 20; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(train("2"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot write") && stderr.contains(p(&checkpoint)),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read(&checkpoint).unwrap(),
        good,
        "the old checkpoint changed"
    );
    assert_eq!(listing(&out), before, "a temporary file was left behind");
    nn::load_checkpoint(&checkpoint).unwrap();
}

/// Trains a small checkpoint into `dir/run` and returns its path.
fn small_checkpoint(dir: &Path) -> PathBuf {
    let out = dir.join("run");
    kiln(&[
        "train",
        "--dataset",
        "xor",
        "--model",
        "twolayer",
        "--epochs",
        "2",
        "--out",
        p(&out),
    ])
    .ok();
    out.join(nn::CHECKPOINT_FILE)
}

#[test]
fn flipped_bytes_in_the_tensor_data_are_an_error_naming_the_checkpoint() {
    let dir = workdir("flipped_bytes");
    let checkpoint = small_checkpoint(&dir);
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    // The tensor data is the end of the file (after the 8-byte length and the JSON header).
    let n = bytes.len();
    for b in &mut bytes[n - 40..n - 30] {
        *b ^= 0x5a;
    }
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, &bytes).unwrap();
    let stderr = kiln(&["predict", "--checkpoint", p(&corrupt)]).user_error();
    assert!(
        stderr.contains(p(&corrupt)) && stderr.contains("does not match the checksum"),
        "{stderr}"
    );
    let err = nn::load_checkpoint(&corrupt).unwrap_err().to_string();
    assert!(err.contains("the file is corrupt"), "{err}");

    // The undamaged file verifies.
    let (_, integrity) = nn::load_checkpoint_checked(&checkpoint).unwrap();
    assert_eq!(integrity, nn::Integrity::Verified);
}

/// A checkpoint from before checksums (the same file without the `checksum` entry) still loads, with a warning.
#[test]
fn a_checkpoint_without_a_checksum_loads_with_a_warning() {
    let dir = workdir("no_checksum");
    let checkpoint = small_checkpoint(&dir);
    let bytes = std::fs::read(&checkpoint).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    assert!(metadata.remove("checksum").unwrap().starts_with("crc32:"));
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let old = dir.join("old.safetensors");
    std::fs::write(
        &old,
        safetensors::serialize(tensors.tensors(), Some(metadata)).unwrap(),
    )
    .unwrap();

    let (loaded, integrity) = nn::load_checkpoint_checked(&old).unwrap();
    assert_eq!(integrity, nn::Integrity::Unverified);
    assert_eq!(loaded, nn::load_checkpoint(&checkpoint).unwrap());
    let o = kiln(&["predict", "--checkpoint", p(&old)]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("test_acc"), "{}", o.stdout);
    assert!(
        o.stderr.starts_with("warning: checkpoint")
            && o.stderr.contains(p(&old))
            && o.stderr.contains("no checksum"),
        "{}",
        o.stderr
    );
}
