//! Data sets for training examples: scikit-learn's 8×8 handwritten digits, embedded in the binary, and synthetic 2-D
//! sets generated in Rust (XOR clusters, two moons, spirals).
//!
//! Users' own sets come from NumPy `.npz` files ([`npz`]).
//!
//! Every set is a classification task with `classes` integer labels and a **fixed** train/test split: loading a set
//! by name gives the same rows on every machine and every run, so a checkpoint can be evaluated later on the same test
//! split. (The training seed only changes the initialization and the minibatch order, not the data.)
//!
//! Random draws use ChaCha8 seeded with a constant and only `next_u64` (see [`Shuffle`]), so they do not depend on how
//! a version of `rand` maps bits to ranges.

mod digits;
pub mod npz;
pub mod seq;
mod synthetic;

pub use digits::{digits, DIGITS_TEST, DIGITS_TRAIN};
pub use seq::IGNORE as IGNORE_TARGET;
pub use synthetic::{moons, spirals, xor};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// A data set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("unknown data set `{0}` (expected one of: digits, xor, moons, spirals)")]
    UnknownName(String),
    #[error("{file}: line {line}: {message}")]
    Malformed {
        file: &'static str,
        line: usize,
        message: String,
    },
    #[error("{file}: cannot decompress: {source}")]
    Decompress {
        file: &'static str,
        source: std::io::Error,
    },
    /// A user's `.npz` file is unreadable or does not hold a classification split; `message` says what is wrong.
    #[error("{}: {message}", path.display())]
    Npz { path: PathBuf, message: String },
}

/// Rows of features with their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Row-major `[len, features]`.
    pub x: Vec<f32>,
    /// One label in `0..classes` per row.
    pub y: Vec<i32>,
    pub features: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The rows at `indices`, in that order.
    pub fn gather(&self, indices: &[usize]) -> Split {
        let f = self.features;
        let mut x = Vec::with_capacity(indices.len() * f);
        for &i in indices {
            x.extend_from_slice(&self.x[i * f..(i + 1) * f]);
        }
        Split {
            x,
            y: indices.iter().map(|&i| self.y[i]).collect(),
            features: f,
        }
    }
}

/// A classification data set with a fixed train/test split.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: &'static str,
    pub classes: usize,
    pub train: Split,
    pub test: Split,
    /// The shape of one sample, `[C, H, W]` for images and `[features]` otherwise (the built-in sets); its product is
    /// [`features`](Self::features). The rows of `train` and `test` are these samples flattened in C order.
    pub sample_shape: Vec<usize>,
}

impl Dataset {
    pub fn features(&self) -> usize {
        self.train.features
    }

    /// Splits `all` into train and test by a seeded permutation: the first `train_len` rows of the permuted order
    /// train, the rest test.
    pub(crate) fn split(
        name: &'static str,
        classes: usize,
        all: Split,
        train_len: usize,
        seed: u64,
    ) -> Dataset {
        let order = Shuffle::new(seed).permutation(all.len());
        let (train, test) = order.split_at(train_len.min(all.len()));
        Dataset {
            name,
            classes,
            train: all.gather(train),
            test: all.gather(test),
            sample_shape: vec![all.features],
        }
    }
}

/// The names [`load`] accepts.
pub const NAMES: [&str; 4] = ["digits", "xor", "moons", "spirals"];

/// Loads a data set by name with its default size: `digits` (1,437 train / 360 test, 64 features, 10 classes),
/// `xor` (400 / 200, 2 features, 2 classes), `moons` (800 / 200, 2 classes), `spirals` (3 arms, 720 / 180).
pub fn load(name: &str) -> Result<Dataset, DataError> {
    match name {
        "digits" => digits(),
        "xor" => Ok(xor(600, 0.1, 400)),
        "moons" => Ok(moons(1000, 0.1, 800)),
        "spirals" => Ok(spirals(3, 300, 0.2, 720)),
        other => Err(DataError::UnknownName(other.to_string())),
    }
}

/// Seeded randomness built only on ChaCha8's `next_u64`, so the sets never change with a `rand` upgrade.
pub struct Shuffle {
    rng: ChaCha8Rng,
}

impl Shuffle {
    pub fn new(seed: u64) -> Shuffle {
        Shuffle {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A uniform index in `0..n` (`next_u64 mod n`; the bias is below 2^-50 for the sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// A uniform float in `[0, 1)` from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller, one value per pair of uniforms).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // in (0, 1], so the log is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates from the last index down: `swap(i, below(i + 1))` for `i = n-1, ..., 1`, starting from `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        self.shuffle(&mut order);
        order
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let a = Shuffle::new(7).permutation(100);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, Shuffle::new(7).permutation(100));
        assert_ne!(a, Shuffle::new(8).permutation(100));
    }

    #[test]
    fn unknown_name_is_an_error() {
        assert!(matches!(load("mnist"), Err(DataError::UnknownName(_))));
    }
}
