//! The `kiln` binary, end to end: exit codes, messages, stages, seeded runs, `.npy` files and training.
//!
//! Every user error must exit with 1 and an `error: ...` on stderr; exit 101 (a panic) is always a bug.

use crate::support::kiln_cli::{kiln, LINREG};
use crate::support::vulkan::vulkan_available;
use npyz::WriterBuilder;
use std::path::{Path, PathBuf};

/// One input and one output of each non-f32 dtype, for `.npy` round trips.
const DTYPES: &str = "\
graph dtypes {
  %n = input{role=data} : i32[5]
  %c = input{role=data} : bool[5]
  %f = cast{to=f64} %n : f64[5]
  %neg = neg %f : f64[5]
  %s = select %c, %f, %neg : f64[5]
  %four = constant{value=4} : i32[5]
  %big = compare{dir=gt} %n, %four : bool[5]
  %n2 = add %n, %n : i32[5]
  output s = %s
  output big = %big
  output n2 = %n2
}
";

/// A syntax error: the `:` before the type is missing (line 3, column 15).
const MISSING_COLON: &str = "\
graph bad {
  %x = input{role=data} : f32[4,2]
  %y = exp %x f32[4,2]
  output y = %y
}
";

/// A type error: `[4,2] x [1,2]` has mismatched inner dimensions (reported on line 4).
const MATMUL_MISMATCH: &str = "\
graph bad {
  %x = input{role=data} : f32[4,2]
  %w = input{role=param} : f32[1,2]
  %3 = matmul %x, %w : f32[4,1]
  output out = %3
}
";

/// A fresh directory for one test.
fn workdir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub(super) fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], values: &[T]) {
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut bytes)
        .begin_nd()
        .unwrap();
    writer.extend(values.iter().copied()).unwrap();
    writer.finish().unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Shape and elements of an `.npy` file.
fn read_npy<T: npyz::Deserialize>(path: &Path) -> (Vec<u64>, Vec<T>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = npyz::NpyFile::new(&bytes[..]).unwrap();
    (file.shape().to_vec(), file.into_vec().unwrap())
}

