//! Seeded test inputs shared by the device tests (`vulkan::spirv_backend`, `vulkan::vulkan_limits`,
//! `vulkan::vulkan_session`); the same distribution as `kiln_tests::fd::random_tensor` and
//! `kiln_tests::differential::random_inputs{,_at_init_scale}`, which these tests can't use (kiln-tests is not a
//! dev-dependency of kiln).

use kiln::ir::{DType, Graph, Tensor, TensorType};
use rand::SeedableRng;
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

/// A [`random_tensor`] for every input of `graph`, in order, from one generator seeded with `seed`.
pub fn random_inputs(graph: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    graph
        .inputs()
        .map(|i| random_tensor(i.ty, &mut rng))
        .collect()
}

/// [`random_inputs`] with 2-D float parameters scaled by 1/sqrt(fan_in) (PyTorch's init scale), so activations stay
/// O(1) as in a real model. Unscaled N(0,1) weights make a 784-wide layer's outputs large sums of cancelling terms,
/// where a GPU's different summation order and FMA contraction (seen on an NVIDIA H200: 5.7e-4 at 3.94) exceed any
/// tolerance that is relative to the result.
pub fn random_inputs_at_init_scale(graph: &Graph, seed: u64) -> Vec<Tensor> {
    graph
        .inputs()
        .zip(random_inputs(graph, seed))
        .map(|(i, t)| {
            if i.role != kiln::Role::Param || i.ty.rank() != 2 || !i.ty.dtype.is_float() {
                return t;
            }
            let scale = 1.0 / (i.ty.dims()[1] as f64).sqrt();
            let scaled: Vec<f64> = t.to_f64_vec().iter().map(|v| v * scale).collect();
            Tensor::from_f64_values(i.ty.clone(), &scaled).unwrap()
        })
        .collect()
}
