//! `sin` and `cos` on the GPU backend (`backend/spirv/emit/trig.rs`, the CPU's reduction and polynomials): f32 and
//! f64 against the host's f64 `sin`/`cos` (rounded to f32 for f32) within stated ulps inside the accurate domain
//! (SPEC §3.2: `|x| < 8192` in f32, `|x| < 2^20` in f64), finite and in [-1, 1] beyond it; `sin(±0) = ±0`,
//! `cos(±0) = 1`, `±inf` and NaN → NaN exactly; the shader passes `spirv-val` with and without hidden zeros.

use crate::support::vulkan::{device, validate};
use kiln::backend::spirv;
use kiln::fusion;
use kiln::ir::{text, DType, Tensor, TensorType};

/// The bound in ulp inside the domain (the worst measured on lavapipe is printed and noted in `spirv/mod.rs`).
const TRIG_ULPS: u64 = 2;

fn ordered(x: f64, f32: bool) -> i64 {
    if f32 {
        let b = (x as f32).to_bits() as i32;
        (if b < 0 { i32::MIN - b } else { b }) as i64
    } else {
        let b = x.to_bits() as i64;
        if b < 0 {
            i64::MIN - b
        } else {
            b
        }
    }
}

/// A grid of `[-16, 16]`, log-spaced magnitudes from 2^-40 to 2^40, neighbours of multiples of π/2 up to the end of
/// the domain (and past it), and the edge cases.
fn trig_inputs(f32: bool, domain: f64) -> Vec<f64> {
    let round = |v: f64| if f32 { v as f32 as f64 } else { v };
    let mut x: Vec<f64> = (-4096..=4096).map(|i| i as f64 / 256.0).collect();
    for i in 0..=2000 {
        let m = (-40.0 + 80.0 * i as f64 / 2000.0).exp2();
        x.extend([m, -m]);
    }
    let kmax = (2.0 * domain / std::f64::consts::FRAC_PI_2) as i64;
    let step = (kmax / 3000).max(1) as usize;
    for k in (1..kmax.min(500)).chain((500..kmax).step_by(step)) {
        let centre = round(k as f64 * std::f64::consts::FRAC_PI_2);
        for d in -2i64..=2 {
            let v = if f32 {
                f32::from_bits(((centre as f32).to_bits() as i64 + d) as u32) as f64
            } else {
                f64::from_bits((centre.to_bits() as i64 + d) as u64)
            };
            x.extend([v, -v]);
        }
    }
    x.extend([0.0, -0.0, 1e-30, -1e-30, 1e4, 1e5, 1e6, 1e30, -1e30]);
    x.extend([f64::INFINITY, f64::NEG_INFINITY, f64::NAN]);
    x.into_iter().map(round).collect()
}

#[test]
fn sin_and_cos_f32_and_f64_within_ulps_of_the_host() {
    for (op, reference) in [("sin", f64::sin as fn(f64) -> f64), ("cos", f64::cos)] {
        for dtype in [DType::F32, DType::F64] {
            let f32 = dtype == DType::F32;
            let domain = if f32 { 8192.0 } else { 1_048_576.0 };
            let x = trig_inputs(f32, domain);
            let n = x.len();
            let g = text::parse(&format!(
                "graph {op}_{dtype} {{
                  %x = input{{role=data}} : {dtype}[{n}]
                  %1 = {op} %x : {dtype}[{n}]
                  output y = %1
                }}"
            ))
            .unwrap();
            let program = fusion::lower(&g).unwrap();
            validate(&spirv::lower(&program).unwrap());
            let hidden = spirv::Options {
                hide_constant_zeros: true,
                ..spirv::Options::default()
            };
            validate(&spirv::lower_with(&program, &hidden).unwrap());
            let Some(device) = device() else { return };
            if !f32 && !device.info().float64 {
                continue;
            }
            let inputs = [Tensor::from_f64_values(TensorType::new(dtype, vec![n]), &x).unwrap()];
            let actual = spirv::compile(device, &program)
                .unwrap()
                .run(&inputs)
                .unwrap()[0]
                .to_f64_vec();
            let (mut worst, mut worst_at) = (0u64, 0.0);
            for (&x, &a) in x.iter().zip(&actual) {
                let want = if f32 {
                    reference(x) as f32 as f64
                } else {
                    reference(x)
                };
                if !x.is_finite() || x == 0.0 {
                    assert!(
                        (want.is_nan() && a.is_nan()) || a.to_bits() == want.to_bits(),
                        "{dtype} {op}({x:e}): Vulkan {a:e}, host {want:e}"
                    );
                    continue;
                }
                if x.abs() >= domain {
                    assert!(a.abs() <= 1.0, "{dtype} {op}({x:e}): Vulkan {a:e}");
                    continue;
                }
                // A device may flush a subnormal input (or result) to zero.
                let min_normal = if f32 {
                    f32::MIN_POSITIVE as f64
                } else {
                    f64::MIN_POSITIVE
                };
                if x.abs() < min_normal || want.abs() < min_normal {
                    continue;
                }
                let ulps = ordered(a, f32).abs_diff(ordered(want, f32));
                if ulps > worst {
                    (worst, worst_at) = (ulps, x);
                }
                assert!(
                    ulps <= TRIG_ULPS,
                    "{dtype} {op}({x:e}): Vulkan {a:e}, host {want:e}: {ulps} ulp"
                );
            }
            println!("{dtype} {op}: worst {worst} ulp (at {worst_at:e}) over {n} inputs");
        }
    }
}