/// The losses printed by `run --stage train` (`step N  loss X` lines).
fn losses(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter(|l| l.starts_with("step"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn check_valid_graph_prints_a_summary() {
    let dir = workdir("check_ok");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let stdout = kiln(&["check", p(&file)]).ok();
    assert_eq!(stdout, "ok: graph linreg, 10 nodes, 3 inputs, 2 outputs\n");
}

#[test]
fn check_syntax_error_shows_file_line_column_and_caret() {
    let dir = workdir("check_syntax");
    let file = write_file(&dir, "bad.kir", MISSING_COLON);
    let stderr = kiln(&["check", p(&file)]).user_error();
    assert!(
        stderr.contains(&format!("{}:3:15", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("%y = exp %x f32[4,2]"), "{stderr}");
    assert!(stderr.contains('^'), "{stderr}");
}

#[test]
fn check_type_error_names_the_node_and_op() {
    let dir = workdir("check_type");
    let file = write_file(&dir, "bad.kir", MATMUL_MISMATCH);
    let stderr = kiln(&["check", p(&file)]).user_error();
    assert!(
        stderr.contains(&format!("{}:4:", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("matmul"), "{stderr}");
    assert!(stderr.contains('^'), "{stderr}");
}

#[test]
fn check_missing_file_is_a_user_error() {
    let dir = workdir("check_missing");
    let file = dir.join("nope.kir");
    let stderr = kiln(&["check", p(&file)]).user_error();
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(stderr.contains("nope.kir"), "{stderr}");
}

#[test]
fn usage_errors_exit_with_1_and_list_the_choices() {
    let stderr = kiln(&["dump", "x.kir", "--stage", "bogus"]).user_error();
    assert!(
        stderr.contains("input") && stderr.contains("grad") && stderr.contains("train"),
        "{stderr}"
    );
    kiln(&["frobnicate"]).user_error();
    // No command at all: the usage goes to stderr.
    let bare = kiln::<&str>(&[]);
    assert_eq!(bare.code, 1);
    assert!(bare.stderr.contains("Usage: kiln"), "{}", bare.stderr);
}

#[test]
fn help_describes_every_command() {
    let stdout = kiln(&["--help"]).ok();
    for command in ["check", "dump", "run", "train", "predict", "devices"] {
        assert!(stdout.contains(command), "{stdout}");
    }
    let run_help = kiln(&["run", "--help"]).ok();
    for flag in [
        "--seed",
        "--input",
        "--out",
        "--stage",
        "--steps",
        "--backend",
        "--optimizer",
        "--lr",
    ] {
        assert!(run_help.contains(flag), "missing {flag}:\n{run_help}");
    }
}

#[test]
fn dump_text_reparses_to_the_same_text() {
    let dir = workdir("dump_text");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let text = kiln(&["dump", p(&file)]).ok();
    assert!(text.starts_with("graph linreg {"), "{text}");
    assert!(text.contains("output loss = %loss"), "{text}");
    let again = write_file(&dir, "again.kir", &text);
    assert_eq!(kiln(&["dump", p(&again)]).ok(), text);
}

#[test]
fn dump_dot() {
    let dir = workdir("dump_dot");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let dot = kiln(&["dump", p(&file), "--format", "dot"]).ok();
    assert!(dot.contains("digraph"), "{dot}");
    let grad_dot = kiln(&["dump", p(&file), "--format", "dot", "--stage", "grad"]).ok();
    assert!(
        grad_dot.contains("forward") && grad_dot.contains("backward"),
        "{grad_dot}"
    );
}

#[test]
fn dump_grad_stage_adds_gradient_outputs() {
    let dir = workdir("dump_grad");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let text = kiln(&["dump", p(&file), "--stage", "grad"]).ok();
    assert!(text.contains("output grad.w = "), "{text}");
    let wrt_x = kiln(&[
        "dump",
        p(&file),
        "--stage",
        "grad",
        "--wrt",
        "x,w",
        "--of",
        "loss",
    ])
    .ok();
    assert!(
        wrt_x.contains("output grad.x = ") && wrt_x.contains("output grad.w = "),
        "{wrt_x}"
    );
    let stderr = kiln(&["dump", p(&file), "--stage", "grad", "--of", "pred"]).user_error();
    assert!(stderr.contains("pred"), "{stderr}");
}

#[test]
fn dump_train_stage_with_adam_adds_state_and_aliased_updates() {
    let dir = workdir("dump_train");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let text = kiln(&[
        "dump",
        p(&file),
        "--stage",
        "train",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
    ])
    .ok();
    for expected in [
        "%adam.m.w = input{role=state}",
        "%adam.step = input{role=state}",
        "aliases %w",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    let dot = kiln(&["dump", p(&file), "--stage", "train", "--format", "dot"]).ok();
    assert!(dot.contains("backward + update"), "{dot}");
    // Flags of another optimizer or another stage are mistakes, not silently ignored.
    kiln(&[
        "dump",
        p(&file),
        "--stage",
        "train",
        "--optimizer",
        "adam",
        "--momentum",
        "0.9",
    ])
    .user_error();
    kiln(&["dump", p(&file), "--lr", "0.1"]).user_error();
}

#[test]
fn dump_optimized_stage_runs_the_passes_and_can_trace_them() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples");
    let twolayer = examples.join("twolayer.kir");
    let forward = kiln(&["dump", p(&twolayer), "--stage", "optimized"]).ok();
    assert!(
        forward.contains("output loss") && !forward.contains("new."),
        "{forward}"
    );
    let step = kiln(&[
        "dump",
        p(&twolayer),
        "--stage",
        "optimized",
        "--optimizer",
        "sgd",
    ])
    .ok();
    assert!(step.contains("output new.l0.weight = "), "{step}");
    let plain_step = kiln(&["dump", p(&twolayer), "--stage", "train"]).ok();
    assert!(
        step.lines().count() < plain_step.lines().count(),
        "optimizing removed nothing:\n{step}"
    );
    let traced = kiln(&[
        "dump",
        p(&twolayer),
        "--stage",
        "optimized",
        "--optimizer",
        "sgd",
        "--print-after-all",
    ])
    .ok();
    for header in [
        "# after simplify (round 1)",
        "# after dce (round 1)",
        "fixed point reached",
        "# final graph",
    ] {
        assert!(traced.contains(header), "missing {header}:\n{traced}");
    }
    kiln(&["dump", p(&twolayer), "--print-after-all"]).user_error();
}

#[test]
fn dump_lowered_stages_of_the_mlp_training_step() {
    let mlp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples/mlp.kir");
    let dump = |stage: &str| kiln(&["dump", p(&mlp), "--stage", stage, "--optimizer", "sgd"]).ok();
    let fused = dump("fused");
    assert!(
        fused.starts_with("fused mlp:") && fused.contains("k0 matmul"),
        "{fused}"
    );
    let kernels = dump("kernels");
    assert!(
        kernels.starts_with("program mlp") && kernels.contains("(aliases l0.weight)"),
        "{kernels}"
    );
    let memory = dump("memory");
    assert!(
        memory.contains("arena peak") && memory.contains("in place of l0.weight"),
        "{memory}"
    );
    let dot = kiln(&["dump", p(&mlp), "--stage", "fused", "--format", "dot"]).ok();
    assert!(dot.contains("subgraph cluster_"), "{dot}");
    let e = kiln(&["dump", p(&mlp), "--stage", "kernels", "--format", "dot"]).user_error();
    assert!(e.contains("text only"), "{e}");
    let e = kiln(&["run", p(&mlp), "--stage", "kernels"]).user_error();
    assert!(e.contains("kiln dump"), "{e}");
}

#[test]
fn run_seeded_inputs_are_deterministic() {
    let dir = workdir("run_seed");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let first = kiln(&["run", p(&file), "--seed", "3"]).ok();
    let second = kiln(&["run", p(&file), "--seed", "3", "--backend", "interp"]).ok();
    assert_eq!(first, second);
    assert_ne!(first, kiln(&["run", p(&file), "--seed", "4"]).ok());
    let rows: Vec<&str> = first.lines().collect();
    assert!(
        rows[0].starts_with("output") && rows[0].contains("sum|x|"),
        "{first}"
    );
    assert!(
        rows[1].starts_with("pred") && rows[1].contains("f32[8,1]"),
        "{first}"
    );
    assert!(
        rows[2].starts_with("loss") && rows[2].contains("f32[]"),
        "{first}"
    );
}

#[test]
fn run_out_writes_npy_files_that_read_back() {
    let dir = workdir("run_out");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let out = dir.join("results");
    kiln(&["run", p(&file), "--out", p(&out)]).ok();
    let (shape, pred) = read_npy::<f32>(&out.join("pred.npy"));
    assert_eq!((shape, pred.len()), (vec![8, 1], 8));
    let (shape, loss) = read_npy::<f32>(&out.join("loss.npy"));
    assert_eq!(shape, Vec::<u64>::new());
    // The loss is the mean squared error of the prediction written beside it, against the seeded `y`.
    assert!(loss[0] > 0.0 && loss[0].is_finite());

    let grads = dir.join("grads");
    kiln(&["run", p(&file), "--stage", "grad", "--out", p(&grads)]).ok();
    let (shape, _) = read_npy::<f32>(&grads.join("grad.w.npy"));
    assert_eq!(shape, vec![1, 3]);
}

#[test]
fn run_inputs_from_npy_files() {
    let dir = workdir("run_input");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let (x, w, y) = (dir.join("x.npy"), dir.join("w.npy"), dir.join("y.npy"));
    write_npy(&x, &[8, 3], &[1.0f32; 24]);
    write_npy(&w, &[1, 3], &[1.0f32, 2.0, 3.0]);
    write_npy(&y, &[8, 1], &[0.0f32; 8]);
    let out = dir.join("out");
    let inputs = [
        format!("x={}", x.display()),
        format!("w={}", w.display()),
        format!("y={}", y.display()),
    ];
    let mut args = vec![
        "run".to_string(),
        p(&file).into(),
        "--out".into(),
        p(&out).into(),
    ];
    for input in &inputs {
        args.extend(["--input".to_string(), input.clone()]);
    }
    kiln(&args).ok();
    // pred = 1·1 + 1·2 + 1·3 = 6 everywhere; loss = mean(6²) = 36.
    assert_eq!(read_npy::<f32>(&out.join("pred.npy")).1, vec![6.0; 8]);
    assert_eq!(read_npy::<f32>(&out.join("loss.npy")).1, vec![36.0]);
}

#[test]
fn run_i32_bool_and_f64_round_trip_through_npy() {
    let dir = workdir("run_dtypes");
    let file = write_file(&dir, "dtypes.kir", DTYPES);
    let first = dir.join("first");
    kiln(&["run", p(&file), "--seed", "5", "--out", p(&first)]).ok();
    let (_, n2) = read_npy::<i32>(&first.join("n2.npy"));
    let (_, big) = read_npy::<bool>(&first.join("big.npy"));
    assert!(
        n2.iter().all(|v| v % 2 == 0 && (0..20).contains(v)),
        "{n2:?}"
    );

    // Feed the written i32 and bool outputs back in as inputs.
    let second = dir.join("second");
    let n_arg = format!("n={}", first.join("n2.npy").display());
    let c_arg = format!("c={}", first.join("big.npy").display());
    kiln(&[
        "run",
        p(&file),
        "--input",
        &n_arg,
        "--input",
        &c_arg,
        "--out",
        p(&second),
    ])
    .ok();
    let (shape, s) = read_npy::<f64>(&second.join("s.npy"));
    assert_eq!(shape, vec![5]);
    let expected: Vec<f64> = n2
        .iter()
        .zip(&big)
        .map(|(&n, &c)| if c { n as f64 } else { -(n as f64) })
        .collect();
    assert_eq!(s, expected);
}

#[test]
fn run_bad_input_files_name_the_input_and_the_types() {
    let dir = workdir("run_bad_input");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let run_with = |arg: String| {
        kiln(&["run".to_string(), p(&file).into(), "--input".into(), arg]).user_error()
    };

    let wrong_shape = dir.join("wrong_shape.npy");
    write_npy(&wrong_shape, &[2, 3], &[0.0f32; 6]);
    let stderr = run_with(format!("x={}", wrong_shape.display()));
    assert!(
        stderr.contains("`x`") && stderr.contains("f32[2,3]") && stderr.contains("f32[8,3]"),
        "{stderr}"
    );

    let wrong_dtype = dir.join("wrong_dtype.npy");
    write_npy(&wrong_dtype, &[8, 3], &[0.0f64; 24]);
    let stderr = run_with(format!("x={}", wrong_dtype.display()));
    assert!(
        stderr.contains("f64[8,3]") && stderr.contains("f32[8,3]"),
        "{stderr}"
    );

    let stderr = run_with(format!("nope={}", wrong_shape.display()));
    assert!(
        stderr.contains("no input `nope`") && stderr.contains("x, w, y"),
        "{stderr}"
    );

    let garbage = write_file(&dir, "garbage.npy", b"\x93NUMPY garbage");
    let stderr = run_with(format!("x={}", garbage.display()));
    assert!(
        stderr.contains("`x`") && stderr.contains("garbage.npy"),
        "{stderr}"
    );

    let mut truncated_bytes = std::fs::read(&wrong_dtype).unwrap();
    truncated_bytes.truncate(truncated_bytes.len() - 8);
    let truncated = write_file(&dir, "truncated.npy", truncated_bytes);
    let stderr = run_with(format!("x={}", truncated.display()));
    assert!(stderr.contains("truncated"), "{stderr}");

    // int64 is read as i32 (range-checked), so for this f32 input it is a type mismatch; u16 is not read at all.
    let int64 = dir.join("int64.npy");
    write_npy(&int64, &[8, 3], &[0i64; 24]);
    let stderr = run_with(format!("x={}", int64.display()));
    assert!(
        stderr.contains("holds i32[8,3]") && stderr.contains("expects f32[8,3]"),
        "{stderr}"
    );
    let wide = dir.join("wide.npy");
    let mut values = [0i64; 24];
    values[5] = 1 << 40;
    write_npy(&wide, &[8, 3], &values);
    let stderr = run_with(format!("x={}", wide.display()));
    assert!(
        stderr.contains("wide.npy")
            && stderr.contains("int64 element 5 is 1099511627776, outside i32"),
        "{stderr}"
    );
    let uint16 = dir.join("uint16.npy");
    write_npy(&uint16, &[8, 3], &[0u16; 24]);
    let stderr = run_with(format!("x={}", uint16.display()));
    assert!(
        stderr.contains("unsupported dtype") && stderr.contains("uint16.npy"),
        "{stderr}"
    );

    let fortran = dir.join("fortran.npy");
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .order(npyz::Order::Fortran)
        .shape(&[8, 3])
        .writer(&mut bytes)
        .begin_nd()
        .unwrap();
    writer.extend([0.0f32; 24]).unwrap();
    writer.finish().unwrap();
    std::fs::write(&fortran, bytes).unwrap();
    let stderr = run_with(format!("x={}", fortran.display()));
    assert!(stderr.contains("Fortran"), "{stderr}");

    let stderr = run_with(format!("x={}", dir.join("absent.npy").display()));
    assert!(stderr.contains("absent.npy"), "{stderr}");
    run_with("x".into());
}

#[test]
fn run_train_steps_print_decreasing_losses_and_write_the_final_state() {
    let dir = workdir("run_train");
    let file = write_file(&dir, "linreg.kir", LINREG);
    let out = dir.join("trained");
    let stdout = kiln(&[
        "run",
        p(&file),
        "--stage",
        "train",
        "--steps",
        "3",
        "--lr",
        "0.05",
        "--out",
        p(&out),
    ])
    .ok();
    let printed = losses(&stdout);
    assert_eq!(printed.len(), 3, "{stdout}");
    assert!(
        printed.windows(2).all(|w| w[1] < w[0]),
        "losses do not decrease: {printed:?}"
    );
    let (shape, written) = read_npy::<f64>(&out.join("losses.npy"));
    assert_eq!(shape, vec![3]);
    for (w, p) in written.iter().zip(&printed) {
        assert!(
            (w - p).abs() <= 1e-6 * w.abs().max(1.0),
            "{written:?} vs {printed:?}"
        );
    }
    assert_eq!(read_npy::<f32>(&out.join("w.npy")).0, vec![1, 3]);

    let adam = dir.join("adam");
    let stdout = kiln(&[
        "run",
        p(&file),
        "--stage",
        "train",
        "--steps",
        "3",
        "--optimizer",
        "adam",
        "--lr",
        "0.1",
        "--out",
        p(&adam),
    ])
    .ok();
    let printed = losses(&stdout);
    assert!(
        printed.windows(2).all(|w| w[1] < w[0]),
        "adam losses do not decrease: {printed:?}"
    );
    assert_eq!(read_npy::<f32>(&adam.join("adam.step.npy")).1, vec![3.0]);
    assert_eq!(read_npy::<f32>(&adam.join("adam.m.w.npy")).0, vec![1, 3]);
}

#[test]
fn run_steps_outside_train_is_a_user_error() {
    let dir = workdir("run_steps");
    let file = write_file(&dir, "linreg.kir", LINREG);
    kiln(&["run", p(&file), "--steps", "3"]).user_error();
    kiln(&["run", p(&file), "--stage", "train", "--steps", "0"]).user_error();
}

#[test]
fn garbage_never_panics() {
    let dir = workdir("garbage");
    let files: Vec<PathBuf> = [
        ("empty.kir", b"".to_vec()),
        ("binary.kir", vec![0x00, 0xff, 0xfe, 0x80, 0x13, 0x37]),
        ("keyword.kir", b"graph".to_vec()),
        ("open.kir", b"graph g {".to_vec()),
        ("unicode.kir", "graph ü { %é = input{role=data} : f32[1] }".as_bytes().to_vec()),
        ("percent.kir", b"graph g { % = input : f32[] }".to_vec()),
        ("huge.kir", b"graph g {\n  %x = input{role=data} : f32[99999999999999999999999]\n  output x = %x\n}".to_vec()),
        ("overflow.kir", b"graph g {\n  %x = input{role=data} : f32[4294967296,4294967296,4294967296]\n  output y = %x\n}".to_vec()),
        ("bad_attr.kir", b"graph g {\n  %x = input{role=data, role=param} : f32[2]\n}".to_vec()),
        ("deep_const.kir", b"graph g {\n  %c = constant{value=[[[[1]]]]} : f32[1]\n}".to_vec()),
        ("neg_axis.kir", b"graph g {\n  %x = input{role=data} : f32[2]\n  %y = reduce_sum{axes=[-1], keep_dims=false} %x : f32[]\n}".to_vec()),
        ("late_output.kir", b"graph g {\n  output y = %x\n  %x = input{role=data} : f32[2]\n}".to_vec()),
    ]
    .into_iter()
    .map(|(name, bytes)| write_file(&dir, name, bytes))
    .collect();
    let commands: [&[&str]; 6] = [
        &["check"],
        &["dump"],
        &["dump", "--format", "dot"],
        &["dump", "--stage", "grad"],
        &["run"],
        &["run", "--stage", "train", "--steps", "2"],
    ];
    for file in &files {
        for command in commands {
            let mut args: Vec<&str> = command.to_vec();
            args.insert(1, p(file));
            let outcome = kiln(&args);
            assert_eq!(
                outcome.code,
                1,
                "kiln {args:?} on {}: expected exit 1\nstdout:\n{}\nstderr:\n{}",
                file.display(),
                outcome.stdout,
                outcome.stderr
            );
        }
    }
}

/// The shipped examples (`ir-spec/examples/`, printed from `kiln::zoo`) check, run, and the small ones train.
#[test]
fn shipped_examples_check_run_and_train() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples");
    for (name, graph) in kiln::zoo::examples().unwrap() {
        let file = examples.join(format!("{name}.kir"));
        let summary = kiln(&["check", p(&file)]).ok();
        let count = |n: usize, noun: &str| format!("{n} {noun}{}", if n == 1 { "" } else { "s" });
        let expected = format!(
            "ok: graph {name}, {}, {}, {}\n",
            count(graph.len(), "node"),
            count(graph.inputs().count(), "input"),
            count(graph.outputs().len(), "output")
        );
        assert_eq!(summary, expected);
        let table = kiln(&["run", p(&file), "--seed", "1"]).ok();
        for output in graph.outputs() {
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with(&format!("{} ", output.name))),
                "{name}: no row for {}:\n{table}",
                output.name
            );
        }
        if matches!(name, "logreg" | "twolayer") {
            let stdout = kiln(&["run", p(&file), "--stage", "train", "--steps", "3"]).ok();
            let printed = losses(&stdout);
            assert_eq!(printed.len(), 3, "{stdout}");
            assert!(
                printed.windows(2).all(|w| w[1] < w[0]),
                "{name}: losses do not decrease: {printed:?}"
            );
        }
    }
}

// ---- the Vulkan path ----
//
// Like vulkan/spirv_backend.rs: without a Vulkan device these tests print why and return, unless
// `KILN_REQUIRE_VULKAN=1` (CI, on Mesa's lavapipe), where a missing device is a failure.

/// `|a − b| ≤ 1e-4 + 1e-4·|b|`: the SPIR-V backend's tolerance against the interpreter (see vulkan/spirv_backend.rs).
fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (&a, &b)) in actual.iter().zip(expected).enumerate() {
        let (a, b) = (a as f64, b as f64);
        assert!(
            (a - b).abs() <= 1e-4 + 1e-4 * b.abs(),
            "{what}[{i}]: {a} (vulkan) vs {b} (interp)"
        );
    }
}

#[test]
fn devices_lists_the_vulkan_devices_or_says_there_is_none() {
    let outcome = kiln(&["devices"]);
    if vulkan_available() {
        let stdout = outcome.ok();
        assert!(stdout.starts_with("   index  name"), "{stdout}");
        assert!(
            stdout.contains("* --backend vulkan uses device "),
            "{stdout}"
        );
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with('*')).count(),
            2,
            "{stdout}"
        );
    } else {
        let stderr = outcome.user_error();
        assert!(stderr.contains("Vulkan"), "{stderr}");
    }
}

