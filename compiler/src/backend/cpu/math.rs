//! A vectorized math library written in CLIF: `exp`, `log`, `tanh`, `logistic`, `erf`, `sin`, `cos` (in `trig.rs`),
//! `pow` and the cheap elementwise ops (`sqrt`, `recip`, `abs`, `neg`, `max`, `min`, `relu`) with the semantics of
//! Kiln's IR (`ir-spec/SPEC.md` §3).
//!
//! Cranelift has no transcendental instructions and calling libm from JIT code costs 2.6–5.2 ns per element, so
//! every function here is emitted inline: range reduction, a polynomial, reconstruction, branch-free (but for one
//! branch in `exp`, taken on a whole value, scalar or vector) so that one emitter serves every lane count. Each takes
//! a value of type `f32`, `f32x4`, `f64` or `f64x2` and returns one of the same type; the `FunctionBuilder` must be
//! positioned in a block (`exp` and the functions built on it leave it in a new one). `fma` is used where the ISA
//! has it ([`MathEmitter::for_isa`]), otherwise `fmul` + `fadd` (the same algorithms; both measured below).
//!
//! Algorithms (polynomials fitted by `math_fit.py` beside this file):
//! - `exp`: clamp `x` (NaN passes), `n = round(x·log2 e)` by adding `1.5·2^p` (so `n` is also in the integer bits),
//!   `r = x - n·ln2` with ln 2 split in two (Cody–Waite), `e^r ≈ 1 + r + r²·P(r)`, then `·2^⌊n/2⌋·2^(n-⌊n/2⌋)`
//!   built in the exponent bits: two factors so that overflow gives +inf and the underflow range rounds once, to a
//!   correct subnormal or 0. NaN → NaN. Where every lane has `|x| ≤ 86` (707 for f64), which is nearly always,
//!   one branch skips the clamp and the second factor: `fma(e^r - 1, 2^n, 2^n)` with `2^n` from `n`'s bits alone,
//!   which gives the same bits (argued at `Lanes::exp_scaled`, checked by `compiler/tests/cpu/cpu_math.rs`).
//! - `log`: subnormals are scaled by `2^p` first; `x = 2^e·m` with `m ∈ [√½, √2)` by integer arithmetic on the bits,
//!   `f = m - 1`; f32: `log(1+f) = f - f²/2 + f³·P(f)`; f64: `2·atanh(f/(2+f))` (one division) as in fdlibm.
//!   `log(±0) = -inf`, `log(x<0) = NaN`, `log(+inf) = +inf`.
//! - `tanh`: on `a = |x|`: `a + a³·P(a²)` for `a < 0.625`, else `(1 - z²)/(1 + z²)` with `z = e^-a` (exactly 1 once
//!   `z²` underflows); the sign of `x` is or-ed back in, so `tanh(-0) = -0` and finite `x` never gives NaN. `z` is
//!   computed with the same instructions as `logistic`'s, so a kernel with both `tanh(x)` and `logistic(x)` evaluates
//!   one exp (Cranelift merges the identical pure instructions).
//! - `logistic`: `z = exp(-|x|)` (never overflows), then `1/(1+z)` for `x ≥ 0`, `z/(1+z)` for `x < 0`, as the
//!   interpreter evaluates it.
//! - `erf`: on `a = |x|`: `a + a·Q(a²)` for `a < 1`; else `1 - e^(-a²)·R(a - m)`, and exactly 1 from the first
//!   float whose erf rounds to 1 (3.919206 for f32, 5.921587195794507 for f64; `a` is clamped there, so `e^(-a²)`
//!   stays in exp's short path, used without its branch). R is fitted for the absolute error of `e^(-a²)·R`, the error the result sees, so one
//!   polynomial covers the whole tail (degree 8, m = 2.5 for f32; 22, m = 3.5 for f64). Rounding `a²` costs at most
//!   `a²·erfc(a)` ≤ 0.16 ulp of the result, so no exact-square split is needed. The sign of `x` is or-ed back in:
//!   odd, `erf(±0) = ±0`, `erf(±inf) = ±1`, NaN → NaN. The split at 1 was chosen by measurement (of a Python model
//!   of the f64 code): at 1.25, `a + a·Q(a²)` reached 1.8 ulp near the split (Q cancels there); at 1, 1.15.
//! - `sin`, `cos` (`trig.rs`): `n = round(x·2/π)`, `r = x - n·π/2` with π/2 in three Cody–Waite parts (with FMA: the
//!   products are exact inside the fma; without, Cephes' 8 + 11 + 24-bit parts for f32 and fdlibm's four 33-bit
//!   parts for f64, so that the products are exact themselves), then `r + r³·S(r²)` and `1 - r²/2 + r⁴·C(r²)` on
//!   `|r| ≤ π/4` and the quadrant `n mod 4` (for `cos`, `n + 1`) by selects. f32 stays in f32 lanes. Accurate for
//!   `|x| < 2^22` (f32 with FMA; `n` is rounded correctly there), `|x| < 8192` (f32 without FMA), `|x| < 2^50`
//!   (f64 with FMA), `|x| < 2^20` (f64 without). Beyond that `r` is clamped to `[-1, 1]`: a finite `x` gives some
//!   value in `[-1, 1]`, never NaN, but not its sine (huge arguments need Payne–Hanek reduction, which is not done;
//!   GPU `sin`s are inaccurate there too). `sin(±0) = ±0`, `cos(±0) = 1`, `±inf` and NaN → NaN.
//! - `pow(x, y) = exp(y·log|x|)`, in f64 for f32 operands too (so `y·log|x|` keeps its precision); then the C99
//!   special cases: `pow(x, ±0) = 1` and `pow(1, y) = 1` even for NaN; `pow(-1, ±inf) = 1`; a negative `x` (also
//!   `-0` and `-inf`) takes the sign of `x` for odd integer `y` and gives NaN for finite `x < 0` with non-integer
//!   `y`; `pow(±0, y<0) = +inf` (`±inf` for odd `y`); infinities in `x` or `y` as C99. Every case of C99 F.9.4.4.
//! - `max`/`min` are Cranelift's `fmax`/`fmin`, whose semantics are Kiln's (NaN if either operand is NaN,
//!   `max(-0, +0) = +0`, `min(-0, +0) = -0`). `relu(x) = max(x, +0)` with the same semantics in two instructions
//!   (`maxps` + `addps` on x86) instead of `fmax`'s eight.
//!
//! Measured error (`cargo run --release --example math_sweep`: f32 over all 2^32 inputs against Rust's f64
//! functions; f64 over 2^24 bit patterns spread over the whole range, against Rust's f64 functions, which are
//! themselves within an ulp; ulp = spacing of the target type at the reference value, subnormal spacing below):
//!
//! | function | type | domain | max ulp | where |
//! |---|---|---|---|---|
//! | exp | f32 | all 2^32 | 1.10 | x = 5.198865 (result 181.06662) |
//! | log | f32 | all 2^32 | 0.83 | x = 1.413642, just below √2 (the reduction's edge) |
//! | tanh | f32 | all 2^32 | 2.06 | x = 0.68012804, above 0.625 (`(1 - z²)/(1 + z²)`: `z = e^-a`'s error, squared) |
//! | logistic | f32 | all 2^32 | 2.40 | x = -4.157294 (`z/(1+z)`: exp's error plus two roundings) |
//! | erf | f32 | all 2^32 | 1.04 | x = 0.989615 (result 0.83834505), just under the split at 1 (against libm's erf) |
//! | exp, log, tanh, logistic | f32, no FMA | every 17th f32 | 1.03, 0.80, 2.03, 2.37 | as above |
//! | erf | f32, no FMA | all 2^32 | 1.34 | x = 0.9954118, just under the split at 1 |
//! | sin | f32 | all f32 with \|x\| < 2^22 | 2.23 | x = 3.2112513e6 (result -0.062461466, just under 1/16, where the ulp halves) |
//! | cos | f32 | all f32 with \|x\| < 2^22 | 2.32 | x = 3.706283e6 (result -0.062461052, likewise) |
//! | sin, cos | f32, no FMA | all f32 with \|x\| < 8192 | 2.34, 2.32 | x = 4505.169 (sin, result 0.12475419), 2228.8975 (cos, result -0.06248604): just under a power of two |
//! | pow | f32 | 1.6M pairs of spread f32 (`math_sweep`) | 0.50 | the f64 result rounded once |
//! | exp | f64 | 2^24 spread | 1 | x = 1.8056e-5 |
//! | log | f64 | 2^24 spread | 1 | x = 2.7e-308 |
//! | tanh | f64 | 2^24 spread | 3 | x = 0.956 (`(1 - z²)/(1 + z²)`) |
//! | logistic | f64 | 2^24 spread | 2 | x = 0.961 |
//! | erf | f64, FMA and not | 2^24 spread | 1 | x = 9.8e-311 (a subnormal result); `cpu_math`'s grid of 2^17 points on \[-8, 8\] stays ≤ 2 |
//! | sin, cos | f64 | 2^24 spread, \|x\| < 2^50 | 1, 1 | x = 0.0119 (sin), 0.0253 (cos); `cpu_trig`'s f64s next to 2^16 multiples of π/2 stay ≤ 2 |
//! | sin, cos | f64, no FMA | 2^24 spread, \|x\| < 2^20 | 2, 2 | x = 22576.0 (sin), 8720.0 (cos) |
//! | pow | f64 | 1.6M pairs of spread f64 | 1083 | x = 4.0e-118, y = 2.5: the error grows as `\|y·ln x\|` (676 here) |
//!
//! (f64 errors are whole ulps against Rust's f64 functions, themselves within an ulp of the true value; erf's
//! reference is `libm::erf`, in f64 for the f32 rows too. sin and cos are swept where they are accurate, see
//! `trig.rs`; beyond, `math_sweep` checks that every finite input gives a result in \[-1, 1\]. Their f32 rows were
//! measured with the debug build of `math_sweep`, whose JIT code is the release build's.)
//!
//! Subnormals are honoured both ways: `exp`'s results in the subnormal range and `log` of subnormals are as accurate
//! as the rest (in absolute ulps). What is not handled: `pow`'s f64 error grows with `|y·ln x|` (about
//! `|y·ln x|·2^-53` relative: ~1000 ulp where the result nears the ends of the range; f32 `pow` does not have
//! this problem, it is evaluated in f64); NaN payloads are not
//! preserved (a NaN result is the canonical NaN or the input NaN).

