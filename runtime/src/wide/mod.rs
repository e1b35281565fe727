//! Wide math routines: `exp`, `log`, `tanh`, `logistic`, `erf`, `sin` and `cos` over strips of f32, compiled ahead
//! of time for AVX2 + FMA (x86-64-v3, 8 lanes) and AVX-512 (x86-64-v4, 16 lanes) and chosen once per process from the
//! host's features.
//!
//! Why: Cranelift's x86-64 backend emits nothing wider than 128 bits, so the JIT's inline CLIF math library
//! (`kiln::backend::cpu::math`) runs 4 lanes at a time, a quarter of an AVX-512 core's width. Kernels whose cost is
//! transcendentals can instead call these routines on a strip of arguments, as they call the GEMM crate for
//! matrix products: Cranelift stays the code generator of every kernel, and these are its math library.
//!
//! Bit-identity: each routine is the CLIF library's f32 algorithm with FMA, transcribed operation for operation
//! ([`lanes`]), so every lane gets the same bits as the CLIF `f32x4` code on a host with FMA, whatever the level,
//! the vector width and the thread count (NaN payloads aside: any NaN may come out where CLIF gives a NaN). Checked
//! by `compiler/tests/cpu/cpu_wide.rs` (a sampled sweep, every level the host has) and by
//! `cargo run --release --example math_sweep -- --wide` (all 2^32 inputs; on the AVX-512 VM of `benches/README.md`,
//! 2026-12-03: no input differs, for any of the seven functions, at `scalar`, `avx2` or `avx512`). A host
//! without FMA runs CLIF's fmul + fadd variant, whose bits these routines do not reproduce: the JIT uses them only
//! where its own math emitter has FMA.
//!
//! Dispatch: [`routines`] picks the widest level the host has (AVX-512 needs `avx512f`, `avx512bw`, `avx512dq`,
//! `avx512vl` and `fma`; AVX2 needs `avx2` and `fma`), or the level named by the environment variable
//! `KILN_WIDE_ISA` (`scalar`, `avx2`, `avx512`; for tests and benchmarks), once per process. A level the host lacks
//! is an [`IsaError`], never a call into code the CPU cannot run: a [`Routines`] table exists only for levels
//! [`Routines::for_isa`] has checked. The `scalar` level is the same code without target features (SSE2 on x86-64,
//! NEON on AArch64, where the JIT has FMA too).
//!
//! The hot loops are vector code of the level's width (`objdump -d` of the release build of `strips.rs`): AVX-512's
//! `exp` loop was 27 instructions per 16 floats on the short path, all on `zmm` (a load, `vcmpnltps` + `vandps` +
//! `vcmpgtps` + `ktestw` for the branch, 15 for the reduction and polynomial, a masked move for the underflow, the
//! store, the loop; counted before the `shift` argument, whose subtraction is one more per vector), and every routine at that level is `zmm` code with no calls but the tail's `memcpy`; at AVX2,
//! the same on two `ymm` per chunk. Speed against the CLIF f32x4 kernels: `benches/README.md` (`--bench wide`).

mod lanes;
mod strips;

use std::sync::OnceLock;

/// A wide routine: `dst[i] = f(src[i] - shift)` for `i < n` (the subtraction in f32, as `fsub`; a `shift` of 0
/// gives `f(src[i])` for every input). `src` and `dst` are the same pointer (in place) or don't overlap; no
/// alignment is needed. The shift lets a kernel pass a row softmax's `exp(x - m)` its input row as it is, with no
/// pass that writes the differences first.
pub type StripFn = unsafe extern "C" fn(src: *const f32, dst: *mut f32, n: usize, shift: f32);

/// The functions with a wide routine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    Exp,
    Log,
    Tanh,
    Logistic,
    Erf,
    Sin,
    Cos,
}

impl Func {
    pub const ALL: [Func; 7] = [
        Func::Exp,
        Func::Log,
        Func::Tanh,
        Func::Logistic,
        Func::Erf,
        Func::Sin,
        Func::Cos,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Tanh => "tanh",
            Func::Logistic => "logistic",
            Func::Erf => "erf",
            Func::Sin => "sin",
            Func::Cos => "cos",
        }
    }
}