#[test]
fn run_on_vulkan_matches_the_interpreter() {
    let dir = workdir("run_vulkan");
    let twolayer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples/twolayer.kir");
    let linreg = write_file(&dir, "linreg.kir", LINREG);
    if !vulkan_available() {
        let e = kiln(&["run", p(&twolayer), "--backend", "vulkan"]).user_error();
        assert!(e.contains("kiln devices"), "{e}");
        return;
    }
    // The forward graph: every output, element by element.
    let graph = kiln::ir::text::parse(&std::fs::read_to_string(&twolayer).unwrap()).unwrap();
    for backend in ["interp", "vulkan"] {
        let out = dir.join(backend);
        kiln(&[
            "run",
            p(&twolayer),
            "--seed",
            "2",
            "--backend",
            backend,
            "--out",
            p(&out),
        ])
        .ok();
    }
    for output in graph.outputs() {
        let file = format!("{}.npy", output.name);
        let (_, expected) = read_npy::<f32>(&dir.join("interp").join(&file));
        let (_, actual) = read_npy::<f32>(&dir.join("vulkan").join(&file));
        assert_close(&actual, &expected, &output.name);
    }
    // Three training steps, aliased outputs fed back: the same losses and final weights.
    let mut trained = Vec::new();
    for backend in ["interp", "vulkan"] {
        let out = dir.join(format!("train-{backend}"));
        let outcome = kiln(&[
            "run",
            p(&linreg),
            "--stage",
            "train",
            "--steps",
            "3",
            "--lr",
            "0.1",
            "--backend",
            backend,
            "--out",
            p(&out),
        ]);
        if backend == "vulkan" {
            assert!(
                outcome.stderr.contains("vulkan: 3 steps"),
                "{}",
                outcome.stderr
            );
        }
        let stdout = outcome.ok();
        let (_, w) = read_npy::<f32>(&out.join("w.npy"));
        trained.push((losses(&stdout), w));
    }
    let (interp_losses, interp_w) = &trained[0];
    let (vulkan_losses, vulkan_w) = &trained[1];
    let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    assert_close(&as_f32(vulkan_losses), &as_f32(interp_losses), "losses");
    assert_close(vulkan_w, interp_w, "w");
}

