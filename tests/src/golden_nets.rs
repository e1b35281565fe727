//! The golden reference nets in `tests/data/golden/nets/`: a loader for both families, [`NetCase`]`<`[`ConvNet`]`>`
//! (`cnn_*.json`) and [`NetCase`]`<`[`GptNet`]`>` (`gpt_*.json`), each case's model graph, and ([`check`]) the
//! comparisons every backend runs against them.
//!
//! A conv case's graph is built from `model.layers` with the Builder's composites (`conv`, `max_pool`, `avg_pool`,
//! `batch_norm_train`, `flatten`, `linear`, the activations and the losses); a GPT case's by `kiln::nn::Gpt` in f32
//! and by the transformer composites in f64 (see [`GptNet::graph`]).
//!
//! The format and the semantics of every layer are in `tests/data/golden/nets/README.md`. As in
//! [`crate::golden`], float tensors load as **f64** tensors holding the file's values exactly (inputs, params and the
//! starting running statistics are f32-representable; expected values are not), and
//! [`NetCase::named_inputs`] casts them to the dtype under test.
//!
//! A conv graph ([`NetCase::graph`]): data inputs `x` and `y`; for layer *i* the params `l{i}.weight` and `l{i}.bias`
//! and, for a batch norm, the `state` inputs `l{i}.running_mean` and `l{i}.running_var`, in layer order; the outputs
//! [`LOSS_OUTPUT`], then per batch norm `new.l{i}.running_mean` and `new.l{i}.running_var`, each **aliasing** the
//! running statistic it updates (so a training step or a session writes it back).

use crate::golden::{
    as_usize, cast_float, f64_field, field, parse_optimizer, parse_tensor, str_field, GoldenError,
};
use indexmap::IndexMap;
use kiln::nn::{Gpt, GptConfig, Module};
use kiln::Optimizer;
use kiln_ir::composite::{AttentionWeights, GeluApprox};
use kiln_ir::{Builder, ConvSpec, DType, Graph, IrError, Tensor, TensorType, Value};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use crate::golden::LOSS_OUTPUT;

pub mod check;

/// A family of golden models (`model.family`): how its `model` object parses, which data inputs it takes and how
/// its graph is built.
pub trait NetModel: Sized {
    /// `model.family`, also the prefix of the family's file names (`cnn_` for `conv`).
    const FAMILY: &'static str;
    const FILE_PREFIX: &'static str;

    fn parse(json: &Json) -> Result<Self, String>;
    /// Every param's shape (in the order JSON parsing gives, which need not be the graph's).
    fn param_shapes(&self) -> &IndexMap<String, Vec<usize>>;
    /// The batch-norm running statistics' shapes (none for a GPT).
    fn buffer_shapes(&self) -> &IndexMap<String, Vec<usize>>;
    /// Checks `inputs` (the file's data inputs, by name) against the model.
    fn check_inputs(&self, inputs: &IndexMap<String, Tensor>) -> Result<(), String>;
    /// The forward graph in `dtype`: data inputs named as in the file, the params, output [`LOSS_OUTPUT`], and for
    /// every running statistic an output aliasing it.
    fn graph(&self, name: &str, dtype: DType) -> Result<Graph, IrError>;
}

/// Fails unless `graph`'s params are exactly the names of `param_shapes` (the graph reads no param the file lacks,
/// and every param of the file gets a gradient).
fn check_params(
    name: &str,
    graph: &Graph,
    param_shapes: &IndexMap<String, Vec<usize>>,
) -> Result<(), IrError> {
    let mut params: Vec<String> = kiln::autodiff::param_names(graph);
    let mut listed: Vec<&String> = param_shapes.keys().collect();
    params.sort();
    listed.sort();
    if !params.iter().eq(listed) {
        return Err(IrError::Invalid(format!(
            "{name}: the graph has params {params:?}, model.param_shapes lists {:?}",
            param_shapes.keys().collect::<Vec<_>>()
        )));
    }
    for input in graph.inputs() {
        if let Some(shape) = param_shapes.get(input.name) {
            if input.ty.dims() != shape.as_slice() {
                return Err(IrError::Invalid(format!(
                    "{name}: param `{}` is {}, model.param_shapes says {shape:?}",
                    input.name, input.ty
                )));
            }
        }
    }
    Ok(())
}

