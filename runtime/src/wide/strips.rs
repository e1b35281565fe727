//! The routines over strips of f32: chunks of `W` lanes (one or two machine vectors) through the lane algorithms of
//! [`super::lanes`], instantiated once per ISA level with that level's target features, so that LLVM compiles the
//! fixed-size chunk loops to vector code of the level's width.

// Index loops over fixed-size arrays, which LLVM turns into whole-vector operations.
#![allow(clippy::needless_range_loop)]

use super::lanes;

/// `[f(0), f(1), .., f(W - 1)]` by an index loop: `std::array::from_fn` and iterator adapters are not always inlined
/// into the `target_feature` function, and code left outside it is compiled without the level's features.
macro_rules! lanes {
    (|$i:ident| $value:expr) => {{
        let mut out = [0.0f32; W];
        for $i in 0..W {
            out[$i] = $value;
        }
        out
    }};
}

/// Whether any lane of `x` is out of `exp`'s short path: `|` over every lane, no early exit, so it vectorizes.
#[inline(always)]
fn any_outside<const W: usize>(x: &[f32; W]) -> bool {
    let mut any = false;
    for i in 0..W {
        any |= lanes::exp_outside(x[i]);
    }
    any
}

/// `e^x` on a chunk: the short path unless a lane is out of its range (CLIF's `exp`, one branch per chunk).
#[inline(always)]
fn exp<const W: usize>(x: &[f32; W]) -> [f32; W] {
    let mut any = false;
    for i in 0..W {
        any |= lanes::exp_outside(lanes::exp_prepare(x[i]));
    }
    if any {
        lanes!(|i| lanes::exp_finish(x[i], lanes::exp_full(lanes::exp_prepare(x[i]))))
    } else {
        lanes!(|i| lanes::exp_finish(x[i], lanes::exp_short(lanes::exp_prepare(x[i]))))
    }
}

/// `e^-|x|` on a chunk (CLIF's `exp_minus_abs`, one branch per chunk).
#[inline(always)]
fn exp_minus_abs<const W: usize>(x: &[f32; W]) -> [f32; W] {
    if any_outside(x) {
        lanes!(|i| lanes::exp_full(lanes::minus_abs_full(x[i])))
    } else {
        lanes!(|i| lanes::exp_short(lanes::minus_abs(x[i])))
    }
}

#[inline(always)]
fn tanh<const W: usize>(x: &[f32; W]) -> [f32; W] {
    let z = exp_minus_abs(x);
    lanes!(|i| lanes::tanh_finish(x[i], z[i]))
}

#[inline(always)]
fn logistic<const W: usize>(x: &[f32; W]) -> [f32; W] {
    let z = exp_minus_abs(x);
    lanes!(|i| lanes::logistic_finish(x[i], z[i]))
}

#[inline(always)]
fn log<const W: usize>(x: &[f32; W]) -> [f32; W] {
    lanes!(|i| lanes::log(x[i]))
}

#[inline(always)]
fn erf<const W: usize>(x: &[f32; W]) -> [f32; W] {
    lanes!(|i| lanes::erf(x[i]))
}

#[inline(always)]
fn sin<const W: usize>(x: &[f32; W]) -> [f32; W] {
    lanes!(|i| lanes::sin_or_cos(x[i], false))
}

#[inline(always)]
fn cos<const W: usize>(x: &[f32; W]) -> [f32; W] {
    lanes!(|i| lanes::sin_or_cos(x[i], true))
}

/// A function on chunks of `W` lanes.
trait ChunkFn<const W: usize> {
    fn apply(x: &[f32; W]) -> [f32; W];
}