/// `--stage asm`: every kernel's machine code for this host, one `; kernel` header each, each a whole function (it
/// returns); `--kernel N` picks one.
#[test]
fn dump_asm_stage_disassembles_every_kernel_or_one() {
    let mlp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples/mlp.kir");
    let kernels = kiln(&["dump", p(&mlp), "--stage", "kernels", "--optimizer", "sgd"]).ok();
    let kernel_count = kernels.lines().filter(|l| l.starts_with("kernel ")).count();
    let all = kiln(&["dump", p(&mlp), "--stage", "asm", "--optimizer", "sgd"]).ok();
    let headers: Vec<&str> = all.lines().filter(|l| l.starts_with("; kernel ")).collect();
    assert!(kernel_count > 1, "{kernels}");
    assert_eq!(headers.len(), kernel_count, "{all}");
    assert!(
        headers.iter().all(|h| h.ends_with("bytes of machine code")),
        "{headers:?}"
    );
    assert!(all.matches("\n  ret").count() >= kernel_count, "{all}");
    let one = kiln(&["dump", p(&mlp), "--stage", "asm", "--kernel", "0"]).ok();
    assert_eq!(one.matches("; kernel ").count(), 1, "{one}");
    assert!(one.contains("\n  ret"), "{one}");
}

#[test]
fn dump_spirv_stage_disassembles_every_kernel_or_one() {
    let mlp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples/mlp.kir");
    let all = kiln(&["dump", p(&mlp), "--stage", "spirv", "--optimizer", "sgd"]).ok();
    let headers = all.lines().filter(|l| l.starts_with("; kernel ")).count();
    assert!(headers > 1, "{all}");
    assert_eq!(
        all.matches("OpEntryPoint GLCompute").count(),
        headers,
        "{all}"
    );
    let one = kiln(&["dump", p(&mlp), "--stage", "spirv", "--kernel", "0"]).ok();
    assert!(one.starts_with("; kernel 0: "), "{one}");
    assert_eq!(one.matches("OpEntryPoint GLCompute").count(), 1, "{one}");
    let e = kiln(&["dump", p(&mlp), "--stage", "spirv", "--kernel", "99"]).user_error();
    assert!(e.contains("--kernel 99: program mlp has"), "{e}");
    let e = kiln(&["dump", p(&mlp), "--stage", "kernels", "--kernel", "0"]).user_error();
    assert!(e.contains("--stage clif, asm and spirv"), "{e}");
    let e = kiln(&["run", p(&mlp), "--stage", "spirv"]).user_error();
    assert!(e.contains("kiln dump"), "{e}");
}
