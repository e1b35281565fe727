//! Transformer layers (PyTorch's `LayerNorm`, `RMSNorm`, `GELU`, `scaled_dot_product_attention`, multi-head
//! attention and a per-token cross-entropy) as compositions of primitives (SPEC §4).
//!
//! Like every composite, these add no op: autodiff derives their gradients (and gradients of those) from the
//! primitives' VJPs. The expansions are the numerically stable ones: layer norm centres before it squares (two
//! passes) and attention's softmax subtracts the row maximum, so inputs of ±1e4 give no overflow.

use crate::builder::{broadcast_shapes, Builder, Value};
use crate::error::IrError;
use crate::op::CmpDir;
use crate::types::{DType, TensorType};

type Result<T> = std::result::Result<T, IrError>;

fn build_err(op: &str, message: String) -> IrError {
    IrError::Build {
        op: op.into(),
        message,
    }
}

/// √(2/π), the tanh GELU's scale.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

/// The cubic coefficient of the tanh GELU (Hendrycks & Gimpel 2016; PyTorch's `approximate='tanh'`).
const GELU_TANH_CUBIC: f64 = 0.044715;

/// Which GELU: PyTorch's `nn.GELU(approximate=...)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GeluApprox {
    /// The exact `0.5·x·(1 + erf(x/√2))` (PyTorch's default, `approximate='none'`).
    None,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (`approximate='tanh'`, GPT-2's).
    Tanh,
}

/// The four projections of a multi-head attention layer, each a weight `[D, D]` in PyTorch's `Linear` layout
/// (`[out, in]`) and an optional bias `[D]`.
#[derive(Clone, Copy, Debug)]
pub struct AttentionWeights {
    pub q: (Value, Option<Value>),
    pub k: (Value, Option<Value>),
    pub v: (Value, Option<Value>),
    /// The output projection, applied after the heads are joined.
    pub proj: (Value, Option<Value>),
}

impl Builder {
    /// PyTorch's `LayerNorm` over the last dim, `x: [..., D]`: `mu = mean(x, -1)`, `d = x - mu`,
    /// `var = mean(d·d, -1)` (biased), `y = d · recip(sqrt(var + eps)) · weight + bias`.
    ///
    /// Centring before squaring (not `E[x²] - E[x]²`) keeps the variance exact when the mean is large against the
    /// spread, e.g. values near 1e4 in f32, where the one-pass form cancels to 0 or goes negative.
    pub fn layer_norm(
        &mut self,
        x: Value,
        weight: Option<Value>,
        bias: Option<Value>,
        eps: f64,
    ) -> Result<Value> {
        self.check_last_dim_norm("layer_norm", x, &[("weight", weight), ("bias", bias)], eps)?;
        let mu = self.mean(x, &[-1], true)?;
        let centered = self.sub(x, mu)?;
        let squares = self.mul(centered, centered)?;
        let var = self.mean(squares, &[-1], true)?;
        let y = self.scale_by_inverse_root(centered, var, eps)?;
        self.affine(y, weight, bias)
    }

    /// PyTorch's `RMSNorm` over the last dim: `y = x · recip(sqrt(mean(x·x, -1) + eps)) · weight`.
    pub fn rms_norm(&mut self, x: Value, weight: Option<Value>, eps: f64) -> Result<Value> {
        self.check_last_dim_norm("rms_norm", x, &[("weight", weight)], eps)?;
        let squares = self.mul(x, x)?;
        let mean_square = self.mean(squares, &[-1], true)?;
        let y = self.scale_by_inverse_root(x, mean_square, eps)?;
        self.affine(y, weight, None)
    }

