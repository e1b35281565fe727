//! Token-sequence data for the transformer: generated tasks (`sort`, `reverse`) and character-level text.
//!
//! A generated task's example is `prompt ++ [SEP] ++ answer`: the model reads the sequence without its last token and
//! is trained, by teacher forcing, to predict each answer token from everything before it. Prompt positions get the
//! target [`IGNORE`], which is outside the vocabulary, so token cross-entropy counts them as 0 (SPEC §4
//! `cross_entropy`: a label outside `0..K` contributes 0); the loss is then the answer positions' mean times the
//! fraction of answer positions, a constant factor.
//!
//! The train and test splits hold **distinct** sequences, drawn from fixed seeds: the same on every machine, so a
//! checkpoint is evaluated later on the same held-out set.

use super::{DataError, Shuffle};
use std::collections::HashSet;
use std::path::Path;

/// The target of positions that are not trained on (the prompt of a generated task).
pub const IGNORE: i32 = -1;

/// A generated task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Digits in, the same digits in ascending order out.
    Sort,
    /// Digits in, the same digits in reverse order out: every answer token attends `2k` positions back.
    Reverse,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Sort => "sort",
            Task::Reverse => "reverse",
        }
    }

    pub fn from_name(name: &str) -> Option<Task> {
        [Task::Sort, Task::Reverse]
            .into_iter()
            .find(|t| t.name() == name)
    }

    /// The answer to `prompt`.
    pub fn answer(self, prompt: &[i32]) -> Vec<i32> {
        let mut a = prompt.to_vec();
        match self {
            Task::Sort => a.sort_unstable(),
            Task::Reverse => a.reverse(),
        }
        a
    }
}

/// A generated task's fixed splits: sequences of `digits` digits drawn from `0..base`.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskData {
    pub task: Task,
    pub digits: usize,
    pub base: usize,
    /// Each example: prompt, separator, answer (`2·digits + 1` tokens).
    pub train: Vec<Vec<i32>>,
    pub test: Vec<Vec<i32>>,
}

impl TaskData {
    /// The separator token, after the digits.
    pub fn sep(&self) -> i32 {
        self.base as i32
    }

    /// Digits and the separator.
    pub fn vocab(&self) -> usize {
        self.base + 1
    }

    /// The tokens a model reads: an example without its last token.
    pub fn context(&self) -> usize {
        2 * self.digits
    }

    /// `(tokens, targets)` of one example: the sequence shifted by one, prompt targets [`IGNORE`]d.
    pub fn pair(&self, example: &[i32]) -> (Vec<i32>, Vec<i32>) {
        let n = self.digits;
        let tokens = example[..2 * n].to_vec();
        let targets = (0..2 * n)
            .map(|p| if p < n { IGNORE } else { example[p + 1] })
            .collect();
        (tokens, targets)
    }
}

/// `train` and `test` distinct examples of `task` over `digits` digits in `0..base`, from a fixed seed.
pub fn generate(
    task: Task,
    digits: usize,
    base: usize,
    train: usize,
    test: usize,
) -> Result<TaskData, String> {
    if digits == 0 || base < 2 {
        return Err(format!(
            "a {} task needs at least one digit and a base of at least 2, got {digits} digits in base {base}",
            task.name()
        ));
    }
    let possible = (base as f64).powi(digits as i32);
    let wanted = (train + test) as f64;
    // Distinct draws get slow as the space fills; half of it is plenty for a held-out set.
    if wanted > possible / 2.0 {
        return Err(format!(
            "{train} + {test} distinct {task} examples need more than half of the {possible} sequences of {digits} \
             digits in base {base}",
            task = task.name()
        ));
    }
    let mut rng = Shuffle::new(0x5e9_da7a ^ digits as u64 ^ ((base as u64) << 16));
    let mut seen = HashSet::new();
    let mut draw = |count: usize| -> Vec<Vec<i32>> {
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let prompt: Vec<i32> = (0..digits).map(|_| rng.below(base) as i32).collect();
            if seen.insert(prompt.clone()) {
                let mut example = prompt.clone();
                example.push(base as i32);
                example.extend(task.answer(&prompt));
                out.push(example);
            }
        }
        out
    };
    // The test split first, so that its sequences don't depend on the training set's size.
    let test = draw(test);
    let train = draw(train);
    Ok(TaskData {
        task,
        digits,
        base,
        train,
        test,
    })
}

/// A character-level corpus: the vocabulary (every distinct character, sorted) and the text as token ids, with a
/// held-out tail for the validation loss.
#[derive(Clone, Debug, PartialEq)]
pub struct TextData {
    pub name: String,
    pub vocab: Vec<char>,
    pub train: Vec<i32>,
    /// The last tenth of the text (at least one context and one target).
    pub valid: Vec<i32>,
}

impl TextData {
    /// The ids of `text`, or the first character not in the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<i32>, char> {
        text.chars()
            .map(|c| {
                self.vocab
                    .binary_search(&c)
                    .map(|i| i as i32)
                    .map_err(|_| c)
            })
            .collect()
    }

    pub fn decode(vocab: &[char], ids: &[i32]) -> String {
        ids.iter()
            .map(|&i| vocab.get(i as usize).copied().unwrap_or('\u{fffd}'))
            .collect()
    }
}

/// Reads `path` as UTF-8 text for a model reading `context` characters at a time.
pub fn read_text(path: &Path, context: usize) -> Result<TextData, DataError> {
    let bad = |message: String| DataError::Npz {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "not UTF-8 text: invalid bytes at offset {}",
            e.utf8_error().valid_up_to()
        ))
    })?;
    text_data(&path.display().to_string(), &text, context).map_err(bad)
}

/// [`read_text`] on a string.
pub fn text_data(name: &str, text: &str, context: usize) -> Result<TextData, String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Err("the text is empty".into());
    }
    let mut vocab = chars.clone();
    vocab.sort_unstable();
    vocab.dedup();
    let ids: Vec<i32> = chars
        .iter()
        .map(|c| vocab.binary_search(c).expect("from the text") as i32)
        .collect();
    // One window is `context` inputs and the target after them; both parts need one.
    let held_out = (ids.len() / 10).max(context + 1);
    if ids.len() < held_out + context + 1 {
        return Err(format!(
            "the text has {} characters, fewer than one context of {context} (--context) plus its next character \
             for training and again for validation",
            ids.len()
        ));
    }
    let split = ids.len() - held_out;
    Ok(TextData {
        name: name.to_string(),
        vocab,
        train: ids[..split].to_vec(),
        valid: ids[split..].to_vec(),
    })
}
