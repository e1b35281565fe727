//! The transformer vocabulary: `Embedding`, `LayerNorm`, `MultiheadAttention`, `TransformerBlock` (pre-LN) and a
//! GPT-style decoder, [`Gpt`]. Each is a [`Module`] over the Builder's composites (`embedding`, `layer_norm`,
//! `multi_head_attention`, `gelu`, `linear`), with PyTorch's parameter names and layouts, so a GPT's parameters are
//! named as in `tests/data/golden/nets/README.md` (`tok_emb.weight`, `blocks.0.attn.q.weight`, …, `head.bias`).

use super::layers::Linear;
use super::{param, Init, Module, Parameter};
use kiln_ir::composite::{AttentionWeights, GeluApprox};
use kiln_ir::{Builder, DType, IrError, TensorType, Value};

/// GPT-2's initialization: weights and embeddings with a standard deviation of 0.02 (here uniform with that
/// deviation: ±0.02·√3), biases 0, layer norms 1 and 0.
const INIT_STD: f64 = 0.02;

fn gpt_init() -> Init {
    Init::Uniform {
        bound: INIT_STD * 3f64.sqrt(),
    }
}

/// `nn.Embedding(num, dim)`: rows of `{name}.weight` `[num, dim]` by i32 ids of any shape. An id outside `0..num`
/// gives a zero row (SPEC §4 `embedding`); the data loaders reject such ids before they get here.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    pub name: String,
    pub num: usize,
    pub dim: usize,
}

impl Embedding {
    pub fn new(name: &str, num: usize, dim: usize) -> Embedding {
        Embedding {
            name: name.to_string(),
            num,
            dim,
        }
    }

    fn weight(&self, b: &mut Builder) -> Result<Value, IrError> {
        let ty = TensorType::f32(&[self.num, self.dim]);
        param(b, &format!("{}.weight", self.name), ty)
    }
}

impl Module for Embedding {
    fn forward(&self, b: &mut Builder, ids: Value) -> Result<Value, IrError> {
        let w = self.weight(b)?;
        b.embedding(w, ids)
    }

    fn parameters(&self) -> Vec<Parameter> {
        vec![Parameter {
            name: format!("{}.weight", self.name),
            ty: TensorType::f32(&[self.num, self.dim]),
            init: gpt_init(),
        }]
    }
}

/// `nn.LayerNorm(dim, eps)` over the last dim, with `{name}.weight` (ones) and `{name}.bias` (zeros).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    pub name: String,
    pub dim: usize,
    pub eps: f64,
}

impl LayerNorm {
    pub const DEFAULT_EPS: f64 = 1e-5;

    pub fn new(name: &str, dim: usize) -> LayerNorm {
        LayerNorm {
            name: name.to_string(),
            dim,
            eps: LayerNorm::DEFAULT_EPS,
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        let ty = TensorType::f32(&[self.dim]);
        let w = param(b, &format!("{}.weight", self.name), ty.clone())?;
        let bias = param(b, &format!("{}.bias", self.name), ty)?;
        b.layer_norm(x, Some(w), Some(bias), self.eps)
    }

    fn parameters(&self) -> Vec<Parameter> {
        let ty = TensorType::f32(&[self.dim]);
        vec![
            Parameter {
                name: format!("{}.weight", self.name),
                ty: ty.clone(),
                init: Init::Constant(1.0),
            },
            Parameter {
                name: format!("{}.bias", self.name),
                ty,
                init: Init::Zeros,
            },
        ]
    }
}

/// A linear layer with GPT-2's initialization.
fn gpt_linear(name: &str, inputs: usize, outputs: usize) -> (Linear, Vec<Parameter>) {
    let linear = Linear::new(name, inputs, outputs);
    let mut params = linear.parameters();
    params[0].init = gpt_init();
    params[1].init = Init::Zeros;
    (linear, params)
}

/// Multi-head self-attention over `[B, T, dim]` (`batch_first`), with projections `{name}.{q,k,v,proj}` (each a
/// `Linear(dim, dim)`), optionally causal.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiheadAttention {
    pub name: String,
    pub dim: usize,
    pub heads: usize,
    pub causal: bool,
}

