//! Losses on a model's output `[N, K]` against integer class labels, and how each turns the output into a predicted
//! class.

use super::Error;
use kiln_ir::{Builder, DType, IrError, Tensor, TensorType, Value};

/// A training loss; every one is a mean over the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy of logits `[N, K]` against labels `i32[N]` (`K` = classes). Predicts the argmax.
    CrossEntropy,
    /// Mean squared error against one-hot targets `[N, K]`, or against the label itself when `K` = 1 for two
    /// classes (the course's XOR regression). Predicts the argmax, or `out > 0.5` when `K` = 1.
    Mse,
    /// Sigmoid, then binary cross-entropy against one-hot targets (or the label when `K` = 1). Predicts like
    /// [`Loss::BceWithLogits`].
    Bce,
    /// Binary cross-entropy on logits against one-hot targets (or the label when `K` = 1). Predicts the argmax, or
    /// `out > 0` when `K` = 1.
    BceWithLogits,
}

impl Loss {
    pub const NAMES: [&str; 4] = ["cross_entropy", "mse", "bce", "bce_with_logits"];

    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "cross_entropy",
            Loss::Mse => "mse",
            Loss::Bce => "bce",
            Loss::BceWithLogits => "bce_with_logits",
        }
    }

    pub fn from_name(name: &str) -> Option<Loss> {
        Loss::NAMES
            .into_iter()
            .zip([
                Loss::CrossEntropy,
                Loss::Mse,
                Loss::Bce,
                Loss::BceWithLogits,
            ])
            .find_map(|(n, loss)| (n == name).then_some(loss))
    }

    /// Checks that a model with `outputs` output columns fits `classes` classes under this loss.
    pub fn check_outputs(self, outputs: usize, classes: usize) -> Result<(), Error> {
        let fits =
            outputs == classes || (outputs == 1 && classes == 2 && self != Loss::CrossEntropy);
        if fits {
            return Ok(());
        }
        Err(Error::Config(format!(
            "the model has {outputs} output(s) but the data has {classes} classes; loss {} needs {}",
            self.name(),
            if self == Loss::CrossEntropy || classes != 2 {
                format!("{classes}")
            } else {
                "2 (one-hot) or 1".to_string()
            }
        )))
    }

    /// The type of the target input for a batch of `batch` rows and `outputs` columns.
    pub fn target_type(self, batch: usize, outputs: usize) -> TensorType {
        match self {
            Loss::CrossEntropy => TensorType::new(DType::I32, [batch]),
            _ => TensorType::f32(&[batch, outputs]),
        }
    }

    /// Appends the loss of `out` against `target` (of [`Loss::target_type`]).
    pub fn apply(self, b: &mut Builder, out: Value, target: Value) -> Result<Value, IrError> {
        match self {
            Loss::CrossEntropy => b.cross_entropy(out, target),
            Loss::Mse => b.mse_loss(out, target),
            Loss::Bce => {
                let p = b.sigmoid(out)?;
                b.bce_loss(p, target)
            }
            Loss::BceWithLogits => b.bce_with_logits(out, target),
        }
    }

    /// The target tensor for `labels` and a model with `outputs` columns.
    pub fn targets(self, labels: &[i32], outputs: usize) -> Result<Tensor, IrError> {
        let n = labels.len();
        match self {
            Loss::CrossEntropy => Tensor::from_i32(&[n], labels.to_vec()),
            _ if outputs == 1 => {
                Tensor::from_f32(&[n, 1], labels.iter().map(|&y| y as f32).collect())
            }
            _ => {
                let mut one_hot = vec![0.0f32; n * outputs];
                for (row, &y) in labels.iter().enumerate() {
                    if let Some(slot) = one_hot.get_mut(row * outputs + y as usize) {
                        *slot = 1.0;
                    }
                }
                Tensor::from_f32(&[n, outputs], one_hot)
            }
        }
    }

    /// The predicted class of each row of `out` (row-major `[N, outputs]`).
    pub fn predict(self, out: &[f32], outputs: usize) -> Vec<i32> {
        if outputs == 1 {
            let threshold = if self == Loss::Mse { 0.5 } else { 0.0 };
            return out.iter().map(|&v| i32::from(v > threshold)).collect();
        }
        out.chunks(outputs)
            .map(|row| {
                // The first maximum, as `torch.argmax`; NaN never wins.
                let mut best = 0;
                for (k, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = k;
                    }
                }
                best as i32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in Loss::NAMES {
            assert_eq!(Loss::from_name(name).unwrap().name(), name);
        }
    }

    #[test]
    fn predictions() {
        assert_eq!(
            Loss::CrossEntropy.predict(&[0.1, 0.9, 0.5, 2.0, 1.0, 2.0], 3),
            [1, 0]
        );
        assert_eq!(Loss::Mse.predict(&[0.4, 0.6], 1), [0, 1]);
        assert_eq!(Loss::BceWithLogits.predict(&[-0.1, 0.1], 1), [0, 1]);
    }

    #[test]
    fn one_output_needs_two_classes_and_a_binary_loss() {
        assert!(Loss::Mse.check_outputs(1, 2).is_ok());
        assert!(Loss::CrossEntropy.check_outputs(1, 2).is_err());
        assert!(Loss::Mse.check_outputs(1, 3).is_err());
    }
}
