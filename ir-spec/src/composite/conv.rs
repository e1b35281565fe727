//! Convolution and pooling, over 1, 2 or 3 spatial dims with PyTorch's conventions (NC(D)HW activations, weights
//! `[out, in/groups, k..]`, cross-correlation), as compositions of `pad`, `windows`, reshapes, transposes, `matmul`
//! and reductions (SPEC §3.10 and §4).
//!
//! A convolution reads its input as a matrix of windows (im2col: `windows(pad(x))` with the channel and window dims
//! as rows and the output positions as columns) and multiplies it by the weights, one matmul per group and image.
//! Autodiff then derives the transposed convolution (an `overlap_add` of `Wᵀ·g`) and the weight gradient (a matmul
//! of `g` with the same window matrix) from the primitives, so gradients of gradients need nothing more.

use crate::builder::{Builder, Value};
use crate::error::IrError;
use crate::op::{windows_out, CmpDir};
use crate::types::{DType, TensorType};

type Result<T> = std::result::Result<T, IrError>;

fn build_err(op: &str, message: String) -> IrError {
    IrError::Build {
        op: op.into(),
        message,
    }
}

/// The geometry of a convolution or a pooling window over `s` spatial dims: per dim a stride, a low and a high
/// padding and a dilation; for convolutions also the number of groups.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConvSpec {
    pub stride: Vec<usize>,
    /// `(low, high)` per spatial dim; PyTorch's `padding=p` is `(p, p)`.
    pub padding: Vec<(usize, usize)>,
    pub dilation: Vec<usize>,
    pub groups: usize,
}

impl ConvSpec {
    /// Stride 1, no padding, dilation 1, one group, over `spatial` dims.
    pub fn new(spatial: usize) -> ConvSpec {
        ConvSpec {
            stride: vec![1; spatial],
            padding: vec![(0, 0); spatial],
            dilation: vec![1; spatial],
            groups: 1,
        }
    }

    pub fn stride(mut self, stride: &[usize]) -> ConvSpec {
        self.stride = stride.to_vec();
        self
    }

    /// The same padding before and after each dim (PyTorch's `padding=`).
    pub fn padding(mut self, padding: &[usize]) -> ConvSpec {
        self.padding = padding.iter().map(|&p| (p, p)).collect();
        self
    }

    pub fn padding_low_high(mut self, padding: &[(usize, usize)]) -> ConvSpec {
        self.padding = padding.to_vec();
        self
    }

    pub fn dilation(mut self, dilation: &[usize]) -> ConvSpec {
        self.dilation = dilation.to_vec();
        self
    }

    pub fn groups(mut self, groups: usize) -> ConvSpec {
        self.groups = groups;
        self
    }

    fn spatial(&self) -> usize {
        self.stride.len()
    }

