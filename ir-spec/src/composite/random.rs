//! Counter-based random numbers in the graph: Philox4x32-10, uniform floats built on it, and inverted dropout.
//!
//! A counter-based generator is a pure function of (counter, key), so a random tensor is an ordinary expansion into
//! i32 primitives (`mul`, `mul_hi`, `xor`, `add`, `shr`) whose meaning SPEC.md §3.4 fixes to the bit. Every backend
//! therefore produces the same bits, and a training step draws its dropout masks from a seed input instead of a
//! host-side random tensor. The recipes (which word, how it becomes a float) are SPEC.md §4's.
//!
//! Philox4x32-10 is Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), as in Random123's
//! `philox4x32_10`; the tests check the published known-answer vectors.

use crate::builder::{Builder, Value};
use crate::error::IrError;
use crate::op::{BinaryOp, CmpDir};
use crate::types::{DType, TensorType};

type Result<T> = std::result::Result<T, IrError>;

/// Philox's round multipliers and Weyl key increments (Random123's `PHILOX_M4x32_*`, `PHILOX_W32_*`).
const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;
const PHILOX_ROUNDS: usize = 10;

/// Each Philox call gives 4 words, one per element, so the counters number groups of 4 elements. Word 0 of the
/// counter is the group index, an i32 `iota`, which is exact below 2^31: a random tensor has at most 2^33 elements.
const WORDS_PER_COUNTER: usize = 4;
const MAX_RANDOM_ELEMENTS: u64 = (WORDS_PER_COUNTER as u64) << 31;

/// An i32 constant holding the pattern of `bits` (i32 constants are stored as their signed value).
fn pattern(bits: u32) -> f64 {
    bits as i32 as f64
}

fn build(op: &str, message: String) -> IrError {
    IrError::Build {
        op: op.into(),
        message,
    }
}

impl Builder {
    // ---- integer (bitwise) primitives, i32 only (SPEC §3.4) ----