    /// PyTorch's `GELU`: exact `0.5·x·(1 + erf(x·(1/√2)))`, or the tanh approximation
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    pub fn gelu(&mut self, x: Value, approximate: GeluApprox) -> Result<Value> {
        self.check_float("gelu", "input", x)?;
        let squashed = match approximate {
            GeluApprox::None => {
                let scaled = self.mul_scalar(x, std::f64::consts::FRAC_1_SQRT_2)?;
                self.erf(scaled)?
            }
            GeluApprox::Tanh => {
                let square = self.mul(x, x)?;
                let cube = self.mul(square, x)?;
                let cubic = self.mul_scalar(cube, GELU_TANH_CUBIC)?;
                let inner = self.add(x, cubic)?;
                let scaled = self.mul_scalar(inner, SQRT_2_OVER_PI)?;
                self.tanh(scaled)?
            }
        };
        let one_plus = self.add_scalar(squashed, 1.0)?;
        let half = self.mul_scalar(x, 0.5)?;
        self.mul(half, one_plus)
    }

    /// A bool `[t, s]` mask, true where key position `u` may be attended from query position `q`:
    /// `u <= q + (s - t)`. The queries are the last `t` of the `s` positions (PyTorch's `causal_lower_right`), so
    /// `t == s` gives the lower triangle with its diagonal and every query sees at least one key when `t <= s`.
    pub fn causal_mask(&mut self, t: usize, s: usize) -> Result<Value> {
        // Positions are i32 (iota's and compare's integer dtype); past 2^31 they would wrap.
        let limit = i32::MAX as usize;
        if t > limit || s > limit {
            return Err(build_err(
                "causal_mask",
                format!("{t} queries by {s} keys exceed the i32 positions (at most {limit})"),
            ));
        }
        let ty = TensorType::new(DType::I32, [t, s]);
        let queries = self.iota(ty.clone(), 0)?;
        let keys = self.iota(ty, 1)?;
        let last_visible = if s == t {
            queries
        } else {
            self.add_scalar(queries, s as f64 - t as f64)?
        };
        self.compare(CmpDir::Le, keys, last_visible)
    }

    /// `softmax(q·kᵀ·(1/√d) [masked]) · v` with `q: [..., T, d]`, `k: [..., S, d]`, `v: [..., S, dv]` (batch dims
    /// broadcast as `matmul`'s); `causal` replaces the scores of keys outside [`Builder::causal_mask`] with -inf.
    /// PyTorch's `scaled_dot_product_attention` (no dropout, default scale; `is_causal` as `causal_lower_right`,
    /// the same when `T == S`).
    pub fn scaled_dot_product_attention(
        &mut self,
        q: Value,
        k: Value,
        v: Value,
        causal: bool,
    ) -> Result<Value> {
        let (t, s, d) = self.check_attention(q, k, v)?;
        let kt = self.transpose_last2(k)?;
        let products = self.matmul(q, kt)?;
        let mut scores = self.mul_scalar(products, 1.0 / (d as f64).sqrt())?;
        if causal {
            let mask = self.causal_mask(t, s)?;
            let hidden = self.full_like(scores, f64::NEG_INFINITY)?;
            scores = self.select(mask, scores, hidden)?;
        }
        let weights = self.softmax(scores, -1)?;
        self.matmul(weights, v)
    }

    /// Multi-head self-attention over `x: [..., T, D]` (PyTorch's `MultiheadAttention` with separate q/k/v
    /// projections, `batch_first`, no dropout): `q, k, v = linear(x, W·, b·)`, each split into `heads` contiguous
    /// feature chunks (`[..., T, H, D/H]` transposed to `[..., H, T, D/H]`), attention per head, the heads joined
    /// back in order to `[..., T, D]`, then `linear(·, W_proj, b_proj)`.
    pub fn multi_head_attention(
        &mut self,
        x: Value,
        w: &AttentionWeights,
        heads: usize,
        causal: bool,
    ) -> Result<Value> {
        let head_dim = self.check_multi_head(x, w, heads)?;
        let dims = self.shape(x).to_vec();
        let (lead, width) = (&dims[..dims.len() - 1], dims[dims.len() - 1]);
        let split: Vec<usize> = lead.iter().copied().chain([heads, head_dim]).collect();
        // Swapping T with H (the dims at rank-3 and rank-2 of the split shape) puts each head's sequence last.
        let mut perm: Vec<usize> = (0..split.len()).collect();
        perm.swap(split.len() - 3, split.len() - 2);
        let q = self.split_heads(x, w.q, &split, &perm)?;
        let k = self.split_heads(x, w.k, &split, &perm)?;
        let v = self.split_heads(x, w.v, &split, &perm)?;
        let attended = self.scaled_dot_product_attention(q, k, v, causal)?;
        let back = self.transpose(attended, &perm)?;
        let joined: Vec<usize> = lead.iter().copied().chain([width]).collect();
        let joined = self.reshape(back, &joined)?;
        self.linear(joined, w.proj.0, w.proj.1)
    }

