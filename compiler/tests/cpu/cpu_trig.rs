//! `sin` and `cos` of the CLIF math library (`kiln::backend::cpu::math`, `math/trig.rs`): the IR's edge cases bit for
//! bit, accuracy where the Cody–Waite reduction is hardest (next to multiples of π/2, up to the end of the accurate
//! domain), finite results beyond it, and the vector loop against its scalar tail, with and without FMA. The whole
//! range of f32 is swept by `cpu_math`'s stride sweep and `examples/math_sweep.rs`.

use crate::support::math_check::{self, specials_f32, Func, MathCheck};
use kiln::backend::cpu::jit::{JitModule, MapKernel};
use kiln::backend::cpu::math::MathEmitter;

const TRIG: [Func; 2] = [Func::Sin, Func::Cos];

/// Both emitters: with FMA (the host's, through libm where it has none) and with fmul + fadd.
fn emitters() -> [MathEmitter; 2] {
    [MathEmitter::with_fma(true), MathEmitter::with_fma(false)]
}

/// f32s next to multiples of π/2 (where `r` cancels most) with `k·π/2` below `limit`, a few ulps either side.
fn near_multiples_f32(limit: f64) -> Vec<f32> {
    let mut xs = Vec::new();
    let kmax = (limit / std::f64::consts::FRAC_PI_2) as i64;
    // Every k up to 4096, then about 4096 spread ones.
    let step = (kmax / 4096).max(1);
    let ks = (1..kmax.min(4096)).chain((4096..kmax).step_by(step as usize));
    for k in ks {
        let centre = (k as f64 * std::f64::consts::FRAC_PI_2) as f32;
        for d in -3i32..=3 {
            let x = f32::from_bits((centre.to_bits() as i32 + d) as u32);
            xs.push(x);
            xs.push(-x);
        }
    }
    xs
}

#[test]
fn sin_and_cos_edge_cases_are_exact() {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let tiny = f32::from_bits(1);
    let mut jit = JitModule::new().unwrap();
    let kernels: Vec<(Func, MathEmitter, MapKernel<f32>, MapKernel<f64>)> = emitters()
        .into_iter()
        .flat_map(|math| TRIG.map(|f| (f, math)))
        .map(|(f, math)| {
            let k32 = f.compile_with::<f32>(&mut jit, math);
            let k64 = f.compile_with::<f64>(&mut jit, math);
            (f, math, k32, k64)
        })
        .collect();
    jit.finalize().unwrap();
    for (func, math, k32, k64) in &kernels {
        let cases: Vec<(f32, f32)> = match func {
            Func::Sin => vec![
                (0.0, 0.0),
                (-0.0, -0.0),
                (tiny, tiny),
                (-tiny, -tiny),
                (1e-30, 1e-30),
            ],
            _ => vec![(0.0, 1.0), (-0.0, 1.0), (tiny, 1.0), (1e-30, 1.0)],
        }
        .into_iter()
        .chain([(inf, nan), (-inf, nan), (nan, nan), (-nan, nan)])
        .collect();
        let xs: Vec<f32> = cases.iter().map(|c| c.0).collect();
        let mut out = vec![0.0f32; xs.len()];
        jit.run_map(k32, &[&xs], &mut out).unwrap();
        let xs64: Vec<f64> = xs.iter().map(|&x| x as f64).collect();
        let mut out64 = vec![0.0f64; xs.len()];
        jit.run_map(k64, &[&xs64], &mut out64).unwrap();
        for (i, &(x, want)) in cases.iter().enumerate() {
            for (got, ty) in [(out[i], "f32"), (out64[i] as f32, "f64")] {
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{}({x:e}) ({ty}, {math:?}) = {got:e}, want {want:e}",
                    func.name()
                );
            }
        }
    }
}

