//! Convolution-net layers as modules: [`Conv2d`], [`MaxPool2d`], [`AvgPool2d`], [`GlobalAvgPool2d`],
//! [`BatchNorm2d`], [`Flatten`], [`Reshape`] and [`Dropout`]. Each is one or two builder calls (the expansions are in
//! `kiln_ir`'s `composite/conv.rs` and `composite/norm.rs`); what this file adds is PyTorch's defaults, the parameter
//! and buffer names, and errors that name the layer when the input does not fit it (the builder's own messages do
//! not know which layer called it).

use super::{param, state, Init, Module, Parameter, StateUpdates};
use kiln_ir::{Builder, ConvSpec, DType, IrError, TensorType, Value};

/// An error naming the layer: `conv2d `c1`: ...`.
fn layer_error(kind: &str, name: &str, message: String) -> IrError {
    IrError::Invalid(format!("{kind} `{name}`: {message}"))
}

/// The dims of `x`, checked to be a float `[N, C, H, W]` (with `C == channels` when given).
fn image_dims(
    b: &Builder,
    x: Value,
    kind: &str,
    name: &str,
    channels: Option<usize>,
) -> Result<[usize; 4], IrError> {
    let ty = b.ty(x);
    let dims: [usize; 4] = match (ty.dtype.is_float(), ty.dims().try_into()) {
        (true, Ok(dims)) => dims,
        _ => {
            return Err(layer_error(
                kind,
                name,
                format!("expects a float [N, C, H, W] input, got {ty}"),
            ))
        }
    };
    if let Some(c) = channels {
        if dims[1] != c {
            return Err(layer_error(
                kind,
                name,
                format!(
                    "expects {c} input channels, got {ty} ({} channels)",
                    dims[1]
                ),
            ));
        }
    }
    Ok(dims)
}

/// PyTorch's `nn.Conv2d`: `x: [N, in, H, W] → [N, out, H', W']` with `weight: [out, in/groups, kh, kw]` and
/// `bias: [out]`, both initialized uniform in `±1/sqrt(fan_in)`, `fan_in = in/groups · kh · kw` (PyTorch's default:
/// Kaiming-uniform with `a = sqrt(5)` gives that bound for the weight, and the bias uses it too).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// Prefix of the parameter names: `<name>.weight`, `<name>.bias`.
    pub name: String,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub bias: bool,
}

impl Conv2d {
    /// A square `kernel × kernel` convolution, stride 1, no padding, one group, with a bias.
    pub fn new(name: &str, in_channels: usize, out_channels: usize, kernel: usize) -> Conv2d {
        Conv2d {
            name: name.to_string(),
            in_channels,
            out_channels,
            kernel: [kernel; 2],
            stride: [1; 2],
            padding: [0; 2],
            dilation: [1; 2],
            groups: 1,
            bias: true,
        }
    }

    pub fn stride(self, stride: usize) -> Conv2d {
        Conv2d {
            stride: [stride; 2],
            ..self
        }
    }

    /// The same zero padding on every side (PyTorch's `padding=p`).
    pub fn padding(self, padding: usize) -> Conv2d {
        Conv2d {
            padding: [padding; 2],
            ..self
        }
    }

    pub fn dilation(self, dilation: usize) -> Conv2d {
        Conv2d {
            dilation: [dilation; 2],
            ..self
        }
    }

    pub fn groups(self, groups: usize) -> Conv2d {
        Conv2d { groups, ..self }
    }

    pub fn without_bias(self) -> Conv2d {
        Conv2d {
            bias: false,
            ..self
        }
    }

    /// Input channels per group; `None` when `groups` does not divide both channel counts.
    fn channels_per_group(&self) -> Option<usize> {
        let g = self.groups;
        (g > 0 && self.in_channels.is_multiple_of(g) && self.out_channels.is_multiple_of(g))
            .then(|| self.in_channels / g)
    }

    fn weight_type(&self) -> TensorType {
        let cg = self.channels_per_group().unwrap_or(self.in_channels);
        TensorType::f32(&[self.out_channels, cg, self.kernel[0], self.kernel[1]])
    }

