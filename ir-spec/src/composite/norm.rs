//! Batch normalization (PyTorch's `BatchNorm{1,2,3}d`), in training and in evaluation mode, as primitives.

use crate::builder::{Builder, Value};
use crate::error::IrError;

type Result<T> = std::result::Result<T, IrError>;

fn build_err(message: String) -> IrError {
    IrError::Build {
        op: "batch_norm".into(),
        message,
    }
}

/// A training-mode batch norm's results: the normalized tensor and the updated running statistics (when the layer
/// tracks them), which a training step writes back over the running statistics it read.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormTrain {
    pub y: Value,
    pub running_mean: Option<Value>,
    pub running_var: Option<Value>,
}

impl Builder {
    /// Training mode over `x: [N, C, ..]`: per channel `c`, over the `n = N·Π spatial` values, `mean_c` and the
    /// biased `var_c`; `y = (x − mean_c) / sqrt(var_c + eps) · weight[c] + bias[c]`. With running statistics
    /// `(mean, var)` (each `[C]`), also `mean ← (1 − momentum)·mean + momentum·mean_c` and
    /// `var ← (1 − momentum)·var + momentum·var_c·n/(n − 1)` (the unbiased batch variance, as PyTorch).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_train(
        &mut self,
        x: Value,
        weight: Option<Value>,
        bias: Option<Value>,
        running: Option<(Value, Value)>,
        momentum: f64,
        eps: f64,
    ) -> Result<BatchNormTrain> {
        let c = self.check_batch_norm(x, weight, bias, running.map(|r| [r.0, r.1]), eps)?;
        if !(0.0..=1.0).contains(&momentum) {
            return Err(build_err(format!("momentum {momentum} is outside [0, 1]")));
        }
        let dims = self.shape(x).to_vec();
        let n = self.ty(x).numel() / c.max(1);
        if n <= 1 && running.is_some() {
            return Err(build_err(format!(
                "input {} has {n} value(s) per channel: training needs more than 1 (the unbiased variance divides by n − 1)",
                self.ty(x)
            )));
        }
        let axes: Vec<isize> = (0..dims.len() as isize).filter(|&a| a != 1).collect();
        let mean = self.mean(x, &axes, true)?;
        let centered = self.sub(x, mean)?;
        let squares = self.mul(centered, centered)?;
        let var = self.mean(squares, &axes, true)?;
        let y = self.normalize(x, centered, var, weight, bias, eps)?;
        let Some((running_mean, running_var)) = running else {
            return Ok(BatchNormTrain {
                y,
                running_mean: None,
                running_var: None,
            });
        };
        let batch_mean = self.reshape(mean, &[c])?;
        let batch_var = self.reshape(var, &[c])?;
        let unbiased = self.mul_scalar(batch_var, n as f64 / (n as f64 - 1.0))?;
        let new_mean = self.blend(running_mean, batch_mean, momentum)?;
        let new_var = self.blend(running_var, unbiased, momentum)?;
        Ok(BatchNormTrain {
            y,
            running_mean: Some(new_mean),
            running_var: Some(new_var),
        })
    }

    /// Evaluation mode: `y = (x − mean[c]) / sqrt(var[c] + eps) · weight[c] + bias[c]` with the running statistics.
    pub fn batch_norm_eval(
        &mut self,
        x: Value,
        weight: Option<Value>,
        bias: Option<Value>,
        (mean, var): (Value, Value),
        eps: f64,
    ) -> Result<Value> {
        let c = self.check_batch_norm(x, weight, bias, Some([mean, var]), eps)?;
        let rank = self.shape(x).len();
        let mut per_channel = vec![1; rank];
        per_channel[1] = c;
        let mean = self.reshape(mean, &per_channel)?;
        let var = self.reshape(var, &per_channel)?;
        let centered = self.sub(x, mean)?;
        self.normalize(x, centered, var, weight, bias, eps)
    }

    /// `centered / sqrt(var + eps) · weight + bias`, the per-channel values shaped `[1, C, 1..]`.
    fn normalize(
        &mut self,
        x: Value,
        centered: Value,
        var: Value,
        weight: Option<Value>,
        bias: Option<Value>,
        eps: f64,
    ) -> Result<Value> {
        let rank = self.shape(x).len();
        let c = self.shape(x)[1];
        let mut per_channel = vec![1; rank];
        per_channel[1] = c;
        let shifted = self.add_scalar(var, eps)?;
        let root = self.sqrt(shifted)?;
        let inv = self.recip(root)?;
        let mut y = self.mul(centered, inv)?;
        if let Some(w) = weight {
            let w = self.reshape(w, &per_channel)?;
            y = self.mul(y, w)?;
        }
        if let Some(b) = bias {
            let b = self.reshape(b, &per_channel)?;
            y = self.add(y, b)?;
        }
        Ok(y)
    }

    /// `(1 − momentum)·old + momentum·new`.
    fn blend(&mut self, old: Value, new: Value, momentum: f64) -> Result<Value> {
        let kept = self.mul_scalar(old, 1.0 - momentum)?;
        let added = self.mul_scalar(new, momentum)?;
        self.add(kept, added)
    }

    /// The channel count of `x: [N, C, ..]` (float), every per-channel tensor `[C]` of its dtype, `eps > 0`.
    fn check_batch_norm(
        &self,
        x: Value,
        weight: Option<Value>,
        bias: Option<Value>,
        running: Option<[Value; 2]>,
        eps: f64,
    ) -> Result<usize> {
        let tx = self.ty(x);
        if tx.rank() < 2 || !tx.dtype.is_float() {
            return Err(build_err(format!(
                "input {tx} must be a float [N, C, ..] tensor"
            )));
        }
        let c = tx.dims()[1];
        let named = [("weight", weight), ("bias", bias)].into_iter().chain(
            running
                .into_iter()
                .flat_map(|[m, v]| [("running_mean", Some(m)), ("running_var", Some(v))]),
        );
        for (name, v) in named {
            if let Some(v) = v {
                let t = self.ty(v);
                if t.dims() != [c] || t.dtype != tx.dtype {
                    return Err(build_err(format!(
                        "{name} {t} does not fit the {c} channels of {tx} (expected {}[{c}])",
                        tx.dtype
                    )));
                }
            }
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(build_err(format!("eps {eps} must be positive")));
        }
        Ok(c)
    }
}