/// The output that replaces input `name` (a batch-norm running statistic): `new.{name}`.
pub fn update_output(name: &str) -> String {
    format!("new.{name}")
}

/// One entry of `model.layers`.
#[derive(Clone, PartialEq, Debug)]
pub enum Layer {
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
        bias: bool,
    },
    BatchNorm2d {
        channels: usize,
        momentum: f64,
        eps: f64,
    },
    MaxPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    AvgPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
    },
    Flatten,
    Linear {
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    Relu,
    LeakyRelu {
        negative_slope: f64,
    },
    Tanh,
    Sigmoid,
    Softplus,
}

/// `model.loss`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NetLoss {
    /// Logits `[N, K]` against i32 labels `[N]`, mean over N.
    CrossEntropy,
    /// Mean of squared differences over all elements; `y` has the output's shape.
    Mse,
}

/// A conv-family model (`model.family == "conv"`).
#[derive(Clone, PartialEq, Debug)]
pub struct ConvNet {
    /// `[N, C, H, W]`.
    pub input_shape: Vec<usize>,
    pub layers: Vec<Layer>,
    pub loss: NetLoss,
    /// The output shape of every layer, in order (checked while the graph is built).
    pub activation_shapes: Vec<Vec<usize>>,
    pub output_shape: Vec<usize>,
    /// Every param's shape (in the order JSON parsing gives, which need not be the graph's).
    pub param_shapes: IndexMap<String, Vec<usize>>,
    /// The batch-norm running statistics' shapes.
    pub buffer_shapes: IndexMap<String, Vec<usize>>,
}

impl ConvNet {
    /// The forward graph in `dtype` (module doc): loss and running-statistic updates.
    pub fn graph(&self, name: &str, dtype: DType) -> Result<Graph, IrError> {
        let invalid = |message: String| IrError::Invalid(format!("{name}: {message}"));
        let mut b = Builder::new(name);
        let mut h = b.data("x", TensorType::new(dtype, self.input_shape.clone()))?;
        let y = match self.loss {
            NetLoss::CrossEntropy => {
                b.data("y", TensorType::new(DType::I32, [self.input_shape[0]]))?
            }
            NetLoss::Mse => b.data("y", TensorType::new(dtype, self.output_shape.clone()))?,
        };
        let mut updates: Vec<(String, Value)> = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let param = |b: &mut Builder, what: &str| -> Result<Value, IrError> {
                let pname = format!("l{i}.{what}");
                let shape = self
                    .param_shapes
                    .get(&pname)
                    .ok_or_else(|| invalid(format!("model.param_shapes has no `{pname}`")))?;
                b.param(&pname, TensorType::new(dtype, shape.clone()))
            };
            h = match *layer {
                Layer::Conv2d {
                    kernel: _,
                    stride,
                    padding,
                    dilation,
                    groups,
                    bias,
                    ..
                } => {
                    let w = param(&mut b, "weight")?;
                    let bias = if bias {
                        Some(param(&mut b, "bias")?)
                    } else {
                        None
                    };
                    let spec = ConvSpec::new(2)
                        .stride(&stride)
                        .padding(&padding)
                        .dilation(&dilation)
                        .groups(groups);
                    b.conv(h, w, bias, &spec)?
                }
                Layer::BatchNorm2d {
                    channels,
                    momentum,
                    eps,
                } => {
                    let w = param(&mut b, "weight")?;
                    let bias = param(&mut b, "bias")?;
                    let stat = TensorType::new(dtype, [channels]);
                    let (mean_name, var_name) =
                        (format!("l{i}.running_mean"), format!("l{i}.running_var"));
                    let mean = b.state(&mean_name, stat.clone())?;
                    let var = b.state(&var_name, stat)?;
                    let bn = b.batch_norm_train(
                        h,
                        Some(w),
                        Some(bias),
                        Some((mean, var)),
                        momentum,
                        eps,
                    )?;
                    let updated = |v: Option<Value>| v.expect("running statistics were given");
                    updates.push((mean_name, updated(bn.running_mean)));
                    updates.push((var_name, updated(bn.running_var)));
                    bn.y
                }
                Layer::MaxPool2d {
                    kernel,
                    stride,
                    padding,
                } => {
                    let spec = ConvSpec::new(2).stride(&stride).padding(&padding);
                    b.max_pool(h, &kernel, &spec)?
                }
                Layer::AvgPool2d {
                    kernel,
                    stride,
                    padding,
                    count_include_pad,
                } => {
                    let spec = ConvSpec::new(2).stride(&stride).padding(&padding);
                    b.avg_pool(h, &kernel, &spec, count_include_pad)?
                }
                Layer::Flatten => b.flatten(h)?,
                Layer::Linear { bias, .. } => {
                    let w = param(&mut b, "weight")?;
                    let bias = if bias {
                        Some(param(&mut b, "bias")?)
                    } else {
                        None
                    };
                    b.linear(h, w, bias)?
                }
                Layer::Relu => b.relu(h)?,
                Layer::LeakyRelu { negative_slope } => b.leaky_relu(h, negative_slope)?,
                Layer::Tanh => b.tanh(h)?,
                Layer::Sigmoid => b.sigmoid(h)?,
                Layer::Softplus => b.softplus(h)?,
            };
            let expected = self.activation_shapes.get(i);
            if expected.map(Vec::as_slice) != Some(b.shape(h)) {
                return Err(invalid(format!(
                    "layer {i} ({layer:?}) gives {}, model.activation_shapes says {expected:?}",
                    b.ty(h)
                )));
            }
        }
        let loss = match self.loss {
            NetLoss::CrossEntropy => b.cross_entropy(h, y)?,
            NetLoss::Mse => b.mse_loss(h, y)?,
        };
        b.output(LOSS_OUTPUT, loss)?;
        for (input, value) in &updates {
            b.output_aliasing(&update_output(input), *value, input)?;
        }
        let graph = b.finish();
        check_params(name, &graph, &self.param_shapes)?;
        Ok(graph)
    }
}

