//! The golden reference cases in `tests/data/golden/`: a loader, and the model graph of each case built with the
//! Builder.
//!
//! Each case is a small model (Linear layers, an activation after every layer but the last, a mean loss) with its
//! inputs and parameters, and what an outside float64 autodiff system computed from them: the loss, the gradient of
//! the loss with respect to every parameter, and a few optimizer steps. See `tests/data/golden/README.md`.
//!
//! Float tensors are loaded as **f64** tensors holding the file's values exactly: inputs and parameters are
//! representable in f32 (so casting them to f32 is exact), expected gradients and parameters are not. Labels for
//! `cross_entropy` are i32. [`GoldenCase::inputs`] casts to the dtype under test.

use indexmap::IndexMap;
pub use kiln::nn::{Activation, Loss};
use kiln::{Adam, Optimizer, Sgd};
use kiln_ir::{DType, Graph, IrError, Tensor, TensorType};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Name of the loss output of the case graphs.
pub const LOSS_OUTPUT: &str = "loss";

/// Why a golden file could not be loaded: the file and what was wrong with it.
#[derive(Clone, Debug)]
pub struct GoldenError {
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for GoldenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for GoldenError {}

/// The type of the target `y` for a batch of `batch` and `outputs` model outputs, with floats in `dtype`.
pub fn target_type(loss: Loss, batch: usize, outputs: usize, dtype: DType) -> TensorType {
    match loss {
        Loss::CrossEntropy => TensorType::new(DType::I32, [batch]),
        _ => TensorType::new(dtype, [batch, outputs]),
    }
}

/// The model of a case: Linear layers `y = x Wᵀ + b` (W of shape `[out, in]`) of widths `layers`.
#[derive(Clone, PartialEq, Debug)]
pub struct ModelSpec {
    /// `[in, hidden..., out]`.
    pub layers: Vec<usize>,
    pub activation: Activation,
    pub loss: Loss,
}

impl ModelSpec {
    /// Parameter names and types in model order: `l0.weight [out, in]`, `l0.bias [out]`, `l1.weight`, ...
    pub fn params(&self, dtype: DType) -> Vec<(String, TensorType)> {
        self.layers
            .windows(2)
            .enumerate()
            .flat_map(|(i, w)| {
                [
                    (format!("l{i}.weight"), TensorType::new(dtype, [w[1], w[0]])),
                    (format!("l{i}.bias"), TensorType::new(dtype, [w[1]])),
                ]
            })
            .collect()
    }

    /// The forward graph for a batch of `batch`: `kiln::zoo::mlp`, with outputs `out` and [`LOSS_OUTPUT`].
    pub fn graph(&self, name: &str, batch: usize, dtype: DType) -> Result<Graph, IrError> {
        kiln::zoo::mlp(name, &self.layers, batch, self.activation, self.loss, dtype)
    }
}

/// A few optimizer steps from the case's params on the same `x`, `y` every step.
#[derive(Clone, Debug)]
pub struct Trajectory {
    pub optimizer: Optimizer,
    pub steps: usize,
    /// The loss before each step (`losses_before_each_step[0] == expected.loss`).
    pub losses_before_each_step: Vec<f64>,
    /// The params after the last step, in model order (f64).
    pub params_after: IndexMap<String, Tensor>,
}

#[derive(Clone, Debug)]
pub struct GoldenCase {
    pub name: String,
    /// What computed the expected values.
    pub oracle: String,
    pub model: ModelSpec,
    /// Features `[N, in]`, f64 holding f32-representable values.
    pub x: Tensor,
    /// Targets: `[N, out]` f64 holding f32-representable values, or i32 labels `[N]` for `cross_entropy`.
    pub y: Tensor,
    /// Parameters in model order (`l0.weight`, `l0.bias`, `l1.weight`, ...), f64 holding f32-representable values.
    pub params: IndexMap<String, Tensor>,
    /// The loss at `params`.
    pub loss: f64,
    /// `d loss / d param` in model order (f64).
    pub grads: IndexMap<String, Tensor>,
    pub trajectory: Trajectory,
}

impl GoldenCase {
    /// Batch size.
    pub fn batch(&self) -> usize {
        self.x.dims()[0]
    }

    /// [`ModelSpec::graph`] for this case's batch.
    pub fn graph(&self, dtype: DType) -> Result<Graph, IrError> {
        self.model.graph(&self.name, self.batch(), dtype)
    }

    /// The inputs of [`GoldenCase::graph`] in graph-input order, floats cast to `dtype`.
    pub fn inputs(&self, dtype: DType) -> Vec<Tensor> {
        let mut named = self.named_inputs(dtype);
        let graph = self.graph(dtype).expect("the case's model builds");
        graph
            .inputs()
            .map(|i| named.remove(i.name).expect("every input is named"))
            .collect()
    }

