//! Seeded test inputs shared by the device tests (`tests/spirv_backend.rs`, `tests/vulkan_session.rs`); the same
//! distribution as `kiln_tests::fd::random_tensor`, which these tests can't use (kiln-tests is not a dev-dependency
//! of kiln).

use kiln::ir::{DType, Tensor, TensorType};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Seeded normal floats, i32 in `[0, 10)` (class labels), random bools.
pub fn random_tensor(ty: &TensorType, rng: &mut ChaCha8Rng) -> Tensor {
    let values: Vec<f64> = (0..ty.numel())
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            match ty.dtype {
                DType::F32 | DType::F64 => z,
                DType::I32 => ((z.abs() * 4.0) as i64).min(9) as f64,
                DType::Bool => (z > 0.0) as u8 as f64,
            }
        })
        .collect();
    Tensor::from_f64_values(ty.clone(), &values).unwrap()
}