impl NetModel for ConvNet {
    const FAMILY: &'static str = "conv";
    const FILE_PREFIX: &'static str = "cnn_";

    fn parse(json: &Json) -> Result<Self, String> {
        parse_model(json)
    }

    fn param_shapes(&self) -> &IndexMap<String, Vec<usize>> {
        &self.param_shapes
    }

    fn buffer_shapes(&self) -> &IndexMap<String, Vec<usize>> {
        &self.buffer_shapes
    }

    /// `x` f32 of `model.input_shape`; `y` i32 labels `[N]` (cross-entropy) or f32 of the output's shape (mse).
    fn check_inputs(&self, inputs: &IndexMap<String, Tensor>) -> Result<(), String> {
        // Sorted: serde_json's objects need not keep the file's order.
        let mut names: Vec<&str> = inputs.keys().map(String::as_str).collect();
        names.sort();
        if names != ["x", "y"] {
            return Err(format!("inputs are {names:?}, expected [\"x\", \"y\"]"));
        }
        let (x, y) = (&inputs["x"], &inputs["y"]);
        if x.dims() != self.input_shape.as_slice() || x.dtype() != DType::F64 {
            return Err(format!(
                "inputs.x has type {}, model.input_shape is {:?}",
                x.ty(),
                self.input_shape
            ));
        }
        let y_ok = match self.loss {
            NetLoss::CrossEntropy => y.dtype() == DType::I32 && y.dims() == [self.input_shape[0]],
            NetLoss::Mse => y.dtype() == DType::F64 && y.dims() == self.output_shape.as_slice(),
        };
        if !y_ok {
            return Err(format!(
                "inputs.y has type {}, which a {:?} loss on {:?} outputs does not take",
                y.ty(),
                self.loss,
                self.output_shape
            ));
        }
        Ok(())
    }

    fn graph(&self, name: &str, dtype: DType) -> Result<Graph, IrError> {
        ConvNet::graph(self, name, dtype)
    }
}

