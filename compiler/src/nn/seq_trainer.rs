//! Training a [`Gpt`] on token sequences: one compiled training step (token cross-entropy, the optimizer) and one
//! compiled forward graph for evaluation and decoding, on any [`Backend`].
//!
//! Decoding is greedy or sampled, one token per run of the forward graph over the whole fixed-length context: the
//! causal mask makes the logits at position `p` depend only on tokens `0..=p`, so the positions after it may hold
//! anything (zeros here) — no KV cache, a forward pass per generated token.

use super::trainer::from_rank_zero;
use super::{init_parameters, Backend, Error, Gpt, Module, Program, Ranks};
use crate::data::{Shuffle, IGNORE_TARGET};
use crate::train::{training_step_clipped, training_step_data_parallel, Optimizer};
use kiln_ir::{Builder, DType, Graph, Tensor, TensorType};
use std::ops::Range;

/// A training step and a forward graph of one model, their parameters kept equal.
pub struct SeqTrainer {
    params: Vec<String>,
    step: Box<dyn Program>,
    forward: Box<dyn Program>,
    /// Whether the forward program's parameters are behind the step's.
    stale: bool,
    /// The rows of each global batch this process trains on: all of them, or its rank's shard.
    shard: Range<usize>,
    /// Sequences per step, across all ranks.
    pub batch: usize,
    pub eval_batch: usize,
    pub context: usize,
    pub vocab: usize,
}

/// `tokens` i32 `[batch, t]` → logits; with `targets`, the loss output `loss` too.
fn model_graph(model: &Gpt, batch: usize, t: usize, with_loss: bool) -> Result<Graph, Error> {
    let mut b = Builder::new("gpt");
    let tokens = b.data("tokens", TensorType::new(DType::I32, [batch, t]))?;
    let logits = model.forward(&mut b, tokens)?;
    if with_loss {
        let targets = b.data("targets", TensorType::new(DType::I32, [batch, t]))?;
        let loss = b.token_cross_entropy(logits, targets)?;
        b.output("loss", loss)?;
    } else {
        b.output("logits", logits)?;
    }
    Ok(b.finish())
}

/// The forward graph `tokens: i32[batch, t] → logits` of `model` (what the trainer evaluates and decodes with).
pub fn gpt_forward_graph(model: &Gpt, batch: usize, t: usize) -> Result<Graph, Error> {
    model_graph(model, batch, t, false)
}

