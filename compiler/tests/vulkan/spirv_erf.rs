//! `erf` on the GPU backend (`backend/spirv/emit/erf.rs`): f32 and f64 against libm's `erf` within stated ulps, on
//! a dense grid, log-spaced magnitudes down to the subnormals, the neighbours of the algorithm's thresholds and the
//! edge cases; the shader passes `spirv-val` with and without hidden zeros.

use crate::support::vulkan::{device, validate};
use kiln::backend::spirv;
use kiln::fusion;
use kiln::ir::{text, DType, Tensor, TensorType};
use std::collections::HashMap;

/// Distance in representable values (0 for equal bits; `±0` are one apart) between two non-NaN floats given as
/// their bits: `bits` maps each float to its position on the number line.
fn ulps_apart(a: i64, b: i64) -> u64 {
    a.abs_diff(b)
}

/// The position of an f32 / f64 on the number line of representable values (monotonic in the value).
fn ordered_f32(x: f32) -> i64 {
    let b = x.to_bits() as i32;
    (if b < 0 { i32::MIN - b } else { b }) as i64
}

fn ordered_f64(x: f64) -> i64 {
    let b = x.to_bits() as i64;
    if b < 0 {
        i64::MIN - b
    } else {
        b
    }
}

/// Inputs for `erf`: a dense grid of `[-8, 8]` (step 2^-10), magnitudes log-spaced from below the smallest subnormal
/// to 100 with both signs, the neighbours (±8 ulp) of the thresholds between the pieces of the algorithm, and the
/// edge cases. f64 values; the f32 run rounds them (and adds f32's own subnormals and thresholds).
fn erf_inputs(f32: bool) -> Vec<f64> {
    let mut x: Vec<f64> = (-8192..=8192).map(|i| i as f64 / 1024.0).collect();
    let (lo, hi) = if f32 {
        (-149.0f64, 7.0)
    } else {
        (-1074.0f64, 7.0)
    };
    let steps = 3000;
    for i in 0..=steps {
        let m = (lo + (hi - lo) * i as f64 / steps as f64).exp2();
        x.extend([m, -m]);
    }
    let thresholds = [2f64.powi(-28), 0.84375, 1.25, 1.0 / 0.35, 6.0, 3.92, 1.0];
    for t in thresholds {
        for k in -8i64..=8 {
            let (p, n) = if f32 {
                let b = ((t as f32).to_bits() as i64 + k) as u32;
                (f32::from_bits(b) as f64, -(f32::from_bits(b) as f64))
            } else {
                let b = (t.to_bits() as i64 + k) as u64;
                (f64::from_bits(b), -f64::from_bits(b))
            };
            x.extend([p, n]);
        }
    }
    x.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        0.5,
        -0.5,
        0.84375,
        -0.84375,
        1.0,
        -1.0,
        2.0,
        -2.0,
        3.9,
        -3.9,
        6.0,
        -6.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
    ]);
    if f32 {
        x.extend([
            f32::from_bits(1) as f64,
            -(f32::from_bits(1) as f64),
            f32::MIN_POSITIVE as f64 * 0.75,
            f32::MIN_POSITIVE as f64,
            -(f32::MIN_POSITIVE as f64),
            f32::MAX as f64,
            f32::MIN as f64,
        ]);
    } else {
        x.extend([
            5e-324,
            -5e-324,
            f64::MIN_POSITIVE * 0.75,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
        ]);
    }
    x
}