/// A GPT-family model (`model.family == "gpt"`, README "Family gpt").
#[derive(Clone, PartialEq, Debug)]
pub struct GptNet {
    pub vocab_size: usize,
    pub block_size: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_blocks: usize,
    pub mlp_hidden: usize,
    pub gelu: GeluApprox,
    pub ln_eps: f64,
    pub param_shapes: IndexMap<String, Vec<usize>>,
    /// Always empty (no batch norm); kept so both families answer [`NetModel::buffer_shapes`].
    pub buffer_shapes: IndexMap<String, Vec<usize>>,
}

impl GptNet {
    /// The [`GptConfig`] of `kiln::nn::Gpt` for this model.
    pub fn config(&self) -> GptConfig {
        GptConfig {
            vocab: self.vocab_size,
            block_size: self.block_size,
            d_model: self.d_model,
            heads: self.n_heads,
            blocks: self.n_blocks,
            mlp_hidden: self.mlp_hidden,
            gelu: self.gelu,
            ln_eps: self.ln_eps,
        }
    }

    /// The f32 graph as the model API builds it: `kiln::nn::Gpt::forward` on `tokens`, then `token_cross_entropy`
    /// with `targets` (as `nn::SeqTrainer` builds its training step).
    pub fn nn_graph(&self, name: &str) -> Result<Graph, IrError> {
        let config = self.config();
        config
            .validate()
            .map_err(|e| IrError::Invalid(format!("{name}: {e}")))?;
        let gpt = Gpt::new(config);
        let ids = TensorType::new(DType::I32, [self.batch, self.seq_len]);
        let mut b = Builder::new(name);
        let tokens = b.data("tokens", ids.clone())?;
        let logits = gpt.forward(&mut b, tokens)?;
        let targets = b.data("targets", ids)?;
        let loss = b.token_cross_entropy(logits, targets)?;
        b.output(LOSS_OUTPUT, loss)?;
        let graph = b.finish();
        // `Module::parameters` is what training code initializes and checkpoints: its names must be the graph's.
        let declared: Vec<String> = gpt.parameters().into_iter().map(|p| p.name).collect();
        let mut read = kiln::autodiff::param_names(&graph);
        let mut sorted = declared.clone();
        read.sort();
        sorted.sort();
        if read != sorted {
            return Err(IrError::Invalid(format!(
                "{name}: Gpt::parameters lists {declared:?} but forward reads {read:?}"
            )));
        }
        check_params(name, &graph, &self.param_shapes)?;
        Ok(graph)
    }

    /// The same model from the Builder's transformer composites in any float `dtype` (`nn::Gpt` declares its
    /// params f32, and the f64 check needs f64 throughout): `embedding` (the `gather` primitive), `layer_norm`,
    /// `multi_head_attention`, `gelu`, `linear`, `token_cross_entropy`.
    pub fn composite_graph(&self, name: &str, dtype: DType) -> Result<Graph, IrError> {
        let (t, d) = (self.seq_len, self.d_model);
        let mut b = Builder::new(name);
        let ids = TensorType::new(DType::I32, [self.batch, t]);
        let tokens = b.data("tokens", ids.clone())?;
        let targets = b.data("targets", ids)?;
        let mut params = HashMap::new();
        for (pname, shape) in &self.param_shapes {
            let p = b.param(pname, TensorType::new(dtype, shape.clone()))?;
            params.insert(pname.as_str(), p);
        }
        let p = |pname: String| {
            params
                .get(pname.as_str())
                .copied()
                .ok_or_else(|| IrError::Invalid(format!("{name}: no param `{pname}`")))
        };
        let linear = |b: &mut Builder, x: Value, n: &str| {
            b.linear(x, p(format!("{n}.weight"))?, Some(p(format!("{n}.bias"))?))
        };
        let layer_norm = |b: &mut Builder, x: Value, n: &str| {
            let (w, bias) = (p(format!("{n}.weight"))?, p(format!("{n}.bias"))?);
            b.layer_norm(x, Some(w), Some(bias), self.ln_eps)
        };
        let token_rows = b.embedding(p("tok_emb.weight".into())?, tokens)?;
        let positions = b.slice(p("pos_emb.weight".into())?, &[0, 0], &[t, d])?;
        let mut x = b.add(token_rows, positions)?;
        for i in 0..self.n_blocks {
            let pre = format!("blocks.{i}");
            let h = layer_norm(&mut b, x, &format!("{pre}.ln1"))?;
            let proj = |n: &str| -> Result<(Value, Option<Value>), IrError> {
                let n = format!("{pre}.attn.{n}");
                Ok((p(format!("{n}.weight"))?, Some(p(format!("{n}.bias"))?)))
            };
            let weights = AttentionWeights {
                q: proj("q")?,
                k: proj("k")?,
                v: proj("v")?,
                proj: proj("proj")?,
            };
            let a = b.multi_head_attention(h, &weights, self.n_heads, true)?;
            x = b.add(x, a)?;
            let h = layer_norm(&mut b, x, &format!("{pre}.ln2"))?;
            let h = linear(&mut b, h, &format!("{pre}.mlp.fc1"))?;
            let h = b.gelu(h, self.gelu)?;
            let h = linear(&mut b, h, &format!("{pre}.mlp.fc2"))?;
            x = b.add(x, h)?;
        }
        let h = layer_norm(&mut b, x, "ln_f")?;
        let logits = linear(&mut b, h, "head")?;
        let loss = b.token_cross_entropy(logits, targets)?;
        b.output(LOSS_OUTPUT, loss)?;
        let graph = b.finish();
        check_params(name, &graph, &self.param_shapes)?;
        Ok(graph)
    }
}

