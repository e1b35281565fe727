//! The models `kiln train` knows by name, described by a [`ModelSpec`] that a checkpoint stores as metadata.

use super::conv::{BatchNorm2d, Conv2d, Dropout, GlobalAvgPool2d, MaxPool2d, Reshape};
use super::layers::{LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Softplus, Tanh};
use super::{Activation, Error, Loss, Module, Parameter, StateUpdates};
use kiln_ir::{Builder, IrError, Value};
use std::collections::HashMap;

/// The course's `TwoLayerNet(D_in, H, D_out)`: `linear1`, `clamp(min=0)`, `linear2`.
pub struct TwoLayerNet {
    pub linear1: Linear,
    pub linear2: Linear,
}

impl TwoLayerNet {
    pub fn new(d_in: usize, h: usize, d_out: usize) -> TwoLayerNet {
        TwoLayerNet {
            linear1: Linear::new("linear1", d_in, h),
            linear2: Linear::new("linear2", h, d_out),
        }
    }
}

impl Module for TwoLayerNet {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        let h = self.linear1.forward(b, x)?;
        let h_relu = b.relu(h)?;
        self.linear2.forward(b, h_relu)
    }

    fn parameters(&self) -> Vec<Parameter> {
        [self.linear1.parameters(), self.linear2.parameters()].concat()
    }
}

/// A small convolution net for square one-channel images given as flat rows of `side²` pixels (the digits: 8×8).
/// The row is viewed as `[1, side, side]`; then per entry `c` of `channels` a block `conv{i}` (3×3, padding 1) →
/// `bn{i}` (BatchNorm2d) → activation, with a 2×2 max pool after every odd-numbered block but the last while the
/// image is at least 2 wide; then a global average pool, `dropout` (p = [`Cnn::DROPOUT`]) and the linear layer `fc`
/// to the outputs.
///
/// On the digits with the default channels 16, 32, 64: 8×8 → 8×8 → pool → 4×4 → mean → 64 features. Global
/// pooling rather than flattening keeps `fc` small (64·10 weights rather than 64·16·10), and batch norm lets Adam
/// take a large learning rate.
pub struct Cnn {
    body: Sequential,
}

impl Cnn {
    pub const DEFAULT_CHANNELS: [usize; 3] = [16, 32, 64];
    /// Dropout before the classifier.
    pub const DROPOUT: f64 = 0.2;

    /// The side of a square image of `inputs` pixels, or why there is none.
    pub fn image_side(inputs: usize) -> Result<usize, String> {
        let side = (inputs as f64).sqrt().round() as usize;
        if side * side != inputs || side == 0 {
            return Err(format!(
                "cnn takes square one-channel images as flat rows, but {inputs} features is not a square"
            ));
        }
        Ok(side)
    }

    /// The net from `inputs = side²` pixels through `channels` to `outputs`; `inputs` must be a square (checked by
    /// [`ModelSpec::new`]; a non-square size builds a net whose forward pass fails with a clear error).
    pub fn new(inputs: usize, channels: &[usize], outputs: usize, activation: Activation) -> Cnn {
        let mut side = Cnn::image_side(inputs).unwrap_or(inputs);
        let mut body = Sequential::new().append(Reshape {
            dims: vec![1, side, side],
        });
        let mut previous = 1;
        for (i, &c) in channels.iter().enumerate() {
            body.push(Box::new(
                Conv2d::new(&format!("conv{i}"), previous, c, 3).padding(1),
            ));
            body.push(Box::new(BatchNorm2d::new(&format!("bn{i}"), c)));
            body.push(activation_module(activation));
            if i % 2 == 1 && i + 1 < channels.len() && side >= 2 {
                body.push(Box::new(MaxPool2d::new(2)));
                side /= 2;
            }
            previous = c;
        }
        let body = body
            .append(GlobalAvgPool2d)
            .append(Dropout::new("dropout", Cnn::DROPOUT))
            .append(Linear::new("fc", previous, outputs));
        Cnn { body }
    }
}

impl Module for Cnn {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        self.body.forward(b, x)
    }
    fn forward_train(
        &self,
        b: &mut Builder,
        x: Value,
        updates: &mut StateUpdates,
    ) -> Result<Value, IrError> {
        self.body.forward_train(b, x, updates)
    }
    fn parameters(&self) -> Vec<Parameter> {
        self.body.parameters()
    }
    fn buffers(&self) -> Vec<Parameter> {
        self.body.buffers()
    }
}