impl SeqTrainer {
    /// Compiles the step (`batch` sequences of `context` tokens; gradients clipped to the global norm `clip` if
    /// given) and the forward graph (`eval_batch` sequences) of `model` on `backend`, and initializes the parameters
    /// from `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: &Gpt,
        batch: usize,
        eval_batch: usize,
        context: usize,
        optimizer: &Optimizer,
        clip: Option<f64>,
        backend: &dyn Backend,
        seed: u64,
    ) -> Result<SeqTrainer, Error> {
        SeqTrainer::new_in(
            model, batch, eval_batch, context, optimizer, clip, backend, seed, None,
        )
    }

    /// [`SeqTrainer::new`], or with `ranks` for one rank of a data-parallel run (SPEC §5, "Data-parallel steps"):
    /// every rank is given the same global batches (`batch` sequences, a multiple of the group's size) and trains
    /// on its equal shard of each, the gradients averaged across the group before clipping and the update, so every rank holds the same
    /// parameters, those of one process on the whole batch up to float rounding. The parameters start as rank 0's
    /// (broadcast). Every rank must call this with the same arguments.
    ///
    /// The step's loss is the mean of the ranks' mean token losses: the global mean wherever every shard counts
    /// the same number of targets (every task and text batch here), as with PyTorch's DDP.
    #[allow(clippy::too_many_arguments)]
    pub fn new_in(
        model: &Gpt,
        batch: usize,
        eval_batch: usize,
        context: usize,
        optimizer: &Optimizer,
        clip: Option<f64>,
        backend: &dyn Backend,
        seed: u64,
        ranks: Option<&Ranks>,
    ) -> Result<SeqTrainer, Error> {
        if batch == 0 || eval_batch == 0 {
            return Err(Error::Config("the batch size is 0".into()));
        }
        let (rank, size) = ranks.map_or((0, 1), |r| (r.group.rank(), r.group.size()));
        if !batch.is_multiple_of(size) {
            return Err(Error::Config(format!(
                "batch size {batch} does not split into {size} equal shards (data-parallel ranks); make it a \
                 multiple of {size}"
            )));
        }
        let rows = batch / size;
        let graph = model_graph(model, rows, context, true)?;
        let params: Vec<String> = model.parameters().into_iter().map(|p| p.name).collect();
        let names: Vec<&str> = params.iter().map(String::as_str).collect();
        let mut step = match ranks {
            Some(r) => {
                let step =
                    training_step_data_parallel(&graph, "loss", &names, optimizer, clip, r.reduce)?;
                backend.load_in_group(&step, &r.group)?
            }
            None => backend.load(&training_step_clipped(
                &graph, "loss", &names, optimizer, clip,
            )?)?,
        };
        let forward = backend.load(&model_graph(model, eval_batch, context, false)?)?;
        for (name, value) in init_parameters(model, seed)? {
            let value = match ranks {
                Some(r) => from_rank_zero(&*r.group, &name, value)?,
                None => value,
            };
            step.set(&name, value)?;
        }
        Ok(SeqTrainer {
            params,
            step,
            forward,
            stale: true,
            shard: rank * rows..(rank + 1) * rows,
            batch,
            eval_batch,
            context,
            vocab: model.config.vocab,
        })
    }

    /// Replaces the parameters (e.g. from a checkpoint).
    pub fn set_parameters(&mut self, params: &[(String, Tensor)]) -> Result<(), Error> {
        for (name, value) in params {
            self.step.set(name, value.clone())?;
        }
        self.stale = true;
        Ok(())
    }

    /// One optimizer step on the global batch `(tokens, targets)` (`batch` rows of `context` tokens each; a rank of
    /// a data-parallel run reads only its shard of them); returns the loss before the step, averaged over the ranks.
    pub fn step(&mut self, tokens: &[i32], targets: &[i32]) -> Result<f64, Error> {
        let c = self.context;
        let expected = self.batch * c;
        if tokens.len() != expected || targets.len() != expected {
            return Err(Error::Config(format!(
                "a step takes {} sequences of {c} tokens ({expected} tokens and targets), not {} tokens and {} \
                 targets",
                self.batch,
                tokens.len(),
                targets.len()
            )));
        }
        let rows = self.shard.start * c..self.shard.end * c;
        let dims = [self.shard.len(), c];
        let tokens = Tensor::from_i32(&dims, tokens[rows.clone()].to_vec())?;
        let targets = Tensor::from_i32(&dims, targets[rows].to_vec())?;
        let out = self
            .step
            .run(&[("tokens", &tokens), ("targets", &targets)])?;
        self.stale = true;
        Ok(out
            .first()
            .and_then(Tensor::scalar_value)
            .unwrap_or(f64::NAN))
    }

    /// The parameters by name, in the model's order.
    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>, Error> {
        self.params
            .iter()
            .map(|name| Ok((name.clone(), self.step.get(name)?)))
            .collect()
    }

    /// The logits `[eval_batch, context, vocab]` (flattened) of `eval_batch` rows of tokens.
    pub fn logits(&mut self, tokens: &[i32]) -> Result<Vec<f32>, Error> {
        if self.stale {
            for (name, value) in self.parameters()? {
                self.forward.set(&name, value)?;
            }
            self.stale = false;
        }
        let tokens = Tensor::from_i32(&[self.eval_batch, self.context], tokens.to_vec())?;
        let out = self.forward.run(&[("tokens", &tokens)])?;
        let logits = out
            .into_iter()
            .next()
            .ok_or_else(|| Error::Config("the forward graph returned nothing".into()))?;
        Ok(logits
            .cast(DType::F32)
            .as_f32()
            .unwrap_or_default()
            .to_vec())
    }

    /// Continues each non-empty prompt (at most `eval_batch`) by `count` tokens, greedily (`temperature` 0) or
    /// sampled from `softmax(logits / temperature)` with `rng`. The model reads the last `context` tokens of each
    /// row: a longer text slides its window.
    pub fn generate(
        &mut self,
        prompts: &[Vec<i32>],
        count: usize,
        temperature: f64,
        rng: &mut Shuffle,
    ) -> Result<Vec<Vec<i32>>, Error> {
        let (c, v) = (self.context, self.vocab);
        if prompts.len() > self.eval_batch || prompts.iter().any(Vec::is_empty) {
            return Err(Error::Config(format!(
                "generate takes 1 to {} prompts of at least one token",
                self.eval_batch
            )));
        }
        let mut rows: Vec<Vec<i32>> = prompts.to_vec();
        for _ in 0..count {
            let mut tokens = vec![0; self.eval_batch * c];
            for (r, row) in rows.iter().enumerate() {
                // The last `c` tokens: a text model slides its window, a task prompt fits.
                let tail = &row[row.len().saturating_sub(c)..];
                tokens[r * c..r * c + tail.len()].copy_from_slice(tail);
            }
            let logits = self.logits(&tokens)?;
            for (r, row) in rows.iter_mut().enumerate() {
                let p = row.len().min(c) - 1;
                let at = &logits[(r * c + p) * v..(r * c + p + 1) * v];
                row.push(pick(at, temperature, rng));
            }
        }
        Ok(rows
            .into_iter()
            .zip(prompts)
            .map(|(row, p)| row[p.len()..].to_vec())
            .collect())
    }

    /// The mean token cross-entropy of the forward graph on rows of `(tokens, targets)` (`eval_batch` at a time; a
    /// last partial batch is padded and its padding ignored), and the accuracy of the argmax over counted targets.
    pub fn loss_and_accuracy(
        &mut self,
        tokens: &[Vec<i32>],
        targets: &[Vec<i32>],
    ) -> Result<(f64, f64), Error> {
        let (c, v) = (self.context, self.vocab);
        let (mut loss, mut counted, mut correct) = (0.0, 0usize, 0usize);
        for (chunk, goals) in tokens
            .chunks(self.eval_batch)
            .zip(targets.chunks(self.eval_batch))
        {
            let mut flat = vec![0; self.eval_batch * c];
            for (r, row) in chunk.iter().enumerate() {
                flat[r * c..(r + 1) * c].copy_from_slice(row);
            }
            let logits = self.logits(&flat)?;
            for (r, goal) in goals.iter().enumerate() {
                for (p, &y) in goal.iter().enumerate() {
                    if y == IGNORE_TARGET || y < 0 || y as usize >= v {
                        continue;
                    }
                    let at = &logits[(r * c + p) * v..(r * c + p + 1) * v];
                    let m = at.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
                    let sum: f64 = at.iter().map(|&x| (x as f64 - m).exp()).sum();
                    loss += m + sum.ln() - at[y as usize] as f64;
                    counted += 1;
                    correct += (argmax(at) == y) as usize;
                }
            }
        }
        let n = counted.max(1) as f64;
        Ok((loss / n, correct as f64 / n))
    }
}

fn argmax(logits: &[f32]) -> i32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as i32
}

/// The argmax (temperature 0), or a draw from `softmax(logits / temperature)`.
fn pick(logits: &[f32], temperature: f64, rng: &mut Shuffle) -> i32 {
    if temperature <= 0.0 {
        return argmax(logits);
    }
    let m = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let weights: Vec<f64> = logits
        .iter()
        .map(|&x| ((x as f64 - m) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.unit() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i as i32;
        }
        u -= w;
    }
    argmax(logits)
}