impl NetModel for GptNet {
    const FAMILY: &'static str = "gpt";
    const FILE_PREFIX: &'static str = "gpt_";

    fn parse(json: &Json) -> Result<Self, String> {
        let size = |key: &str| as_usize(field(json, key)?, &format!("model.{key}"));
        let gelu = match str_field(json, "gelu")? {
            "erf" => GeluApprox::None,
            "tanh" => GeluApprox::Tanh,
            other => return Err(format!("unknown gelu `{other}`")),
        };
        // Neither is implemented by the model: a case with them would need a different graph.
        if field(json, "weight_tying")?.as_bool() != Some(false) {
            return Err("model.weight_tying is not false".into());
        }
        if str_field(json, "loss")? != "cross_entropy" {
            return Err("model.loss is not cross_entropy".into());
        }
        let model = GptNet {
            vocab_size: size("vocab_size")?,
            block_size: size("block_size")?,
            seq_len: size("seq_len")?,
            batch: size("batch")?,
            d_model: size("d_model")?,
            n_heads: size("n_heads")?,
            n_blocks: size("n_blocks")?,
            mlp_hidden: size("mlp_hidden")?,
            gelu,
            ln_eps: f64_field(json, "ln_eps")?,
            param_shapes: shapes(field(json, "param_shapes")?, "model.param_shapes")?,
            buffer_shapes: shapes(field(json, "buffer_shapes")?, "model.buffer_shapes")?,
        };
        if !model.buffer_shapes.is_empty() {
            return Err("a gpt model has no buffers".into());
        }
        if size("head_dim")? * model.n_heads != model.d_model {
            return Err("model.head_dim · n_heads is not d_model".into());
        }
        Ok(model)
    }

    fn param_shapes(&self) -> &IndexMap<String, Vec<usize>> {
        &self.param_shapes
    }

    fn buffer_shapes(&self) -> &IndexMap<String, Vec<usize>> {
        &self.buffer_shapes
    }

    /// `tokens` and `targets`, i32 `[batch, seq_len]`.
    fn check_inputs(&self, inputs: &IndexMap<String, Tensor>) -> Result<(), String> {
        let mut names: Vec<&str> = inputs.keys().map(String::as_str).collect();
        names.sort();
        if names != ["targets", "tokens"] {
            return Err(format!(
                "inputs are {names:?}, expected [\"targets\", \"tokens\"]"
            ));
        }
        for (name, t) in inputs {
            if t.dtype() != DType::I32 || t.dims() != [self.batch, self.seq_len] {
                return Err(format!(
                    "inputs.{name} has type {}, expected i32 [{}, {}]",
                    t.ty(),
                    self.batch,
                    self.seq_len
                ));
            }
        }
        Ok(())
    }

