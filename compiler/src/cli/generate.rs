//! `kiln generate`: continue a prompt with a transformer checkpoint written by `kiln train --model transformer`,
//! decoding with the compiled forward graph (one run per generated token; no KV cache).
//!
//! A task model (sort, reverse) reads exactly `--digits` digits and prints its answer, greedily unless
//! `--temperature` is given; a text model continues the prompt by `--tokens` characters sampled at `--temperature`
//! (0: greedy) from `--seed`.

use super::train::{checkpoint_path, nn_error, BackendArg};
use super::CliError;
use kiln::data::seq::TextData;
use kiln::data::Shuffle;
use kiln::nn::{self, Gpt, SeqData, SeqTrainer};
use kiln::{Adam, Optimizer};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// A directory written by `kiln train --model transformer` (or its model.safetensors file).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,

    /// The text to continue; for a task model, its digits (spaces and commas are ignored).
    #[arg(long, allow_hyphen_values = true)]
    pub prompt: String,

    /// Tokens to generate [default: the task's answer length; 200 characters for a text model].
    #[arg(long, value_name = "N")]
    pub tokens: Option<usize>,

    /// Sampling temperature; 0 is greedy [default: 0 for a task, 0.8 for a text].
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,

    /// Seed of the sampling.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    pub backend: BackendArg,
}

const MAX_TOKENS: usize = 100_000;

pub fn generate(args: &GenerateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let path = checkpoint_path(&args.checkpoint);
    let (checkpoint, integrity) = nn::load_gpt_checkpoint(&path).map_err(nn_error)?;
    if integrity == nn::Integrity::Unverified {
        super::note(format_args!(
            "warning: checkpoint `{}` has no checksum, so its tensor data cannot be verified",
            path.display()
        ));
    }
    let temperature = args.temperature.unwrap_or(match checkpoint.data {
        SeqData::Task { .. } => 0.0,
        SeqData::Text { .. } => 0.8,
    });
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return Err(CliError::new(format!(
            "--temperature {temperature} must be a finite number >= 0"
        )));
    }
    let context = checkpoint.config.block_size;
    let (prompt, count) = match &checkpoint.data {
        SeqData::Task { digits, base, .. } => {
            let values: Vec<i32> = args
                .prompt
                .chars()
                .filter(|c| !c.is_whitespace() && *c != ',')
                .map(|c| {
                    c.to_digit(10)
                        .filter(|&d| (d as usize) < *base)
                        .map(|d| d as i32)
                        .ok_or_else(|| {
                            CliError::new(format!(
                                "--prompt: `{c}` is not a digit below {base} (the model reads {digits} digits)"
                            ))
                        })
                })
                .collect::<Result<_, _>>()?;
            if values.len() != *digits {
                return Err(CliError::new(format!(
                    "--prompt has {} digits; the model reads exactly {digits}",
                    values.len()
                )));
            }
            let mut prompt = values;
            prompt.push(*base as i32);
            (
                prompt,
                args.tokens
                    .unwrap_or(*digits)
                    .min(context + 1 - prompt_len(*digits)),
            )
        }
        SeqData::Text { vocab } => {
            let data = TextData {
                name: String::new(),
                vocab: vocab.clone(),
                train: Vec::new(),
                valid: Vec::new(),
            };
            let prompt = data.encode(&args.prompt).map_err(|c| {
                CliError::new(format!(
                    "--prompt: the character {c:?} is not in the model's vocabulary of {} characters",
                    vocab.len()
                ))
            })?;
            if prompt.is_empty() {
                return Err(CliError::new(
                    "--prompt is empty; a text model needs at least one character",
                ));
            }
            (prompt, args.tokens.unwrap_or(200))
        }
    };
    super::check_count(
        "tokens",
        count,
        1,
        MAX_TOKENS,
        "each token is one run of the model",
    )?;
    let backend = args.backend.kind().create().map_err(nn_error)?;
    let model = Gpt::new(checkpoint.config);
    // The step graph is compiled too (SeqTrainer holds both); a batch of 1 keeps it small.
    let optimizer = Optimizer::Adam(Adam::default());
    let mut trainer =
        SeqTrainer::new(&model, 1, 1, context, &optimizer, None, &*backend, 0).map_err(nn_error)?;
    trainer
        .set_parameters(&checkpoint.params)
        .map_err(nn_error)?;
    let mut rng = Shuffle::new(args.seed);
    let generated = trainer
        .generate(&[prompt], count, temperature, &mut rng)
        .map_err(nn_error)?
        .remove(0);
    match &checkpoint.data {
        SeqData::Task { .. } => {
            let digits: Vec<String> = generated.iter().map(|d| d.to_string()).collect();
            writeln!(out, "{}", digits.join(" "))?;
        }
        SeqData::Text { vocab } => {
            writeln!(
                out,
                "{}{}",
                args.prompt,
                TextData::decode(vocab, &generated)
            )?;
        }
    }
    Ok(())
}

/// A task prompt: the digits and the separator.
fn prompt_len(digits: usize) -> usize {
    digits + 1
}
