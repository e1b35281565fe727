//! `kiln train --model transformer`: a GPT-style decoder on a generated task (`--dataset sort` or `reverse`) or on a
//! UTF-8 text (`--text FILE`), trained for `--steps` AdamW steps with teacher forcing; every tenth of the run it is
//! evaluated on the held-out split. For a task, `test_acc` is the fraction of held-out sequences whose whole answer
//! greedy decoding gets right, and `train_acc` the held-out token accuracy under teacher forcing; for a text,
//! `test_loss` is the validation loss and `test_acc` the next-character accuracy.

use super::train::{nn_error, DatasetArg, OptimizerArg, TrainArgs};
use super::CliError;
use kiln::data::seq::{self, Task, TaskData, TextData};
use kiln::data::Shuffle;
use kiln::nn::{self, EpochMetrics, Gpt, GptCheckpoint, GptConfig, SeqData, SeqTrainer};
use kiln::{Adam, Optimizer};
use std::io::Write;
use std::time::Instant;

/// Training and test sequences of a generated task (fewer where there are few distinct sequences).
const TASK_TRAIN: usize = 20_000;
const TASK_TEST: usize = 1_000;
/// Sequences per evaluation run of the forward graph.
const EVAL_BATCH: usize = 500;
/// AdamW's decoupled weight decay (PyTorch's default 0.01).
const WEIGHT_DECAY: f64 = 0.01;
const MAX_STEPS: usize = 10_000_000;

/// What the model trains on.
enum Source {
    Task(TaskData),
    Text(TextData),
}