use cranelift_codegen::ir::{
    condcodes::FloatCC, types, ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value,
};
use cranelift_codegen::isa::TargetIsa;
use cranelift_frontend::FunctionBuilder;

pub(crate) mod trig;

/// Emits the math library into functions under construction; cheap to copy, one per target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MathEmitter {
    fma: bool,
}

impl MathEmitter {
    /// For `isa`: uses `fma` if the ISA lowers it to one instruction (x86-64 with AVX and FMA; AArch64).
    pub fn for_isa(isa: &dyn TargetIsa) -> Self {
        MathEmitter {
            fma: isa.has_native_fma(),
        }
    }

    /// Chooses explicitly whether to emit `fma` (without native FMA, Cranelift calls libm's `fma` instead).
    pub fn with_fma(fma: bool) -> Self {
        MathEmitter { fma }
    }

    /// Whether this emitter uses `fma` (the code generator contracts `a·b + c` exactly when it does).
    pub fn has_fma(&self) -> bool {
        self.fma
    }

    fn lanes<'a, 'f>(&self, b: &'a mut FunctionBuilder<'f>, x: Value) -> Lanes<'a, 'f> {
        let ty = b.func.dfg.value_type(x);
        let format = match ty.lane_type() {
            types::F32 => &F32,
            types::F64 => &F64,
            _ => panic!("the math library takes f32, f32x4, f64 or f64x2 values, not {ty}"),
        };
        Lanes {
            b,
            ty,
            format,
            fma: self.fma,
        }
    }

