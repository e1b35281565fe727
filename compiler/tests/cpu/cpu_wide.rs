//! The wide routines (`kiln_runtime::wide`) against the CLIF math library with FMA, bit for bit (NaN as any NaN), at
//! every level the host runs: a sampled sweep of all f32 bit patterns plus each function's edges, the same inputs
//! beside lanes that send a chunk down `exp`'s full path, every tail length, and in place. The sweep over all 2^32
//! inputs is `cargo run --release --example math_sweep -- --wide`.

use crate::support::math_check::{specials_f32, Func, MathCheck};
use kiln::backend::cpu::jit::{JitModule, MapKernel};
use kiln::backend::cpu::math::MathEmitter;
use kiln_runtime::wide::{self, Isa, IsaError, Routines};

/// The levels this host runs (always `scalar`; `avx2` and `avx512` where it has them).
fn host_levels() -> Vec<&'static Routines> {
    let levels: Vec<_> = Isa::ALL
        .into_iter()
        .filter_map(|isa| Routines::for_isa(isa).ok())
        .collect();
    assert_eq!(levels[0].isa(), Isa::Scalar);
    levels
}

/// `count` f32s on each side of `x` (bit patterns), and `x` itself.
fn around(x: f32, count: i32) -> impl Iterator<Item = f32> {
    (-count..=count).map(move |k| f32::from_bits((x.to_bits() as i32).wrapping_add(k) as u32))
}

/// Every 4099th f32 bit pattern, the specials, and the neighbours of every function's branch points, clamps and
/// thresholds (both signs).
fn inputs() -> Vec<f32> {
    let mut inputs: Vec<f32> = (0..=u32::MAX).step_by(4099).map(f32::from_bits).collect();
    inputs.extend(specials_f32());
    let edges = [
        // exp: the short path's bound, the underflow to 0, the clamp, overflow.
        86.0,
        104.0,
        110.0,
        100.0,
        88.72284,
        87.33655,
        103.97208,
        // tanh's polynomial bound; erf's split, the polynomial's centre and the saturation.
        0.625,
        1.0,
        2.5,
        3.919206,
        // log: the smallest normal, √2 and √½ (the reduction's edges), 1.
        f32::MIN_POSITIVE,
        std::f32::consts::SQRT_2,
        std::f32::consts::FRAC_1_SQRT_2,
        // sin/cos: quadrant boundaries, the accurate domain's bound, the clamp of r.
        std::f32::consts::FRAC_PI_4,
        std::f32::consts::FRAC_PI_2,
        std::f32::consts::PI,
        4_194_304.0,
        6_588_397.0,
    ];
    for edge in edges {
        inputs.extend(around(edge, 256));
        inputs.extend(around(-edge, 256));
    }
    // sin/cos next to multiples of π/2, where r is tiny.
    for k in 1..200 {
        inputs.extend(around(k as f32 * std::f32::consts::FRAC_PI_2, 8));
    }
    inputs
}