/// Trains as `kiln train --model transformer` says; with `ranks`, as one rank of a data-parallel run (every rank
/// draws the same global batches and trains on its shard; only rank 0 writes files, the caller gives the other ranks
/// a sink for `out`).
pub fn train_on(
    args: &TrainArgs,
    out: &mut dyn Write,
    ranks: Option<nn::Ranks>,
) -> Result<(), CliError> {
    let writes_files = ranks.as_ref().is_none_or(|r| r.group.rank() == 0);
    if args.data.is_some() {
        return Err(CliError::new(
            "--model transformer reads --text FILE or --dataset sort|reverse, not --data",
        ));
    }
    if args.epochs.is_some() {
        return Err(CliError::new(
            "--model transformer counts --steps, not --epochs",
        ));
    }
    let source = match (&args.text, args.dataset) {
        (Some(path), _) => {
            let context = args.context.unwrap_or(64);
            super::check_count(
                "context",
                context,
                1,
                4096,
                "the position table has one row per token",
            )?;
            Source::Text(seq::read_text(path, context).map_err(|e| CliError::new(e.to_string()))?)
        }
        (None, DatasetArg::Sort | DatasetArg::Reverse) => {
            if args.context.is_some() {
                return Err(CliError::new(
                    "--context is for --text; a task's context is 2·--digits",
                ));
            }
            let task = if args.dataset == DatasetArg::Sort {
                Task::Sort
            } else {
                Task::Reverse
            };
            super::check_count(
                "digits",
                args.digits,
                1,
                64,
                "a sequence holds 2·digits + 1 tokens",
            )?;
            // Few digits have few distinct sequences: a tenth held out, at most half of them drawn in all.
            let possible = 10f64.powi(args.digits as i32);
            let test = TASK_TEST.min((possible / 10.0) as usize);
            let train = TASK_TRAIN.min((possible / 2.0) as usize - test);
            Source::Task(seq::generate(task, args.digits, 10, train, test).map_err(CliError::new)?)
        }
        (None, other) => {
            return Err(CliError::new(format!(
            "--model transformer trains on --dataset sort or reverse, or on --text FILE, not on {}",
            other.name()
        )))
        }
    };
    let (vocab, context) = match &source {
        Source::Task(d) => (d.vocab(), d.context()),
        Source::Text(t) => (t.vocab.len(), args.context.unwrap_or(64)),
    };
    let config = GptConfig::new(vocab, context, args.width, args.heads, args.blocks);
    config.validate().map_err(CliError::new)?;
    let steps = args.steps.unwrap_or(match source {
        Source::Task(_) => 2500,
        Source::Text(_) => 2000,
    });
    super::check_count("steps", steps, 1, MAX_STEPS, "steps are counted in memory")?;
    if args.batch_size == 0 {
        return Err(CliError::new("--batch-size must be at least 1"));
    }
    if args.momentum != 0.0 {
        return Err(CliError::new("--momentum applies to --optimizer sgd"));
    }
    let lr = args.lr.unwrap_or(1e-3);
    let adam = Adam {
        lr,
        ..Default::default()
    };
    let optimizer = super::stage::validated(match args.optimizer {
        // AdamW is the transformer's default: `--optimizer adam` (the flag's default) means it here.
        OptimizerArg::Adam | OptimizerArg::Adamw => Optimizer::AdamW(Adam {
            weight_decay: WEIGHT_DECAY,
            ..adam
        }),
        OptimizerArg::Sgd => Optimizer::Sgd(kiln::Sgd {
            lr,
            ..Default::default()
        }),
    })?;
    if let Some(c) = args.clip_grad_norm {
        if !(c.is_finite() && c > 0.0) {
            return Err(CliError::new(format!(
                "--clip-grad-norm {c} must be a positive number"
            )));
        }
    }
    let backend = args.backend.kind().create().map_err(nn_error)?;
    let model = Gpt::new(config);
    let eval_batch = match &source {
        Source::Task(d) => EVAL_BATCH.min(d.test.len()),
        Source::Text(_) => 64,
    };
    let mut trainer = SeqTrainer::new_in(
        &model,
        args.batch_size,
        eval_batch,
        context,
        &optimizer,
        args.clip_grad_norm,
        &*backend,
        args.seed,
        ranks.as_ref(),
    )
    .map_err(nn_error)?;
    if writes_files {
        std::fs::create_dir_all(&args.out)
            .map_err(|e| CliError::new(format!("cannot create `{}`: {e}", args.out.display())))?;
    }
    let (name, rows) = match &source {
        Source::Task(d) => (
            format!("{} of {} digits", d.task.name(), d.digits),
            format!("{} train / {} test sequences", d.train.len(), d.test.len()),
        ),
        Source::Text(t) => (
            t.name.clone(),
            format!(
                "{} train / {} validation characters, {} distinct",
                t.train.len(),
                t.valid.len(),
                t.vocab.len()
            ),
        ),
    };
    writeln!(
        out,
        "training transformer (width {}, {} heads, {} blocks, context {context}, {} parameters) on {name} ({rows}), \
         {} lr {lr}, batch {}, {steps} steps, {} backend, seed {}",
        args.width,
        args.heads,
        args.blocks,
        model_size(&model),
        optimizer.name(),
        args.batch_size,
        backend.name(),
        args.seed
    )?;
    if let Some(r) = &ranks {
        let size = r.group.size();
        writeln!(
            out,
            "data-parallel on {size} ranks: {} sequences per rank per step, gradients averaged in buckets of {} KiB",
            args.batch_size / size,
            r.reduce.bucket_bytes / 1024
        )?;
    }
    let header = [
        "step",
        "train_loss",
        "test_loss",
        "test_acc",
        "tok_acc",
        "seconds",
    ];
    writeln!(out, "\n{}", row(&header.map(String::from)))?;

    let start = Instant::now();
    let mut rng = Shuffle::new(args.seed ^ 0x5eed_0fba_7c4e);
    let mut order: Vec<usize> = Vec::new();
    let mut history = Vec::new();
    let (mut total, mut counted) = (0.0, 0usize);
    let every = (steps / 10).max(1);
    let b = args.batch_size;
    for step in 1..=steps {
        let (tokens, targets) = match &source {
            Source::Task(d) => {
                let mut tokens = Vec::with_capacity(b * context);
                let mut targets = Vec::with_capacity(b * context);
                for _ in 0..b {
                    if order.is_empty() {
                        order = rng.permutation(d.train.len());
                    }
                    let (t, y) = d.pair(&d.train[order.pop().expect("refilled")]);
                    tokens.extend(t);
                    targets.extend(y);
                }
                (tokens, targets)
            }
            Source::Text(t) => {
                let mut tokens = Vec::with_capacity(b * context);
                let mut targets = Vec::with_capacity(b * context);
                for _ in 0..b {
                    let at = rng.below(t.train.len() - context);
                    tokens.extend_from_slice(&t.train[at..at + context]);
                    targets.extend_from_slice(&t.train[at + 1..at + context + 1]);
                }
                (tokens, targets)
            }
        };
        total += trainer.step(&tokens, &targets).map_err(nn_error)?;
        counted += 1;
        if step % every == 0 || step == steps {
            let (test_loss, test_acc, token_acc) = evaluate(&mut trainer, &source)?;
            let m = EpochMetrics {
                epoch: step,
                train_loss: total / counted as f64,
                train_acc: token_acc,
                test_loss,
                test_acc,
                seconds: start.elapsed().as_secs_f64(),
            };
            (total, counted) = (0.0, 0);
            writeln!(
                out,
                "{}",
                row(&[
                    m.epoch.to_string(),
                    format!("{:.4}", m.train_loss),
                    format!("{:.4}", m.test_loss),
                    format!("{:.2}%", 100.0 * m.test_acc),
                    format!("{:.2}%", 100.0 * token_acc),
                    format!("{:.1}", m.seconds),
                ])
            )?;
            out.flush()?;
            history.push(m);
        }
    }
    let checkpoint = GptCheckpoint {
        config,
        data: match &source {
            Source::Task(d) => SeqData::Task {
                task: d.task,
                digits: d.digits,
                base: d.base,
            },
            Source::Text(t) => SeqData::Text {
                vocab: t.vocab.clone(),
            },
        },
        params: trainer.parameters().map_err(nn_error)?,
    };
    if !writes_files {
        return Ok(());
    }
    let files = [nn::CHECKPOINT_FILE, "metrics.csv", "metrics.svg"];
    nn::save_gpt_checkpoint(&args.out.join(files[0]), &checkpoint).map_err(nn_error)?;
    nn::report::write_metrics_csv(&args.out.join(files[1]), &history).map_err(nn_error)?;
    nn::report::plot_metrics(
        &args.out.join(files[2]),
        &format!("transformer on {name}"),
        &history,
    )
    .map_err(nn_error)?;
    let last = history
        .last()
        .ok_or_else(|| CliError::new("no step was run"))?;
    match &source {
        Source::Task(d) => writeln!(
            out,
            "\n{:.2}% of {} held-out sequences {} exactly ({:.2}% of tokens) after {steps} steps in {:.1} s",
            100.0 * last.test_acc,
            d.test.len(),
            if d.task == Task::Sort { "sorted" } else { "reversed" },
            100.0 * last.train_acc,
            last.seconds
        )?,
        Source::Text(_) => writeln!(
            out,
            "\nvalidation loss {:.4} ({:.2}% of next characters) after {steps} steps in {:.1} s",
            last.test_loss,
            100.0 * last.test_acc,
            last.seconds
        )?,
    }
    let shown: Vec<String> = files
        .iter()
        .map(|f| args.out.join(f).display().to_string())
        .collect();
    writeln!(out, "wrote {}", shown.join(", "))?;
    if let Some(path) = &args.onnx {
        let graph = nn::gpt_forward_graph(&model, args.batch_size, context).map_err(nn_error)?;
        let doc = format!("transformer trained on {name}");
        let summary = super::export::write_onnx(&graph, &checkpoint.params, path, &doc)?;
        writeln!(out, "wrote {}: {summary}", path.display())?;
    }
    Ok(())
}

