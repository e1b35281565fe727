//! The input tensors of a run: given with `--input NAME=FILE.npy`, zero for optimizer state, else seeded random.
//!
//! **Seeding contract** (every backend's runner uses [`seeded`], so one `--seed` gives the same inputs everywhere):
//! the input named `name` draws from `ChaCha8Rng::from_seed(s)`, where `s` is 32 bytes: `seed` as u64 little-endian,
//! then the 64-bit FNV-1a hash of the UTF-8 name little-endian, then 16 zero bytes. Keying by name rather than
//! position keeps a model's inputs the same across stages (the train stage adds state inputs; passes may reorder).
//! Elements are drawn in row-major order: floats as f64 samples of `StandardNormal` (rounded for f32, so an f32 and
//! an f64 model see the same values), i32 by `random_range(0..10)`, bool by `random::<bool>()`.

use super::npy;
use super::CliError;
use kiln_ir::{DType, Graph, Role, Tensor, TensorData, TensorType};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::path::PathBuf;

/// One `--input NAME=FILE.npy`.
#[derive(Clone, Debug)]
pub struct InputFile {
    pub name: String,
    pub path: PathBuf,
}

/// Parses `NAME=FILE.npy` (clap value parser).
pub fn parse_input_file(arg: &str) -> Result<InputFile, String> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok(InputFile {
            name: name.to_string(),
            path: PathBuf::from(path),
        }),
        _ => Err(format!("expected NAME=FILE.npy, got `{arg}`")),
    }
}

/// `--input-dir DIR`: an [`InputFile`] for each graph input `NAME` with a `DIR/NAME.npy` that `explicit` (the
/// `--input` flags, which win) does not already give. Other files in the directory are not read (a directory of a
/// run's `--out` holds outputs too); a directory that gives no input at all is an error, since it must be a mistake.
pub fn from_dir(
    graph: &Graph,
    dir: &std::path::Path,
    explicit: &[InputFile],
) -> Result<Vec<InputFile>, CliError> {
    if !dir.is_dir() {
        return Err(CliError::new(format!(
            "--input-dir `{}` is not a directory",
            dir.display()
        )));
    }
    let found: Vec<InputFile> = graph
        .inputs()
        .filter(|input| !explicit.iter().any(|f| f.name == input.name))
        .map(|input| InputFile {
            name: input.name.to_string(),
            path: dir.join(format!("{}.npy", input.name)),
        })
        .filter(|file| file.path.is_file())
        .collect();
    if found.is_empty() {
        let names: Vec<&str> = graph.inputs().map(|i| i.name).collect();
        return Err(CliError::new(format!(
            "--input-dir `{}` holds no NAME.npy for any input of graph {} (its inputs: {})",
            dir.display(),
            graph.name,
            names.join(", ")
        )));
    }
    Ok(found)
}

/// A tensor per graph input, in graph input order.
pub fn prepare(graph: &Graph, seed: u64, files: &[InputFile]) -> Result<Vec<Tensor>, CliError> {
    for (i, file) in files.iter().enumerate() {
        if graph.input(&file.name).is_none() {
            let names: Vec<&str> = graph.inputs().map(|i| i.name).collect();
            return Err(CliError::new(format!(
                "--input {}: graph {} has no input `{}` (its inputs: {})",
                file.name,
                graph.name,
                file.name,
                names.join(", ")
            )));
        }
        if files[..i].iter().any(|f| f.name == file.name) {
            return Err(CliError::new(format!(
                "--input {}: given more than once",
                file.name
            )));
        }
    }
    graph
        .inputs()
        .map(|input| {
            if let Some(file) = files.iter().find(|f| f.name == input.name) {
                let tensor = npy::read(&file.path).map_err(|e| prefix_input(input.name, e))?;
                if tensor.ty() != input.ty {
                    return Err(CliError::new(format!(
                        "input `{}`: `{}` holds {} but the graph expects {}",
                        input.name,
                        file.path.display(),
                        tensor.ty(),
                        input.ty
                    )));
                }
                Ok(tensor)
            } else if input.role == Role::State {
                Ok(Tensor::zeros(input.ty.clone()))
            } else {
                Ok(seeded(input.ty, seed, input.name))
            }
        })
        .collect()
}

fn prefix_input(name: &str, error: CliError) -> CliError {
    match error {
        CliError::Message(m) => CliError::new(format!("input `{name}`: {m}")),
        other => other,
    }
}

/// The seeded random value of input `name` (see the module doc for the exact contract).
pub fn seeded(ty: &TensorType, seed: u64, name: &str) -> Tensor {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&fnv1a(name.as_bytes()).to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    let n = ty.numel();
    let data = match ty.dtype {
        DType::F32 => TensorData::F32(
            (0..n)
                .map(|_| rng.sample::<f64, _>(StandardNormal) as f32)
                .collect(),
        ),
        DType::F64 => TensorData::F64((0..n).map(|_| rng.sample(StandardNormal)).collect()),
        DType::I32 => TensorData::I32((0..n).map(|_| rng.random_range(0..10)).collect()),
        DType::Bool => TensorData::Bool((0..n).map(|_| rng.random()).collect()),
    };
    Tensor::new(ty.clone(), data).expect("one element per position of the type")
}

/// 64-bit FNV-1a: tiny, and fixed forever (unlike `std`'s `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn seeded_inputs_depend_on_seed_and_name_only() {
        let ty = TensorType::f32(&[3, 4]);
        assert_eq!(seeded(&ty, 7, "x"), seeded(&ty, 7, "x"));
        assert_ne!(seeded(&ty, 7, "x"), seeded(&ty, 8, "x"));
        assert_ne!(seeded(&ty, 7, "x"), seeded(&ty, 7, "w"));
        let f64s = seeded(&TensorType::f64(&[3, 4]), 7, "x");
        assert_eq!(seeded(&ty, 7, "x"), f64s.cast(DType::F32));
        let labels = seeded(&TensorType::i32(&[100]), 0, "y");
        assert!(labels
            .as_i32()
            .unwrap()
            .iter()
            .all(|&l| (0..10).contains(&l)));
    }
}
