//! Composite layers, activations and losses: builder methods that expand into primitives.
//!
//! Nothing here adds an op to the IR; each expansion is written in SPEC.md. Expansions are chosen so that their
//! gradients (derived by autodiff from the primitives' VJPs) follow PyTorch's conventions, e.g. `relu` is a `select`
//! so that relu'(0) = 0.

mod conv;
mod gather;
mod norm;
mod random;
mod transformer;

pub use conv::ConvSpec;
pub use norm::BatchNormTrain;
pub use transformer::{AttentionWeights, GeluApprox};

use crate::builder::{Builder, Value};
use crate::error::IrError;
use crate::op::CmpDir;
use crate::types::{DType, TensorType};

type Result<T> = std::result::Result<T, IrError>;

/// PyTorch clamps the logs inside `binary_cross_entropy` at -100 so that p = 0 or 1 gives a finite loss.
const BCE_LOG_FLOOR: f64 = -100.0;

/// The smallest positive f32 (2^-149, log = -103.3). Clamping the log's argument to it before the -100 clamp keeps the
/// gradient finite at p = 0: a bare `log(0)` would route 0 · 1/0 = NaN into it.
const BCE_MIN_ARGUMENT: f64 = 1.401298464324817e-45;

impl Builder {
    // ---- activations ----

    /// `relu(x) = select(x > 0, x, 0)`: the lecture's `clamp(min=0)`, with relu'(0) = 0 as in PyTorch.
    pub fn relu(&mut self, x: Value) -> Result<Value> {
        let positive = self.compare_scalar(CmpDir::Gt, x, 0.0)?;
        let zero = self.zeros_like(x)?;
        self.select(positive, x, zero)
    }

    /// `leaky_relu(x) = select(x > 0, x, slope * x)`.
    pub fn leaky_relu(&mut self, x: Value, negative_slope: f64) -> Result<Value> {
        let positive = self.compare_scalar(CmpDir::Gt, x, 0.0)?;
        let scaled = self.mul_scalar(x, negative_slope)?;
        self.select(positive, x, scaled)
    }

    /// `softplus(x) = max(x, 0) + log(1 + exp(-|x|))`, which never overflows (`log(1 + exp(x))` does for x > 88 in
    /// f32).
    pub fn softplus(&mut self, x: Value) -> Result<Value> {
        let relu_part = self.max_scalar(x, 0.0)?;
        let abs = self.abs(x)?;
        let neg_abs = self.neg(abs)?;
        let e = self.exp(neg_abs)?;
        let one_plus = self.add_scalar(e, 1.0)?;
        let log = self.log(one_plus)?;
        self.add(relu_part, log)
    }

    /// The step function: 1 where x > 0, else 0 (so H(0) = 0). Its gradient is zero everywhere.
    pub fn heaviside(&mut self, x: Value) -> Result<Value> {
        let positive = self.compare_scalar(CmpDir::Gt, x, 0.0)?;
        let one = self.full_like(x, 1.0)?;
        let zero = self.zeros_like(x)?;
        self.select(positive, one, zero)
    }

    /// `expm1(x) = e^x - 1`, accurate where `exp(x) - 1` cancels: a Taylor polynomial for `|x| < ½` (terms to x⁹ in
    /// f32, x¹⁶ in f64: truncation under 2^-30 and 2^-60 of the result), else `exp(x) - 1` (at least 0.39 there, so
    /// the subtraction loses nothing). Adam's bias correction `1 - β^t = -expm1(t·ln β)` needs it: `pow` rounds `β^t`
    /// near 1, and GLSL's `pow` misses `1 - 0.999^t` by 1e-4 relative.
    pub fn expm1(&mut self, x: Value) -> Result<Value> {
        let dtype = self.dtype(x);
        if !dtype.is_float() {
            return Err(IrError::Build {
                op: "expm1".into(),
                message: format!("needs a float operand, got {}", self.ty(x)),
            });
        }
        let terms: u32 = if dtype == DType::F64 { 16 } else { 9 };
        // Horner from the highest term: x·(1 + x/2·(1 + x/3·(...))) would round each quotient; the coefficients
        // 1/k! are rounded once each instead.
        let factorial = |k: u32| (1..=k).map(f64::from).product::<f64>();
        let mut poly = self.full_like(x, 1.0 / factorial(terms))?;
        for k in (1..terms).rev() {
            let px = self.mul(poly, x)?;
            poly = self.add_scalar(px, 1.0 / factorial(k))?;
        }
        let taylor = self.mul(poly, x)?;
        let e = self.exp(x)?;
        let direct = self.add_scalar(e, -1.0)?;
        let abs = self.abs(x)?;
        let small = self.compare_scalar(CmpDir::Lt, abs, 0.5)?;
        self.select(small, taylor, direct)
    }