impl MultiheadAttention {
    pub fn new(name: &str, dim: usize, heads: usize, causal: bool) -> MultiheadAttention {
        MultiheadAttention {
            name: name.to_string(),
            dim,
            heads,
            causal,
        }
    }

    const PROJECTIONS: [&'static str; 4] = ["q", "k", "v", "proj"];
}

impl Module for MultiheadAttention {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        let mut pairs = Vec::with_capacity(4);
        for p in MultiheadAttention::PROJECTIONS {
            let name = format!("{}.{p}", self.name);
            let w = param(
                b,
                &format!("{name}.weight"),
                TensorType::f32(&[self.dim, self.dim]),
            )?;
            let bias = param(b, &format!("{name}.bias"), TensorType::f32(&[self.dim]))?;
            pairs.push((w, Some(bias)));
        }
        let weights = AttentionWeights {
            q: pairs[0],
            k: pairs[1],
            v: pairs[2],
            proj: pairs[3],
        };
        b.multi_head_attention(x, &weights, self.heads, self.causal)
    }

    fn parameters(&self) -> Vec<Parameter> {
        MultiheadAttention::PROJECTIONS
            .iter()
            .flat_map(|p| gpt_linear(&format!("{}.{p}", self.name), self.dim, self.dim).1)
            .collect()
    }
}

/// A pre-LN transformer block: `x + attn(ln1(x))`, then `x + fc2(gelu(fc1(ln2(x))))`.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerBlock {
    pub ln1: LayerNorm,
    pub attn: MultiheadAttention,
    pub ln2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub gelu: GeluApprox,
}

impl TransformerBlock {
    /// The block `{name}.` with `heads` causal heads over `dim` features and an MLP of `hidden` units.
    pub fn new(name: &str, dim: usize, heads: usize, hidden: usize, gelu: GeluApprox) -> Self {
        TransformerBlock {
            ln1: LayerNorm::new(&format!("{name}.ln1"), dim),
            attn: MultiheadAttention::new(&format!("{name}.attn"), dim, heads, true),
            ln2: LayerNorm::new(&format!("{name}.ln2"), dim),
            fc1: Linear::new(&format!("{name}.mlp.fc1"), dim, hidden),
            fc2: Linear::new(&format!("{name}.mlp.fc2"), hidden, dim),
            gelu,
        }
    }
}

impl Module for TransformerBlock {
    fn forward(&self, b: &mut Builder, x: Value) -> Result<Value, IrError> {
        let h = self.ln1.forward(b, x)?;
        let a = self.attn.forward(b, h)?;
        let x = b.add(x, a)?;
        let h = self.ln2.forward(b, x)?;
        let h = self.fc1.forward(b, h)?;
        let h = b.gelu(h, self.gelu)?;
        let h = self.fc2.forward(b, h)?;
        b.add(x, h)
    }

    fn parameters(&self) -> Vec<Parameter> {
        let linear = |l: &Linear| gpt_linear(&l.name, l.in_features, l.out_features).1;
        [
            self.ln1.parameters(),
            self.attn.parameters(),
            self.ln2.parameters(),
            linear(&self.fc1),
            linear(&self.fc2),
        ]
        .concat()
    }
}

/// The shape of a [`Gpt`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptConfig {
    pub vocab: usize,
    /// Rows of the position table: the longest sequence the model reads.
    pub block_size: usize,
    pub d_model: usize,
    pub heads: usize,
    pub blocks: usize,
    /// The MLP's hidden width (4·d_model in GPT-2).
    pub mlp_hidden: usize,
    pub gelu: GeluApprox,
    pub ln_eps: f64,
}

impl GptConfig {
    /// A small GPT: `blocks` blocks of `d_model` features, `heads` heads, MLP 4·d_model, exact GELU.
    pub fn new(
        vocab: usize,
        block_size: usize,
        d_model: usize,
        heads: usize,
        blocks: usize,
    ) -> GptConfig {
        GptConfig {
            vocab,
            block_size,
            d_model,
            heads,
            blocks,
            mlp_hidden: 4 * d_model,
            gelu: GeluApprox::None,
            ln_eps: LayerNorm::DEFAULT_EPS,
        }
    }