    /// The mean over every position of `-log_softmax(logits)[target]`: `logits: [..., V]` (rank ≥ 2, classes
    /// last), `targets: i32[...]`. It is [`Builder::cross_entropy`] of the positions flattened to rows.
    pub fn token_cross_entropy(&mut self, logits: Value, targets: Value) -> Result<Value> {
        let (tl, tt) = (self.ty(logits).clone(), self.ty(targets).clone());
        let fits = tl.rank() >= 2
            && tl.dtype.is_float()
            && tt.dtype == DType::I32
            && tt.dims() == &tl.dims()[..tl.rank() - 1];
        if !fits {
            return Err(build_err(
                "token_cross_entropy",
                format!(
                    "expected float logits [..., V] (rank >= 2) and i32 targets of their shape without the last \
                     dim, got {tl} and {tt}"
                ),
            ));
        }
        let classes = tl.dims()[tl.rank() - 1];
        let rows = tt.numel();
        let logits = self.reshape(logits, &[rows, classes])?;
        let targets = self.reshape(targets, &[rows])?;
        self.cross_entropy(logits, targets)
    }

    // ---- helpers ----

    /// `linear(x, weight, bias)` reshaped to `split` (`[..., T, H, D/H]`) and transposed by `perm` to
    /// `[..., H, T, D/H]`: head `j` holds features `j·D/H .. (j+1)·D/H`.
    fn split_heads(
        &mut self,
        x: Value,
        (weight, bias): (Value, Option<Value>),
        split: &[usize],
        perm: &[usize],
    ) -> Result<Value> {
        let projected = self.linear(x, weight, bias)?;
        let chunks = self.reshape(projected, split)?;
        self.transpose(chunks, perm)
    }

    /// `x · recip(sqrt(var + eps))`, the shared core of the two norms.
    fn scale_by_inverse_root(&mut self, x: Value, var: Value, eps: f64) -> Result<Value> {
        let shifted = self.add_scalar(var, eps)?;
        let root = self.sqrt(shifted)?;
        let inv = self.recip(root)?;
        self.mul(x, inv)
    }

    /// `y · weight + bias`, each `[D]` broadcast over the leading dims, either absent.
    fn affine(&mut self, y: Value, weight: Option<Value>, bias: Option<Value>) -> Result<Value> {
        let y = match weight {
            Some(w) => self.mul(y, w)?,
            None => y,
        };
        match bias {
            Some(b) => self.add(y, b),
            None => Ok(y),
        }
    }

    fn check_float(&self, op: &str, name: &str, x: Value) -> Result<()> {
        let t = self.ty(x);
        if !t.dtype.is_float() {
            return Err(build_err(op, format!("{name} {t} must be float")));
        }
        Ok(())
    }

