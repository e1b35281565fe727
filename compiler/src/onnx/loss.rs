//! A loss appended to an imported model ([`ImportOptions::loss`](super::ImportOptions)), so that a model made
//! elsewhere can be fine-tuned: `kiln::training_step` differentiates the new scalar `loss` output with respect to the
//! model's `param` inputs (its initializers, imported with `trainable`).
//!
//! The loss reads one output of the model (the only one, or the one named by [`LossSpec::of`]) and a new data input
//! `target` that holds what the output should have been. Each kind is the builder's composite of the same name, with
//! PyTorch's default reduction (the mean):
//!
//! | kind | output | `target` | composite |
//! |---|---|---|---|
//! | `mse` | float, any shape | the output's type | [`mse_loss`](kiln_ir::Builder::mse_loss) |
//! | `cross_entropy` | float logits `[..., K]`, rank ≥ 2 | i32 class indices `[...]` | [`token_cross_entropy`](kiln_ir::Builder::token_cross_entropy) |
//! | `bce` | float probabilities | the output's type | [`bce_loss`](kiln_ir::Builder::bce_loss) |
//! | `bce_with_logits` | float logits | the output's type | [`bce_with_logits`](kiln_ir::Builder::bce_with_logits) |
//!
//! The model's own outputs stay outputs of the graph, so one imported graph serves both evaluation and training.

use super::ImportError;
use kiln_ir::{Builder, DType, Role, TensorType, Value};
use std::fmt;
use std::str::FromStr;

/// Which loss to append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    Mse,
    CrossEntropy,
    Bce,
    BceWithLogits,
}

impl LossKind {
    pub const ALL: [LossKind; 4] = [
        LossKind::Mse,
        LossKind::CrossEntropy,
        LossKind::Bce,
        LossKind::BceWithLogits,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LossKind::Mse => "mse",
            LossKind::CrossEntropy => "cross_entropy",
            LossKind::Bce => "bce",
            LossKind::BceWithLogits => "bce_with_logits",
        }
    }
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LossKind {
    type Err = String;

    fn from_str(s: &str) -> Result<LossKind, String> {
        LossKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = LossKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown loss `{s}` (expected one of: {})", names.join(", "))
            })
    }
}

/// A loss on one output of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LossSpec {
    pub kind: LossKind,
    /// The ONNX name of the output the loss reads; `None` when the model has exactly one output.
    pub of: Option<String>,
}

/// The name of the data input that holds the targets.
pub const TARGET_INPUT: &str = "target";
/// The name of the scalar output that holds the loss.
pub const LOSS_OUTPUT: &str = "loss";

/// Appends `spec`'s loss to a graph under construction whose outputs are `outputs` (ONNX name, value), and
/// returns the loss's description for the summary.
pub(super) fn append(
    b: &mut Builder,
    spec: &LossSpec,
    outputs: &[(String, Value)],
) -> Result<String, ImportError> {
    let names = || {
        outputs
            .iter()
            .map(|(n, _)| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, value) = match &spec.of {
        Some(of) => outputs.iter().find(|(n, _)| n == of).ok_or_else(|| {
            ImportError::Invalid(format!(
                "--loss {}: the model has no output `{of}` (its outputs: {})",
                spec.kind,
                names()
            ))
        })?,
        None => match outputs {
            [only] => only,
            _ => {
                return Err(ImportError::Invalid(format!(
                "--loss {}: the model has {} outputs ({}); name the one the loss reads with --of",
                spec.kind,
                outputs.len(),
                names()
            )))
            }
        },
    };
    let ty = b.ty(*value).clone();
    let invalid = |why: String| {
        ImportError::Invalid(format!(
            "--loss {} on output `{name}` ({ty}): {why}",
            spec.kind
        ))
    };
    if !ty.dtype.is_float() {
        return Err(invalid("the output is not a float tensor".into()));
    }
    let target_ty = match spec.kind {
        LossKind::CrossEntropy => {
            if ty.rank() < 2 {
                return Err(invalid(
                    "cross_entropy needs logits with classes last, [..., K] of rank 2 or more"
                        .into(),
                ));
            }
            TensorType::new(DType::I32, ty.dims()[..ty.rank() - 1].to_vec())
        }
        LossKind::Mse | LossKind::Bce | LossKind::BceWithLogits => ty.clone(),
    };
    let build = |source| ImportError::Build {
        node: LOSS_OUTPUT.into(),
        op_type: spec.kind.name().into(),
        source: Box::new(source),
    };
    if b.graph().input(TARGET_INPUT).is_some() {
        return Err(invalid(format!(
            "the model already has an input named `{TARGET_INPUT}`, the name the targets' input takes"
        )));
    }
    let target = b
        .input(TARGET_INPUT, Role::Data, target_ty.clone())
        .map_err(build)?;
    let loss = match spec.kind {
        LossKind::Mse => b.mse_loss(*value, target),
        LossKind::CrossEntropy => b.token_cross_entropy(*value, target),
        LossKind::Bce => b.bce_loss(*value, target),
        LossKind::BceWithLogits => b.bce_with_logits(*value, target),
    }
    .map_err(build)?;
    b.output(LOSS_OUTPUT, loss).map_err(build)?;
    Ok(format!(
        "{} of output `{name}` against input `{TARGET_INPUT}`: {target_ty}",
        spec.kind
    ))
}
