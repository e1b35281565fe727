//! Checkpoints: a model's parameters as a safetensors file, with metadata entries describing the model (see
//! [`ModelSpec::to_metadata`]) and the data set it was trained on, so that it can be rebuilt from the file alone.

use super::{Error, ModelSpec};
use kiln_ir::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;

/// The file name `kiln train` writes in its output directory.
pub const CHECKPOINT_FILE: &str = "model.safetensors";

/// A trained model: what it is, what it was trained on, and its parameters by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub spec: ModelSpec,
    pub dataset: String,
    pub params: Vec<(String, Tensor)>,
}

/// Writes `checkpoint` to `path` (f32 tensors, little-endian, as safetensors stores them).
pub fn save_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), Error> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let mut buffers = Vec::with_capacity(checkpoint.params.len());
    for (name, tensor) in &checkpoint.params {
        let values = tensor.as_f32().ok_or_else(|| {
            bad(format!(
                "parameter `{name}` is {}, only f32 is saved",
                tensor.ty()
            ))
        })?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        buffers.push((name.as_str(), tensor.dims().to_vec(), bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, dims, bytes)| {
            TensorView::new(Dtype::F32, dims.clone(), bytes)
                .map(|view| (*name, view))
                .map_err(|e| bad(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata = checkpoint.spec.to_metadata();
    metadata.insert("dataset".into(), checkpoint.dataset.clone());
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| bad(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a checkpoint written by [`save_checkpoint`], checking every parameter against the model its metadata
/// describes.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint, Error> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let not_safetensors =
        |e: safetensors::SafeTensorError| bad(format!("not a valid safetensors file ({e})"));
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(not_safetensors)?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(not_safetensors)?;
    let empty = Default::default();
    let metadata = header.metadata().as_ref().unwrap_or(&empty);
    let spec = ModelSpec::from_metadata(metadata).map_err(bad)?;
    let dataset = metadata
        .get("dataset")
        .cloned()
        .ok_or_else(|| bad("no `dataset` entry in the metadata".into()))?;

    let declared = spec.build().parameters();
    let mut params = Vec::with_capacity(declared.len());
    for p in &declared {
        let view = tensors.tensor(&p.name).map_err(|_| {
            bad(format!(
                "no tensor `{}` (the {} model needs it)",
                p.name,
                spec.describe()
            ))
        })?;
        if view.dtype() != Dtype::F32 || view.shape() != p.ty.dims() {
            return Err(bad(format!(
                "tensor `{}` is {:?}{:?}, the {} model needs {}",
                p.name,
                view.dtype(),
                view.shape(),
                spec.describe(),
                p.ty
            )));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        params.push((p.name.clone(), Tensor::from_f32(p.ty.dims(), values)?));
    }
    if let Some(extra) = tensors
        .names()
        .into_iter()
        .find(|n| declared.iter().all(|p| p.name != *n))
    {
        return Err(bad(format!(
            "unexpected tensor `{extra}` (not a parameter of the {} model)",
            spec.describe()
        )));
    }
    Ok(Checkpoint {
        spec,
        dataset,
        params,
    })
}