/// The kinds of model `kiln train --model` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// One `Linear` layer: logistic regression, i.e. softmax regression when there are more than two classes.
    Logreg,
    /// [`TwoLayerNet`] (ReLU hidden layer, 20 units unless told).
    TwoLayer,
    /// `Linear` layers `l0, l1, ...` with an activation between them (one hidden layer of 128 unless told).
    Mlp,
    /// [`Cnn`]: square one-channel images as flat rows; the hidden sizes are the convolutions' channels.
    Cnn,
}

impl ModelKind {
    pub const NAMES: [&str; 4] = ["logreg", "twolayer", "mlp", "cnn"];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Logreg => "logreg",
            ModelKind::TwoLayer => "twolayer",
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        }
    }

    pub fn from_name(name: &str) -> Option<ModelKind> {
        Some(match name {
            "logreg" => ModelKind::Logreg,
            "twolayer" => ModelKind::TwoLayer,
            "mlp" => ModelKind::Mlp,
            "cnn" => ModelKind::Cnn,
            _ => return None,
        })
    }

    /// The hidden layer sizes used when none are given.
    pub fn default_hidden(self) -> Vec<usize> {
        match self {
            ModelKind::Logreg => vec![],
            ModelKind::TwoLayer => vec![20],
            ModelKind::Mlp => vec![128],
            ModelKind::Cnn => Cnn::DEFAULT_CHANNELS.to_vec(),
        }
    }
}

/// Everything needed to rebuild a model: kind, layer sizes (inputs, hidden..., outputs), activation and loss.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub kind: ModelKind,
    pub layers: Vec<usize>,
    pub activation: Activation,
    pub loss: Loss,
}

/// The `format` metadata entry of a checkpoint written by this version.
const FORMAT: &str = "kiln-model/1";

impl ModelSpec {
    /// A model of `kind` from `inputs` features to `outputs` columns; `hidden` and `activation` default per kind.
    pub fn new(
        kind: ModelKind,
        inputs: usize,
        hidden: Option<Vec<usize>>,
        outputs: usize,
        activation: Option<Activation>,
        loss: Loss,
    ) -> Result<ModelSpec, Error> {
        let hidden = hidden.unwrap_or_else(|| kind.default_hidden());
        let bad = |message: String| Err(Error::Config(message));
        let activation = match (kind, activation) {
            (ModelKind::Logreg, None | Some(Activation::Identity)) => Activation::Identity,
            (ModelKind::Logreg, Some(a)) => {
                return bad(format!(
                    "logreg has no hidden layer to apply `{}` to",
                    a.name()
                ))
            }
            (ModelKind::TwoLayer, None | Some(Activation::Relu)) => Activation::Relu,
            (ModelKind::TwoLayer, Some(a)) => {
                return bad(format!(
                    "twolayer is the course's TwoLayerNet with ReLU; use --model mlp for `{}`",
                    a.name()
                ))
            }
            (ModelKind::Mlp | ModelKind::Cnn, a) => a.unwrap_or(Activation::Relu),
        };
        match (kind, hidden.len()) {
            (ModelKind::Logreg, 0)
            | (ModelKind::TwoLayer, 1)
            | (ModelKind::Mlp, 1..)
            | (ModelKind::Cnn, 1..) => {}
            (ModelKind::Logreg, _) => return bad("logreg has no hidden layers".into()),
            (ModelKind::TwoLayer, n) => {
                return bad(format!(
                    "twolayer has exactly one hidden layer, got {n} sizes"
                ))
            }
            (ModelKind::Mlp, _) => return bad("mlp needs at least one hidden layer".into()),
            (ModelKind::Cnn, _) => {
                return bad("cnn needs at least one convolution (--hidden channels)".into())
            }
        }
        if kind == ModelKind::Cnn {
            Cnn::image_side(inputs).map_err(Error::Config)?;
        }
        let layers: Vec<usize> = [inputs]
            .into_iter()
            .chain(hidden)
            .chain([outputs])
            .collect();
        if let Some(zero) = layers.iter().position(|&n| n == 0) {
            return bad(format!("layer {zero} of {layers:?} has size 0"));
        }
        Ok(ModelSpec {
            kind,
            layers,
            activation,
            loss,
        })
    }