    /// Checks the lists against `s` spatial dims and the window against each padded input dim.
    fn check(&self, op: &str, x: &TensorType, window: &[usize]) -> Result<Vec<usize>> {
        let s = window.len();
        if !(1..=3).contains(&s) {
            return Err(build_err(
                op,
                format!("needs 1, 2 or 3 spatial dims, got {s}"),
            ));
        }
        if x.rank() != s + 2 {
            return Err(build_err(
                op,
                format!("input {x} must be [N, C, {s} spatial dims] for a {s}-d window"),
            ));
        }
        if self.stride.len() != s || self.padding.len() != s || self.dilation.len() != s {
            return Err(build_err(
                op,
                format!(
                    "stride {:?}, padding {:?} and dilation {:?} must each have {s} entries",
                    self.stride, self.padding, self.dilation
                ),
            ));
        }
        if self.stride.contains(&0) || self.dilation.contains(&0) || window.contains(&0) {
            return Err(build_err(
                op,
                format!(
                    "window {window:?}, stride {:?} and dilation {:?} must be positive",
                    self.stride, self.dilation
                ),
            ));
        }
        let mut out = Vec::with_capacity(s);
        for (d, &(lo, hi)) in self.padding.iter().enumerate() {
            let n = x.dims()[2 + d];
            let padded = n.checked_add(lo).and_then(|p| p.checked_add(hi));
            let o =
                padded.and_then(|p| windows_out(p, window[d], self.stride[d], self.dilation[d]));
            match o {
                Some(o) => out.push(o),
                None => {
                    return Err(build_err(
                        op,
                        format!(
                            "window {} with dilation {} is larger than spatial dim {d} of {x} padded by ({lo}, {hi}): no output position",
                            window[d], self.dilation[d]
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }
}

impl Builder {
    /// PyTorch's `conv{1,2,3}d`: `x: [N, C, spatial..]`, `weight: [O, C/groups, k..]`, `bias: [O]`; output
    /// `[N, O, out..]` with `out = ⌊(n + lo + hi − dilation·(k − 1) − 1) / stride⌋ + 1` per dim.
    pub fn conv(
        &mut self,
        x: Value,
        weight: Value,
        bias: Option<Value>,
        spec: &ConvSpec,
    ) -> Result<Value> {
        let (tx, tw) = (self.ty(x).clone(), self.ty(weight).clone());
        let s = spec.spatial();
        if tw.rank() != s + 2 || tw.dtype != tx.dtype || !tx.dtype.is_float() {
            return Err(build_err(
                "conv",
                format!("weight {tw} must be [out, in/groups, {s} kernel dims] of the input {tx}'s float dtype"),
            ));
        }
        let window = tw.dims()[2..].to_vec();
        let outs = spec.check("conv", &tx, &window)?;
        let (n, c, o, g) = (tx.dims()[0], tx.dims()[1], tw.dims()[0], spec.groups);
        let cg = tw.dims()[1];
        if g == 0 || o % g != 0 || cg.checked_mul(g) != Some(c) {
            return Err(build_err(
                "conv",
                format!(
                    "input {tx} has {c} channels and weight {tw} takes {cg} per group with {g} groups and {o} outputs: needs in = {cg}·groups and out divisible by groups"
                ),
            ));
        }
        if let Some(b) = bias {
            if self.shape(b) != [o] {
                return Err(build_err(
                    "conv",
                    format!("bias {} does not fit {o} output channels", self.ty(b)),
                ));
            }
        }
        let taps: usize = window.iter().product();
        let positions: usize = outs.iter().product();
        let og = o / g;
        // [N, C, p..] → [N·G, Cg, p..] → windows [N·G, Cg, out.., k..] → [N·G, Cg, k.., out..] → [N, G, Cg·K, P].
        let xp = self.padded(x, &spec.padding, 0.0)?;
        let padded: Vec<usize> = self.shape(xp)[2..].to_vec();
        let grouped: Vec<usize> = [n * g, cg].into_iter().chain(padded).collect();
        let xg = self.reshape(xp, &grouped)?;
        let win = self.windows(xg, &window, &spec.stride, &spec.dilation)?;
        let perm: Vec<usize> = [0, 1]
            .into_iter()
            .chain((0..s).map(|d| 2 + s + d))
            .chain((0..s).map(|d| 2 + d))
            .collect();
        let win = self.transpose(win, &perm)?;
        let cols = self.reshape(win, &[n, g, cg * taps, positions])?;
        // [O, Cg, k..] → [G, Og, Cg·K], the same for every image.
        let w = self.reshape(weight, &[g, og, cg * taps])?;
        let w = self.broadcast(w, &[n, g, og, cg * taps])?;
        let mut y = self.matmul(w, cols)?;
        // The bias is added in the product's own shape, so fusion makes it the matmul's epilogue.
        if let Some(b) = bias {
            let b = self.reshape(b, &[1, g, og, 1])?;
            y = self.add(y, b)?;
        }
        let dims: Vec<usize> = [n, o].into_iter().chain(outs).collect();
        self.reshape(y, &dims)
    }

    /// PyTorch's `max_pool{1,2,3}d` (dilation from `spec`, `groups` ignored): the maximum of each window, the
    /// padding `-inf`. The gradient goes to the first maximum of each window in row-major window order (PyTorch's
    /// choice), and a window holding NaN gives NaN, its gradient going to the window's first NaN.
    pub fn max_pool(&mut self, x: Value, window: &[usize], spec: &ConvSpec) -> Result<Value> {
        let tx = self.ty(x).clone();
        if !tx.dtype.is_float() {
            return Err(build_err(
                "max_pool",
                format!("input {tx} must be a float tensor"),
            ));
        }
        spec.check("max_pool", &tx, window)?;
        let s = window.len();
        let xp = self.padded(x, &spec.padding, f64::NEG_INFINITY)?;
        let w = self.windows(xp, window, &spec.stride, &spec.dilation)?;
        let axes: Vec<isize> = (0..s).map(|d| (2 + s + d) as isize).collect();
        let dims = self.shape(w).to_vec();
        // Which window element is the maximum: equal to it, or NaN. (The maximum is NaN exactly when the window
        // holds a NaN, so `w ≠ w` hits only in such a window, where no element equals the maximum.)
        let max = self.reduce_max(w, &axes, true)?;
        let max = self.broadcast(max, &dims)?;
        let equal = self.compare(CmpDir::Eq, w, max)?;
        let w_nan = self.compare(CmpDir::Ne, w, w)?;
        let hit = self.select(equal, equal, w_nan)?;
        // The row-major position of each element in its window, and the first hit's.
        let mut position = None;
        let mut scale = 1;
        for d in (0..s).rev() {
            let axis = 2 + s + d;
            let ramp = self.iota(TensorType::new(DType::I32, dims.clone()), axis)?;
            let ramp = self.mul_scalar(ramp, scale as f64)?;
            position = Some(match position {
                None => ramp,
                Some(p) => self.add(p, ramp)?,
            });
            scale *= window[d];
        }
        let position = position.expect("at least one spatial dim");
        let past_end = self.full_like(position, scale as f64)?;
        let candidate = self.select(hit, position, past_end)?;
        let negated = self.neg(candidate)?;
        let first = self.reduce_max(negated, &axes, true)?;
        let first = self.neg(first)?;
        let first = self.broadcast(first, &dims)?;
        let chosen = self.compare(CmpDir::Eq, position, first)?;
        let zero = self.zeros_like(w)?;
        let picked = self.select(chosen, w, zero)?;
        self.reduce_sum(picked, &axes, false)
    }

    /// PyTorch's `avg_pool{1,2,3}d`: each window's sum of the zero-padded input over the window size
    /// (`count_include_pad = true`, PyTorch's default) or over the number of real elements in the window (`false`).
    pub fn avg_pool(
        &mut self,
        x: Value,
        window: &[usize],
        spec: &ConvSpec,
        count_include_pad: bool,
    ) -> Result<Value> {
        let tx = self.ty(x).clone();
        if !tx.dtype.is_float() {
            return Err(build_err(
                "avg_pool",
                format!("input {tx} must be a float tensor"),
            ));
        }
        spec.check("avg_pool", &tx, window)?;
        let s = window.len();
        let axes: Vec<isize> = (0..s).map(|d| (2 + s + d) as isize).collect();
        let xp = self.padded(x, &spec.padding, 0.0)?;
        let w = self.windows(xp, window, &spec.stride, &spec.dilation)?;
        let sum = self.reduce_sum(w, &axes, false)?;
        if count_include_pad {
            let taps: usize = window.iter().product();
            return self.mul_scalar(sum, 1.0 / taps as f64);
        }
        // The real elements of each window: the same windows over a padded tensor of ones.
        let ones = self.full(TensorType::new(tx.dtype, tx.dims()[2..].to_vec()), 1.0)?;
        let ones = self.padded(ones, &spec.padding, 0.0)?;
        let counts = self.windows(ones, window, &spec.stride, &spec.dilation)?;
        let counts = self.reduce_sum(
            counts,
            &(s as isize..2 * s as isize).collect::<Vec<_>>(),
            false,
        )?;
        self.div(sum, counts)
    }

    /// The mean over every spatial dim: `[N, C, spatial..] → [N, C]` (PyTorch's `AdaptiveAvgPool(1)` + flatten).
    pub fn global_avg_pool(&mut self, x: Value) -> Result<Value> {
        let rank = self.ty(x).rank();
        if rank < 3 {
            return Err(build_err(
                "global_avg_pool",
                format!("input {} must be [N, C, spatial..]", self.ty(x)),
            ));
        }
        let axes: Vec<isize> = (2..rank as isize).collect();
        self.mean(x, &axes, false)
    }

    /// `[N, d..] → [N, Π d]` (PyTorch's `nn.Flatten()`).
    pub fn flatten(&mut self, x: Value) -> Result<Value> {
        let dims = self.shape(x).to_vec();
        let Some((&n, rest)) = dims.split_first() else {
            return Err(build_err("flatten", "needs a rank >= 1 input".into()));
        };
        self.reshape(x, &[n, rest.iter().product()])
    }

    /// `x` padded with `value` by `(low, high)` in each of its last `padding.len()` dims (the leading dims unpadded).
    fn padded(&mut self, x: Value, padding: &[(usize, usize)], value: f64) -> Result<Value> {
        let lead = vec![0; self.shape(x).len().saturating_sub(padding.len())];
        let low: Vec<usize> = lead
            .iter()
            .copied()
            .chain(padding.iter().map(|p| p.0))
            .collect();
        let high: Vec<usize> = lead
            .iter()
            .copied()
            .chain(padding.iter().map(|p| p.1))
            .collect();
        self.pad(x, &low, &high, value)
    }
}