    /// f32: [`GptNet::nn_graph`] (the model API, what the golden cases are here to check); any other dtype:
    /// [`GptNet::composite_graph`].
    fn graph(&self, name: &str, dtype: DType) -> Result<Graph, IrError> {
        match dtype {
            DType::F32 => self.nn_graph(name),
            _ => self.composite_graph(name, dtype),
        }
    }
}

/// `trajectory`: a few optimizer steps on the same inputs.
#[derive(Clone, Debug)]
pub struct NetTrajectory {
    pub optimizer: Optimizer,
    pub steps: usize,
    pub losses_before_each_step: Vec<f64>,
    /// Params after the last step (f64), in `model.param_shapes` order.
    pub params_after: IndexMap<String, Tensor>,
    /// Running statistics after the last step (f64); empty without batch norm.
    pub buffers_after: IndexMap<String, Tensor>,
}

/// A golden case of either family (`M` is [`ConvNet`] or [`GptNet`]).
#[derive(Clone, Debug)]
pub struct NetCase<M = ConvNet> {
    pub name: String,
    pub oracle: String,
    pub model: M,
    /// The data inputs by name. Conv: `x` `[N, C, H, W]` (f64, f32-representable) and `y` (i32 labels `[N]`
    /// for cross-entropy, f64 targets of the output's shape for mse). GPT: `tokens`, `targets` i32 `[B, T]`.
    pub inputs: IndexMap<String, Tensor>,
    pub params: IndexMap<String, Tensor>,
    /// Running statistics before anything ran (mean 0, var 1).
    pub buffers: IndexMap<String, Tensor>,
    /// The loss at `params` (batch norm in training mode).
    pub loss: f64,
    pub grads: IndexMap<String, Tensor>,
    /// Running statistics after one training-mode forward.
    pub buffers_after_forward: IndexMap<String, Tensor>,
    pub trajectory: NetTrajectory,
    /// `model.zero_grad_params` (none in the conv cases; every `attn.k.bias` in the GPT ones).
    pub zero_grad_params: Vec<String>,
}

impl<M: NetModel> NetCase<M> {
    /// [`NetModel::graph`] of this case.
    pub fn graph(&self, dtype: DType) -> Result<Graph, IrError> {
        self.model.graph(&self.name, dtype)
    }

    /// The data inputs, the params and the starting running statistics by input name, floats cast to `dtype`.
    pub fn named_inputs(&self, dtype: DType) -> HashMap<String, Tensor> {
        self.inputs
            .iter()
            .map(|(n, t)| (n.clone(), t))
            .chain(self.params.iter().map(|(n, t)| (n.clone(), t)))
            .chain(self.buffers.iter().map(|(n, t)| (n.clone(), t)))
            .map(|(n, t)| (n, cast_float(t, dtype)))
            .collect()
    }

    /// The inputs of `graph` in its input order, from [`NetCase::named_inputs`].
    pub fn inputs_of(&self, graph: &Graph, dtype: DType) -> Vec<Tensor> {
        let named = self.named_inputs(dtype);
        graph
            .inputs()
            .map(|i| {
                named
                    .get(i.name)
                    .unwrap_or_else(|| panic!("{}: no value for input `{}`", self.name, i.name))
                    .clone()
            })
            .collect()
    }
}

/// `tests/data/golden/nets/`.
pub fn nets_dir() -> PathBuf {
    crate::golden::golden_dir().join("nets")
}

/// Every conv-family case (`cnn_*.json`) in [`nets_dir`], by file name.
pub fn load_conv_cases() -> Result<Vec<NetCase>, GoldenError> {
    load_cases::<ConvNet>()
}

/// Every GPT-family case (`gpt_*.json`) in [`nets_dir`], by file name.
pub fn load_gpt_cases() -> Result<Vec<NetCase<GptNet>>, GoldenError> {
    load_cases::<GptNet>()
}