#[test]
fn sin_and_cos_are_accurate_next_to_multiples_of_half_pi() {
    let mut jit = JitModule::new().unwrap();
    let kernels: Vec<_> = emitters()
        .into_iter()
        .flat_map(|math| TRIG.map(|f| (f, math)))
        .map(|(f, math)| {
            let k32 = f.compile_with::<f32>(&mut jit, math);
            let k64 = f.compile_with::<f64>(&mut jit, math);
            (f, math, k32, k64)
        })
        .collect();
    jit.finalize().unwrap();
    for (func, math, k32, k64) in &kernels {
        let fma = math.has_fma();
        let mut xs = near_multiples_f32(func.accurate_below(true, fma));
        xs.extend((-20_000..20_000).map(|k| k as f32 * 0.000_78));
        xs.extend([
            1e4,
            -1e4,
            1e5,
            -1e5,
            1e6,
            3e6,
            1e7,
            1e20,
            f32::MAX,
            f32::MIN,
        ]);
        xs.extend(specials_f32());
        let worst = math_check::worst_f32(&jit, k32, *func, fma, &xs);
        assert!(
            worst.ulp <= func.f32_bound(),
            "{} f32 ({math:?}): {} ulp at x = {:e}: got {:e}, want {:e}",
            func.name(),
            worst.ulp,
            worst.input,
            worst.got,
            worst.want
        );
        // f64 next to multiples of π/2 up to its (no-FMA) bound, and spread bit patterns.
        let mut xs: Vec<f64> = (1..(1 << 16))
            .map(|k| (k as f64 * 15.0 + 0.5).round() * std::f64::consts::FRAC_PI_2)
            .flat_map(|c| (-2i64..=2).map(move |d| f64::from_bits((c.to_bits() as i64 + d) as u64)))
            .collect();
        xs.extend(math_check::spread_f64(1 << 16));
        xs.extend([1e4, 1e5, 1e6, 1e15, 1e300, f64::MAX, f64::MIN_POSITIVE]);
        let worst = math_check::worst_f64(&jit, k64, *func, fma, &xs);
        assert!(
            worst.ulp <= 2.0,
            "{} f64 ({math:?}): {} ulp at x = {:e}: got {:e}, want {:e}",
            func.name(),
            worst.ulp,
            worst.input,
            worst.got,
            worst.want
        );
    }
}

/// The f32x4 and f64x2 loops against the scalar tail, bit for bit, inside and beyond the accurate domain.
#[test]
fn sin_and_cos_lanes_give_the_scalar_bits() {
    let xs: Vec<f32> = (-3000..3000)
        .map(|k| k as f32 * 0.0173)
        .chain(near_multiples_f32(2e4).into_iter().step_by(7))
        .chain([1e6, 1e10, 1e30, f32::MAX])
        .chain(specials_f32())
        .collect();
    let xs64: Vec<f64> = xs.iter().map(|&x| x as f64 * 1.000_000_1).collect();
    let mut jit = JitModule::new().unwrap();
    let kernels: Vec<_> = emitters()
        .into_iter()
        .flat_map(|math| TRIG.map(|f| (f, math)))
        .map(|(f, math)| {
            let k32 = f.compile_with::<f32>(&mut jit, math);
            let k64 = f.compile_with::<f64>(&mut jit, math);
            (f, math, k32, k64)
        })
        .collect();
    jit.finalize().unwrap();
    for (func, math, k32, k64) in &kernels {
        let mut together = vec![0.0f32; xs.len()];
        jit.run_map(k32, &[&xs], &mut together).unwrap();
        let mut together64 = vec![0.0f64; xs.len()];
        jit.run_map(k64, &[&xs64], &mut together64).unwrap();
        for i in 0..xs.len() {
            let (mut alone, mut alone64) = ([0.0f32], [0.0f64]);
            jit.run_map(k32, &[&[xs[i]]], &mut alone).unwrap();
            jit.run_map(k64, &[&[xs64[i]]], &mut alone64).unwrap();
            let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            assert!(
                same(alone[0] as f64, together[i] as f64) && same(alone64[0], together64[i]),
                "{}({:e}) ({math:?}): scalar {:e} / {:e}, vector {:e} / {:e}",
                func.name(),
                xs[i],
                alone[0],
                alone64[0],
                together[i],
                together64[i]
            );
        }
    }
}
