//! Layers and activations as modules. Activations have no parameters; each is one builder call (the expansions are
//! in `kiln_ir`'s `composite.rs` and SPEC.md).

use super::{param, Init, Module, Parameter, StateUpdates};
use kiln_ir::{Builder, IrError, TensorType, Value};

/// PyTorch's `nn.Linear`: `y = x Wᵀ + b` with `W: [out, in]` and `b: [out]`, both initialized uniform in
/// `±1/sqrt(in)` (PyTorch's default: Kaiming-uniform with `a = sqrt(5)` gives the same bound for the weight).
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Prefix of the parameter names: `<name>.weight`, `<name>.bias`.
    pub name: String,
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

impl Linear {
    pub fn new(name: &str, in_features: usize, out_features: usize) -> Linear {
        Linear {
            name: name.to_string(),
            in_features,
            out_features,
            bias: true,
        }
    }

    /// The same layer without the bias term.
    pub fn without_bias(self) -> Linear {
        Linear {
            bias: false,
            ..self
        }
    }

    fn weight_type(&self) -> TensorType {
        TensorType::f32(&[self.out_features, self.in_features])
    }
}

impl Module for Linear {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        let w = param(b, &format!("{}.weight", self.name), self.weight_type())?;
        let bias = if self.bias {
            let ty = TensorType::f32(&[self.out_features]);
            Some(param(b, &format!("{}.bias", self.name), ty)?)
        } else {
            None
        };
        b.linear(x, w, bias)
    }

    fn parameters(&self) -> Vec<Parameter> {
        let init = Init::Uniform {
            bound: 1.0 / (self.in_features.max(1) as f64).sqrt(),
        };
        let mut params = vec![Parameter {
            name: format!("{}.weight", self.name),
            ty: self.weight_type(),
            init,
        }];
        if self.bias {
            params.push(Parameter {
                name: format!("{}.bias", self.name),
                ty: TensorType::f32(&[self.out_features]),
                init,
            });
        }
        params
    }
}

/// Modules applied one after the other (`nn.Sequential`).
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a layer (builder style, as PyTorch's `append`: `Sequential::new().append(...).append(...)`).
    pub fn append(mut self, layer: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    pub fn push(&mut self, layer: Box<dyn Module>) {
        self.layers.push(layer);
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, b: &mut Builder, mut x: Value) -> Result<Value, IrError> {
        for layer in &self.layers {
            x = layer.forward(b, x)?;
        }
        Ok(x)
    }

    fn forward_train(
        &self,
        b: &mut Builder,
        mut x: Value,
        updates: &mut StateUpdates,
    ) -> Result<Value, IrError> {
        for layer in &self.layers {
            x = layer.forward_train(b, x, updates)?;
        }
        Ok(x)
    }

    fn parameters(&self) -> Vec<Parameter> {
        self.layers.iter().flat_map(|l| l.parameters()).collect()
    }

    fn buffers(&self) -> Vec<Parameter> {
        self.layers.iter().flat_map(|l| l.buffers()).collect()
    }
}

/// Declares a parameterless module whose forward is one builder call.
macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, |$b:ident, $x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, $b: &mut Builder, $x: Value) -> Result<Value, IrError> {
                $body
            }
            fn parameters(&self) -> Vec<Parameter> {
                Vec::new()
            }
        }
    };
}

activation!(
    /// `max(x, 0)`, with relu'(0) = 0.
    ReLU, |b, x| b.relu(x)
);
activation!(
    /// `log(1 + exp(x))`, computed without overflow.
    Softplus, |b, x| b.softplus(x)
);
activation!(
    /// The step function: 1 where x > 0, else 0 (zero gradient everywhere).
    Heaviside, |b, x| b.heaviside(x)
);
activation!(
    /// `1 / (1 + exp(-x))`.
    Sigmoid, |b, x| b.sigmoid(x)
);
activation!(
    /// The hyperbolic tangent.
    Tanh, |b, x| b.tanh(x)
);

/// `x` where x > 0, else `slope · x` (`nn.LeakyReLU(negative_slope)`; PyTorch's default slope is 0.01).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyReLU(pub f64);

impl Default for LeakyReLU {
    fn default() -> LeakyReLU {
        LeakyReLU(0.01)
    }
}

impl Module for LeakyReLU {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        b.leaky_relu(x, self.0)
    }
    fn parameters(&self) -> Vec<Parameter> {
        Vec::new()
    }
}

/// Softmax along an axis (`nn.Softmax(dim)`); negative axes count from the end. Put it at the end of a model only
/// for probabilities: [`super::Loss::CrossEntropy`] takes logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Softmax {
    pub axis: isize,
}

impl Default for Softmax {
    fn default() -> Softmax {
        Softmax { axis: -1 }
    }
}

impl Module for Softmax {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        b.softmax(x, self.axis)
    }
    fn parameters(&self) -> Vec<Parameter> {
        Vec::new()
    }
}
