//! Host buffers: 64-byte-aligned byte storage for tensors of any dtype, and conversions from and to [`Tensor`].
//!
//! Elements are stored in the host's native layout: f32, f64 and i32 as their native-endian bytes, bool as one byte
//! holding 0 or 1 (Rust's `bool` layout), so a `Vec<bool>` tensor can be handed to a kernel as it is.

use kiln_ir::{DType, Tensor, TensorData, TensorType};

/// Alignment of every host buffer, in bytes: a cache line, enough for any SIMD width.
pub const ALIGNMENT: usize = 64;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; ALIGNMENT]);

/// Zero-initialised, 64-byte-aligned bytes.
#[derive(Clone)]
pub struct HostBuffer {
    lines: Vec<Line>,
    len: usize,
}

impl HostBuffer {
    pub fn zeroed(len: usize) -> HostBuffer {
        HostBuffer {
            lines: vec![Line([0; ALIGNMENT]); len.div_ceil(ALIGNMENT)],
            len,
        }
    }

    /// A copy of the tensor's elements.
    pub fn from_tensor(tensor: &Tensor) -> HostBuffer {
        let mut buffer = HostBuffer::zeroed(tensor.ty().size_bytes());
        buffer.write_tensor(tensor);
        buffer
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte, for handing to a kernel.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.lines.as_mut_ptr().cast()
    }

    /// The bytes.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.lines.iter().flat_map(|l| l.0).take(self.len)
    }

    /// Overwrites the first bytes with `bytes`.
    pub fn write_bytes(&mut self, bytes: impl IntoIterator<Item = u8>) {
        let slots = self.lines.iter_mut().flat_map(|l| l.0.iter_mut());
        for (slot, byte) in slots.zip(bytes).take(self.len) {
            *slot = byte;
        }
    }

    /// Overwrites the contents with the tensor's elements (`tensor` must have this buffer's size).
    pub fn write_tensor(&mut self, tensor: &Tensor) {
        match tensor.data() {
            TensorData::F32(v) => self.write_words(v.iter().map(|x| x.to_ne_bytes())),
            TensorData::F64(v) => self.write_words(v.iter().map(|x| x.to_ne_bytes())),
            TensorData::I32(v) => self.write_words(v.iter().map(|x| x.to_ne_bytes())),
            TensorData::Bool(v) => self.write_bytes(v.iter().map(|&x| u8::from(x))),
        }
    }

    /// Overwrites the first `N`-byte elements with `words` (element by element, without a byte vector between).
    fn write_words<const N: usize>(&mut self, words: impl Iterator<Item = [u8; N]>) {
        let slots = self
            .lines
            .iter_mut()
            .flat_map(|l| l.0.chunks_exact_mut(N))
            .take(self.len / N);
        for (slot, word) in slots.zip(words) {
            slot.copy_from_slice(&word);
        }
    }

    /// The first `count` `N`-byte elements.
    fn words<const N: usize>(&self, count: usize) -> impl Iterator<Item = [u8; N]> + '_ {
        self.lines
            .iter()
            .flat_map(|l| l.0.chunks_exact(N))
            .map(|c| <[u8; N]>::try_from(c).expect("chunks of N bytes"))
            .take(count)
    }

    /// The contents as a tensor of type `ty` (whose size is at most this buffer's).
    pub fn to_tensor(&self, ty: &TensorType) -> Tensor {
        let n = ty.numel();
        let data = match ty.dtype {
            DType::F32 => TensorData::F32(self.words(n).map(f32::from_ne_bytes).collect()),
            DType::F64 => TensorData::F64(self.words(n).map(f64::from_ne_bytes).collect()),
            DType::I32 => TensorData::I32(self.words(n).map(i32::from_ne_bytes).collect()),
            DType::Bool => return tensor_from_bytes(ty, self.bytes()),
        };
        Tensor::new(ty.clone(), data).expect("the elements of a buffer of this type")
    }
}

/// The elements of `tensor` as native-endian bytes.
pub fn tensor_bytes(tensor: &Tensor) -> Vec<u8> {
    match tensor.data() {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
        TensorData::F64(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
    }
}

/// A tensor of type `ty` from its native-endian bytes (at least `ty.size_bytes()` of them).
pub fn tensor_from_bytes(ty: &TensorType, bytes: impl Iterator<Item = u8>) -> Tensor {
    let n = ty.numel();
    let bytes: Vec<u8> = bytes.take(ty.size_bytes()).collect();
    let data = match ty.dtype {
        DType::F32 => TensorData::F32(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::F64 => TensorData::F64(
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        DType::I32 => TensorData::I32(
            bytes
                .chunks_exact(4)
                .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
    };
    debug_assert_eq!(data.len(), n);
    Tensor::new(ty.clone(), data).expect("the bytes of a buffer of this type")
}

/// A pointer to the tensor's first element, for a kernel that only reads it.
pub fn tensor_ptr(tensor: &Tensor) -> *mut u8 {
    let ptr: *const u8 = match tensor.data() {
        TensorData::F32(v) => v.as_ptr().cast(),
        TensorData::F64(v) => v.as_ptr().cast(),
        TensorData::I32(v) => v.as_ptr().cast(),
        TensorData::Bool(v) => v.as_ptr().cast(),
    };
    ptr.cast_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_round_trip_tensors() {
        let t = Tensor::from_f32(&[3], vec![1.5, -0.0, f32::NAN]).unwrap();
        let mut b = HostBuffer::from_tensor(&t);
        assert_eq!(b.as_mut_ptr() as usize % ALIGNMENT, 0);
        let back = b.to_tensor(t.ty());
        assert_eq!(tensor_bytes(&back), tensor_bytes(&t));
        for t in [
            Tensor::from_f64_values(TensorType::f64(&[20]), &[-2.5; 20]).unwrap(),
            Tensor::from_f64_values(TensorType::new(DType::I32, vec![17]), &[-7.0; 17]).unwrap(),
        ] {
            let mut b = HostBuffer::zeroed(t.ty().size_bytes());
            b.write_tensor(&t);
            assert_eq!(b.to_tensor(t.ty()), t);
        }
        let m = Tensor::from_bool(&[2], vec![true, false]).unwrap();
        assert_eq!(HostBuffer::from_tensor(&m).to_tensor(m.ty()), m);
    }
}