    /// The output `[N, out, H', W']` of an `[N, in, H, W]` input, or an error naming the layer.
    pub fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4], IrError> {
        let err = |m: String| layer_error("conv2d", &self.name, m);
        if self.channels_per_group().is_none() {
            return Err(err(format!(
                "groups = {} must divide in_channels = {} and out_channels = {}",
                self.groups, self.in_channels, self.out_channels
            )));
        }
        if input[1] != self.in_channels {
            return Err(err(format!(
                "expects {} input channels, got {} (input {input:?})",
                self.in_channels, input[1]
            )));
        }
        let mut out = [input[0], self.out_channels, 0, 0];
        for d in 0..2 {
            let span = self.dilation[d] * (self.kernel[d].max(1) - 1) + 1;
            let padded = input[2 + d] + 2 * self.padding[d];
            if self.kernel[d] == 0 || self.stride[d] == 0 || self.dilation[d] == 0 {
                return Err(err(format!(
                    "kernel {:?}, stride {:?} and dilation {:?} must be at least 1",
                    self.kernel, self.stride, self.dilation
                )));
            }
            if span > padded {
                return Err(err(format!(
                    "the {}×{} kernel (dilation {:?}) spans {span} but the padded input is only {padded} wide in \
                     spatial dim {d} (input {input:?}, padding {:?})",
                    self.kernel[0], self.kernel[1], self.dilation, self.padding
                )));
            }
            out[2 + d] = (padded - span) / self.stride[d] + 1;
        }
        Ok(out)
    }
}

impl Module for Conv2d {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        let dims = image_dims(b, x, "conv2d", &self.name, None)?;
        self.output_dims(dims)?;
        let w = param(b, &format!("{}.weight", self.name), self.weight_type())?;
        let bias = if self.bias {
            let ty = TensorType::f32(&[self.out_channels]);
            Some(param(b, &format!("{}.bias", self.name), ty)?)
        } else {
            None
        };
        let spec = ConvSpec::new(2)
            .stride(&self.stride)
            .padding(&self.padding)
            .dilation(&self.dilation)
            .groups(self.groups);
        b.conv(x, w, bias, &spec)
    }

    fn parameters(&self) -> Vec<Parameter> {
        let fan_in = self.weight_type().dims()[1..].iter().product::<usize>();
        let init = Init::Uniform {
            bound: 1.0 / (fan_in.max(1) as f64).sqrt(),
        };
        let mut params = vec![Parameter {
            name: format!("{}.weight", self.name),
            ty: self.weight_type(),
            init,
        }];
        if self.bias {
            params.push(Parameter {
                name: format!("{}.bias", self.name),
                ty: TensorType::f32(&[self.out_channels]),
                init,
            });
        }
        params
    }
}

/// The window geometry shared by the pooling layers: PyTorch's `kernel_size`, `stride` (default: the kernel) and
/// `padding`.
fn pool_spec(
    kind: &str,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Result<ConvSpec, IrError> {
    // PyTorch's rule: the padding is at most half the window, so no window lies wholly in the padding.
    if (0..2).any(|d| kernel[d] == 0 || stride[d] == 0 || 2 * padding[d] > kernel[d]) {
        return Err(layer_error(
            kind,
            "",
            format!(
                "kernel {kernel:?} and stride {stride:?} must be at least 1, padding {padding:?} at most half the \
                 kernel"
            ),
        ));
    }
    Ok(ConvSpec::new(2).stride(&stride).padding(&padding))
}

/// PyTorch's `nn.MaxPool2d(kernel, stride = kernel, padding)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaxPool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl MaxPool2d {
    /// A `kernel × kernel` window moving by `kernel`, no padding.
    pub fn new(kernel: usize) -> MaxPool2d {
        MaxPool2d {
            kernel: [kernel; 2],
            stride: [kernel; 2],
            padding: [0; 2],
        }
    }
}

impl Module for MaxPool2d {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        image_dims(b, x, "max_pool2d", "", None)?;
        let spec = pool_spec("max_pool2d", self.kernel, self.stride, self.padding)?;
        b.max_pool(x, &self.kernel, &spec)
    }
    fn parameters(&self) -> Vec<Parameter> {
        Vec::new()
    }
}

/// PyTorch's `nn.AvgPool2d(kernel, stride = kernel, padding, count_include_pad = true)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AvgPool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub count_include_pad: bool,
}