    /// The inputs of [`GoldenCase::graph`] by name (`x`, `y` and the params), floats cast to `dtype`.
    pub fn named_inputs(&self, dtype: DType) -> HashMap<String, Tensor> {
        let names = ["x", "y"]
            .into_iter()
            .map(String::from)
            .chain(self.params.keys().cloned());
        let values = [&self.x, &self.y]
            .into_iter()
            .chain(self.params.values())
            .map(|t| cast_float(t, dtype));
        names.zip(values).collect()
    }
}

/// A float tensor cast to `dtype`; other tensors unchanged.
pub fn cast_float(t: &Tensor, dtype: DType) -> Tensor {
    if t.dtype().is_float() {
        t.cast(dtype)
    } else {
        t.clone()
    }
}

/// `tests/data/golden/`.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/golden")
}

/// Every case in [`golden_dir`], by file name.
pub fn load_all() -> Result<Vec<GoldenCase>, GoldenError> {
    let dir = golden_dir();
    let err = |message: String| GoldenError {
        file: dir.clone(),
        message,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| err(e.to_string()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files.iter().map(|f| load(f)).collect()
}

/// One case by name (`tests/data/golden/{name}.json`).
pub fn load_case(name: &str) -> Result<GoldenCase, GoldenError> {
    load(&golden_dir().join(format!("{name}.json")))
}

pub fn load(file: &Path) -> Result<GoldenCase, GoldenError> {
    load_with(file, parse_case)
}

/// Reads `file` as JSON and parses it with `parse` (the MLP or the conv-net family), naming the file on any error.
pub fn load_with<T>(
    file: &Path,
    parse: impl FnOnce(&Json) -> Result<T, String>,
) -> Result<T, GoldenError> {
    let err = |message: String| GoldenError {
        file: file.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
    let json: Json = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    parse(&json).map_err(err)
}

/// Parses a case from its JSON (format in `tests/data/golden/README.md`).
pub fn parse_case(json: &Json) -> Result<GoldenCase, String> {
    let model = field(json, "model")?;
    let layers = field(model, "layers")?
        .as_array()
        .ok_or("model.layers is not an array")?
        .iter()
        .map(|d| as_usize(d, "model.layers"))
        .collect::<Result<Vec<_>, _>>()?;
    if layers.len() < 2 {
        return Err(format!("model.layers {layers:?} needs at least [in, out]"));
    }
    let activation = str_field(model, "activation")?;
    let loss_name = str_field(model, "loss")?;
    let model = ModelSpec {
        layers,
        activation: Activation::from_name(activation)
            .ok_or_else(|| format!("unknown activation `{activation}`"))?,
        loss: Loss::from_name(loss_name).ok_or_else(|| format!("unknown loss `{loss_name}`"))?,
    };
    let inputs = field(json, "inputs")?;
    let x = parse_tensor(field(inputs, "x")?, "inputs.x")?;
    let y = parse_tensor(field(inputs, "y")?, "inputs.y")?;
    if x.dims().len() != 2 {
        return Err(format!("inputs.x has type {}, expected [N, in]", x.ty()));
    }
    let expected_y = target_type(
        model.loss,
        x.dims()[0],
        model.layers[model.layers.len() - 1],
        y.dtype(),
    );
    if y.ty() != &expected_y || (y.dtype() == DType::I32) != (model.loss == Loss::CrossEntropy) {
        return Err(format!(
            "inputs.y has type {} but a {:?} loss needs {expected_y}",
            y.ty(),
            model.loss
        ));
    }
    let params = parse_params(&model, field(json, "params")?, "params")?;
    let expected = field(json, "expected")?;
    let trajectory = field(json, "trajectory")?;
    Ok(GoldenCase {
        name: str_field(json, "name")?.to_string(),
        oracle: json
            .get("oracle")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
        loss: f64_field(expected, "loss")?,
        grads: parse_params(&model, field(expected, "grads")?, "expected.grads")?,
        trajectory: Trajectory {
            optimizer: parse_optimizer(field(trajectory, "optimizer")?)?,
            steps: as_usize(field(trajectory, "steps")?, "trajectory.steps")?,
            losses_before_each_step: field(trajectory, "losses_before_each_step")?
                .as_array()
                .ok_or("trajectory.losses_before_each_step is not an array")?
                .iter()
                .map(|v| v.as_f64().ok_or("a trajectory loss is not a number"))
                .collect::<Result<_, _>>()?,
            params_after: parse_params(
                &model,
                field(trajectory, "params_after")?,
                "trajectory.params_after",
            )?,
        },
        model,
        x,
        y,
        params,
    })
}

/// The model's params from a JSON object, in model order, each of its float type; no more, no fewer.
fn parse_params(
    model: &ModelSpec,
    json: &Json,
    what: &str,
) -> Result<IndexMap<String, Tensor>, String> {
    let object = json
        .as_object()
        .ok_or_else(|| format!("{what} is not an object"))?;
    let expected = model.params(DType::F64);
    if let Some(extra) = object
        .keys()
        .find(|k| !expected.iter().any(|(name, _)| name == *k))
    {
        return Err(format!("{what} has `{extra}`, which the model does not"));
    }
    expected
        .into_iter()
        .map(|(name, ty)| {
            let where_ = format!("{what}.{name}");
            let t = parse_tensor(field(json, &name)?, &where_)?;
            if t.ty() != &ty {
                return Err(format!("{where_} has type {}, expected {ty}", t.ty()));
            }
            Ok((name, t))
        })
        .collect()
}

/// `trajectory.optimizer`: `sgd`, `adam` or `adamw` with PyTorch's defaults for missing settings.
pub fn parse_optimizer(json: &Json) -> Result<Optimizer, String> {
    let get = |key: &str, default: f64| -> Result<f64, String> {
        match json.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("optimizer.{key} is not a number")),
        }
    };
    let lr = f64_field(json, "lr")?;
    Ok(match str_field(json, "name")? {
        "sgd" => Optimizer::Sgd(Sgd {
            lr,
            momentum: get("momentum", 0.0)?,
            nesterov: json
                .get("nesterov")
                .map(|v| v.as_bool().ok_or("optimizer.nesterov is not a bool"))
                .transpose()?
                .unwrap_or(false),
            weight_decay: get("weight_decay", 0.0)?,
        }),
        "adam" => Optimizer::Adam(Adam {
            lr,
            beta1: get("beta1", 0.9)?,
            beta2: get("beta2", 0.999)?,
            eps: get("eps", 1e-8)?,
            weight_decay: get("weight_decay", 0.0)?,
        }),
        "adamw" => Optimizer::AdamW(Adam {
            lr,
            beta1: get("beta1", 0.9)?,
            beta2: get("beta2", 0.999)?,
            eps: get("eps", 1e-8)?,
            weight_decay: get("weight_decay", 0.01)?,
        }),
        other => return Err(format!("unknown optimizer `{other}`")),
    })
}

/// `{"dtype": "f32"|"i32", "shape": [...], "data": [...]}`: "f32" data as an exact f64 tensor, "i32" as i32.
pub fn parse_tensor(json: &Json, what: &str) -> Result<Tensor, String> {
    let dtype = str_field(json, "dtype")?;
    let shape = field(json, "shape")?
        .as_array()
        .ok_or_else(|| format!("{what}.shape is not an array"))?
        .iter()
        .map(|d| as_usize(d, what))
        .collect::<Result<Vec<_>, _>>()?;
    let data = field(json, "data")?
        .as_array()
        .ok_or_else(|| format!("{what}.data is not an array"))?;
    let bad = |e: IrError| format!("{what}: {e}");
    match dtype {
        "f32" => {
            let values = data
                .iter()
                .map(|v| {
                    v.as_f64()
                        .ok_or_else(|| format!("{what}: {v} is not a number"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::from_f64(&shape, values).map_err(bad)
        }
        "i32" => {
            let values = data
                .iter()
                .map(|v| {
                    v.as_i64()
                        .and_then(|i| i32::try_from(i).ok())
                        .ok_or_else(|| format!("{what}: {v} is not an i32"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::from_i32(&shape, values).map_err(bad)
        }
        other => Err(format!("{what}: unknown dtype `{other}`")),
    }
}

/// `json[key]`, or an error naming the missing field.
pub fn field<'a>(json: &'a Json, key: &str) -> Result<&'a Json, String> {
    json.get(key)
        .ok_or_else(|| format!("missing field `{key}`"))
}

/// `json[key]` as a string.
pub fn str_field<'a>(json: &'a Json, key: &str) -> Result<&'a str, String> {
    field(json, key)?
        .as_str()
        .ok_or_else(|| format!("field `{key}` is not a string"))
}

/// `json[key]` as a number.
pub fn f64_field(json: &Json, key: &str) -> Result<f64, String> {
    field(json, key)?
        .as_f64()
        .ok_or_else(|| format!("field `{key}` is not a number"))
}

/// A non-negative integer; `what` names it in the error.
pub fn as_usize(json: &Json, what: &str) -> Result<usize, String> {
    json.as_u64()
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("{what}: {json} is not a non-negative integer"))
}