    /// Sizes that build: every size positive, and `heads` dividing `d_model` (named by its flag).
    pub fn validate(&self) -> Result<(), String> {
        let sizes = [
            ("vocabulary", self.vocab),
            ("block size (--context)", self.block_size),
            ("model width (--width)", self.d_model),
            ("heads (--heads)", self.heads),
            ("blocks (--blocks)", self.blocks),
            ("MLP width", self.mlp_hidden),
        ];
        if let Some((what, _)) = sizes.iter().find(|(_, n)| *n == 0) {
            return Err(format!("the transformer's {what} is 0"));
        }
        if !self.d_model.is_multiple_of(self.heads) {
            return Err(format!(
                "--heads {} does not divide the model width --width {}",
                self.heads, self.d_model
            ));
        }
        // NaN is rejected too.
        if self.ln_eps.is_nan() || self.ln_eps <= 0.0 {
            return Err(format!("layer-norm eps {} is not positive", self.ln_eps));
        }
        Ok(())
    }
}

/// A GPT-style decoder: `x = tok_emb[tokens] + pos_emb[0..T]`, `blocks` pre-LN causal [`TransformerBlock`]s
/// (`blocks.{i}.`), a final `ln_f` and a linear `head` (no weight tying): i32 tokens `[B, T]` → logits
/// `[B, T, vocab]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpt {
    pub config: GptConfig,
    pub tok_emb: Embedding,
    pub pos_emb: Embedding,
    pub blocks: Vec<TransformerBlock>,
    pub ln_f: LayerNorm,
    pub head: Linear,
}

impl Gpt {
    pub fn new(config: GptConfig) -> Gpt {
        let c = config;
        let mut ln_f = LayerNorm::new("ln_f", c.d_model);
        ln_f.eps = c.ln_eps;
        let blocks = (0..c.blocks)
            .map(|i| {
                let mut block = TransformerBlock::new(
                    &format!("blocks.{i}"),
                    c.d_model,
                    c.heads,
                    c.mlp_hidden,
                    c.gelu,
                );
                block.ln1.eps = c.ln_eps;
                block.ln2.eps = c.ln_eps;
                block
            })
            .collect();
        Gpt {
            config,
            tok_emb: Embedding::new("tok_emb", c.vocab, c.d_model),
            pos_emb: Embedding::new("pos_emb", c.block_size, c.d_model),
            blocks,
            ln_f,
            head: Linear::new("head", c.d_model, c.vocab),
        }
    }
}

impl Module for Gpt {
    fn forward(&self, b: &mut Builder, tokens: Value) -> Result<Value, IrError> {
        let ty = b.ty(tokens).clone();
        let c = &self.config;
        if ty.rank() != 2 || ty.dtype != DType::I32 {
            return Err(IrError::Invalid(format!(
                "gpt: tokens must be i32 [batch, sequence], got {ty}"
            )));
        }
        let t = ty.dims()[1];
        if t > c.block_size {
            return Err(IrError::Invalid(format!(
                "gpt: a sequence of {t} tokens is longer than the position table's {} rows (--context)",
                c.block_size
            )));
        }
        let tok = self.tok_emb.forward(b, tokens)?;
        let table = self.pos_emb.weight(b)?;
        let pos = b.slice(table, &[0, 0], &[t, c.d_model])?;
        let mut x = b.add(tok, pos)?;
        for block in &self.blocks {
            x = block.forward(b, x)?;
        }
        let x = self.ln_f.forward(b, x)?;
        self.head.forward(b, x)
    }

    fn parameters(&self) -> Vec<Parameter> {
        let mut params = [self.tok_emb.parameters(), self.pos_emb.parameters()].concat();
        for block in &self.blocks {
            params.extend(block.parameters());
        }
        params.extend(self.ln_f.parameters());
        params.extend(gpt_linear("head", self.config.d_model, self.config.vocab).1);
        params
    }
}