/// `(test_loss, test_acc, token_acc)` (module doc).
fn evaluate(trainer: &mut SeqTrainer, source: &Source) -> Result<(f64, f64, f64), CliError> {
    match source {
        Source::Task(d) => {
            let (tokens, targets): (Vec<Vec<i32>>, Vec<Vec<i32>>) =
                d.test.iter().map(|e| d.pair(e)).unzip();
            let (loss, token_acc) = trainer
                .loss_and_accuracy(&tokens, &targets)
                .map_err(nn_error)?;
            let mut exact = 0;
            for chunk in d.test.chunks(trainer.eval_batch) {
                let prompts: Vec<Vec<i32>> =
                    chunk.iter().map(|e| e[..=d.digits].to_vec()).collect();
                let answers = trainer
                    .generate(&prompts, d.digits, 0.0, &mut Shuffle::new(0))
                    .map_err(nn_error)?;
                exact += answers
                    .iter()
                    .zip(chunk)
                    .filter(|(a, e)| a[..] == e[d.digits + 1..])
                    .count();
            }
            Ok((loss, exact as f64 / d.test.len() as f64, token_acc))
        }
        Source::Text(t) => {
            let c = trainer.context;
            let windows: Vec<usize> = (0..t.valid.len() - c)
                .step_by(c)
                .take(4 * trainer.eval_batch)
                .collect();
            let tokens: Vec<Vec<i32>> = windows
                .iter()
                .map(|&i| t.valid[i..i + c].to_vec())
                .collect();
            let targets: Vec<Vec<i32>> = windows
                .iter()
                .map(|&i| t.valid[i + 1..i + c + 1].to_vec())
                .collect();
            let (loss, acc) = trainer
                .loss_and_accuracy(&tokens, &targets)
                .map_err(nn_error)?;
            Ok((loss, acc, acc))
        }
    }
}

fn model_size(model: &Gpt) -> usize {
    use kiln::nn::Module;
    model.parameters().iter().map(|p| p.ty.numel()).sum()
}

fn row(cells: &[String; 6]) -> String {
    let widths = [6, 10, 9, 8, 8, 7];
    let cells: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, w)| format!("{c:>w$}"))
        .collect();
    cells.join("  ")
}