impl AvgPool2d {
    pub fn new(kernel: usize) -> AvgPool2d {
        AvgPool2d {
            kernel: [kernel; 2],
            stride: [kernel; 2],
            padding: [0; 2],
            count_include_pad: true,
        }
    }
}

impl Module for AvgPool2d {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        image_dims(b, x, "avg_pool2d", "", None)?;
        let spec = pool_spec("avg_pool2d", self.kernel, self.stride, self.padding)?;
        b.avg_pool(x, &self.kernel, &spec, self.count_include_pad)
    }
    fn parameters(&self) -> Vec<Parameter> {
        Vec::new()
    }
}

/// `[N, C, H, W] → [N, C]`, the mean of each channel (`nn.AdaptiveAvgPool2d(1)` followed by `nn.Flatten()`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GlobalAvgPool2d;

impl Module for GlobalAvgPool2d {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        image_dims(b, x, "global_avg_pool2d", "", None)?;
        b.global_avg_pool(x)
    }
    fn parameters(&self) -> Vec<Parameter> {
        Vec::new()
    }
}

/// `[N, d..] → [N, Π d]` (`nn.Flatten()`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        b.flatten(x)
    }
    fn parameters(&self) -> Vec<Parameter> {
        Vec::new()
    }
}

/// `[N, ..] → [N, dims..]`: each example reshaped, e.g. a flat 64-pixel row to a `[1, 8, 8]` image (`x.view(N,
/// *dims)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    pub dims: Vec<usize>,
}