/// Asserts that the routine's outputs are the CLIF kernel's, bit for bit or both NaN.
#[track_caller]
fn assert_same(what: &str, inputs: &[f32], got: &[f32], want: &[f32]) {
    for ((&x, &g), &w) in inputs.iter().zip(got).zip(want) {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}: x = {x:e} ({:#010x}): wide {g:e} ({:#010x}), CLIF {w:e} ({:#010x})",
            x.to_bits(),
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// The CLIF kernels of every function with FMA (on a host without FMA Cranelift calls libm's `fma`: the same bits).
fn clif_kernels(jit: &mut JitModule) -> Vec<(Func, MapKernel<f32>)> {
    let math = MathEmitter::with_fma(true);
    let kernels = Func::ALL
        .into_iter()
        .map(|f| (f, f.compile_with::<f32>(jit, math)))
        .collect();
    jit.finalize().unwrap();
    kernels
}

#[test]
fn wide_routines_have_the_bits_of_the_clif_library_with_fma() {
    let inputs = inputs();
    // Each input again beside lanes out of exp's short path (and a NaN), which send their chunk down the full path.
    let beside_outside: Vec<f32> = inputs
        .iter()
        .flat_map(|&x| [x, 1e30, x, f32::NAN, x, -1e30, x, 200.0])
        .collect();
    let mut jit = JitModule::new().unwrap();
    for (func, kernel) in clif_kernels(&mut jit) {
        for data in [&inputs, &beside_outside] {
            let mut want = vec![0.0; data.len()];
            jit.run_map(&kernel, &[data], &mut want).unwrap();
            for routines in host_levels() {
                let mut got = vec![0.0; data.len()];
                routines.apply(func, data, &mut got);
                let what = format!("{} ({})", func.name(), routines.isa());
                assert_same(&what, data, &got, &want);
                routines.apply_in_place(func, &mut got);
                let mut want_twice = vec![0.0; data.len()];
                jit.run_map(&kernel, &[&want], &mut want_twice).unwrap();
                assert_same(&format!("{what}, in place"), &want, &got, &want_twice);
            }
        }
    }
}

#[test]
fn every_length_and_offset_gives_the_same_bits() {
    // Lengths around the chunk sizes (4 and 16 lanes), at offsets that move the chunk boundaries.
    let data: Vec<f32> = (0..80)
        .map(|i| match i % 5 {
            0 => 95.0 - i as f32,
            1 => -(i as f32) * 1.7,
            2 => 0.3 * i as f32,
            3 => f32::from_bits(0x0040_0000 + i),
            _ => 1e-3 * i as f32,
        })
        .collect();
    let mut jit = JitModule::new().unwrap();
    for (func, kernel) in clif_kernels(&mut jit) {
        let mut want = vec![0.0; data.len()];
        jit.run_map(&kernel, &[&data], &mut want).unwrap();
        for routines in host_levels() {
            for offset in [0, 1, 3, 7] {
                for len in 0..=(data.len() - offset) {
                    let range = offset..offset + len;
                    let mut got = vec![f32::NAN; len];
                    routines.apply(func, &data[range.clone()], &mut got);
                    let what = format!("{} ({}), {range:?}", func.name(), routines.isa());
                    assert_same(&what, &data[range.clone()], &got, &want[range]);
                }
            }
        }
    }
}

/// `apply_shifted(x, s)` is `apply(x - s)` bit for bit (the subtraction in f32, as the kernels' `fsub`), for shifts
/// that are zeros of either sign, ordinary, large enough to push lanes out of `exp`'s short path, infinite or NaN,
/// on lengths that end in a partial chunk.
#[test]
fn a_shift_is_the_subtraction_before_the_function() {
    let inputs = inputs();
    for routines in host_levels() {
        for func in Func::ALL {
            for shift in [0.0, -0.0, 1.5, -3.25, 87.0, -200.0, f32::INFINITY, f32::NAN] {
                for len in [inputs.len(), 37, 5] {
                    let data = &inputs[..len];
                    let moved: Vec<f32> = data.iter().map(|&x| x - shift).collect();
                    let mut want = vec![0.0; len];
                    routines.apply(func, &moved, &mut want);
                    let mut got = vec![0.0; len];
                    routines.apply_shifted(func, data, shift, &mut got);
                    let what = format!("{} ({}) shifted by {shift}", func.name(), routines.isa());
                    assert_same(&what, &moved, &got, &want);
                }
            }
        }
    }
}

#[test]
fn levels_are_refused_by_name_when_unknown_or_missing() {
    assert_eq!(
        Isa::from_name("avx1024"),
        Err(IsaError::Unknown("avx1024".to_owned()))
    );
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Ok(isa));
        let missing = isa.missing_features();
        match Routines::for_isa(isa) {
            Ok(routines) => {
                assert!(missing.is_empty());
                assert_eq!(routines.isa(), isa);
            }
            Err(e) => {
                assert!(!missing.is_empty());
                assert!(e.to_string().contains(missing[0]), "{e}");
            }
        }
    }
    // The widest level the host runs, unless KILN_WIDE_ISA names another.
    if std::env::var_os("KILN_WIDE_ISA").is_none() {
        assert_eq!(wide::isa(), Ok(Isa::detect()));
    }
}