    /// Bitwise `a & b` (broadcasting).
    pub fn bit_and(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::And, a, b)
    }
    /// Bitwise `a | b` (broadcasting).
    pub fn bit_or(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Or, a, b)
    }
    /// Bitwise `a ^ b` (broadcasting).
    pub fn bit_xor(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Xor, a, b)
    }
    /// `a << (b mod 32)` (broadcasting).
    pub fn shl(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Shl, a, b)
    }
    /// `a`'s pattern shifted right by `b mod 32`, zeros shifted in (broadcasting).
    pub fn shr(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::Shr, a, b)
    }
    /// The high 32 bits of the unsigned 64-bit product of the patterns (broadcasting).
    pub fn mul_hi(&mut self, a: Value, b: Value) -> Result<Value> {
        self.binary(BinaryOp::MulHi, a, b)
    }

    // ---- Philox ----

    /// Philox4x32-10 of `counter` under `key`, word by word: every operand an i32 tensor, broadcast together (a
    /// scalar key serves a tensor of counters). Returns the 4 output words, each of the common shape.
    pub fn philox4x32(&mut self, counter: [Value; 4], key: [Value; 2]) -> Result<[Value; 4]> {
        for v in counter.iter().chain(&key) {
            if self.dtype(*v) != DType::I32 {
                return Err(build(
                    "philox4x32",
                    format!("counter and key words must be i32, got {}", self.ty(*v)),
                ));
            }
        }
        let [mut c0, mut c1, mut c2, mut c3] = counter;
        let [mut k0, mut k1] = key;
        let m0 = self.scalar(pattern(PHILOX_M0), DType::I32)?;
        let m1 = self.scalar(pattern(PHILOX_M1), DType::I32)?;
        for round in 0..PHILOX_ROUNDS {
            if round > 0 {
                // The key schedule: a Weyl sequence, bumped before every round but the first.
                k0 = self.add_scalar(k0, pattern(PHILOX_W0))?;
                k1 = self.add_scalar(k1, pattern(PHILOX_W1))?;
            }
            let hi0 = self.mul_hi(m0, c0)?;
            let lo0 = self.mul(m0, c0)?;
            let hi1 = self.mul_hi(m1, c2)?;
            let lo1 = self.mul(m1, c2)?;
            let x1 = self.bit_xor(hi1, c1)?;
            let x3 = self.bit_xor(hi0, c3)?;
            c0 = self.bit_xor(x1, k0)?;
            c1 = lo1;
            c2 = self.bit_xor(x3, k1)?;
            c3 = lo0;
        }
        Ok([c0, c1, c2, c3])
    }

    /// The two 32-bit words of a seed or offset: an i32 scalar `s` is `(s, 0)`, an `i32[2]` is `(v[0], v[1])`.
    fn two_words(&mut self, op: &str, what: &str, v: Value) -> Result<[Value; 2]> {
        let ty = self.ty(v).clone();
        match (ty.dtype, ty.shape.dims()) {
            (DType::I32, []) => Ok([v, self.scalar(0.0, DType::I32)?]),
            (DType::I32, [2]) => {
                let lo = self.slice(v, &[0], &[1])?;
                let hi = self.slice(v, &[1], &[2])?;
                Ok([self.reshape(lo, &[])?, self.reshape(hi, &[])?])
            }
            _ => Err(build(
                op,
                format!("{what} must be i32[] or i32[2], got {ty}"),
            )),
        }
    }

    /// Uniform floats in `[0, 1)` of type `dtype[shape]` (SPEC §4): element `i` (row-major) is word `i mod 4` of
    /// Philox4x32-10 with counter `(i div 4, 0, offset.lo, offset.hi)` and key `(seed.lo, seed.hi)`, converted as
    /// f32: `shr(w, 8) · 2^-24`; f64: `u32(w) · 2^-32`. `seed` and `offset` are i32 scalars (high word 0) or
    /// `i32[2]`s; a training step passes its step count as `offset` so that each step draws fresh numbers.
    pub fn random_uniform(
        &mut self,
        seed: Value,
        offset: Value,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Value> {
        let ty = TensorType::new(dtype, shape.to_vec());
        if !dtype.is_float() {
            return Err(build(
                "random_uniform",
                format!("needs a float dtype, got {dtype}"),
            ));
        }
        let key = self.two_words("random_uniform", "the seed", seed)?;
        let [off_lo, off_hi] = self.two_words("random_uniform", "the offset", offset)?;
        let n = ty.numel();
        if n as u64 > MAX_RANDOM_ELEMENTS {
            return Err(build(
                "random_uniform",
                format!("{ty} has more than 2^33 elements (4 per counter, counters below 2^31)"),
            ));
        }
        if n == 0 {
            return self.full(ty, 0.0);
        }
        let groups = n.div_ceil(WORDS_PER_COUNTER);
        let group = self.iota(TensorType::new(DType::I32, vec![groups]), 0)?;
        let zero = self.scalar(0.0, DType::I32)?;
        let words = self.philox4x32([group, zero, off_lo, off_hi], key)?;
        // Interleave the words, [groups, 4] row-major, so that element i is word i mod 4 of group i div 4.
        let mut columns = Vec::with_capacity(WORDS_PER_COUNTER);
        for w in words {
            let w = self.broadcast(w, &[groups])?;
            columns.push(self.reshape(w, &[groups, 1])?);
        }
        let grid = self.concat(&columns, 1)?;
        let flat = self.reshape(grid, &[groups * WORDS_PER_COUNTER])?;
        let bits = self.slice(flat, &[0], &[n])?;
        let bits = self.reshape(bits, shape)?;
        let unit = self.bits_to_unit(bits, dtype)?;
        Ok(unit)
    }

    /// A uniform float in `[0, 1)` from a 32-bit word, exactly (every step below is exact in the dtype).
    fn bits_to_unit(&mut self, bits: Value, dtype: DType) -> Result<Value> {
        match dtype {
            DType::F32 => {
                // The top 24 bits: as many as an f32 in [0, 1) holds with equal spacing.
                let eight = self.full_like(bits, 8.0)?;
                let top = self.shr(bits, eight)?;
                let f = self.cast(top, DType::F32)?;
                self.mul_scalar(f, 1.0 / (1u64 << 24) as f64)
            }
            _ => {
                // All 32 bits, read unsigned: the i32 value, plus 2^32 where the sign bit is set.
                let f = self.cast(bits, dtype)?;
                let negative = self.compare_scalar(CmpDir::Lt, bits, 0.0)?;
                let wrapped = self.add_scalar(f, (1u64 << 32) as f64)?;
                let unsigned = self.select(negative, wrapped, f)?;
                self.mul_scalar(unsigned, 1.0 / (1u64 << 32) as f64)
            }
        }
    }

    /// Inverted dropout (SPEC §4): in training, each element is kept with probability `1 - p` and scaled by
    /// `1/(1 - p)`, else 0: `select(u ≥ p, x · s, 0)` with `u = random_uniform(seed, offset, shape of x, dtype of
    /// x)` and `s = 1/(1-p)` rounded to the dtype. Identity when `!training` or `p == 0`. The mask depends only on
    /// the seed, the offset and the shape, so the gradient is `g · s` where kept and 0 elsewhere.
    pub fn dropout(
        &mut self,
        x: Value,
        p: f64,
        seed: Value,
        offset: Value,
        training: bool,
    ) -> Result<Value> {
        // `!(0 <= p < 1)` also rejects NaN.
        if !(0.0..1.0).contains(&p) {
            return Err(build(
                "dropout",
                format!("p = {p} is a dropout probability outside [0, 1)"),
            ));
        }
        let ty = self.ty(x).clone();
        if !ty.dtype.is_float() {
            return Err(build("dropout", format!("needs a float operand, got {ty}")));
        }
        if !training || p == 0.0 {
            return Ok(x);
        }
        let u = self.random_uniform(seed, offset, ty.shape.dims(), ty.dtype)?;
        let keep = self.compare_scalar(CmpDir::Ge, u, p)?;
        let scaled = self.mul_scalar(x, 1.0 / (1.0 - p))?;
        let zero = self.zeros_like(x)?;
        self.select(keep, scaled, zero)
    }
}