impl Module for Reshape {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        let ty = b.ty(x).clone();
        let n = ty.dims().first().copied().unwrap_or(0);
        let per_example: usize = self.dims.iter().product();
        if ty.rank() == 0 || n * per_example != ty.numel() {
            return Err(IrError::Invalid(format!(
                "reshape: cannot view {ty} as [N, {}] ({per_example} values per example)",
                self.dims
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let dims: Vec<usize> = [n].into_iter().chain(self.dims.iter().copied()).collect();
        b.reshape(x, &dims)
    }
    fn parameters(&self) -> Vec<Parameter> {
        Vec::new()
    }
}

/// PyTorch's `nn.BatchNorm2d(num_features)`: per channel, `(x − mean) / sqrt(var + eps) · weight + bias`. In
/// training the mean and (biased) variance are the batch's, and the running statistics move toward the batch's
/// (`running ← (1 − momentum)·running + momentum·batch`, the variance unbiased); in evaluation the running
/// statistics are used. `weight` starts at 1, `bias` at 0 (parameters); `running_mean` at 0 and `running_var` at 1
/// (buffers: `state` inputs, saved in checkpoints). Momentum 0.1, eps 1e-5.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm2d {
    /// Prefix of the names: `<name>.weight`, `<name>.bias`, `<name>.running_mean`, `<name>.running_var`.
    pub name: String,
    pub num_features: usize,
    pub eps: f64,
    pub momentum: f64,
}

impl BatchNorm2d {
    pub fn new(name: &str, num_features: usize) -> BatchNorm2d {
        BatchNorm2d {
            name: name.to_string(),
            num_features,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    fn channel_type(&self) -> TensorType {
        TensorType::f32(&[self.num_features])
    }

    /// The weight, bias and running statistics, declared as inputs; the input checked against the layer.
    fn inputs(&self, b: &mut Builder, x: Value) -> Result<[Value; 4], IrError> {
        image_dims(b, x, "batch_norm2d", &self.name, Some(self.num_features))?;
        let ty = self.channel_type();
        let names = self.names();
        Ok([
            param(b, &names[0], ty.clone())?,
            param(b, &names[1], ty.clone())?,
            state(b, &names[2], ty.clone())?,
            state(b, &names[3], ty)?,
        ])
    }

    fn names(&self) -> [String; 4] {
        ["weight", "bias", "running_mean", "running_var"].map(|s| format!("{}.{s}", self.name))
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        let [w, bias, mean, var] = self.inputs(b, x)?;
        b.batch_norm_eval(x, Some(w), Some(bias), (mean, var), self.eps)
    }

    fn forward_train(
        &self,
        b: &mut Builder,
        x: Value,
        updates: &mut StateUpdates,
    ) -> Result<Value, IrError> {
        let [w, bias, mean, var] = self.inputs(b, x)?;
        let out = b
            .batch_norm_train(
                x,
                Some(w),
                Some(bias),
                Some((mean, var)),
                self.momentum,
                self.eps,
            )
            .map_err(|e| layer_error("batch_norm2d", &self.name, e.to_string()))?;
        let names = self.names();
        let (Some(new_mean), Some(new_var)) = (out.running_mean, out.running_var) else {
            return Err(layer_error(
                "batch_norm2d",
                &self.name,
                "batch_norm_train returned no running statistics although it was given some".into(),
            ));
        };
        updates.push(&names[2], new_mean)?;
        updates.push(&names[3], new_var)?;
        Ok(out.y)
    }

    fn parameters(&self) -> Vec<Parameter> {
        let [weight, bias, _, _] = self.names();
        vec![
            Parameter {
                name: weight,
                ty: self.channel_type(),
                init: Init::Constant(1.0),
            },
            Parameter {
                name: bias,
                ty: self.channel_type(),
                init: Init::Zeros,
            },
        ]
    }

    fn buffers(&self) -> Vec<Parameter> {
        let [_, _, mean, var] = self.names();
        vec![
            Parameter {
                name: mean,
                ty: self.channel_type(),
                init: Init::Zeros,
            },
            Parameter {
                name: var,
                ty: self.channel_type(),
                init: Init::Constant(1.0),
            },
        ]
    }
}

/// PyTorch's `nn.Dropout(p)`: the identity in evaluation; in training each element is zeroed with probability `p`
/// and the others scaled by `1/(1 − p)` ([`dropout_train`]).
///
/// The random numbers are Philox draws keyed by a seed derived from the layer's name (so two dropout layers draw
/// different masks) at an offset that counts the training steps: the `state` input `<name>.step` (i32, starting at
/// 0 like every state input, incremented by each step), so every step draws a fresh mask. The step count is not a
/// buffer: checkpoints do not need it.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    pub name: String,
    pub p: f64,
}

impl Dropout {
    pub fn new(name: &str, p: f64) -> Dropout {
        Dropout {
            name: name.to_string(),
            p,
        }
    }

    fn check(&self) -> Result<(), IrError> {
        // `!(0 <= p < 1)` also rejects NaN.
        if !(0.0..1.0).contains(&self.p) {
            return Err(layer_error(
                "dropout",
                &self.name,
                format!("p = {} is not a probability in [0, 1)", self.p),
            ));
        }
        Ok(())
    }

    /// The layer's Philox key: FNV-1a of its name, kept to 31 bits so it is a non-negative i32.
    fn seed(&self) -> i32 {
        let hash = self.name.bytes().fold(0x811c_9dc5_u32, |h, byte| {
            (h ^ u32::from(byte)).wrapping_mul(0x0100_0193)
        });
        (hash & 0x7fff_ffff) as i32
    }
}

impl Module for Dropout {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        self.check()?;
        let _ = b;
        Ok(x)
    }

    fn forward_train(
        &self,
        b: &mut Builder,
        x: Value,
        updates: &mut StateUpdates,
    ) -> Result<Value, IrError> {
        self.check()?;
        if self.p == 0.0 {
            return Ok(x);
        }
        let step_name = format!("{}.step", self.name);
        let step = state(b, &step_name, TensorType::scalar(DType::I32))?;
        let seed = b.scalar(f64::from(self.seed()), DType::I32)?;
        let y = dropout_train(b, x, self.p, seed, step)?;
        let next = b.add_scalar(step, 1.0)?;
        updates.push(&step_name, next)?;
        Ok(y)
    }

    fn parameters(&self) -> Vec<Parameter> {
        Vec::new()
    }
}

/// Training-mode inverted dropout of `x` with probability `p`, Philox-keyed by `seed` (i32 scalar) at `offset` (the
/// step count, i32 scalar).
pub fn dropout_train(
    b: &mut Builder,
    x: Value,
    p: f64,
    seed: Value,
    offset: Value,
) -> Result<Value, IrError> {
    b.dropout(x, p, seed, offset, true)
}