/// An instruction-set level the routines are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// No target features: the baseline target's own vectors, if LLVM uses them.
    Scalar,
    /// x86-64 AVX2 + FMA, 8 lanes.
    Avx2,
    /// x86-64 AVX-512 (F, BW, DQ, VL) + FMA, 16 lanes.
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// The name `KILN_WIDE_ISA` takes and `kiln bench` prints.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The level named `name` (as [`Isa::name`] spells it).
    pub fn from_name(name: &str) -> Result<Isa, IsaError> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == name)
            .ok_or_else(|| IsaError::Unknown(name.to_owned()))
    }

    /// The host CPU features this level needs that the host lacks (empty: the host can run it).
    pub fn missing_features(self) -> Vec<&'static str> {
        match self {
            Isa::Scalar => Vec::new(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                let features = [
                    ("avx2", std::arch::is_x86_feature_detected!("avx2")),
                    ("fma", std::arch::is_x86_feature_detected!("fma")),
                ];
                missing(&features)
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                let features = [
                    ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
                    ("avx512bw", std::arch::is_x86_feature_detected!("avx512bw")),
                    ("avx512dq", std::arch::is_x86_feature_detected!("avx512dq")),
                    ("avx512vl", std::arch::is_x86_feature_detected!("avx512vl")),
                    ("avx2", std::arch::is_x86_feature_detected!("avx2")),
                    ("fma", std::arch::is_x86_feature_detected!("fma")),
                ];
                missing(&features)
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => vec!["x86_64"],
        }
    }

    /// The widest level the host runs.
    pub fn detect() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|isa| isa.missing_features().is_empty())
            .unwrap_or(Isa::Scalar)
    }
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn missing(features: &[(&'static str, bool)]) -> Vec<&'static str> {
    features
        .iter()
        .filter(|(_, present)| !present)
        .map(|(name, _)| *name)
        .collect()
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a level of the wide routines can't be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IsaError {
    #[error("unknown wide-routine ISA `{0}` (KILN_WIDE_ISA takes scalar, avx2 or avx512)")]
    Unknown(String),
    #[error("this host can't run the {isa} wide routines: it lacks {}", missing.join(", "))]
    Unsupported {
        isa: Isa,
        missing: Vec<&'static str>,
    },
}

/// The routines of one level, which the host can run.
#[derive(Debug)]
pub struct Routines {
    isa: Isa,
    table: [StripFn; 7],
}

static SCALAR: Routines = Routines::table(Isa::Scalar);
#[cfg(target_arch = "x86_64")]
static AVX2: Routines = Routines::table(Isa::Avx2);
#[cfg(target_arch = "x86_64")]
static AVX512: Routines = Routines::table(Isa::Avx512);

impl Routines {
    /// The routines of `isa`, if the host runs it.
    pub fn for_isa(isa: Isa) -> Result<&'static Routines, IsaError> {
        let missing = isa.missing_features();
        if !missing.is_empty() {
            return Err(IsaError::Unsupported { isa, missing });
        }
        Ok(match isa {
            Isa::Scalar => &SCALAR,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => &AVX2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => &AVX512,
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => unreachable!("x86 levels are missing `x86_64` elsewhere"),
        })
    }

    /// The level these routines are compiled for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The `extern "C"` routine for `func`, for generated code to call (the host runs it: see [`Routines::for_isa`]).
    pub fn strip_fn(&self, func: Func) -> StripFn {
        self.table[func as usize]
    }

    /// `dst[i] = func(src[i])`.
    ///
    /// # Panics
    /// If `src` and `dst` differ in length.
    pub fn apply(&self, func: Func, src: &[f32], dst: &mut [f32]) {
        self.apply_shifted(func, src, 0.0, dst);
    }

    /// `dst[i] = func(src[i] - shift)`.
    ///
    /// # Panics
    /// If `src` and `dst` differ in length.
    pub fn apply_shifted(&self, func: Func, src: &[f32], shift: f32, dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len(), "wide {}: lengths differ", func.name());
        // SAFETY: both slices have `n` elements and, one shared and one exclusive borrow, don't overlap; the host
        // runs this level (a `Routines` exists only for such levels).
        unsafe { self.strip_fn(func)(src.as_ptr(), dst.as_mut_ptr(), dst.len(), shift) }
    }

    /// `x[i] = func(x[i])`.
    pub fn apply_in_place(&self, func: Func, x: &mut [f32]) {
        let p = x.as_mut_ptr();
        // SAFETY: `src == dst`, which the routines allow, valid for `x.len()` elements; the host runs this level.
        unsafe { self.strip_fn(func)(p, p, x.len(), 0.0) }
    }

    const fn table(isa: Isa) -> Routines {
        macro_rules! table {
            ($module:ident) => {
                [
                    strips::$module::exp,
                    strips::$module::log,
                    strips::$module::tanh,
                    strips::$module::logistic,
                    strips::$module::erf,
                    strips::$module::sin,
                    strips::$module::cos,
                ]
            };
        }
        let table: [StripFn; 7] = match isa {
            Isa::Scalar => table!(portable),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => table!(avx2),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => table!(avx512),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => table!(portable),
        };
        Routines { isa, table }
    }
}

/// The routines this process uses: `KILN_WIDE_ISA`'s level if set (an error if the host lacks it or the name is
/// unknown), else the widest the host has. Decided on the first call.
pub fn routines() -> Result<&'static Routines, IsaError> {
    static CHOSEN: OnceLock<Result<&'static Routines, IsaError>> = OnceLock::new();
    CHOSEN
        .get_or_init(|| {
            let isa = match std::env::var("KILN_WIDE_ISA") {
                Ok(name) if !name.is_empty() => Isa::from_name(&name)?,
                _ => Isa::detect(),
            };
            Routines::for_isa(isa)
        })
        .clone()
}

/// The level this process's routines run on ([`routines`]'s).
pub fn isa() -> Result<Isa, IsaError> {
    routines().map(Routines::isa)
}