    /// `x: float [..., D]`, every named tensor `[D]` of `x`'s dtype, `eps > 0` and finite.
    fn check_last_dim_norm(
        &self,
        op: &str,
        x: Value,
        per_feature: &[(&str, Option<Value>)],
        eps: f64,
    ) -> Result<()> {
        let tx = self.ty(x);
        if tx.rank() == 0 || !tx.dtype.is_float() {
            return Err(build_err(
                op,
                format!("input {tx} must be a float [..., D] tensor"),
            ));
        }
        let features = tx.dims()[tx.rank() - 1];
        for &(name, v) in per_feature {
            let Some(v) = v else { continue };
            let t = self.ty(v);
            if t.dims() != [features] || t.dtype != tx.dtype {
                return Err(build_err(
                    op,
                    format!(
                        "{name} {t} does not fit the last dim of {tx} (expected {}[{features}])",
                        tx.dtype
                    ),
                ));
            }
        }
        // `eps > 0` is false for NaN too.
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(build_err(op, format!("eps {eps} must be positive")));
        }
        Ok(())
    }

    /// `(T, S, d)` of float `q: [..., T, d]`, `k: [..., S, d]`, `v: [..., S, dv]` of one dtype whose batch dims
    /// broadcast; `d ≥ 1` (the scale is `1/√d`).
    fn check_attention(&self, q: Value, k: Value, v: Value) -> Result<(usize, usize, usize)> {
        let (tq, tk, tv) = (self.ty(q), self.ty(k), self.ty(v));
        let shapes = || format!("q {tq}, k {tk} and v {tv}");
        let err = |why: &str| {
            build_err(
                "scaled_dot_product_attention",
                format!("{} {why}", shapes()),
            )
        };
        if tq.rank() < 2 || tk.rank() < 2 || tv.rank() < 2 {
            return Err(err(
                "must each have rank >= 2 ([..., T, d], [..., S, d], [..., S, dv])",
            ));
        }
        if !tq.dtype.is_float() || tk.dtype != tq.dtype || tv.dtype != tq.dtype {
            return Err(err("must share one float dtype"));
        }
        let last2 = |t: &TensorType| (t.dims()[t.rank() - 2], t.dims()[t.rank() - 1]);
        let ((t, d), (s, dk), (sv, _)) = (last2(tq), last2(tk), last2(tv));
        if dk != d || sv != s {
            return Err(err(
                "do not fit: need q [..., T, d], k [..., S, d] and v [..., S, dv]",
            ));
        }
        if d == 0 {
            return Err(err("have head dim 0 (the scale 1/sqrt(d) is infinite)"));
        }
        let batch = |t: &TensorType| t.dims()[..t.rank() - 2].to_vec();
        let common =
            broadcast_shapes(&batch(tq), &batch(tk)).and_then(|b| broadcast_shapes(&b, &batch(tv)));
        if common.is_none() {
            return Err(err("have batch dims that do not broadcast"));
        }
        Ok((t, s, d))
    }

    /// The head width `D/H` of float `x: [..., T, D]` with every weight `[D, D]` and bias `[D]` of its dtype and `H`
    /// dividing `D`.
    fn check_multi_head(&self, x: Value, w: &AttentionWeights, heads: usize) -> Result<usize> {
        let op = "multi_head_attention";
        let tx = self.ty(x);
        if tx.rank() < 2 || !tx.dtype.is_float() {
            return Err(build_err(
                op,
                format!("input {tx} must be a float [..., T, D] tensor"),
            ));
        }
        let width = tx.dims()[tx.rank() - 1];
        if heads == 0 || !width.is_multiple_of(heads) {
            return Err(build_err(
                op,
                format!("{heads} heads do not divide the model width {width}"),
            ));
        }
        let named = [("q", w.q), ("k", w.k), ("v", w.v), ("proj", w.proj)];
        for (name, (weight, bias)) in named {
            let t = self.ty(weight);
            if t.dims() != [width, width] || t.dtype != tx.dtype {
                return Err(build_err(
                    op,
                    format!(
                        "{name} weight {t} does not fit input {tx} (expected {}[{width},{width}])",
                        tx.dtype
                    ),
                ));
            }
            if let Some(b) = bias {
                let t = self.ty(b);
                if t.dims() != [width] || t.dtype != tx.dtype {
                    return Err(build_err(
                        op,
                        format!(
                            "{name} bias {t} does not fit input {tx} (expected {}[{width}])",
                            tx.dtype
                        ),
                    ));
                }
            }
        }
        Ok(width / heads)
    }
}