    /// `e^x`.
    pub fn exp(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        self.lanes(b, x).exp(x)
    }

    /// `ln x`.
    pub fn log(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        self.lanes(b, x).log(x)
    }

    /// `tanh x`.
    pub fn tanh(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        self.lanes(b, x).tanh(x)
    }

    /// `1 / (1 + e^-x)`.
    pub fn logistic(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        self.lanes(b, x).logistic(x)
    }

    /// `erf x` (odd: `erf(±0) = ±0`, `erf(±inf) = ±1`; exactly ±1 where the result rounds to it).
    pub fn erf(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        self.lanes(b, x).erf(x)
    }

    /// `x^y` (C99 `pow`); `x` and `y` have the same type.
    pub fn pow(&self, b: &mut FunctionBuilder<'_>, x: Value, y: Value) -> Value {
        match b.func.dfg.value_type(x) {
            types::F32 => {
                let (x, y) = (
                    b.ins().fpromote(types::F64, x),
                    b.ins().fpromote(types::F64, y),
                );
                let r = self.lanes(b, x).pow(x, y);
                b.ins().fdemote(types::F32, r)
            }
            types::F32X4 => {
                // Two f64x2 halves: lanes 0-1 and lanes 2-3 (moved down by a byte shuffle).
                let high_to_low = |b: &mut FunctionBuilder<'_>, v: Value| {
                    let high = shuffle_f32x4(b, v, v, [2, 3, 2, 3]);
                    b.ins().fvpromote_low(high)
                };
                let (x_low, y_low) = (b.ins().fvpromote_low(x), b.ins().fvpromote_low(y));
                let (x_high, y_high) = (high_to_low(b, x), high_to_low(b, y));
                let low = self.lanes(b, x_low).pow(x_low, y_low);
                let high = self.lanes(b, x_high).pow(x_high, y_high);
                let (low, high) = (b.ins().fvdemote(low), b.ins().fvdemote(high));
                shuffle_f32x4(b, low, high, [0, 1, 4, 5])
            }
            _ => self.lanes(b, x).pow(x, y),
        }
    }

    /// `√x` (IEEE, correctly rounded; `sqrt(-0) = -0`).
    pub fn sqrt(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        b.ins().sqrt(x)
    }

    /// `1 / x` (IEEE division, correctly rounded).
    pub fn recip(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        let mut lanes = self.lanes(b, x);
        let one = lanes.f(1.0);
        lanes.b.ins().fdiv(one, x)
    }

    /// `|x|` (clears the sign bit: `abs(-0) = +0`).
    pub fn abs(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        b.ins().fabs(x)
    }

    /// `-x` (flips the sign bit).
    pub fn neg(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        b.ins().fneg(x)
    }

    /// Kiln's `max`: NaN if either operand is NaN, `max(-0, +0) = +0`.
    pub fn max(&self, b: &mut FunctionBuilder<'_>, x: Value, y: Value) -> Value {
        b.ins().fmax(x, y)
    }

    /// Kiln's `min`: NaN if either operand is NaN, `min(-0, +0) = -0`.
    pub fn min(&self, b: &mut FunctionBuilder<'_>, x: Value, y: Value) -> Value {
        b.ins().fmin(x, y)
    }

    /// `max(x, +0)` with Kiln's semantics (NaN stays NaN, `-0 → +0`), cheaper than [`max`](Self::max).
    pub fn relu(&self, b: &mut FunctionBuilder<'_>, x: Value) -> Value {
        let mut lanes = self.lanes(b, x);
        let zero = lanes.f(0.0);
        // `x < 0 ? 0 : x` is x86's `maxps(0, x)`, which keeps a NaN `x` and also `-0`; adding +0 turns `-0` into
        // `+0` and leaves every other value as it is.
        let negative = lanes.b.ins().fcmp(FloatCC::LessThan, x, zero);
        let clamped = lanes.select(negative, zero, x);
        lanes.b.ins().fadd(clamped, zero)
    }
}

/// A binary floating-point format and the constants of each algorithm in it.
struct Format {
    /// Explicit mantissa bits (23, 52).
    mantissa_bits: i64,
    /// Exponent bias (127, 1023).
    bias: i64,
    /// `1.5·2^mantissa_bits`: adding it rounds to an integer, which then sits in the low mantissa bits.
    round_shifter: f64,
    /// The smallest positive normal number.
    min_normal: f64,
    /// `exp` clamps its argument to `[lo, hi]`: wide enough that `exp(lo)` rounds to 0 and `exp(hi)` to +inf,
    /// narrow enough that both halves of `n` scale by normal powers of two.
    exp_lo: f64,
    exp_hi: f64,
    /// Below it `e^x` rounds to +0 (under half the smallest subnormal: e^-104 < 2^-150, e^-746 < 2^-1075).
    exp_zero_below: f64,
    /// Where `|x| ≤ exp_fast_bound`, `n = round(x·log2 e)` has `|n| ≤ 2^(exponent bits - 1) - 4` (124, 1020), so
    /// `e^x` is `(1 + em1)·2^n` scaled once, with a normal result (see `Lanes::exp_scaled`).
    exp_fast_bound: f64,
    /// ln 2 = `ln2_hi + ln2_lo`, `ln2_hi` with few enough bits that `n·ln2_hi` is exact.
    ln2_hi: f64,
    ln2_lo: f64,
    /// `e^r = 1 + r + r²·P(r)` on `|r| ≤ ln2/2`.
    exp_poly: &'static [f64],
    log_poly: LogPoly,
    /// `tanh a = a + a³·P(a²)` on `a < TANH_POLY_BOUND`.
    tanh_poly: &'static [f64],
    /// `erf a = a + a·Q(a²)` on `a < erf_split`...
    erf_split: f64,
    erf_small: &'static [f64],
    /// ...and `1 - e^(-a²)·R(a - erf_mid)` below `erf_one`, the first float whose erf rounds to 1 (R is fitted for
    /// the absolute error of `e^(-a²)·R`, which is what the result sees, up to 4 for f32, 6 for f64).
    erf_mid: f64,
    erf_one: f64,
    erf_large: &'static [f64],
}