/// `dst[i] = f(src[i] - shift)` for `i < n`, a chunk of `W` at a time; the last, partial chunk is padded with
/// `shift` (so its padding lanes are 0, a value in every function's short path, unless `shift` is not finite) and
/// only its first lanes are written. `x - 0.0` is `x` for every `x` (`-0.0` included), so a `shift` of 0 is `f`
/// itself.
///
/// # Safety
/// `src` must be valid for reading and `dst` for writing `n` f32s (no alignment needed); they must be the same
/// pointer or not overlap. Each chunk is read whole before it is written, so `src == dst` works in place.
#[inline(always)]
unsafe fn map<const W: usize, F: ChunkFn<W>>(src: *const f32, dst: *mut f32, n: usize, shift: f32) {
    let f = F::apply;
    let whole = n - n % W;
    let mut i = 0;
    while i < whole {
        // SAFETY: i + W ≤ n, so the chunk is inside both ranges (caller's contract); unaligned access is used.
        unsafe {
            let x = src.add(i).cast::<[f32; W]>().read_unaligned();
            let x = lanes!(|l| x[l] - shift);
            dst.add(i).cast::<[f32; W]>().write_unaligned(f(&x));
        }
        i += W;
    }
    if whole < n {
        let rest = n - whole;
        let mut x = [shift; W];
        // SAFETY: elements whole..n of both ranges exist (caller's contract) and `x` has W > rest lanes.
        unsafe { std::ptr::copy_nonoverlapping(src.add(whole), x.as_mut_ptr(), rest) };
        let x = lanes!(|l| x[l] - shift);
        let y = f(&x);
        // SAFETY: as above, for `dst`; `y` is a local array, so it overlaps nothing.
        unsafe { std::ptr::copy_nonoverlapping(y.as_ptr(), dst.add(whole), rest) };
    }
}

/// One module of `extern "C"` routines (`exp`, `log`, ...) per ISA level: `$width` lanes per chunk, the chunk loop
/// compiled with the attribute `$features` (the level's `target_feature`, or a no-op for the portable level).
macro_rules! level {
    ($module:ident, $width:expr, $features:tt) => {
        pub(super) mod $module {
            level!(@routines $width, $features; exp, log, tanh, logistic, erf, sin, cos);
        }
    };
    (@routines $width:expr, $features:tt; $($name:ident),*) => {
        $(
            /// # Safety
            /// As `map`'s; and the host must have this level's target features (checked by `Routines::for_isa`).
            pub unsafe extern "C" fn $name(src: *const f32, dst: *mut f32, n: usize, shift: f32) {
                #$features
                #[inline(never)]
                unsafe fn body(src: *const f32, dst: *mut f32, n: usize, shift: f32) {
                    // A direct call, inlined: a fn item passed as `impl Fn` is called through its `Fn::call` shim,
                    // which is compiled apart, without the level's target features.
                    struct Chunk;
                    impl super::ChunkFn<{ $width }> for Chunk {
                        #[inline(always)]
                        fn apply(x: &[f32; $width]) -> [f32; $width] {
                            super::$name(x)
                        }
                    }
                    // SAFETY: the caller's contract is `map`'s.
                    unsafe { super::map::<{ $width }, Chunk>(src, dst, n, shift) }
                }
                // SAFETY: the caller's contract covers the pointers and the target features.
                unsafe { body(src, dst, n, shift) }
            }
        )*
    };
}

// Four lanes for the portable level: one SSE2 or NEON vector where LLVM vectorizes the baseline target (the fma
// stays a libm call on x86-64 without FMA, which only forced runs of this level see).
level!(
    portable,
    4,
    [doc = "No target features: the baseline target's code."]
);
// Two 256-bit vectors per chunk (the branch of `exp` is taken per 16 lanes, as for AVX-512).
#[cfg(target_arch = "x86_64")]
level!(avx2, 16, [target_feature(enable = "avx,avx2,fma")]);
#[cfg(target_arch = "x86_64")]
level!(
    avx512,
    16,
    [target_feature(
        enable = "avx512f,avx512bw,avx512dq,avx512vl,avx,avx2,fma"
    )]
);
