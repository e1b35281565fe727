//! Accuracy checking for the CLIF math library, shared by `tests/cpu/cpu_math.rs` and `examples/math_sweep.rs`: the
//! functions with their f64 references, map kernels for them, and ulp errors.

use kiln::backend::cpu::jit::{JitModule, MapElement, MapKernel};
use kiln::backend::cpu::math::MathEmitter;

/// The transcendental functions of the math library: the runtime's list of the functions with a wide routine (the
/// same seven), so the CLIF and wide sweeps name one set.
pub use kiln_runtime::wide::Func;

/// What the accuracy checks know of each [`Func`]: its bound, its accurate domain, its f64 reference and its CLIF
/// map kernel.
pub trait MathCheck: Copy {
    fn f32_bound(self) -> f64;
    fn accurate_below(self, f32: bool, fma: bool) -> f64;
    fn reference(self, x: f64) -> f64;
    fn compile<T: MapElement>(self, jit: &mut JitModule) -> MapKernel<T>;
    fn compile_with<T: MapElement>(self, jit: &mut JitModule, math: MathEmitter) -> MapKernel<T>;
}

impl MathCheck for Func {
    /// The promised bound in f32 ulps.
    fn f32_bound(self) -> f64 {
        match self {
            Func::Exp | Func::Log => 4.0,
            Func::Tanh | Func::Logistic => 8.0,
            // The target, met over all 2^32 inputs (math.rs's table).
            Func::Erf => 2.0,
            // Within the accurate domain below (math.rs's table: up to 2.2 without FMA).
            Func::Sin | Func::Cos => 3.0,
        }
    }

    /// Where the function is accurate: `|x|` below this, infinite but for `sin`/`cos`, whose Cody–Waite reduction
    /// (`math/trig.rs`) is exact only while `n = round(x·2/π)` is (f32 with FMA: `|n| < 2^22`; f64 with FMA: `2^51`)
    /// and, without FMA, while the products `n·cᵢ` are (f32: `|n| < 2^13`, f64: `|n| < 2^20`). Beyond it a result
    /// need only be finite and within [-1, 1].
    fn accurate_below(self, f32: bool, fma: bool) -> f64 {
        match (self, f32, fma) {
            (Func::Sin | Func::Cos, true, true) => 4_194_304.0,
            (Func::Sin | Func::Cos, true, false) => 8192.0,
            (Func::Sin | Func::Cos, false, true) => 1.125_899_906_842_624e15,
            (Func::Sin | Func::Cos, false, false) => 1_048_576.0,
            _ => f64::INFINITY,
        }
    }

    /// The function in f64 (Rust's, within an ulp of the true value; logistic as the interpreter evaluates it; erf is
    /// libm's, as the interpreter's).
    fn reference(self, x: f64) -> f64 {
        match self {
            Func::Exp => x.exp(),
            Func::Log => x.ln(),
            Func::Tanh => x.tanh(),
            Func::Erf => libm::erf(x),
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Logistic => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
        }
    }

    /// Compiles `out[i] = f(in[i])` into `jit` (not finalized).
    fn compile<T: MapElement>(self, jit: &mut JitModule) -> MapKernel<T> {
        let math = jit.math();
        self.compile_with(jit, math)
    }

    /// Compiles `out[i] = f(in[i])` into `jit` with the given emitter (not finalized).
    fn compile_with<T: MapElement>(self, jit: &mut JitModule, math: MathEmitter) -> MapKernel<T> {
        let fma = if math == MathEmitter::with_fma(true) {
            "fma"
        } else {
            "nofma"
        };
        let name = format!("{}_{}_{fma}", self.name(), std::any::type_name::<T>());
        jit.compile_map::<T>(&name, 1, |b, args| match self {
            Func::Exp => math.exp(b, args[0]),
            Func::Log => math.log(b, args[0]),
            Func::Tanh => math.tanh(b, args[0]),
            Func::Logistic => math.logistic(b, args[0]),
            Func::Erf => math.erf(b, args[0]),
            Func::Sin => math.sin(b, args[0]),
            Func::Cos => math.cos(b, args[0]),
        })
        .expect("the math kernels compile")
    }
}