    /// The logistic sigmoid (a primitive).
    pub fn sigmoid(&mut self, x: Value) -> Result<Value> {
        self.logistic(x)
    }

    /// `softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)` with `m = max_j x_j` along `axis`.
    pub fn softmax(&mut self, x: Value, axis: isize) -> Result<Value> {
        let e = self.shifted_exp(x, axis)?;
        let sum = self.reduce_sum(e, &[axis], true)?;
        self.div(e, sum)
    }

    /// `log_softmax(x) = (x - m) - log(sum exp(x - m))` with `m = max x` along `axis`.
    ///
    /// Not `x - logsumexp(x)`: that rounds `m + log(s)` at the logits' scale before subtracting, which loses ~2e-4 in
    /// f32 at logits near 1e4 (the spacing of f32 there is 2^-10). Here `x - m` rounds once at the result's own scale
    /// (exactly, by Sterbenz, for `x` near the max) and `log(s)` lies in `[0, log n]`, so the result is accurate to a
    /// few ulp at any scale of the logits.
    pub fn log_softmax(&mut self, x: Value, axis: isize) -> Result<Value> {
        let (_, shifted, log_sum) = self.shifted_log_sum_exp(x, axis)?;
        self.sub(shifted, log_sum)
    }

    /// `logsumexp(x) = m + log(sum exp(x - m))` with `m = max x` along `axis`: exact for logits of ±1e4, where the
    /// naive form overflows.
    pub fn logsumexp(&mut self, x: Value, axis: isize, keep_dims: bool) -> Result<Value> {
        let (m, _, log) = self.shifted_log_sum_exp(x, axis)?;
        let lse = self.add(m, log)?;
        if keep_dims {
            return Ok(lse);
        }
        let axis = self.normalize_axis("logsumexp", x, axis)?;
        let mut dims = self.shape(lse).to_vec();
        dims.remove(axis);
        self.reshape(lse, &dims)
    }

    /// `(m, x - m, log(sum exp(x - m)))` with the keep-dims `m = max x` along `axis`: the shared core of
    /// `log_softmax` and `logsumexp`.
    fn shifted_log_sum_exp(&mut self, x: Value, axis: isize) -> Result<(Value, Value, Value)> {
        let m = self.reduce_max(x, &[axis], true)?;
        let shifted = self.sub(x, m)?;
        let e = self.exp(shifted)?;
        let sum = self.reduce_sum(e, &[axis], true)?;
        let log = self.log(sum)?;
        Ok((m, shifted, log))
    }

    /// `exp(x - max(x))` along `axis` (keep-dims max, broadcast back).
    fn shifted_exp(&mut self, x: Value, axis: isize) -> Result<Value> {
        let m = self.reduce_max(x, &[axis], true)?;
        let shifted = self.sub(x, m)?;
        self.exp(shifted)
    }

    // ---- layers ----

    /// PyTorch's `Linear`: `y = x Wᵀ + b` with `x: [..., in]`, `W: [out, in]`, `b: [out]`.
    pub fn linear(&mut self, x: Value, weight: Value, bias: Option<Value>) -> Result<Value> {
        let (tx, tw) = (self.ty(x).clone(), self.ty(weight).clone());
        let fits = tx.rank() >= 1 && tw.rank() == 2 && tx.dims()[tx.rank() - 1] == tw.dims()[1];
        if !fits {
            return Err(IrError::Build {
                op: "linear".into(),
                message: format!(
                    "input {tx} does not fit weight {tw} (expected [..., in] and [out, in])"
                ),
            });
        }
        let (inputs, outputs) = (tw.dims()[1], tw.dims()[0]);
        let batch: Vec<usize> = tx.dims()[..tx.rank() - 1].to_vec();
        let rows = batch.iter().product::<usize>();
        let x2 = self.reshape(x, &[rows, inputs])?;
        let wt = self.transpose(weight, &[1, 0])?;
        let mut y = self.matmul(x2, wt)?;
        if let Some(b) = bias {
            if self.shape(b) != [outputs] {
                return Err(IrError::Build {
                    op: "linear".into(),
                    message: format!(
                        "bias {} does not fit weight {tw} (expected [{outputs}])",
                        self.ty(b)
                    ),
                });
            }
            y = self.add(y, b)?;
        }
        let out_dims: Vec<usize> = batch.into_iter().chain([outputs]).collect();
        self.reshape(y, &out_dims)
    }

    /// Mean over `axes`: `reduce_sum(x) * (1/count)`.
    pub fn mean(&mut self, x: Value, axes: &[isize], keep_dims: bool) -> Result<Value> {
        let before = self.ty(x).numel();
        let sum = self.reduce_sum(x, axes, keep_dims)?;
        let after = self.ty(sum).numel().max(1);
        let count = before / after;
        self.mul_scalar(sum, 1.0 / count.max(1) as f64)
    }

