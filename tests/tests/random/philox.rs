//! Philox4x32-10 and `random_uniform` (SPEC §4) on the interpreter, the CPU and Vulkan: Random123's known answers,
//! the same bits on every backend, the distribution, and the builder's errors.

use super::everywhere;
use kiln::ir::{interp, DType, IrError};
use kiln::{Builder, Tensor, TensorType};

/// Random123's `kat_vectors` lines `philox4x32 10 …`: counter (4 words), key (2 words), result (4 words). Checked
/// against Random123's file and against an independent implementation of the paper's round function.
const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0, 0, 0, 0],
        [0, 0],
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ),
    (
        [0xffffffff; 4],
        [0xffffffff; 2],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

/// `philox4x32` of the rows of `ctr: i32[n, 4]` under the rows of `key: i32[n, 2]`, the result `i32[n, 4]`.
fn philox_graph(n: usize) -> kiln::Graph {
    let mut b = Builder::new("philox");
    let ctr = b.data("ctr", TensorType::i32(&[n, 4])).unwrap();
    let key = b.data("key", TensorType::i32(&[n, 2])).unwrap();
    let column = |b: &mut Builder, v, j: usize| {
        let s = b.slice(v, &[0, j], &[n, j + 1]).unwrap();
        b.reshape(s, &[n]).unwrap()
    };
    let c = [0, 1, 2, 3].map(|j| column(&mut b, ctr, j));
    let k = [0, 1].map(|j| column(&mut b, key, j));
    let words = b.philox4x32(c, k).unwrap();
    let columns: Vec<_> = words
        .iter()
        .map(|&w| b.reshape(w, &[n, 1]).unwrap())
        .collect();
    let y = b.concat(&columns, 1).unwrap();
    b.output("y", y).unwrap();
    b.finish()
}

fn words(ws: impl IntoIterator<Item = u32>) -> Vec<i32> {
    ws.into_iter().map(|w| w as i32).collect()
}

#[test]
fn philox_gives_random123s_known_answers_on_every_backend() {
    let n = KAT.len();
    let graph = philox_graph(n);
    let ctr = Tensor::from_i32(&[n, 4], words(KAT.iter().flat_map(|k| k.0))).unwrap();
    let key = Tensor::from_i32(&[n, 2], words(KAT.iter().flat_map(|k| k.1))).unwrap();
    let want = words(KAT.iter().flat_map(|k| k.2));
    let runs = everywhere(&graph, &[ctr, key]);
    assert!(runs.len() >= 2, "interpreter and CPU at least");
    for (backend, out) in runs {
        assert_eq!(
            out[0].as_i32().unwrap(),
            want.as_slice(),
            "philox4x32-10 on {backend}"
        );
    }
}

#[test]
fn philox_rejects_non_i32_words() {
    let mut b = Builder::new("bad");
    let f = b.data("f", TensorType::f32(&[2])).unwrap();
    let i = b.data("i", TensorType::i32(&[2])).unwrap();
    let err = b.philox4x32([f, i, i, i], [i, i]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "philox4x32: counter and key words must be i32, got f32[2]"
    );
}

/// `random_uniform(seed, offset, shape, dtype)` with the seed and offset as graph inputs (`i32[]`).
fn uniform_graph(shape: &[usize], dtype: DType) -> kiln::Graph {
    let mut b = Builder::new("uniform");
    let seed = b.data("seed", TensorType::scalar(DType::I32)).unwrap();
    let offset = b.data("offset", TensorType::scalar(DType::I32)).unwrap();
    let u = b.random_uniform(seed, offset, shape, dtype).unwrap();
    b.output("u", u).unwrap();
    b.finish()
}

fn seed_offset(seed: i32, offset: i32) -> [Tensor; 2] {
    [
        Tensor::from_i32(&[], vec![seed]).unwrap(),
        Tensor::from_i32(&[], vec![offset]).unwrap(),
    ]
}

#[test]
fn uniform_follows_the_spec_recipe_bit_for_bit() {
    // Element i is word i mod 4 of philox((i div 4, 0, offset, 0), (seed, 0)); f32 takes its top 24 bits.
    let (seed, offset) = (0x1234_5678, 7);
    let n = 10;
    let graph = uniform_graph(&[2, 5], DType::F32);
    let want: Vec<f32> = (0..n)
        .map(|i| {
            let w =
                reference_philox([(i / 4) as u32, 0, offset as u32, 0], [seed as u32, 0])[i % 4];
            (w >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect();
    for (backend, out) in everywhere(&graph, &seed_offset(seed, offset)) {
        assert_eq!(out[0].as_f32().unwrap(), want.as_slice(), "{backend}");
    }
    // f64 takes all 32 bits, read unsigned.
    let graph = uniform_graph(&[n], DType::F64);
    let want: Vec<f64> = (0..n)
        .map(|i| {
            let w =
                reference_philox([(i / 4) as u32, 0, offset as u32, 0], [seed as u32, 0])[i % 4];
            w as f64 / 2f64.powi(32)
        })
        .collect();
    for (backend, out) in everywhere(&graph, &seed_offset(seed, offset)) {
        assert_eq!(out[0].as_f64().unwrap(), want.as_slice(), "{backend}");
    }
}

/// Philox4x32-10 written out on `u32`s (the paper's round, Random123's key schedule), for the recipe test.
fn reference_philox(mut c: [u32; 4], mut k: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(0x9E3779B9), k[1].wrapping_add(0xBB67AE85)];
        }
        let p0 = 0xD2511F53u64 * c[0] as u64;
        let p1 = 0xCD9E8D57u64 * c[2] as u64;
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

#[test]
fn reference_philox_agrees_with_the_known_answers() {
    for (c, k, want) in KAT {
        assert_eq!(reference_philox(c, k), want);
    }
}

#[test]
fn uniform_is_uniform_in_0_1_and_the_same_on_every_backend() {
    let n = 1 << 16;
    for dtype in [DType::F32, DType::F64] {
        let graph = uniform_graph(&[256, 256], dtype);
        let runs = everywhere(&graph, &seed_offset(42, 3));
        let first = runs[0].1[0].to_f64_vec();
        for (backend, out) in &runs[1..] {
            let got = out[0].to_f64_vec();
            let same = first
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{dtype} uniform on {backend} differs from the interpreter"
            );
        }
        assert!(
            first.iter().all(|&u| (0.0..1.0).contains(&u)),
            "{dtype}: outside [0, 1)"
        );
        // The mean of n uniforms has standard deviation sqrt(1/12 / n) ≈ 0.0011; 5 of them is a 1-in-3.5-million
        // false alarm for a good generator.
        let mean = first.iter().sum::<f64>() / n as f64;
        let sigma = (1.0 / 12.0 / n as f64).sqrt();
        assert!((mean - 0.5).abs() < 5.0 * sigma, "{dtype}: mean {mean}");
        // Each of 16 equal bins holds n/16 ± 5 standard deviations (binomial, p = 1/16).
        let mut bins = [0usize; 16];
        for &u in &first {
            bins[(u * 16.0) as usize] += 1;
        }
        let expected = n as f64 / 16.0;
        let bin_sigma = (n as f64 * (1.0 / 16.0) * (15.0 / 16.0)).sqrt();
        for (i, &count) in bins.iter().enumerate() {
            assert!(
                (count as f64 - expected).abs() < 5.0 * bin_sigma,
                "{dtype}: bin {i} holds {count}, expected about {expected}"
            );
        }
        // Neighbours are not correlated: lag-1 correlation of n samples is within 5/sqrt(n) of 0.
        let centred: Vec<f64> = first.iter().map(|u| u - mean).collect();
        let var: f64 = centred.iter().map(|c| c * c).sum();
        let lag: f64 = centred.windows(2).map(|w| w[0] * w[1]).sum();
        assert!(
            (lag / var).abs() < 5.0 / (n as f64).sqrt(),
            "{dtype}: lag-1 correlation"
        );
    }
}

#[test]
fn seeds_and_offsets_change_every_number() {
    let graph = uniform_graph(&[1000], DType::F32);
    let run = |s, o| interp::run(&graph, &seed_offset(s, o)).unwrap()[0].to_f64_vec();
    let base = run(1, 0);
    assert_eq!(base, run(1, 0), "a pure function of seed and offset");
    for other in [run(2, 0), run(1, 1), run(-1, 0)] {
        let equal = base.iter().zip(&other).filter(|(a, b)| a == b).count();
        // Two independent draws agree on an element with probability 2^-24.
        assert!(equal < 3, "{equal} of 1000 elements unchanged");
    }
}

#[test]
fn seeds_and_offsets_of_two_words_use_both() {
    let mut b = Builder::new("two_words");
    let seed = b.data("seed", TensorType::i32(&[2])).unwrap();
    let offset = b.data("offset", TensorType::i32(&[2])).unwrap();
    let u = b.random_uniform(seed, offset, &[8], DType::F32).unwrap();
    b.output("u", u).unwrap();
    let g = b.finish();
    let run = |s: [i32; 2], o: [i32; 2]| {
        let inputs = [
            Tensor::from_i32(&[2], s.to_vec()).unwrap(),
            Tensor::from_i32(&[2], o.to_vec()).unwrap(),
        ];
        interp::run(&g, &inputs).unwrap()[0].to_f64_vec()
    };
    // (s, 0) as i32[2] is the scalar seed s.
    let scalar = interp::run(&uniform_graph(&[8], DType::F32), &seed_offset(5, 9)).unwrap();
    assert_eq!(run([5, 0], [9, 0]), scalar[0].to_f64_vec());
    assert_ne!(run([5, 1], [9, 0]), run([5, 0], [9, 0]));
    assert_ne!(run([5, 0], [9, 1]), run([5, 0], [9, 0]));
}

#[test]
fn uniform_of_odd_and_empty_shapes() {
    // 4 words per counter: sizes that are not a multiple of 4 slice the last counter's words.
    for shape in [vec![], vec![1], vec![3], vec![5, 3], vec![0, 4]] {
        let graph = uniform_graph(&shape, DType::F32);
        let runs = everywhere(&graph, &seed_offset(3, 4));
        let n: usize = shape.iter().product();
        for (backend, out) in runs {
            assert_eq!(out[0].dims(), shape.as_slice(), "{backend}");
            assert_eq!(out[0].numel(), n);
        }
    }
    // A prefix of a longer draw: element i does not depend on the size.
    let short = interp::run(&uniform_graph(&[5], DType::F32), &seed_offset(3, 4)).unwrap();
    let long = interp::run(&uniform_graph(&[9], DType::F32), &seed_offset(3, 4)).unwrap();
    assert_eq!(short[0].to_f64_vec(), long[0].to_f64_vec()[..5]);
}

#[test]
fn uniform_errors_name_the_call() {
    let mut b = Builder::new("bad");
    let seed = b.data("seed", TensorType::scalar(DType::I32)).unwrap();
    let fseed = b.data("fseed", TensorType::scalar(DType::F32)).unwrap();
    let wide = b.data("wide", TensorType::i32(&[3])).unwrap();
    let msg = |e: IrError| e.to_string();
    assert_eq!(
        msg(b.random_uniform(seed, seed, &[4], DType::I32).unwrap_err()),
        "random_uniform: needs a float dtype, got i32"
    );
    assert_eq!(
        msg(b.random_uniform(fseed, seed, &[4], DType::F32).unwrap_err()),
        "random_uniform: the seed must be i32[] or i32[2], got f32[]"
    );
    assert_eq!(
        msg(b.random_uniform(seed, wide, &[4], DType::F32).unwrap_err()),
        "random_uniform: the offset must be i32[] or i32[2], got i32[3]"
    );
    let huge = b.random_uniform(seed, seed, &[1 << 20, 1 << 14], DType::F32);
    assert!(msg(huge.unwrap_err()).contains("more than 2^33 elements"));
}

#[test]
fn the_bitwise_ops_are_i32_only() {
    let mut b = Builder::new("bad");
    let f = b.data("f", TensorType::f32(&[2])).unwrap();
    let flag = b
        .data("flag", TensorType::new(DType::Bool, vec![2]))
        .unwrap();
    for v in [f, flag] {
        let err = b.bit_xor(v, v).unwrap_err().to_string();
        assert!(err.contains("xor needs i32 operands"), "{err}");
        let err = b.mul_hi(v, v).unwrap_err().to_string();
        assert!(err.contains("mul_hi needs i32 operands"), "{err}");
    }
}
