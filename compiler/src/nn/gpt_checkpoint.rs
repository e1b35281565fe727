//! A [`Gpt`]'s checkpoint: its parameters in a safetensors file (as [`super::checkpoint`] writes them, with the same
//! checksum) and metadata entries giving the [`GptConfig`] and what the model reads (a generated task, or a
//! character vocabulary), so `kiln generate` and `kiln predict` rebuild it from the file alone.

use super::checkpoint::{declared_tensors, save_tensors, verify_checksum};
use super::{Error, Gpt, GptConfig, Integrity, Module};
use crate::data::seq::Task;
use kiln_ir::{GeluApprox, Tensor};
use safetensors::tensor::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

/// The `format` entry of a GPT checkpoint.
const FORMAT: &str = "kiln-gpt/1";

/// What a checkpointed GPT reads and writes.
#[derive(Clone, Debug, PartialEq)]
pub enum SeqData {
    /// A generated task: `digits` digits in `0..base`, then the separator `base`.
    Task {
        task: Task,
        digits: usize,
        base: usize,
    },
    /// Characters: token `i` is `vocab[i]`.
    Text { vocab: Vec<char> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct GptCheckpoint {
    pub config: GptConfig,
    pub data: SeqData,
    /// In the model's parameter order.
    pub params: Vec<(String, Tensor)>,
}

fn metadata(c: &GptCheckpoint) -> HashMap<String, String> {
    let g = &c.config;
    let mut m: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("vocab", g.vocab.to_string()),
        ("block_size", g.block_size.to_string()),
        ("d_model", g.d_model.to_string()),
        ("heads", g.heads.to_string()),
        ("blocks", g.blocks.to_string()),
        ("mlp_hidden", g.mlp_hidden.to_string()),
        (
            "gelu",
            match g.gelu {
                GeluApprox::None => "erf",
                GeluApprox::Tanh => "tanh",
            }
            .to_string(),
        ),
        ("ln_eps", g.ln_eps.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    match &c.data {
        SeqData::Task { task, digits, base } => {
            m.insert("task".into(), task.name().into());
            m.insert("digits".into(), digits.to_string());
            m.insert("base".into(), base.to_string());
        }
        SeqData::Text { vocab } => {
            m.insert("task".into(), "text".into());
            m.insert("chars".into(), vocab.iter().collect());
        }
    }
    m
}

pub fn save_gpt_checkpoint(path: &Path, checkpoint: &GptCheckpoint) -> Result<(), Error> {
    save_tensors(path, &checkpoint.params, metadata(checkpoint))
}

/// Reads a checkpoint written by [`save_gpt_checkpoint`], checking the checksum and every parameter's shape.
pub fn load_gpt_checkpoint(path: &Path) -> Result<(GptCheckpoint, Integrity), Error> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let invalid =
        |e: safetensors::SafeTensorError| bad(format!("not a valid safetensors file ({e})"));
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(invalid)?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(invalid)?;
    let empty = HashMap::new();
    let meta = header.metadata().as_ref().unwrap_or(&empty);
    let get = |key: &str| {
        meta.get(key).ok_or_else(|| {
            bad(format!(
                "no `{key}` entry in the metadata (not a transformer checkpoint?)"
            ))
        })
    };
    if get("format")? != FORMAT {
        return Err(bad(format!(
            "metadata format `{}`, expected `{FORMAT}`",
            get("format")?
        )));
    }
    let size = |key: &str| -> Result<usize, Error> {
        get(key)?
            .parse()
            .map_err(|_| bad(format!("metadata `{key}` is not a size")))
    };
    let config = GptConfig {
        vocab: size("vocab")?,
        block_size: size("block_size")?,
        d_model: size("d_model")?,
        heads: size("heads")?,
        blocks: size("blocks")?,
        mlp_hidden: size("mlp_hidden")?,
        gelu: match get("gelu")?.as_str() {
            "erf" => GeluApprox::None,
            "tanh" => GeluApprox::Tanh,
            other => return Err(bad(format!("unknown gelu `{other}`"))),
        },
        ln_eps: get("ln_eps")?
            .parse()
            .map_err(|_| bad("metadata `ln_eps` is not a number".into()))?,
    };
    config.validate().map_err(bad)?;
    let data = match get("task")?.as_str() {
        "text" => SeqData::Text {
            vocab: get("chars")?.chars().collect(),
        },
        name => SeqData::Task {
            task: Task::from_name(name).ok_or_else(|| bad(format!("unknown task `{name}`")))?,
            digits: size("digits")?,
            base: size("base")?,
        },
    };
    let integrity = verify_checksum(path, meta, &tensors)?;
    let declared = Gpt::new(config).parameters();
    let params = declared_tensors(path, &tensors, &declared, "transformer")?;
    Ok((
        GptCheckpoint {
            config,
            data,
            params,
        },
        integrity,
    ))
}