    /// Mean of every element, as a scalar.
    pub fn mean_all(&mut self, x: Value) -> Result<Value> {
        let axes: Vec<isize> = (0..self.ty(x).rank() as isize).collect();
        self.mean(x, &axes, false)
    }

    /// `one_hot(labels, K)[..., k] = (labels[...] == k)` as `dtype`, for integer labels.
    pub fn one_hot(&mut self, labels: Value, classes: usize, dtype: DType) -> Result<Value> {
        let t = self.ty(labels).clone();
        if t.dtype != DType::I32 {
            return Err(IrError::Build {
                op: "one_hot".into(),
                message: format!("labels must be i32, got {t}"),
            });
        }
        let mut dims = t.dims().to_vec();
        dims.push(1);
        let column = self.reshape(labels, &dims)?;
        *dims.last_mut().expect("pushed above") = classes;
        let spread = self.broadcast(column, &dims)?;
        let rank = dims.len();
        let class_index = self.iota(TensorType::new(DType::I32, dims), rank - 1)?;
        let hit = self.compare(CmpDir::Eq, spread, class_index)?;
        self.cast(hit, dtype)
    }

    // ---- losses (all reduce by the mean) ----

    /// `mean((pred - target)^2)` over all elements.
    pub fn mse_loss(&mut self, pred: Value, target: Value) -> Result<Value> {
        self.same_shape("mse_loss", pred, target)?;
        let diff = self.sub(pred, target)?;
        let sq = self.mul(diff, diff)?;
        self.mean_all(sq)
    }

    /// Binary cross-entropy on probabilities: `-mean(y log p + (1 - y) log(1 - p))`, each log clamped at -100 as in
    /// PyTorch: `max(log(max(p, 2^-149)), -100)` (see [`BCE_MIN_ARGUMENT`]).
    pub fn bce_loss(&mut self, prob: Value, target: Value) -> Result<Value> {
        self.same_shape("bce_loss", prob, target)?;
        let log_p = self.clamped_log(prob)?;
        let one_minus_p = self.rsub_scalar(1.0, prob)?;
        let log_1mp = self.clamped_log(one_minus_p)?;
        let one_minus_y = self.rsub_scalar(1.0, target)?;
        let a = self.mul(target, log_p)?;
        let b = self.mul(one_minus_y, log_1mp)?;
        let sum = self.add(a, b)?;
        let m = self.mean_all(sum)?;
        self.neg(m)
    }

    /// Binary cross-entropy on logits, stable for any z: `mean(max(z, 0) - z y + log(1 + exp(-|z|)))`.
    pub fn bce_with_logits(&mut self, logits: Value, target: Value) -> Result<Value> {
        self.same_shape("bce_with_logits", logits, target)?;
        let relu_part = self.max_scalar(logits, 0.0)?;
        let zy = self.mul(logits, target)?;
        let abs = self.abs(logits)?;
        let neg_abs = self.neg(abs)?;
        let e = self.exp(neg_abs)?;
        let one_plus = self.add_scalar(e, 1.0)?;
        let log = self.log(one_plus)?;
        let t = self.sub(relu_part, zy)?;
        let per_element = self.add(t, log)?;
        self.mean_all(per_element)
    }

    /// Softmax cross-entropy of `logits: [N, K]` against integer `labels: [N]`, averaged over the batch:
    /// `-mean_n sum_k one_hot(labels)[n, k] * log_softmax(logits)[n, k]`.
    pub fn cross_entropy(&mut self, logits: Value, labels: Value) -> Result<Value> {
        let (tl, ty) = (self.ty(logits).clone(), self.ty(labels).clone());
        if tl.rank() != 2
            || ty.rank() != 1
            || ty.dims()[0] != tl.dims()[0]
            || ty.dtype != DType::I32
        {
            return Err(IrError::Build {
                op: "cross_entropy".into(),
                message: format!("expected logits [N, K] and i32 labels [N], got {tl} and {ty}"),
            });
        }
        let log_probs = self.log_softmax(logits, 1)?;
        let targets = self.one_hot(labels, tl.dims()[1], tl.dtype)?;
        let picked = self.mul(targets, log_probs)?;
        let per_sample = self.reduce_sum(picked, &[1], false)?;
        let m = self.mean_all(per_sample)?;
        self.neg(m)
    }

    /// `max(log(max(x, 2^-149)), -100)`.
    fn clamped_log(&mut self, x: Value) -> Result<Value> {
        let x = self.max_scalar(x, BCE_MIN_ARGUMENT)?;
        let log = self.log(x)?;
        self.max_scalar(log, BCE_LOG_FLOOR)
    }

    fn same_shape(&self, op: &str, a: Value, b: Value) -> Result<()> {
        if self.ty(a) != self.ty(b) {
            return Err(IrError::Build {
                op: op.into(),
                message: format!("prediction {} and target {} differ", self.ty(a), self.ty(b)),
            });
        }
        Ok(())
    }
}