/// `erf`, which GLSL.std.450 lacks (emitted as fdlibm's algorithm, `backend/spirv/emit/erf.rs`), against the `libm`
/// crate's f64 `erf` — rounded to f32 for f32 — on [`erf_inputs`]: within [`ERF_ULPS_F32`] / [`ERF_ULPS_F64`] ulp
/// (the worst measured is printed); `erf(±0) = ±0`, `erf(±inf) = ±1` and NaN → NaN exactly, `erf(-x) = -erf(x)`
/// bit for bit. A subnormal input may be flushed to zero by the device (Vulkan allows it), giving `±0`.
#[test]
fn erf_f32_and_f64_within_ulps_of_libm() {
    for dtype in [DType::F32, DType::F64] {
        let f32 = dtype == DType::F32;
        let x: Vec<f64> = erf_inputs(f32)
            .into_iter()
            .map(|v| if f32 { v as f32 as f64 } else { v })
            .collect();
        let n = x.len();
        let g = text::parse(&format!(
            "graph erf_{dtype} {{
              %x = input{{role=data}} : {dtype}[{n}]
              %1 = erf %x : {dtype}[{n}]
              output erf = %1
            }}"
        ))
        .unwrap();
        let program = fusion::lower(&g).unwrap();
        let kernels = spirv::lower(&program).unwrap();
        validate(&kernels);
        let hidden = spirv::Options {
            hide_constant_zeros: true,
            ..spirv::Options::default()
        };
        validate(&spirv::lower_with(&program, &hidden).unwrap());
        let Some(device) = device() else { return };
        if !f32 && !device.info().float64 {
            continue;
        }
        let inputs = vec![Tensor::from_f64_values(TensorType::new(dtype, vec![n]), &x).unwrap()];
        let actual = spirv::compile(device, &program)
            .unwrap()
            .run(&inputs)
            .unwrap()[0]
            .to_f64_vec();
        let (mut worst, mut worst_at) = (0u64, 0.0);
        for (&x, &a) in x.iter().zip(&actual) {
            let e = libm::erf(x);
            let subnormal = x != 0.0
                && x.abs()
                    < if f32 {
                        f32::MIN_POSITIVE as f64
                    } else {
                        f64::MIN_POSITIVE
                    };
            if x.is_nan() || e == 0.0 || e.is_infinite() || x.is_infinite() {
                assert!(
                    (x.is_nan() && a.is_nan()) || a.to_bits() == e.to_bits(),
                    "{dtype} erf({x:e}): Vulkan {a:e}, libm {e:e}"
                );
                continue;
            }
            if subnormal && a == 0.0 {
                continue;
            }
            let ulps = if f32 {
                ulps_apart(ordered_f32(a as f32), ordered_f32(e as f32))
            } else {
                ulps_apart(ordered_f64(a), ordered_f64(e))
            };
            if ulps > worst {
                (worst, worst_at) = (ulps, x);
            }
            let bound = if f32 { ERF_ULPS_F32 } else { ERF_ULPS_F64 };
            assert!(
                ulps <= bound,
                "{dtype} erf({x:e}): Vulkan {a:e}, libm {e:e}: {ulps} ulp"
            );
        }
        // Odd, bit for bit: each input of the grid comes with its negation.
        let by_input: HashMap<u64, f64> = x
            .iter()
            .zip(&actual)
            .map(|(x, a)| (x.to_bits(), *a))
            .collect();
        for (x, a) in x.iter().zip(&actual) {
            if let Some(b) = by_input.get(&(-x).to_bits()) {
                assert!(
                    a.is_nan() && b.is_nan() || a.to_bits() == (-b).to_bits(),
                    "{dtype} erf({x:e}) = {a:e} but erf({:e}) = {b:e}",
                    -x
                );
            }
        }
        println!("{dtype} erf: worst {worst} ulp (at {worst_at:e}) over {n} inputs");
    }
}

/// `erf`'s bound in ulp against libm's f64 `erf` rounded to f32: fdlibm's `erff` is within 1 ulp; GLSL.std.450's
/// f32 `Exp` (its `erfc` part on `[1.25, 6)`) may add about one.
const ERF_ULPS_F32: u64 = 2;
/// `erf`'s bound in ulp against libm's f64 `erf` (the same algorithm, within 1 ulp of the true value; the
/// shader's f64 `exp` is the backend's own, within about 1 ulp).
const ERF_ULPS_F64: u64 = 2;