/// The error of `got` against the exact `want`, in ulps of f32 at `want` (2^-149 in the subnormal range). Exactly 0
/// when both are the same infinity or both NaN; infinite when only one is NaN or `got` is an infinity that `want`
/// does not round to.
pub fn ulp_error_f32(got: f32, want: f64) -> f64 {
    if got.is_nan() || want.is_nan() {
        return if got.is_nan() && want.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if got.is_infinite() {
        return if got as f64 == want || want as f32 == got {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let exponent = if want == 0.0 {
        -126
    } else {
        want.abs().log2().floor().clamp(-126.0, 127.0) as i32
    };
    let ulp = 2f64.powi(exponent - 23);
    (got as f64 - want).abs() / ulp
}

/// The error of `got` against `want`, in f64 ulps (the distance in representable numbers).
pub fn ulp_error_f64(got: f64, want: f64) -> f64 {
    if got.is_nan() || want.is_nan() {
        return if got.is_nan() && want.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    // Maps the floats onto the integers monotonically, ±0 both to 0.
    let ordered = |x: f64| {
        let bits = x.to_bits() as i64;
        if bits < 0 {
            i64::MIN.wrapping_sub(bits)
        } else {
            bits
        }
    };
    (ordered(got) as i128 - ordered(want) as i128).unsigned_abs() as f64
}

/// The largest error seen, and where.
#[derive(Clone, Copy, Debug, Default)]
pub struct Worst<T> {
    pub ulp: f64,
    pub input: T,
    pub got: T,
    pub want: f64,
}

impl<T: Copy + Default> Worst<T> {
    pub fn record(&mut self, ulp: f64, input: T, got: T, want: f64) {
        if ulp > self.ulp || (ulp.is_nan() && !self.ulp.is_nan()) {
            *self = Worst {
                ulp,
                input,
                got,
                want,
            };
        }
    }

    pub fn merge(&mut self, other: Worst<T>) {
        self.record(other.ulp, other.input, other.got, other.want);
    }
}

/// Runs `kernel` (compiled with or without `fma`) on `inputs` and returns the worst f32 error against `func`'s
/// reference, where it is accurate; elsewhere a finite `x` must give a finite result in [-1, 1] (infinite error
/// otherwise).
pub fn worst_f32(
    jit: &JitModule,
    kernel: &MapKernel<f32>,
    func: Func,
    fma: bool,
    inputs: &[f32],
) -> Worst<f32> {
    let mut out = vec![0.0f32; inputs.len()];
    jit.run_map(kernel, &[inputs], &mut out)
        .expect("the kernel runs");
    let bound = func.accurate_below(true, fma);
    let mut worst = Worst::default();
    for (&x, &y) in inputs.iter().zip(&out) {
        if x.is_finite() && x.abs() as f64 >= bound {
            if y.is_nan() || y.abs() > 1.0 {
                worst.record(f64::INFINITY, x, y, f64::NAN);
            }
            continue;
        }
        let want = func.reference(x as f64);
        worst.record(ulp_error_f32(y, want), x, y, want);
    }
    worst
}

/// As [`worst_f32`], in f64 ulps.
pub fn worst_f64(
    jit: &JitModule,
    kernel: &MapKernel<f64>,
    func: Func,
    fma: bool,
    inputs: &[f64],
) -> Worst<f64> {
    let mut out = vec![0.0f64; inputs.len()];
    jit.run_map(kernel, &[inputs], &mut out)
        .expect("the kernel runs");
    let bound = func.accurate_below(false, fma);
    let mut worst = Worst::default();
    for (&x, &y) in inputs.iter().zip(&out) {
        if x.is_finite() && x.abs() >= bound {
            if y.is_nan() || y.abs() > 1.0 {
                worst.record(f64::INFINITY, x, y, f64::NAN);
            }
            continue;
        }
        let want = func.reference(x);
        worst.record(ulp_error_f64(y, want), x, y, want);
    }
    worst
}

/// `count` f64 bit patterns spread evenly over all 2^64 (both signs, every exponent, NaNs included).
pub fn spread_f64(count: u64) -> Vec<f64> {
    let stride = (u64::MAX / count) | 1;
    (0..count)
        .map(|i| f64::from_bits(i.wrapping_mul(stride)))
        .collect()
}

/// Values each function must get right: zeros, infinities, NaN, subnormals, normal boundaries, and exp's
/// overflow/underflow thresholds with their neighbours.
pub fn specials_f32() -> Vec<f32> {
    let mut values = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        -f32::from_bits(1),
        f32::MAX,
        f32::MIN,
        f32::EPSILON,
        1.0,
        -1.0,
        0.625,
        -0.625,
        88.72283,
        88.72284,
        -87.33655,
        -103.97208,
        -103.27893,
        -104.0,
        9.01,
        -9.01,
        1e-20,
        -1e-20,
        1e20,
        -1e20,
    ];
    // Neighbours of the thresholds.
    for x in values.clone() {
        if x.is_finite() && x != 0.0 {
            values.push(f32::from_bits(x.to_bits() + 1));
            values.push(f32::from_bits(x.to_bits() - 1));
        }
    }
    values
}