/// Every case of family `M` in [`nets_dir`] (`M::FILE_PREFIX*.json`), by file name.
pub fn load_cases<M: NetModel>() -> Result<Vec<NetCase<M>>, GoldenError> {
    let dir = nets_dir();
    let err = |e: std::io::Error| GoldenError {
        file: dir.clone(),
        message: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(err)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    files.retain(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.starts_with(M::FILE_PREFIX) && name.ends_with(".json")
    });
    files.sort();
    files.iter().map(|f| load(f)).collect()
}

pub fn load<M: NetModel>(file: &Path) -> Result<NetCase<M>, GoldenError> {
    crate::golden::load_with(file, parse_case)
}

/// Parses a case of family `M` (format in `tests/data/golden/nets/README.md`).
pub fn parse_case<M: NetModel>(json: &Json) -> Result<NetCase<M>, String> {
    let model_json = field(json, "model")?;
    let family = str_field(model_json, "family")?;
    if family != M::FAMILY {
        return Err(format!(
            "model.family is `{family}`, expected `{}`",
            M::FAMILY
        ));
    }
    let model = M::parse(model_json)?;
    let inputs = field(json, "inputs")?
        .as_object()
        .ok_or("inputs is not an object")?
        .iter()
        .map(|(name, t)| Ok((name.clone(), parse_tensor(t, &format!("inputs.{name}"))?)))
        .collect::<Result<IndexMap<_, _>, String>>()?;
    model.check_inputs(&inputs)?;
    let params = tensors(model.param_shapes(), field(json, "params")?, "params")?;
    let buffers = tensors(model.buffer_shapes(), field(json, "buffers")?, "buffers")?;
    let expected = field(json, "expected")?;
    let trajectory = field(json, "trajectory")?;
    let zero_grad_params = field(model_json, "zero_grad_params")?
        .as_array()
        .ok_or("model.zero_grad_params is not an array")?
        .iter()
        .map(|v| {
            v.as_str()
                .map(String::from)
                .ok_or("a zero_grad_param is not a string")
        })
        .collect::<Result<_, _>>()?;
    let trajectory = NetTrajectory {
        optimizer: parse_optimizer(field(trajectory, "optimizer")?)?,
        steps: as_usize(field(trajectory, "steps")?, "trajectory.steps")?,
        losses_before_each_step: field(trajectory, "losses_before_each_step")?
            .as_array()
            .ok_or("trajectory.losses_before_each_step is not an array")?
            .iter()
            .map(|v| v.as_f64().ok_or("a trajectory loss is not a number"))
            .collect::<Result<_, _>>()?,
        params_after: tensors(
            model.param_shapes(),
            field(trajectory, "params_after")?,
            "trajectory.params_after",
        )?,
        buffers_after: tensors(
            model.buffer_shapes(),
            field(trajectory, "buffers_after")?,
            "trajectory.buffers_after",
        )?,
    };
    if trajectory.losses_before_each_step.len() != trajectory.steps {
        return Err(format!(
            "trajectory.steps is {} but there are {} losses",
            trajectory.steps,
            trajectory.losses_before_each_step.len()
        ));
    }
    Ok(NetCase {
        name: str_field(json, "name")?.to_string(),
        oracle: json
            .get("oracle")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
        loss: f64_field(expected, "loss")?,
        grads: tensors(
            model.param_shapes(),
            field(expected, "grads")?,
            "expected.grads",
        )?,
        buffers_after_forward: tensors(
            model.buffer_shapes(),
            field(expected, "buffers")?,
            "expected.buffers",
        )?,
        model,
        inputs,
        params,
        buffers,
        trajectory,
        zero_grad_params,
    })
}

