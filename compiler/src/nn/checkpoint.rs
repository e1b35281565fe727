//! Checkpoints: a model's parameters as a safetensors file, with metadata entries describing the model (see
//! [`ModelSpec::to_metadata`]) and the data set it was trained on, so that it can be rebuilt from the file alone.
//!
//! **Integrity.** The metadata entry `checksum` is `crc32:XXXXXXXX`: the CRC-32 (IEEE, as zip and PNG use) of every
//! tensor's data bytes, tensor after tensor in the byte order of their names. Loading recomputes it, so flipped bytes
//! in the tensor data are an error naming the file rather than a model that silently predicts worse (safetensors
//! itself checks the header and the lengths, not the values). A checkpoint without the entry (written before Kiln
//! stored one) still loads, as PyTorch users expect of old files, but [`load_checkpoint_checked`] reports it as
//! [`Integrity::Unverified`] so that `kiln predict` can warn. Files are written atomically
//! ([`super::report::write_atomic`]): a failed save leaves the previous checkpoint intact.

use super::{Error, ModelSpec};
use kiln_ir::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;

/// The file name `kiln train` writes in its output directory.
pub const CHECKPOINT_FILE: &str = "model.safetensors";

/// The metadata entry holding the checksum of the tensor data.
pub const CHECKSUM_KEY: &str = "checksum";

/// Whether a loaded checkpoint's tensor data was checked against a stored checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// The checksum in the metadata matches the data.
    Verified,
    /// The file has no checksum (an older checkpoint): the data could not be checked.
    Unverified,
}

/// `crc32:XXXXXXXX` of the tensors' data, each `(name, bytes)`, taken in the byte order of the names.
fn checksum<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<(&str, &[u8])> = tensors.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = crc32fast::Hasher::new();
    for (_, bytes) in sorted {
        hasher.update(bytes);
    }
    format!("crc32:{:08x}", hasher.finalize())
}

/// A trained model: what it is, what it was trained on, and its parameters by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub spec: ModelSpec,
    pub dataset: String,
    /// The parameters, then the buffers (running statistics): every tensor the model's evaluation graph reads.
    pub params: Vec<(String, Tensor)>,
}

/// Writes `checkpoint` to `path` (f32 tensors, little-endian, as safetensors stores them).
pub fn save_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), Error> {
    let mut metadata = checkpoint.spec.to_metadata();
    metadata.insert("dataset".into(), checkpoint.dataset.clone());
    save_tensors(path, &checkpoint.params, metadata)
}

/// Writes f32 `params` and `metadata` (plus the checksum entry) to `path` atomically.
pub(super) fn save_tensors(
    path: &Path,
    params: &[(String, Tensor)],
    mut metadata: std::collections::HashMap<String, String>,
) -> Result<(), Error> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let mut buffers = Vec::with_capacity(params.len());
    for (name, tensor) in params {
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
    metadata.insert(
        CHECKSUM_KEY.into(),
        checksum(
            buffers
                .iter()
                .map(|(name, _, bytes)| (*name, bytes.as_slice())),
        ),
    );
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| bad(e.to_string()))?;
    super::report::write_atomic(path, &bytes).map_err(|source| Error::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a checkpoint written by [`save_checkpoint`], checking every parameter against the model its metadata
/// describes and the tensor data against the stored checksum (a file without one loads unchecked; see
/// [`load_checkpoint_checked`]).
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint, Error> {
    load_checkpoint_checked(path).map(|(checkpoint, _)| checkpoint)
}

/// [`load_checkpoint`], also saying whether the data was verified against a checksum.
pub fn load_checkpoint_checked(path: &Path) -> Result<(Checkpoint, Integrity), Error> {
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

    // Before anything is built from the data: a corrupt file is reported as such, not as whatever it decodes to.
    let integrity = verify_checksum(path, metadata, &tensors)?;

    // Parameters, then buffers (batch norm's running statistics), as `Trainer::parameters` lists them.
    let model = spec.build();
    let declared = [model.parameters(), model.buffers()].concat();
    let params = declared_tensors(path, &tensors, &declared, &spec.describe())?;
    Ok((
        Checkpoint {
            spec,
            dataset,
            params,
        },
        integrity,
    ))
}

/// Checks the tensor data of a checkpoint at `path` against its metadata's checksum, if it has one.
pub(super) fn verify_checksum(
    path: &Path,
    metadata: &std::collections::HashMap<String, String>,
    tensors: &SafeTensors<'_>,
) -> Result<Integrity, Error> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let Some(stored) = metadata.get(CHECKSUM_KEY) else {
        return Ok(Integrity::Unverified);
    };
    let names = tensors.names();
    let views = names
        .iter()
        .map(|n| tensors.tensor(n).map(|view| (*n, view)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let actual = checksum(views.iter().map(|(n, view)| (*n, view.data())));
    if *stored != actual {
        return Err(bad(format!(
            "the tensor data does not match the checksum in the metadata ({stored} stored, {actual} computed): \
             the file is corrupt"
        )));
    }
    Ok(Integrity::Verified)
}

/// Every `declared` tensor of the checkpoint at `path`, each f32 of its declared shape, and no other tensor; errors
/// name the tensor and the model (`describe`).
pub(super) fn declared_tensors(
    path: &Path,
    tensors: &SafeTensors<'_>,
    declared: &[super::Parameter],
    describe: &str,
) -> Result<Vec<(String, Tensor)>, Error> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let mut params = Vec::with_capacity(declared.len());
    for p in declared {
        let view = tensors.tensor(&p.name).map_err(|_| {
            bad(format!(
                "no tensor `{}` (the {describe} model needs it)",
                p.name
            ))
        })?;
        if view.dtype() != Dtype::F32 || view.shape() != p.ty.dims() {
            return Err(bad(format!(
                "tensor `{}` is {:?}{:?}, the {describe} model needs {}",
                p.name,
                view.dtype(),
                view.shape(),
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
            "unexpected tensor `{extra}` (not a parameter or buffer of the {describe} model)"
        )));
    }
    Ok(params)
}