enum LogPoly {
    /// `log(1+f) = f - f²/2 + f³·P(f)` on `f ∈ [√½-1, √2-1]`.
    InF(&'static [f64]),
    /// `log(1+f) = 2s + s·z·P(z)` with `s = f/(2+f)`, `z = s²` (fdlibm's `Lg1..Lg7`).
    InS(&'static [f64]),
}

const TANH_POLY_BOUND: f64 = 0.625;

static F32: Format = Format {
    mantissa_bits: 23,
    bias: 127,
    round_shifter: 12582912.0,
    min_normal: f32::MIN_POSITIVE as f64,
    exp_lo: -110.0,
    exp_hi: 100.0,
    exp_zero_below: -104.0,
    // 86·log2 e = 124.07
    exp_fast_bound: 86.0,
    ln2_hi: 0.693359375,
    ln2_lo: -2.12194440e-4,
    exp_poly: &[
        5.00000e-01,
        1.6666576e-01,
        4.1666556e-02,
        8.363179e-03,
        1.3926184e-03,
    ],
    log_poly: LogPoly::InF(&[
        3.333333e-01,
        -2.4999997e-01,
        2.0000716e-01,
        -1.6667803e-01,
        1.4249058e-01,
        -1.2425687e-01,
        1.168542e-01,
        -1.1479734e-01,
        6.971612e-02,
    ]),
    tanh_poly: &[
        -3.3333334e-01,
        1.3333304e-01,
        -5.3959258e-02,
        2.1768918e-02,
        -8.343945e-03,
        2.2927448e-03,
    ],
    erf_split: 1.0,
    erf_small: &[
        1.2837917e-01,
        -3.7612626e-01,
        1.1283594e-01,
        -2.6854211e-02,
        5.1890872e-03,
        -8.0168643e-04,
        7.875875e-05,
    ],
    erf_mid: 2.5,
    // erfc(3.9192058) > 2^-25 ≥ erfc(3.919206): the f32s on either side.
    erf_one: 3.919206,
    erf_large: &[
        2.108076e-01,
        -7.4342184e-02,
        2.4914645e-02,
        -8.132207e-03,
        2.3025442e-03,
        -6.611102e-04,
        5.433151e-04,
        2.2506063e-04,
        1.0684327e-04,
    ],
};

static F64: Format = Format {
    mantissa_bits: 52,
    bias: 1023,
    round_shifter: 6755399441055744.0,
    min_normal: f64::MIN_POSITIVE,
    exp_lo: -760.0,
    exp_hi: 720.0,
    exp_zero_below: -746.0,
    // 707·log2 e = 1019.99
    exp_fast_bound: 707.0,
    ln2_hi: 0.6931471803691238,
    ln2_lo: 1.9082149292705877e-10,
    exp_poly: &[
        0.5,
        0.1666666666666667,
        0.04166666666666667,
        0.008333333333326136,
        0.0013888888888883748,
        0.00019841269874820627,
        2.4801587325547743e-05,
        2.7557255400206422e-06,
        2.75572736431103e-07,
        2.5105217004720745e-08,
        2.0914686968086876e-09,
    ],
    log_poly: LogPoly::InS(&[
        0.666666666666667,
        0.39999999999899505,
        0.28571428625975487,
        0.2222221113479508,
        0.18182889125261723,
        0.15331721600556042,
        0.14616449685043406,
    ]),
    tanh_poly: &[
        -0.3333333333333333,
        0.13333333333333042,
        -0.05396825396789699,
        0.021869488519008305,
        -0.008863235103240878,
        0.0035921217511549622,
        -0.0014557754120478055,
        0.0005896606577757043,
        -0.0002375906496055562,
        9.257116129556769e-05,
        -3.12011014257974e-05,
        6.485163482793113e-06,
    ],
    erf_split: 1.0,
    erf_small: &[
        0.1283791670955126,
        -0.3761263890318375,
        0.11283791670954879,
        -0.026866170645076792,
        0.0052239776248180145,
        -0.000854832698083379,
        0.0001205533111164271,
        -1.4925595266831182e-05,
        1.6461000484121368e-06,
        -1.6350312701054695e-07,
        1.4659775274047436e-08,
        -1.1372848856791674e-09,
        5.957176147748911e-11,
    ],
    erf_mid: 3.5,
    // erfc(5.9215871957945065) > 2^-54 ≥ erfc(5.921587195794507).
    erf_one: 5.921587195794507,
    erf_large: &[
        0.15529365560896455,
        -0.04132357783347523,
        0.010661133184584566,
        -0.00267307446891311,
        0.0006526863404204518,
        -0.00015546864728841465,
        3.618221626529378e-05,
        -8.238005174669908e-06,
        1.8358912191668016e-06,
        -4.03459854788337e-07,
        8.594334980482479e-08,
        -1.6665030412996662e-08,
        5.433548268776721e-09,
        -2.95869821621534e-10,
        -3.1183322607111865e-10,
        -5.484797692746897e-10,
        -1.8677020513997137e-10,
        9.249661978891463e-12,
        4.188750723734295e-11,
        1.950534551991937e-11,
        4.775212961909457e-12,
        6.370714248201961e-13,
        3.829767474929736e-14,
    ],
};

/// The emitter for one value type: constants are splatted to it, masks and selects follow its lane count.
struct Lanes<'a, 'f> {
    b: &'a mut FunctionBuilder<'f>,
    ty: Type,
    format: &'static Format,
    fma: bool,
}

impl Lanes<'_, '_> {
    fn exp(&mut self, x: Value) -> Value {
        // Lanes whose result rounds to +0 (-inf included) are set to 0 here and their argument to 0 before the range
        // check: a causal mask's -inf scores (half a row) would otherwise send nearly every vector of a softmax down
        // the full path (15× slower, measured on masked attention). The full path gives the same +0.
        let zero_below = self.f(self.format.exp_zero_below);
        let underflows = self.b.ins().fcmp(FloatCC::LessThan, x, zero_below);
        let zero = self.f(0.0);
        let x = self.select(underflows, zero, x);
        // Out of the short path's range: |x| > bound (a NaN is in range, see `exp_scaled`).
        let a = self.b.ins().fabs(x);
        let bound = self.f(self.format.exp_fast_bound);
        let outside = self.b.ins().fcmp(FloatCC::GreaterThan, a, bound);
        let e = self.exp_scaled(x, outside, x);
        self.select(underflows, zero, e)
    }

    /// `e^x`, by one scaling by 2^n unless a lane of `outside` (`|x| > exp_fast_bound`) is set, otherwise by
    /// [`Self::exp_full`] for every lane (one branch per vector). Both give the same bits where the short path runs:
    /// - the clamp leaves such an x as it is (exp_lo < -bound, bound < exp_hi), so n, r and `em1 = e^r - 1` are the
    ///   same values either way (t too, but for the bias below), and the bound keeps |n| ≤ 124 (1020 for f64), so
    ///   `2^n` is normal, with the bits `(n + bias)·2^p`;
    /// - the full path rounds `p = 1 + em1` ∈ [0.7, 1.42], then computes round(round(p·2^n1)·2^n2) with
    ///   n1 = ⌊n/2⌋: p·2^n1 is normal, so exact, and so is p·2^n (normal and finite for |n| ≤ 124): the result is
    ///   2^n·round(1 + em1);
    /// - the short path computes `fma(em1, 2^n, 2^n)` = round(2^n·(1 + em1)), which is 2^n·round(1 + em1) because
    ///   scaling by a power of two commutes with rounding while the result stays normal (without FMA: `(1 + em1)·2^n`,
    ///   the same rounding, then an exact product);
    /// - a NaN x makes em1 NaN, and the result NaN, on both paths.
    ///
    /// With FMA the short path rounds with the shifter `1.5·2^p + bias` instead of `1.5·2^p`, so that t's low bits
    /// hold `n + bias` (one integer addition less): `t = round(x·log2e + shifter)` is the same integer plus bias
    /// unless `x·log2e` (exact in the fma) is a tie `k + ½`, where ties to even could round the two differently;
    /// `log2e` is an odd multiple of 2^-23 (2^-51 for f64), so `x·log2e` is a tie only for `|x| ≥ 2^22` (2^50), far
    /// outside the bound. Without FMA, `x·log2e` is rounded first and can be a tie, so the bias is added to the bits.
    ///
    /// `x_full` is `x` for the full path: the same value, perhaps computed by other instructions.
    fn exp_scaled(&mut self, x: Value, outside: Value, x_full: Value) -> Value {
        let short = self.exp_short(x);
        let any_outside = if self.ty.is_vector() {
            self.b.ins().vany_true(outside)
        } else {
            outside
        };
        let (full_block, join) = (self.b.create_block(), self.b.create_block());
        let result = self.b.append_block_param(join, self.ty);
        self.b
            .ins()
            .brif(any_outside, full_block, &[], join, &[short.into()]);
        self.b.switch_to_block(full_block);
        let full = self.exp_full(x_full);
        self.b.ins().jump(join, &[full.into()]);
        self.b.switch_to_block(join);
        result
    }

    /// `e^x` by the short path of [`Self::exp_scaled`], without the branch: only for `|x| ≤ exp_fast_bound` or NaN.
    fn exp_short(&mut self, x: Value) -> Value {
        let fmt = self.format;
        let shifter = if self.fma {
            fmt.round_shifter + fmt.bias as f64
        } else {
            fmt.round_shifter
        };
        let (t, em1) = self.exp_reduced(x, shifter);
        let t_bits = self.bits(t);
        let u = self.b.ins().ishl_imm_u(t_bits, fmt.mantissa_bits);
        if self.fma {
            let two_n = self.float_from_bits(u);
            self.b.ins().fma(em1, two_n, two_n)
        } else {
            let bias = self.int(fmt.bias << fmt.mantissa_bits);
            let two_n = self.b.ins().iadd(u, bias);
            let two_n = self.float_from_bits(two_n);
            let one = self.f(1.0);
            let p = self.b.ins().fadd(em1, one);
            self.b.ins().fmul(p, two_n)
        }
    }

    /// `(t, em1)` of `e^x = (1 + em1)·2^n`: `t = shifter + n` with `n = round(x·log2 e)` (so `n` is also in t's low
    /// mantissa bits, plus what `shifter` has there) and `em1 = e^r - 1`, `r = x - n·ln2`, for `x` in the clamp's
    /// range.
    fn exp_reduced(&mut self, x: Value, shifter: f64) -> (Value, Value) {
        let fmt = self.format;
        // t = shifter + round(x·log2 e); n = round(x·log2 e) as a float and, in t's bits, as an integer.
        let (log2e, shifter) = (self.f(std::f64::consts::LOG2_E), self.f(shifter));
        let t = self.mul_add(x, log2e, shifter);
        let n = self.b.ins().fsub(t, shifter);
        // r = x - n·ln2, exact in the first step (n·ln2_hi has few bits).
        let (minus_ln2_hi, minus_ln2_lo) = (self.f(-fmt.ln2_hi), self.f(-fmt.ln2_lo));
        let r = self.mul_add(n, minus_ln2_hi, x);
        let r = self.mul_add(n, minus_ln2_lo, r);
        // e^r - 1 = r + r²·P(r)
        let poly = self.poly(r, fmt.exp_poly);
        let r2 = self.b.ins().fmul(r, r);
        let em1 = self.mul_add(r2, poly, r);
        (t, em1)
    }

    /// `e^x` for every `x`: clamped, then scaled by 2^n in two factors, so that overflow gives +inf and the underflow
    /// range rounds once, to a correct subnormal or 0.
    fn exp_full(&mut self, x: Value) -> Value {
        let fmt = self.format;
        let x = self.clamp(x, fmt.exp_lo, fmt.exp_hi);
        let (t, em1) = self.exp_reduced(x, fmt.round_shifter);
        let one = self.f(1.0);
        let p = self.b.ins().fadd(em1, one);
        // 2^n = 2^n1 · 2^n2 with n1 = ⌊n/2⌋, n2 = n - n1, in the exponent bits. t's low mantissa bits hold
        // 2^(p-1) + n, so u = bits(t) << p is n·2^p (wrapping: |n| < 2^(w-1-p) for lane width w, as the clamp makes it); clearing u's low p+1 bits and
        // shifting right arithmetically by 1 gives v = n1·2^p; then bits(2^n1) = v + bias·2^p and
        // bits(2^n2) = (u + bias·2^p) - v.
        let t_bits = self.bits(t);
        let u = self.b.ins().ishl_imm_u(t_bits, fmt.mantissa_bits);
        let high = self.int(-1i64 << (fmt.mantissa_bits + 1));
        let u_even = self.b.ins().band(u, high);
        let v = self.b.ins().sshr_imm_u(u_even, 1);
        let bias = self.int(fmt.bias << fmt.mantissa_bits);
        let s1 = self.b.ins().iadd(v, bias);
        let u_biased = self.b.ins().iadd(u, bias);
        let s2 = self.b.ins().isub(u_biased, v);
        let (s1, s2) = (self.float_from_bits(s1), self.float_from_bits(s2));
        let scaled = self.b.ins().fmul(p, s1);
        self.b.ins().fmul(scaled, s2)
    }

    fn log(&mut self, x: Value) -> Value {
        let fmt = self.format;
        let p = fmt.mantissa_bits;
        // Subnormals (and zeros, negatives: fixed below) are scaled into the normal range first.
        let min_normal = self.f(fmt.min_normal);
        let tiny = self.b.ins().fcmp(FloatCC::LessThan, x, min_normal);
        let scale = self.f((2.0f64).powi(p as i32));
        let x_scaled = self.b.ins().fmul(x, scale);
        let xs = self.select(tiny, x_scaled, x);
        let (minus_p, zero) = (self.f(-p as f64), self.f(0.0));
        let e_adjust = self.select(tiny, minus_p, zero);
        // x = 2^e · m, m ∈ [√½, √2): bits(x) + (bits(1) - bits(√½)) carries into the exponent exactly when m ≥ √2.
        let sqrt_half_bits = bits_of(self.ty, std::f64::consts::FRAC_1_SQRT_2);
        let ix = self.bits(xs);
        let constant = self.int(bits_of(self.ty, 1.0) - sqrt_half_bits);
        let ix = self.b.ins().iadd(ix, constant);
        // e = the biased exponent field as a float: or-ed into the mantissa of 2^p, then 2^p + bias subtracted.
        let biased = self.b.ins().ushr_imm_u(ix, p);
        let two_p_bits = self.int(bits_of(self.ty, (2.0f64).powi(p as i32)));
        let e_magic = self.b.ins().bor(biased, two_p_bits);
        let e_magic = self.float_from_bits(e_magic);
        let e_offset = self.f((2.0f64).powi(p as i32) + fmt.bias as f64);
        let e = self.b.ins().fsub(e_magic, e_offset);
        let e = self.b.ins().fadd(e, e_adjust);
        let constant = self.int((1 << p) - 1);
        let mantissa = self.b.ins().band(ix, constant);
        let constant = self.int(sqrt_half_bits);
        let m = self.b.ins().iadd(mantissa, constant);
        let m = self.float_from_bits(m);
        let one = self.f(1.0);
        let f = self.b.ins().fsub(m, one);
        let (ln2_hi, ln2_lo) = (self.f(fmt.ln2_hi), self.f(fmt.ln2_lo));
        let log = match fmt.log_poly {
            LogPoly::InF(poly) => {
                // f - f²/2 + f³·P(f) + e·ln2, small terms first.
                let z = self.b.ins().fmul(f, f);
                let fz = self.b.ins().fmul(f, z);
                let poly = self.poly(f, poly);
                let y = self.b.ins().fmul(fz, poly);
                let y = self.mul_add(e, ln2_lo, y);
                let minus_half = self.f(-0.5);
                let y = self.mul_add(z, minus_half, y);
                let y = self.b.ins().fadd(f, y);
                self.mul_add(e, ln2_hi, y)
            }
            LogPoly::InS(poly) => {
                // fdlibm: e·ln2_hi - ((hfsq - (s·(hfsq + R) + e·ln2_lo)) - f), R = z·P(z), hfsq = f²/2.
                let two = self.f(2.0);
                let denominator = self.b.ins().fadd(two, f);
                let s = self.b.ins().fdiv(f, denominator);
                let z = self.b.ins().fmul(s, s);
                let poly = self.poly(z, poly);
                let r = self.b.ins().fmul(z, poly);
                let half = self.f(0.5);
                let half_f = self.b.ins().fmul(half, f);
                let hfsq = self.b.ins().fmul(half_f, f);
                let hfsq_r = self.b.ins().fadd(hfsq, r);
                let e_lo = self.b.ins().fmul(e, ln2_lo);
                let t = self.mul_add(s, hfsq_r, e_lo);
                let t = self.b.ins().fsub(hfsq, t);
                let t = self.b.ins().fsub(t, f);
                let e_hi = self.b.ins().fmul(e, ln2_hi);
                self.b.ins().fsub(e_hi, t)
            }
        };
        // log(+inf) = +inf; log(±0) = -inf; log(x < 0) = log(NaN) = NaN.
        let (inf, neg_inf, nan) = (
            self.f(f64::INFINITY),
            self.f(f64::NEG_INFINITY),
            self.f(f64::NAN),
        );
        let is_inf = self.b.ins().fcmp(FloatCC::Equal, x, inf);
        let log = self.select(is_inf, inf, log);
        let is_zero = self.b.ins().fcmp(FloatCC::Equal, x, zero);
        let log = self.select(is_zero, neg_inf, log);
        let negative_or_nan = self.b.ins().fcmp(FloatCC::UnorderedOrLessThan, x, zero);
        self.select(negative_or_nan, nan, log)
    }

    fn tanh(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        // Small: a + a³·P(a²).
        let z = self.b.ins().fmul(a, a);
        let az = self.b.ins().fmul(a, z);
        let poly = self.poly(z, self.format.tanh_poly);
        let small_value = self.mul_add(az, poly, a);
        // Large: (1 - z²)/(1 + z²) with z = e^-a, computed exactly as `logistic` computes it, so that Cranelift
        // shares one exp between tanh(x) and logistic(x) of the same x (W1); z² ≤ e^-1.25 keeps 1 - z² free of
        // cancellation, and z² = 0 (a > 52) gives exactly 1.
        let z = self.exp_minus_abs(x);
        let q = self.b.ins().fmul(z, z);
        let one = self.f(1.0);
        let numerator = self.b.ins().fsub(one, q);
        let denominator = self.b.ins().fadd(one, q);
        let large_value = self.b.ins().fdiv(numerator, denominator);
        let bound = self.f(TANH_POLY_BOUND);
        let small = self.b.ins().fcmp(FloatCC::LessThan, a, bound);
        let magnitude = self.select(small, small_value, large_value);
        self.copy_sign_bit(magnitude, x)
    }

    fn logistic(&mut self, x: Value) -> Value {
        // z = e^-|x| ∈ [0, 1]; x ≥ 0: 1/(1+z); x < 0: e^x/(1+e^x) = z/(1+z).
        let z = self.exp_minus_abs(x);
        let one = self.f(1.0);
        let denominator = self.b.ins().fadd(one, z);
        let zero = self.f(0.0);
        let negative = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
        let numerator = self.select(negative, z, one);
        self.b.ins().fdiv(numerator, denominator)
    }

    fn erf(&mut self, x: Value) -> Value {
        let fmt = self.format;
        let a = self.b.ins().fabs(x);
        // Small: a + a·Q(a²) (Q(0) = 2/√π - 1, so the leading term a is exact and subnormals keep their precision).
        let z = self.b.ins().fmul(a, a);
        let q = self.poly(z, fmt.erf_small);
        let small_value = self.mul_add(a, q, a);
        // Large: 1 - e^(-a²)·R(a - mid). From the first `a` whose erf rounds to 1 (erfc a ≤ half an ulp below 1) the
        // result is set to exactly 1, as the approximation alone may round to the float below there; `a` is clamped
        // to that point too, which keeps -a² in the range of exp's short path (a NaN passes both).
        let saturation = self.f(fmt.erf_one);
        let saturated = self.b.ins().fcmp(FloatCC::LessThanOrEqual, saturation, a);
        let a_clamped = self.select(saturated, saturation, a);
        // a² is rounded, but its error reaches the result scaled by erfc a ≤ 0.16: at most 0.16 ulp, so no
        // exact-square split is needed.
        let a2 = self.b.ins().fmul(a_clamped, a_clamped);
        let minus_a2 = self.b.ins().fneg(a2);
        let gauss = self.exp_short(minus_a2);
        let mid = self.f(fmt.erf_mid);
        let v = self.b.ins().fsub(a_clamped, mid);
        let r = self.poly(v, fmt.erf_large);
        let minus_gauss = self.b.ins().fneg(gauss);
        let one = self.f(1.0);
        let large_value = self.mul_add(minus_gauss, r, one);
        let large_value = self.select(saturated, one, large_value);
        let split = self.f(fmt.erf_split);
        let small = self.b.ins().fcmp(FloatCC::LessThan, a, split);
        let magnitude = self.select(small, small_value, large_value);
        self.copy_sign_bit(magnitude, x)
    }

    /// `e^-|x|`, the same instructions for `tanh` and `logistic` (so one is enough for both).
    fn exp_minus_abs(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let minus_a = self.b.ins().fneg(a);
        let bound = self.f(self.format.exp_fast_bound);
        let outside = self.b.ins().fcmp(FloatCC::GreaterThan, a, bound);
        // The short path uses -|x| only in products and sums, where x86 folds the negation into the fma; the full
        // path's clamp needs it in a register, so it computes it as -1·|x| (the same value; a NaN stays NaN), which
        // Cranelift doesn't merge with the short path's `fneg` into one instruction on the hot path.
        let minus_one = self.f(-1.0);
        let minus_a_full = self.b.ins().fmul(a, minus_one);
        self.exp_scaled(minus_a, outside, minus_a_full)
    }

    fn pow(&mut self, x: Value, y: Value) -> Value {
        // |x|^y = e^{y·ln|x|}; ln 1 = 0 would give 0·inf = NaN for y = ±inf, so |x| = 1 is set to 1.
        let a = self.b.ins().fabs(x);
        let log_a = self.log(a);
        let t = self.b.ins().fmul(y, log_a);
        let magnitude = self.exp(t);
        let one = self.f(1.0);
        let a_is_one = self.b.ins().fcmp(FloatCC::Equal, a, one);
        let magnitude = self.select(a_is_one, one, magnitude);
        // y is an integer if trunc(y) = y (±inf counts as even), odd if, also, y/2 is not an integer.
        let y_trunc = self.b.ins().trunc(y);
        let integral = self.b.ins().fcmp(FloatCC::Equal, y_trunc, y);
        let half = self.f(0.5);
        let y_half = self.b.ins().fmul(y, half);
        let y_half_trunc = self.b.ins().trunc(y_half);
        let half_fractional = self.b.ins().fcmp(FloatCC::NotEqual, y_half_trunc, y_half);
        let odd = self.b.ins().band(integral, half_fractional);
        // A negative x (-0 and -inf too) gives its sign to odd integer powers...
        let negated = self.copy_sign_bit(magnitude, x);
        let result = self.select(odd, negated, magnitude);
        // ...and NaN to non-integer ones, where x is finite.
        let (zero, neg_inf) = (self.f(0.0), self.f(f64::NEG_INFINITY));
        let negative = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
        let finite = self.b.ins().fcmp(FloatCC::NotEqual, x, neg_inf);
        let non_integral = self.b.ins().fcmp(FloatCC::NotEqual, y_trunc, y);
        let no_real_result = self.b.ins().band(negative, finite);
        let no_real_result = self.b.ins().band(no_real_result, non_integral);
        let nan = self.f(f64::NAN);
        let result = self.select(no_real_result, nan, result);
        // pow(x, ±0) = pow(1, y) = 1, NaN or not.
        let y_zero = self.b.ins().fcmp(FloatCC::Equal, y, zero);
        let x_one = self.b.ins().fcmp(FloatCC::Equal, x, one);
        let exactly_one = self.b.ins().bor(y_zero, x_one);
        self.select(exactly_one, one, result)
    }

    // ---- building blocks ----

    /// A float constant of this type (splatted for vectors).
    fn f(&mut self, value: f64) -> Value {
        let scalar = match self.format.mantissa_bits {
            23 => self.b.ins().f32const(value as f32),
            _ => self.b.ins().f64const(value),
        };
        self.splat(scalar)
    }

    /// An integer constant of the lane-width integer type (splatted for vectors); `value` may be sign-extended.
    fn int(&mut self, value: i64) -> Value {
        let int = self.ty.lane_type().as_int();
        let value = if int.bits() < 64 {
            value & ((1 << int.bits()) - 1)
        } else {
            value
        };
        let scalar = self.b.ins().iconst(int, value);
        self.splat(scalar)
    }

    fn splat(&mut self, scalar: Value) -> Value {
        if self.ty.is_vector() {
            let ty = self
                .b
                .func
                .dfg
                .value_type(scalar)
                .by(self.ty.lane_count())
                .expect("lane count of a 128-bit vector");
            self.b.ins().splat(ty, scalar)
        } else {
            scalar
        }
    }

    fn bits(&mut self, x: Value) -> Value {
        let int = self.ty.as_int();
        self.b.ins().bitcast(int, bitcast_flags(self.ty), x)
    }

    fn float_from_bits(&mut self, bits: Value) -> Value {
        self.b.ins().bitcast(self.ty, bitcast_flags(self.ty), bits)
    }

    /// `a·b + c`, fused where the ISA has FMA.
    fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let product = self.b.ins().fmul(a, b);
            self.b.ins().fadd(product, c)
        }
    }