fn parse_model(json: &Json) -> Result<ConvNet, String> {
    let layers = field(json, "layers")?
        .as_array()
        .ok_or("model.layers is not an array")?
        .iter()
        .enumerate()
        .map(|(i, l)| parse_layer(l).map_err(|e| format!("model.layers[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let loss = match str_field(json, "loss")? {
        "cross_entropy" => NetLoss::CrossEntropy,
        "mse" => NetLoss::Mse,
        other => return Err(format!("unknown loss `{other}`")),
    };
    let activation_shapes = field(json, "activation_shapes")?
        .as_array()
        .ok_or("model.activation_shapes is not an array")?
        .iter()
        .map(|s| dims(s, "model.activation_shapes"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ConvNet {
        input_shape: dims(field(json, "input_shape")?, "model.input_shape")?,
        layers,
        loss,
        activation_shapes,
        output_shape: dims(field(json, "output_shape")?, "model.output_shape")?,
        param_shapes: shapes(field(json, "param_shapes")?, "model.param_shapes")?,
        buffer_shapes: shapes(field(json, "buffer_shapes")?, "model.buffer_shapes")?,
    })
}

fn parse_layer(json: &Json) -> Result<Layer, String> {
    let usize_of = |key: &str| as_usize(field(json, key)?, key);
    let pair = |key: &str| -> Result<[usize; 2], String> {
        let d = dims(field(json, key)?, key)?;
        <[usize; 2]>::try_from(d.as_slice()).map_err(|_| format!("`{key}` {d:?} is not [h, w]"))
    };
    let flag = |key: &str| {
        field(json, key)?
            .as_bool()
            .ok_or_else(|| format!("`{key}` is not a bool"))
    };
    Ok(match str_field(json, "type")? {
        "conv2d" => Layer::Conv2d {
            in_channels: usize_of("in")?,
            out_channels: usize_of("out")?,
            kernel: pair("kernel")?,
            stride: pair("stride")?,
            padding: pair("padding")?,
            dilation: pair("dilation")?,
            groups: usize_of("groups")?,
            bias: flag("bias")?,
        },
        "batchnorm2d" => Layer::BatchNorm2d {
            channels: usize_of("channels")?,
            momentum: f64_field(json, "momentum")?,
            eps: f64_field(json, "eps")?,
        },
        "maxpool2d" => Layer::MaxPool2d {
            kernel: pair("kernel")?,
            stride: pair("stride")?,
            padding: pair("padding")?,
        },
        "avgpool2d" => Layer::AvgPool2d {
            kernel: pair("kernel")?,
            stride: pair("stride")?,
            padding: pair("padding")?,
            count_include_pad: flag("count_include_pad")?,
        },
        "flatten" => Layer::Flatten,
        "linear" => Layer::Linear {
            in_features: usize_of("in")?,
            out_features: usize_of("out")?,
            bias: flag("bias")?,
        },
        "relu" => Layer::Relu,
        "leaky_relu" => Layer::LeakyRelu {
            negative_slope: f64_field(json, "negative_slope")?,
        },
        "tanh" => Layer::Tanh,
        "sigmoid" => Layer::Sigmoid,
        "softplus" => Layer::Softplus,
        other => return Err(format!("unknown layer type `{other}`")),
    })
}

fn dims(json: &Json, what: &str) -> Result<Vec<usize>, String> {
    json.as_array()
        .ok_or_else(|| format!("{what}: {json} is not a list of dims"))?
        .iter()
        .map(|d| as_usize(d, what))
        .collect()
}

fn shapes(json: &Json, what: &str) -> Result<IndexMap<String, Vec<usize>>, String> {
    json.as_object()
        .ok_or_else(|| format!("{what} is not an object"))?
        .iter()
        .map(|(name, s)| Ok((name.clone(), dims(s, &format!("{what}.{name}"))?)))
        .collect()
}

/// The tensors of a JSON object, exactly the names of `shapes` (in its order), each of its shape.
fn tensors(
    shapes: &IndexMap<String, Vec<usize>>,
    json: &Json,
    what: &str,
) -> Result<IndexMap<String, Tensor>, String> {
    let object = json
        .as_object()
        .ok_or_else(|| format!("{what} is not an object"))?;
    if let Some(extra) = object.keys().find(|k| !shapes.contains_key(*k)) {
        return Err(format!("{what} has `{extra}`, which the model does not"));
    }
    shapes
        .iter()
        .map(|(name, shape)| {
            let where_ = format!("{what}.{name}");
            let t = parse_tensor(field(json, name)?, &where_)?;
            if t.dims() != shape.as_slice() || t.dtype() != DType::F64 {
                return Err(format!(
                    "{where_} has type {}, expected f32 {shape:?}",
                    t.ty()
                ));
            }
            Ok((name.clone(), t))
        })
        .collect()
}