    pub fn inputs(&self) -> usize {
        self.layers[0]
    }

    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1]
    }

    /// The module this spec describes.
    pub fn build(&self) -> Box<dyn Module> {
        let l = &self.layers;
        match self.kind {
            ModelKind::TwoLayer => return Box::new(TwoLayerNet::new(l[0], l[1], l[2])),
            ModelKind::Cnn => {
                let channels = &l[1..l.len() - 1];
                return Box::new(Cnn::new(l[0], channels, l[l.len() - 1], self.activation));
            }
            ModelKind::Logreg | ModelKind::Mlp => {}
        }
        let mut seq = Sequential::new();
        let last = self.layers.len() - 2;
        for (i, pair) in self.layers.windows(2).enumerate() {
            seq.push(Box::new(Linear::new(&format!("l{i}"), pair[0], pair[1])));
            if i < last {
                seq.push(activation_module(self.activation));
            }
        }
        Box::new(seq)
    }

    /// `model-name 64-128-10 relu` for messages.
    pub fn describe(&self) -> String {
        let sizes: Vec<String> = self.layers.iter().map(usize::to_string).collect();
        format!(
            "{} {} {}",
            self.kind.name(),
            sizes.join("-"),
            self.activation.name()
        )
    }

    /// The checkpoint metadata entries describing this model.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let sizes: Vec<String> = self.layers.iter().map(usize::to_string).collect();
        HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("kind".to_string(), self.kind.name().to_string()),
            ("layers".to_string(), sizes.join(",")),
            ("activation".to_string(), self.activation.name().to_string()),
            ("loss".to_string(), self.loss.name().to_string()),
        ])
    }

    /// Reads [`ModelSpec::to_metadata`]'s entries back; the message names the missing or bad entry.
    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<ModelSpec, String> {
        let get = |key: &str| {
            meta.get(key).map(String::as_str).ok_or_else(|| {
                format!("no `{key}` entry in the metadata (not written by `kiln train`?)")
            })
        };
        let format = get("format")?;
        if format != FORMAT {
            return Err(format!("metadata format `{format}`, expected `{FORMAT}`"));
        }
        let kind = get("kind")?;
        let kind =
            ModelKind::from_name(kind).ok_or_else(|| format!("unknown model kind `{kind}`"))?;
        let sizes = get("layers")?;
        let layers = sizes
            .split(',')
            .map(|s| s.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("bad layer sizes `{sizes}`"))?;
        if layers.len() < 2 {
            return Err(format!("bad layer sizes `{sizes}`"));
        }
        let activation = get("activation")?;
        let activation = Activation::from_name(activation)
            .ok_or_else(|| format!("unknown activation `{activation}`"))?;
        let loss = get("loss")?;
        let loss = Loss::from_name(loss).ok_or_else(|| format!("unknown loss `{loss}`"))?;
        let hidden = layers[1..layers.len() - 1].to_vec();
        ModelSpec::new(
            kind,
            layers[0],
            Some(hidden),
            layers[layers.len() - 1],
            Some(activation),
            loss,
        )
        .map_err(|e| e.to_string())
    }
}

/// The module applying `activation`.
pub fn activation_module(activation: Activation) -> Box<dyn Module> {
    match activation {
        Activation::Identity => Box::new(Sequential::new()),
        Activation::Relu => Box::new(ReLU),
        Activation::LeakyRelu => Box::new(LeakyReLU(Activation::LEAKY_SLOPE)),
        Activation::Sigmoid => Box::new(Sigmoid),
        Activation::Tanh => Box::new(Tanh),
        Activation::Softplus => Box::new(Softplus),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        let spec = ModelSpec::new(
            ModelKind::Mlp,
            64,
            Some(vec![128, 32]),
            10,
            Some(Activation::Tanh),
            Loss::CrossEntropy,
        )
        .unwrap();
        assert_eq!(ModelSpec::from_metadata(&spec.to_metadata()).unwrap(), spec);
        assert_eq!(spec.describe(), "mlp 64-128-32-10 tanh");
    }

    #[test]
    fn kinds_check_their_hidden_layers() {
        let err = |kind, hidden| {
            ModelSpec::new(kind, 2, Some(hidden), 2, None, Loss::CrossEntropy)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(ModelKind::Logreg, vec![3]),
            "logreg has no hidden layers"
        );
        assert_eq!(
            err(ModelKind::TwoLayer, vec![3, 3]),
            "twolayer has exactly one hidden layer, got 2 sizes"
        );
        assert_eq!(
            err(ModelKind::Mlp, vec![0]),
            "layer 1 of [2, 0, 2] has size 0"
        );
    }
}