    /// `c[0] + x·(c[1] + x·(..))` by Horner's rule.
    fn poly(&mut self, x: Value, coefficients: &[f64]) -> Value {
        let (&last, rest) = coefficients
            .split_last()
            .expect("a polynomial has coefficients");
        let mut acc = self.f(last);
        for &c in rest.iter().rev() {
            let c = self.f(c);
            acc = self.mul_add(acc, x, c);
        }
        acc
    }

    /// `mask ? if_true : if_false` lane by lane, `mask` the result of an `fcmp` on this type (or a bitwise
    /// combination of such results).
    fn select(&mut self, mask: Value, if_true: Value, if_false: Value) -> Value {
        if self.ty.is_vector() {
            let mask = self.b.ins().bitcast(self.ty, bitcast_flags(self.ty), mask);
            self.b.ins().bitselect(mask, if_true, if_false)
        } else {
            self.b.ins().select(mask, if_true, if_false)
        }
    }

    /// `x` clamped to `[lo, hi]`; a NaN stays NaN. On x86 vectors, each side is one `maxps`/`minps`.
    fn clamp(&mut self, x: Value, lo: f64, hi: f64) -> Value {
        let (lo, hi) = (self.f(lo), self.f(hi));
        let below = self.b.ins().fcmp(FloatCC::LessThan, x, lo);
        let x = self.select(below, lo, x);
        let above = self.b.ins().fcmp(FloatCC::LessThan, hi, x);
        self.select(above, hi, x)
    }

    /// `magnitude` (sign bit clear) with the sign bit of `sign`.
    fn copy_sign_bit(&mut self, magnitude: Value, sign: Value) -> Value {
        let sign_bits = self.bits(sign);
        let sign_mask = self.int(bits_of(self.ty, -0.0));
        let sign_bit = self.b.ins().band(sign_bits, sign_mask);
        let magnitude_bits = self.bits(magnitude);
        let with_sign = self.b.ins().bor(magnitude_bits, sign_bit);
        self.float_from_bits(with_sign)
    }
}

/// The bit pattern of `value` in the lane type of `ty`, as a sign-extended immediate.
fn bits_of(ty: Type, value: f64) -> i64 {
    match ty.lane_type() {
        types::F32 => i64::from((value as f32).to_bits() as i32),
        _ => value.to_bits() as i64,
    }
}

/// Bitcasts between vector types name their lane order; scalars need no flags.
fn bitcast_flags(ty: Type) -> MemFlagsData {
    if ty.is_vector() {
        MemFlagsData::new().with_endianness(Endianness::Little)
    } else {
        MemFlagsData::new()
    }
}

/// `[a, b][lanes[0]], ..` for f32x4 `a`, `b` (lanes 0-3 from `a`, 4-7 from `b`), as an i8x16 byte shuffle.
fn shuffle_f32x4(b: &mut FunctionBuilder<'_>, x: Value, y: Value, lanes: [u8; 4]) -> Value {
    let flags = bitcast_flags(types::F32X4);
    let bytes: Vec<u8> = lanes
        .iter()
        .flat_map(|&lane| (0..4).map(move |k| 4 * lane + k))
        .collect();
    let mask = b.func.dfg.immediates.push(ConstantData::from(bytes));
    let (x, y) = (
        b.ins().bitcast(types::I8X16, flags, x),
        b.ins().bitcast(types::I8X16, flags, y),
    );
    let shuffled = b.ins().shuffle(x, y, mask);
    b.ins().bitcast(types::F32X4, flags, shuffled)
}
